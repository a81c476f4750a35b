import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../server/domain/seed.ts';
import { get, login } from './support/consoles.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { startReplyDropper } from './support/reply-dropper.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
// Each console is a fresh Node process compiling TypeScript: generous, for a busy machine running the suite.
const LINE_DEADLINE_MS = 15_000;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

interface RunningConsole {
  readonly username: string;
  readonly child: ChildProcessWithoutNullStreams;
  output: string;
  /** The process exited and its output has been read to the end. */
  closed: boolean;
}

const running: RunningConsole[] = [];
afterEach(async () => {
  await Promise.all(
    running.splice(0).map(async (c) => {
      if (c.closed) return;
      const closed = new Promise((resolve) => c.child.once('close', resolve));
      c.child.kill('SIGKILL');
      await closed;
    }),
  );
});

function startConsole(username: string, url = server.url): RunningConsole {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'client/terminal-console.ts', '--url', url, '--user', username],
    { cwd: repoRoot, env: { ...process.env, SINERGI_PASSWORD: DEMO_PASSWORD } },
  );
  const c: RunningConsole = { username, child, output: '', closed: false };
  for (const stream of [child.stdout, child.stderr])
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      c.output += chunk;
    });
  child.on('close', () => {
    c.closed = true;
  });
  running.push(c);
  return c;
}

const type = (c: RunningConsole, line: string) => c.child.stdin.write(`${line}\n`);

/** Polls the console's output until a line matches, failing with everything it printed after the deadline. */
async function printed(c: RunningConsole, pattern: RegExp): Promise<RegExpExecArray> {
  const deadline = Date.now() + LINE_DEADLINE_MS;
  for (;;) {
    for (const line of c.output.split('\n')) {
      const match = pattern.exec(line);
      if (match) return match;
    }
    if (Date.now() > deadline || c.closed)
      throw new Error(`${c.username} printed no line matching ${pattern}; it printed:\n${c.output}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Both consoles connected and synced, so neither can miss what the other does next. */
async function ready(...consoles: RunningConsole[]) {
  await Promise.all(consoles.map((c) => printed(c, /^\d+ open incident\(s\)$/)));
}

describe('the terminal console', () => {
  it('shows a riot raised on the Permisan console to Polsek Nusakambangan, and the police ack back on Permisan', async () => {
    const police = startConsole('dispatch.nusakambangan');
    const permisan = startConsole('operator.permisan');
    await ready(police, permisan);

    type(permisan, 'raise riot 4 a Kerusuhan di blok A');
    const [, id] = await printed(permisan, /^raised ([0-9a-f]{8}) /);
    const alert = await printed(
      police,
      new RegExp(`ALERT +${id} · S4 kritis · Kerusuhan / Riot · lapas-permisan`),
    );
    expect(alert.input).toContain('blok a · open (Baru) — alert by operator.permisan: Kerusuhan di blok A');

    type(police, `ack ${id}`);
    await printed(police, new RegExp(`^ok ${id} .* acknowledged \\(Diterima\\)$`));
    await printed(
      permisan,
      new RegExp(`UPDATE +${id} .*open → acknowledged; police acknowledged by dispatch\\.nusakambangan$`),
    );

    type(police, `go ${id} responding Dalmas berangkat`);
    await printed(
      permisan,
      new RegExp(`UPDATE +${id} .* responding \\(Penanganan\\) — acknowledged → responding$`),
    );
  }, 45_000);

  it('names the allowed moves after a refused one, and answers the last command before leaving at end of input', async () => {
    const permisan = startConsole('operator.permisan');
    await ready(permisan);

    type(permisan, 'raise fire 2 b Asap di dapur');
    const [, id] = await printed(permisan, /^raised ([0-9a-f]{8}) .*Kebakaran \/ Fire/);
    type(permisan, `go ${id} closed`);
    await printed(permisan, /^error invalid_transition: /);
    await printed(
      permisan,
      /^allowed from open \(Baru\) for operator: responding, contained, false_alarm, cancelled$/,
    );

    permisan.child.stdin.end(`note ${id} Api sudah padam\n`);
    await printed(permisan, new RegExp(`^ok ${id} `));
    await waitFor(() => permisan.closed, {
      timeoutMs: LINE_DEADLINE_MS,
      what: 'the console to exit',
    });
    expect(permisan.child.exitCode).toBe(0);
  }, 45_000);

  it('renews its session before the access token expires and keeps receiving alerts on the new connection', async () => {
    const shortLived = await startTestServer({ env: { ACCESS_TOKEN_TTL_SECONDS: '5' } });
    try {
      const police = startConsole('dispatch.nusakambangan', shortLived.url);
      await ready(police);
      await printed(police, /^reconnected; session valid until /);

      const permisan = startConsole('operator.permisan', shortLived.url);
      await ready(permisan);
      type(permisan, 'raise escape 3 c Napi kabur lewat pagar');
      const [, id] = await printed(permisan, /^raised ([0-9a-f]{8}) /);
      await printed(police, new RegExp(`ALERT +${id} · S3 tinggi · Pelarian / Escape`));
    } finally {
      await shortLived.close();
    }
  }, 45_000);
});

describe('the terminal console, while a chain waits and climbs', () => {
  let paging: TestServer;
  beforeAll(async () => {
    // A high fire: the Polsek is paged again every second, and its chain climbs to the Kapolsek at 3 s.
    paging = await startTestServer({ env: { ESCALATION_FILE: 'test/fixtures/reminders.json' } });
  });
  afterAll(() => paging.close());

  it('shows the Polsek the repeat page of an unacknowledged fire, and the climb to its Kapolsek once joined', async () => {
    const police = startConsole('dispatch.nusakambangan', paging.url);
    const permisan = startConsole('operator.permisan', paging.url);
    await ready(police, permisan);

    type(permisan, 'raise fire 3 b Kebakaran di dapur blok B');
    const [, id] = await printed(permisan, /^raised ([0-9a-f]{8}) /);
    await printed(police, new RegExp(`ALERT +${id} `));
    type(police, `join ${id}`);
    await printed(police, new RegExp(`^joined ${id}`));
    await printed(
      police,
      new RegExp(`REMIND +${id} .* — still not acknowledged by the police chain at level 0 \\(page 2\\)$`),
    );
    await printed(police, new RegExp(`ESCAL +${id} .* — police chain up to level 1: Kapolsek$`));
  }, 45_000);
});

describe('the terminal console, when the store answers late', () => {
  // The store behind a proxy that can hold its replies back past the server's 3 s command timeout.
  let store: Awaited<ReturnType<typeof startOwnRedis>>;
  let dropper: Awaited<ReturnType<typeof startReplyDropper>>;
  let slow: TestServer;
  beforeAll(async () => {
    store = await startOwnRedis('terminal-store');
    dropper = await startReplyDropper(store.redis.url);
    slow = await startTestServer({ redisUrl: dropper.url });
  });
  afterAll(async () => {
    await slow?.close();
    await dropper?.close();
    await store?.stop();
  });

  it('sends a note again when the server could not tell whether it was stored, and the timeline holds it once', async () => {
    const chief = startConsole('chief.permisan', slow.url);
    await ready(chief);
    type(chief, 'raise fight 2 b Perkelahian di blok B');
    const [, id] = await printed(chief, /^raised ([0-9a-f]{8}) /);
    const text = `Blok B dikunci ${randomUUID()}`;
    // The commit is applied at once; its reply comes after the server has answered `unavailable`.
    dropper.delayRepliesAfter(text, 4500);

    type(chief, `note ${id} ${text}`);

    await printed(chief, /^no answer yet \(.*\); sending it again$/);
    await printed(chief, new RegExp(`^ok ${id} `));
    const token = (await login(slow.url, 'chief.permisan')).accessToken;
    const { body } = await get(slow.url, `/api/incidents?limit=10`, token);
    const incident = (body.incidents as { id: string }[]).find((i) => i.id.startsWith(id ?? '-'));
    const events = (await get(slow.url, `/api/incidents/${incident?.id}/events`, token)).body.events as {
      type: string;
      data: { text?: string };
    }[];
    expect(events.filter((e) => e.type === 'note_added' && e.data.text === text)).toHaveLength(1);
  }, 45_000);
});
