import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { z } from 'zod';
import { jobIds } from '../server/jobs/escalation-queue.ts';
import type { Category } from '../shared/categories.ts';
import type {
  EscalationFired,
  EscalationLevel,
  EscalationReminder,
  IncidentTimerJob,
} from '../shared/escalation.ts';
import type { Incident, IncidentEvent } from '../shared/incident.ts';
import type { Severity } from '../shared/severity.ts';
import { uniqueAlert } from './support/alerts.ts';
import { type ConsoleClient, closeConsoles, consoleFor, get, login } from './support/consoles.ts';
import { escalationQueues } from './support/escalation-queues.ts';
import { startTestServer, type TestServer, type TestServerOptions } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

// Severities 1–2: both agencies' first levels are paged again every 0.3 s and never climb within a test.
// Severities 3–4: the police's first level is paged again at 0.4 s and climbs at 0.5 s (fires excepted).
// Hostage-taking, severities 3–4: the corrections chain climbs to its top level, Ka. KPLP, at 0.3 s and pages
// it again every 0.3 s from then on.
const POLICIES = 'test/fixtures/reminders.json';

type Reminder = z.output<typeof EscalationReminder>;
type Fired = z.output<typeof EscalationFired>;

const servers: TestServer[] = [];
afterEach(closeConsoles);
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

/** A server on the fixture's policies, or on `escalation`; with `prefix`, beside the server that has it. */
async function server(
  env: Record<string, string> = {},
  { prefix, escalation }: Pick<TestServerOptions, 'prefix' | 'escalation'> = {},
) {
  const started = await startTestServer({
    env: { ESCALATION_FILE: POLICIES, ...env },
    ...(prefix && { prefix, seedDemo: false }),
    ...(escalation && { escalation }),
  });
  servers.push(started);
  return started;
}

// Not a fire or a hostage-taking by default: those have policies of their own in the fixture.
async function raise(url: string, severity: Severity, category: Category = 'fight'): Promise<Incident> {
  const { socket } = await consoleFor(url, 'operator.permisan');
  const res = await socket.emitWithAck('alert:raise', uniqueAlert({ severity, category }));
  if (!res.ok) throw new Error(JSON.stringify(res.error));
  return res.data.incident;
}

/** What a console hears about one incident, in arrival order. */
function listen(socket: ConsoleClient, incidentId: string) {
  const heard: (({ kind: 'reminder' } & Reminder) | ({ kind: 'fired' } & Fired))[] = [];
  socket.on('escalation:reminder', (r) => {
    if (r.incidentId === incidentId) heard.push({ kind: 'reminder', ...r });
  });
  socket.on('escalation:fired', (f) => {
    if (f.incidentId === incidentId) heard.push({ kind: 'fired', ...f });
  });
  return heard;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Wakes an incident's timer on `server` with a command behind the wake's first read holding its connection:
 * whatever the wake sends next (its commit, its claim) waits until `meanwhile` has run, then finds it done.
 */
async function wakeHeldAfterRead(
  server: TestServer,
  timer: IncidentTimerJob,
  meanwhile: () => Promise<void>,
) {
  const gate = `${server.prefix}gate`;
  const waking = server.app.services.escalation.wake(timer);
  const holding = server.app.redis.blpop(gate, 2);
  const redis = new Redis(inject('redisUrl'));
  try {
    const held = async () =>
      /\bname=sinergi:commands\b.*\bcmd=blpop\b/.test(String(await redis.client('LIST')));
    await waitFor(held, { what: 'the wake’s connection held after its read' });
    await meanwhile();
    await redis.lpush(gate, 'go');
    await holding;
    return await waking;
  } finally {
    redis.disconnect();
  }
}

describe('reminders while a level waits', () => {
  let a: TestServer;
  beforeAll(async () => {
    a = await server();
  });

  it('When nobody acknowledges, Then each agency’s waiting level is paged again, round after round; an acknowledgement stops only that agency’s pages', async () => {
    const dispatch = await consoleFor(a.url, 'dispatch.nusakambangan');
    const chief = await consoleFor(a.url, 'chief.permisan');
    const incident = await raise(a.url, 2);
    const police = listen(dispatch.socket, incident.id);
    const lapas = listen(chief.socket, incident.id);

    await waitFor(() => police.length >= 2 && lapas.length >= 2, { what: 'two rounds for each agency' });
    for (const [heard, chain] of [
      [police, 'police'],
      [lapas, 'corrections'],
    ] as const) {
      expect(heard.slice(0, 2)).toEqual([
        expect.objectContaining({ kind: 'reminder', chain, level: 0, round: 1 }),
        expect.objectContaining({ kind: 'reminder', chain, level: 0, round: 2 }),
      ]);
    }

    const acked = await dispatch.socket.emitWithAck('alert:ack', { incidentId: incident.id });
    expect(acked).toMatchObject({ ok: true });
    const policeRounds = police.length;
    const lapasRounds = lapas.length;
    // Three more intervals: the Lapas is paged again, the Polsek that acknowledged is not.
    await sleep(900);
    await waitFor(() => lapas.length >= lapasRounds + 2, { what: 'more rounds for the Lapas' });
    expect(police.length).toBeLessThanOrEqual(policeRounds + 1);
    const after = police.slice(policeRounds);
    // A round already running when the ack committed may still land; nothing after it.
    expect(after.every((r) => r.kind === 'reminder' && r.round === policeRounds + 1)).toBe(true);
    expect(
      lapas.every((r, i) => r.kind === 'reminder' && r.chain === 'corrections' && r.round === i + 1),
    ).toBe(true);
  });
});

describe('one timer per incident', () => {
  let a: TestServer;
  let redis: Redis;
  let queues: ReturnType<typeof escalationQueues>;
  beforeAll(async () => {
    a = await server();
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    queues = escalationQueues(redis, a);
  });
  afterAll(async () => {
    await queues.close();
    redis.disconnect();
  });

  /** Every job the incident's queue holds for it, pending or finished. */
  async function jobsOf(incidentId: string) {
    const jobs = await queues
      .of(incidentId)
      .getJobs(['delayed', 'waiting', 'prioritized', 'active', 'completed', 'failed']);
    return jobs.filter((j) => j?.data?.incidentId === incidentId).map((j) => j.id);
  }

  it('When both levels are paged again round after round, Then the incident keeps the one timer it got at the raise, until both agencies acknowledge', async () => {
    const dispatch = await consoleFor(a.url, 'dispatch.nusakambangan');
    const chief = await consoleFor(a.url, 'chief.permisan');
    const incident = await raise(a.url, 2);
    const timer = jobIds.timer(incident.id);
    expect(await jobsOf(incident.id)).toEqual([timer]);
    const police = listen(dispatch.socket, incident.id);
    const lapas = listen(chief.socket, incident.id);
    await waitFor(() => police.length >= 3 && lapas.length >= 3, { what: 'three rounds for each agency' });
    expect(await jobsOf(incident.id)).toEqual([timer]);
    expect(await queues.getJobState(timer)).toMatch(/^(delayed|active)$/);

    // The Polsek acknowledges: the Lapas is still paged, by the same timer.
    expect(await dispatch.socket.emitWithAck('alert:ack', { incidentId: incident.id })).toMatchObject({
      ok: true,
    });
    const rounds = lapas.length;
    await waitFor(() => lapas.length >= rounds + 2, { what: 'more rounds for the Lapas' });
    expect(await jobsOf(incident.id)).toEqual([timer]);

    // The Lapas too: nothing waits, and the timer goes, if not at once then after the round it was running.
    expect(await chief.socket.emitWithAck('alert:ack', { incidentId: incident.id })).toMatchObject({
      ok: true,
    });
    await waitFor(async () => (await jobsOf(incident.id)).length === 0, { what: 'the timer to go' });
  });
});

describe('a chain at its top level', () => {
  it('When the corrections chain has climbed to Ka. KPLP and nobody acknowledges, Then Ka. KPLP is paged again round after round until the chief acknowledges', async () => {
    const a = await server();
    const chief = await consoleFor(a.url, 'chief.permisan');
    const incident = await raise(a.url, 3, 'hostage');
    const heard = listen(chief.socket, incident.id);
    await waitFor(() => heard.length >= 3, { what: 'the climb and two rounds at the top' });
    expect(heard.slice(0, 3)).toEqual([
      expect.objectContaining({ kind: 'fired', chain: 'corrections', level: 1 }),
      expect.objectContaining({ kind: 'reminder', chain: 'corrections', level: 1, round: 1 }),
      expect.objectContaining({ kind: 'reminder', chain: 'corrections', level: 1, round: 2 }),
    ]);
    const joined = await chief.socket.emitWithAck('incident:join', { incidentId: incident.id });
    if (!joined.ok) throw new Error(JSON.stringify(joined.error));
    expect(joined.data.incident.escalation.chains.corrections.status).toBe('exhausted');

    expect(await chief.socket.emitWithAck('alert:ack', { incidentId: incident.id })).toMatchObject({
      ok: true,
    });
    const rounds = heard.length;
    await sleep(900);
    // A round already running when the ack committed may still land; nothing after it.
    expect(heard.length).toBeLessThanOrEqual(rounds + 1);
  });
});

describe('the auditor and a chain at its top level', () => {
  it('When the timer of a low alert (both chains at their only level, paged again without end) is lost, Then the auditor sets it again, records a reminder repair for each chain, and both levels are paged again', async () => {
    // The built-in policies, the low one paging again every 0.4 s instead of every 10 minutes.
    const escalation = JSON.parse(await readFile('config/escalation.json', 'utf8'));
    for (const policy of escalation.policies)
      if (policy.id === 'low')
        for (const chain of ['corrections', 'police'])
          for (const level of policy.chains[chain].levels) level.repeatSeconds = 0.4;
    // Only schedules: the timer is lost as if the process died between the commit and setting it.
    const scheduler = await server({ ESCALATION_WORKER: 'off' }, { escalation });
    const incident = await raise(scheduler.url, 1);
    expect(incident.escalation.chains.corrections.status).toBe('exhausted');
    expect(incident.escalation.chains.police.status).toBe('exhausted');
    const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    const queues = escalationQueues(redis, scheduler);
    try {
      await (await queues.getJob(jobIds.timer(incident.id)))?.remove();
      expect(await queues.getJob(jobIds.timer(incident.id))).toBeUndefined();
    } finally {
      await queues.close();
      redis.disconnect();
    }
    const dispatch = await consoleFor(scheduler.url, 'dispatch.nusakambangan');
    const chief = await consoleFor(scheduler.url, 'chief.permisan');
    const police = listen(dispatch.socket, incident.id);
    const lapas = listen(chief.socket, incident.id);

    await server({ ESCALATION_AUDIT_INTERVAL_MS: '300' }, { prefix: scheduler.prefix, escalation });
    await waitFor(() => police.length >= 2 && lapas.length >= 2, { what: 'both levels paged again' });
    for (const heard of [police, lapas])
      expect(heard.every((r) => r.kind === 'reminder' && r.level === 0)).toBe(true);
    // The repaired timer goes on paging; the auditor, still running, finds nothing more to repair.
    await sleep(1000);
    const { accessToken } = await login(scheduler.url, 'admin');
    const res = await get(scheduler.url, `/api/incidents/${incident.id}/events?limit=1000`, accessToken);
    const repairs = (res.body.events as IncidentEvent[]).filter((e) => e.type === 'escalation_repaired');
    expect(repairs.map((e) => e.data)).toEqual(
      expect.arrayContaining(
        (['corrections', 'police'] as const).map((chain) =>
          expect.objectContaining({ chain, timer: 'remind', level: 0 }),
        ),
      ),
    );
    expect(repairs).toHaveLength(2);
  });
});

describe('a repeat page and the climb it precedes, both overdue', () => {
  it('When no worker ran until both were due, Then the level climbs first and the stale page of the level below is never sent', async () => {
    // Only schedules: nothing fires until a worker joins.
    const scheduler = await server({ ESCALATION_WORKER: 'off' });
    const dispatch = await consoleFor(scheduler.url, 'dispatch.nusakambangan');
    const incident = await raise(scheduler.url, 3);
    const heard = listen(dispatch.socket, incident.id);
    // In the incident's room, the Polsek hears the climb to its Kapolsek as well as its own pages.
    expect(await dispatch.socket.emitWithAck('incident:join', { incidentId: incident.id })).toMatchObject({
      ok: true,
    });
    // The page was due at 0.4 s and the climb at 0.5 s; one worker, one job at a time, joins after both.
    await sleep(900);
    expect(heard).toEqual([]);
    await server({ WORKER_CONCURRENCY: '1' }, { prefix: scheduler.prefix });
    await waitFor(() => heard.length > 0, { what: 'the climb' });
    await sleep(500);
    expect(heard).toEqual([expect.objectContaining({ kind: 'fired', chain: 'police', level: 1 })]);
  });

  it('When a climb and another incident’s repeat page are both overdue, Then the climb goes first though the page fell due before it', async () => {
    // One partition, so both incidents' timers share a queue: the order is decided there. (Timers in
    // different partitions are run by different workers, side by side, and never wait for each other.)
    const scheduler = await server({ ESCALATION_WORKER: 'off', ESCALATION_PARTITIONS: '1' });
    const chief = await consoleFor(scheduler.url, 'chief.permisan');
    // Paged again at 0.3 s, then a hostage-taking whose corrections chain climbs at 0.3 s, with no page before.
    const paging = await raise(scheduler.url, 2);
    const climbing = await raise(scheduler.url, 3, 'hostage');
    const order: string[] = [];
    chief.socket.on('escalation:reminder', (r) => {
      if (r.incidentId === paging.id) order.push('page');
    });
    chief.socket.on('escalation:fired', (f) => {
      if (f.incidentId === climbing.id) order.push('climb');
    });
    await sleep(900);
    expect(order).toEqual([]);
    await server({ WORKER_CONCURRENCY: '1', ESCALATION_PARTITIONS: '1' }, { prefix: scheduler.prefix });
    await waitFor(() => order.includes('climb') && order.includes('page'), {
      what: 'the climb and the page',
    });
    expect(order[0]).toBe('climb');
  });
});

describe('each round paged once', () => {
  it('When the incident’s timer runs five times at once as a round falls due (a stalled run taken over, a follow-up beside the timer), Then each agency’s level is paged once for that round, and once for a later one', async () => {
    // Only schedules: the runs below are the only ones.
    const scheduler = await server({ ESCALATION_WORKER: 'off' });
    const dispatch = await consoleFor(scheduler.url, 'dispatch.nusakambangan');
    const chief = await consoleFor(scheduler.url, 'chief.permisan');
    const incident = await raise(scheduler.url, 2);
    const police = listen(dispatch.socket, incident.id);
    const lapas = listen(chief.socket, incident.id);
    // Round 1 falls due 0.3 s after the raise, round 2 at 0.6 s: wake between them, as the timer set for it.
    const timer = {
      incidentId: incident.id,
      at: new Date(Date.parse(incident.openedAt) + 300).toISOString(),
    };
    await sleep(Date.parse(incident.openedAt) + 400 - Date.now());
    const runs = await Promise.all(
      Array.from({ length: 5 }, () => scheduler.app.services.escalation.wake(timer)),
    );
    expect(runs.every((r) => r.next !== undefined)).toBe(true);
    await waitFor(() => police.length >= 1 && lapas.length >= 1, { what: 'the pages of round 1' });
    await sleep(300);
    for (const [heard, chain] of [
      [police, 'police'],
      [lapas, 'corrections'],
    ] as const)
      expect(heard).toEqual([expect.objectContaining({ kind: 'reminder', chain, level: 0, round: 1 })]);

    // A later round is paged again, once, however many runs wake for it.
    const later = {
      incidentId: incident.id,
      at: new Date(Date.parse(incident.openedAt) + 600).toISOString(),
    };
    await Promise.all(Array.from({ length: 5 }, () => scheduler.app.services.escalation.wake(later)));
    await waitFor(() => police.length >= 2 && lapas.length >= 2, { what: 'the pages of a later round' });
    await sleep(300);
    for (const heard of [police, lapas]) {
      expect(heard).toHaveLength(2);
      expect(heard[1]).toMatchObject({ kind: 'reminder', level: 0, round: expect.any(Number) });
      expect((heard[1] as Reminder).round).toBeGreaterThanOrEqual(2);
    }
  });
});

describe('a round and a change that comes while its timer runs', () => {
  // Up to high, the Lapas' level is paged again every 0.2 s and the Polsek's climbs at 0.5 s; critical begins
  // both waits anew, paging each every second.
  type Timing = Pick<EscalationLevel, 'waitSeconds' | 'repeatSeconds'>;
  const lapasLevel = (timing: Timing): EscalationLevel => ({
    label: 'Ruang kendali Lapas',
    notify: [{ scope: 'facility' }],
    ...timing,
  });
  const polsekLevel = (timing: Timing): EscalationLevel => ({
    label: 'Piket Polsek',
    notify: [{ scope: 'primary_precinct' }],
    ...timing,
  });
  const top: EscalationLevel = { label: 'Pimpinan', notify: [{ scope: 'facility_command', depth: 1 }] };
  const escalation = {
    policies: [
      {
        id: 'until-high',
        match: { severities: [1, 2, 3] },
        chains: {
          corrections: {
            levels: [lapasLevel({ waitSeconds: 60, repeatSeconds: 0.2 }), top],
          },
          police: { levels: [polsekLevel({ waitSeconds: 0.5 }), top] },
        },
      },
      {
        id: 'critical',
        match: { severities: [4] },
        chains: {
          corrections: { levels: [lapasLevel({ waitSeconds: 60, repeatSeconds: 1 }), top] },
          police: { levels: [polsekLevel({ waitSeconds: 60, repeatSeconds: 1 }), top] },
        },
      },
    ],
  } satisfies TestServerOptions['escalation'];

  it('When an alert bringing another policy commits between a wake’s read and its climb (the climb decided again), Then the wake pages no round of the old wait, and the new wait’s first round is paged to both agencies', async () => {
    // Neither runs the timer: the wakes below are the only ones.
    const a = await server({ ESCALATION_WORKER: 'off' }, { escalation });
    const b = await server({ ESCALATION_WORKER: 'off' }, { prefix: a.prefix, escalation });
    const dispatch = await consoleFor(a.url, 'dispatch.nusakambangan');
    const chief = await consoleFor(a.url, 'chief.permisan');
    const operator = await consoleFor(a.url, 'operator.permisan');
    const operatorOnB = await consoleFor(b.url, 'operator.permisan');
    const alert = uniqueAlert({ severity: 2, category: 'fight' });
    const opened = await operator.socket.emitWithAck('alert:raise', alert);
    if (!opened.ok) throw new Error(JSON.stringify(opened.error));
    const incident = opened.data.incident;
    const police = listen(dispatch.socket, incident.id);
    const lapas = listen(chief.socket, incident.id);
    // The Polsek's climb is due, and the Lapas' third round.
    const climbAt = incident.escalation.chains.police.dueAt ?? '';
    await sleep(Date.parse(incident.openedAt) + 650 - Date.now());

    // The wake's commit, sent after its read, waits until the other server's change has committed, and finds
    // itself behind.
    let newWait = 0;
    const woke = await wakeHeldAfterRead(a, { incidentId: incident.id, at: climbAt }, async () => {
      const worse = await operatorOnB.socket.emitWithAck('alert:raise', {
        ...alert,
        clientRef: randomUUID(),
        severity: 4,
      });
      if (!worse.ok) throw new Error(JSON.stringify(worse.error));
      expect(worse.data.incident.escalation.policyId).toBe('critical');
      newWait = Date.parse(worse.data.incident.escalation.chains.corrections.waitFrom ?? '');
    });
    expect(woke).toMatchObject({ firedLateMs: [], skipped: 1 });
    await sleep(300);
    expect([...police, ...lapas]).toEqual([]);

    // A second into the new wait, its first round: paged to both, not taken for a round of the old one.
    await sleep(newWait + 1000 - Date.now());
    await a.app.services.escalation.wake({
      incidentId: incident.id,
      at: new Date(newWait + 1000).toISOString(),
    });
    await waitFor(() => police.length >= 1 && lapas.length >= 1, { what: 'the new wait’s first round' });
    for (const [heard, chain] of [
      [police, 'police'],
      [lapas, 'corrections'],
    ] as const)
      expect(heard).toEqual([expect.objectContaining({ kind: 'reminder', chain, level: 0, round: 1 })]);
  });
});

describe('a round and an acknowledgement that comes while its timer runs', () => {
  it('When an agency acknowledges between a wake’s read and its claim of a round, Then that agency is not paged; the other, still waiting, is', async () => {
    // Neither runs the timer: the wake below is the only one. Severity 2: both agencies' first levels are
    // paged again every 0.3 s.
    const a = await server({ ESCALATION_WORKER: 'off' });
    const b = await server({ ESCALATION_WORKER: 'off' }, { prefix: a.prefix });
    const dispatch = await consoleFor(a.url, 'dispatch.nusakambangan');
    const chief = await consoleFor(a.url, 'chief.permisan');
    const dispatchOnB = await consoleFor(b.url, 'dispatch.nusakambangan');
    const incident = await raise(a.url, 2);
    const police = listen(dispatch.socket, incident.id);
    const lapas = listen(chief.socket, incident.id);
    const roundAt = Date.parse(incident.openedAt) + 300;
    await sleep(roundAt + 100 - Date.now());

    // The wake's claim, sent after its read, waits until the Polsek's acknowledgement has committed on the
    // other server.
    await wakeHeldAfterRead(a, { incidentId: incident.id, at: new Date(roundAt).toISOString() }, async () => {
      const acked = await dispatchOnB.socket.emitWithAck('alert:ack', { incidentId: incident.id });
      expect(acked).toMatchObject({ ok: true });
    });

    await waitFor(() => lapas.length >= 1, { what: 'the Lapas’ page' });
    await sleep(300);
    expect(lapas).toEqual([
      expect.objectContaining({ kind: 'reminder', chain: 'corrections', level: 0, round: 1 }),
    ]);
    expect(police).toEqual([]);
  });
});
