import { Category, categories } from '../../shared/categories.ts';
import type { Ack } from '../../shared/envelope.ts';
import { type Incident, IncidentId, type RaiseAlertInput, Status } from '../../shared/incident.ts';
import { nextStatuses } from '../../shared/incident-lifecycle.ts';
import { CRITICAL } from '../../shared/severity.ts';
import { clock, eventDetail, shortId, statusText, summary } from './format.ts';
import type { ConsoleSession } from './session.ts';

interface Command {
  usage: string;
  /** Fewer words than this after the command name print the usage instead. */
  minArgs: number;
  run(args: string[]): Promise<void> | void;
}

/** Turns one typed line into a command on the session; everything it has to say goes through `print`. */
export function createCommands(session: ConsoleSession, print: (text: string) => void, quit: () => void) {
  function resolve(prefix: string): string | undefined {
    if (IncidentId.safeParse(prefix).success) return prefix;
    const matches = [...session.incidents.keys()].filter((id) => id.startsWith(prefix.toLowerCase()));
    if (matches.length === 1) return matches[0];
    print(
      matches.length === 0
        ? `no known incident starts with "${prefix}" (see list)`
        : `"${prefix}" fits ${matches.length} incidents (${matches.map(shortId).join(', ')}): type more of the id`,
    );
    return undefined;
  }

  /** Prints the error of a failed command and reports whether it succeeded. */
  function succeeded<T>(res: Ack<T>): res is { ok: true; data: T } {
    if (!res.ok) session.printError(res.error);
    return res.ok;
  }

  /** For commands answered with the incident: keep it and show it as it now stands. */
  function showIncident(res: Ack<{ incident: Incident }>, verb = 'ok') {
    if (!succeeded(res)) return;
    session.learn(res.data.incident);
    print(`${verb} ${summary(res.data.incident)}`);
  }

  function parseCategory(text: string) {
    const category = Category.safeParse(text);
    if (!category.success) print(`unknown category "${text}"; one of: ${categories.join(', ')}`);
    return category.data;
  }

  const raise = (input: Omit<RaiseAlertInput, 'clientRef' | 'facilityId'>) =>
    session.change('alert:raise', { ...input, facilityId: session.user.unitId });

  const commands: Record<string, Command> = {
    raise: {
      usage: 'raise <category> <severity 1-4> <block> [description…]',
      minArgs: 3,
      async run([categoryText = '', severity, block = '', ...description]) {
        const category = parseCategory(categoryText);
        if (!category) return;
        const res = await raise({
          category,
          severity: Number(severity),
          location: { block },
          description: description.join(' '),
        });
        const count = res.ok ? res.data.incident.alertCount : 1;
        showIncident(res, count > 1 ? `raised (alert ${count})` : 'raised');
      },
    },
    silent: {
      usage: 'silent <category> <block>   (duress: no alarm on this console)',
      minArgs: 2,
      async run([categoryText = '', block = '']) {
        const category = parseCategory(categoryText);
        if (!category) return;
        // Routed as critical whatever is reported; nothing about it is shown here but a discreet "ok".
        const res = await raise({ category, severity: CRITICAL, location: { block }, silent: true });
        if (!succeeded(res)) return;
        session.keepQuietAbout(res.data.incident.id);
        print('ok');
      },
    },
    ack: {
      usage: 'ack <id-prefix>',
      minArgs: 1,
      async run([prefix = '']) {
        const incidentId = resolve(prefix);
        if (incidentId) showIncident(await session.change('alert:ack', { incidentId }));
      },
    },
    'radio-ack': {
      usage: 'radio-ack <id-prefix> <unitId> <note…>   (an ack heard by radio)',
      minArgs: 3,
      async run([prefix = '', unitId = '', ...note]) {
        const incidentId = resolve(prefix);
        if (!incidentId) return;
        const onBehalfOf = { unitId, channel: 'radio' as const, note: note.join(' ') };
        showIncident(await session.change('alert:ack', { incidentId, onBehalfOf }));
      },
    },
    go: {
      usage: 'go <id-prefix> <status> [note…]',
      minArgs: 2,
      async run([prefix = '', target = '', ...note]) {
        const incidentId = resolve(prefix);
        if (!incidentId) return;
        const to = Status.safeParse(target);
        if (to.success) {
          const res = await session.change('incident:transition', {
            incidentId,
            to: to.data,
            ...(note.length > 0 && { note: note.join(' ') }),
          });
          if (res.ok) return showIncident(res);
          session.printError(res.error);
        } else {
          print(`unknown status "${target}"`);
        }
        const known = session.incidents.get(incidentId);
        if (!known) return;
        const allowed = nextStatuses(known.status, session.user.role).join(', ') || 'nothing';
        print(`allowed from ${statusText(known.status)} for ${session.user.role}: ${allowed}`);
      },
    },
    note: {
      usage: 'note <id-prefix> <text…>',
      minArgs: 2,
      async run([prefix = '', ...text]) {
        const incidentId = resolve(prefix);
        if (incidentId)
          showIncident(await session.change('incident:note', { incidentId, text: text.join(' ') }));
      },
    },
    join: {
      usage: 'join <id-prefix>   (print the timeline and follow it live)',
      minArgs: 1,
      async run([prefix = '']) {
        const incidentId = resolve(prefix);
        if (!incidentId) return;
        const res = await session.send('incident:join', { incidentId });
        if (!succeeded(res)) return;
        session.learn(res.data.incident);
        print(`joined ${summary(res.data.incident, { fullId: true })}`);
        for (const event of res.data.events)
          print(`  #${event.seq} ${clock(event.at)} ${eventDetail(event)}`);
      },
    },
    leave: {
      usage: 'leave <id-prefix>',
      minArgs: 1,
      async run([prefix = '']) {
        const incidentId = resolve(prefix);
        if (incidentId && succeeded(await session.send('incident:leave', { incidentId })))
          print(`left ${shortId(incidentId)}`);
      },
    },
    list: {
      usage: 'list   (every incident this console knows, with full ids)',
      minArgs: 0,
      run() {
        const known = [...session.incidents.values()].sort((a, b) => a.openedAt.localeCompare(b.openedAt));
        if (known.length === 0) print('no incidents known');
        for (const incident of known)
          print(`${clock(incident.openedAt)} ${summary(incident, { fullId: true })}`);
      },
    },
    help: {
      usage: 'help',
      minArgs: 0,
      run() {
        for (const command of Object.values(commands)) print(`  ${command.usage}`);
        print(`categories: ${categories.join(', ')}`);
        print(`statuses: ${Status.options.join(', ')}`);
      },
    },
    quit: { usage: 'quit', minArgs: 0, run: quit },
  };

  return async (line: string): Promise<void> => {
    const [name, ...args] = line.trim().split(/\s+/);
    if (!name) return;
    const command = commands[name];
    if (!command) return print(`unknown command "${name}"; type help`);
    if (args.length < command.minArgs) return print(`usage: ${command.usage}`);
    await command.run(args);
  };
}
