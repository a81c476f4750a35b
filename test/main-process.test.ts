import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD, demoAccounts } from '../server/domain/seed.ts';
import { partitionOf } from '../server/jobs/escalation-partitions.ts';
import { freePort } from '../server/redis/embedded-redis.ts';
import { redisKeys } from '../server/storage/keys.ts';
import { uniqueAlert } from './support/alerts.ts';
import {
  type ConsoleClient,
  closeConsoles,
  connectConsole,
  consoleFor,
  get,
  login,
  post,
} from './support/consoles.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { childPids, establishedOn, isRunning } from './support/processes.ts';
import { waitFor } from './support/wait-for.ts';

const TSX = 'node_modules/.bin/tsx';

interface Running {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: string;
  stderr: string;
}

const running: Running[] = [];
const dirs: string[] = [];

afterEach(async ({ task }) => {
  closeConsoles();
  // A failure that a server saw coming (an error it logged, a 500's cause) says so in the test's output.
  if (task.result?.state === 'fail')
    for (const proc of running)
      process.stderr.write(`--- server ${proc.child.pid} output:\n${proc.stdout}${proc.stderr}\n`);
  // Each spawn leads its own process group (a server and the server processes it forked): end the whole
  // group; its redis-servers stop when their parent goes.
  for (const proc of running.splice(0)) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null || proc.child.pid === undefined)
      continue;
    try {
      process.kill(-proc.child.pid, 'SIGKILL');
    } catch {}
    await proc.exited;
  }
  // A killed server's redis-servers stop a moment later (their own process group sees the parent go), and
  // may still be writing their files.
  await Promise.all(
    dirs.splice(0).map((d) => rm(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 })),
  );
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sinergi-main-'));
  dirs.push(dir);
  return dir;
}

/** Only what the test sets: nothing from the developer's shell (REDIS_URL, NODE_ENV=test…) leaks in. */
function envFor(dataDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATA_DIR: dataDir,
    NODE_ENV: 'development',
    LOG_LEVEL: 'warn',
    SHUTDOWN_GRACE_MS: '2000',
    ...extra,
  };
}

function launch(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Running {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  const proc: Running = { child, exited, stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => {
    proc.stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    proc.stderr += chunk.toString();
  });
  // Bounded even if a test forgets it: the whole group goes at the deadline.
  const deadline = setTimeout(() => {
    if (child.pid === undefined || child.exitCode !== null) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {}
  }, timeoutMs);
  void exited.then(() => clearTimeout(deadline));
  running.push(proc);
  return proc;
}

/** `npm start`, as an operator runs it. */
async function startServer(dataDir: string, port: number, extra: Record<string, string> = {}) {
  const server = launch(
    process.execPath,
    ['--import', 'tsx', 'server/main.ts'],
    envFor(dataDir, { PORT: String(port), SEED_DEMO: '1', ...extra }),
  );
  await waitFor(
    async () => {
      if (server.child.exitCode !== null)
        throw new Error(`server exited early (${server.child.exitCode}):\n${server.stderr}`);
      return server.stdout.includes(`Sinergi is listening on http://localhost:${port}`);
    },
    { timeoutMs: 30_000, what: 'the server to listen' },
  );
  return { server, url: `http://127.0.0.1:${port}` };
}

/** `npm run users -- <args>` against the same DATA_DIR. */
async function users(dataDir: string, ...args: string[]) {
  const cli = launch(TSX, ['server/cli/users.ts', ...args], envFor(dataDir), 30_000);
  const { code } = await cli.exited;
  return { code, stdout: cli.stdout, stderr: cli.stderr };
}

async function embeddedRedis(dataDir: string, name = 'redis') {
  const record = JSON.parse(await readFile(path.join(dataDir, name, 'address.json'), 'utf8'));
  return record as { pid: number; address: string };
}

async function embeddedRedisPid(dataDir: string): Promise<number> {
  return (await embeddedRedis(dataDir)).pid;
}

/** The store's and the broadcast Redis's process ids. */
async function embeddedRedisPids(dataDir: string): Promise<[number, number]> {
  return [await embeddedRedisPid(dataDir), (await embeddedRedis(dataDir, 'redis-socket')).pid];
}

/**
 * The Permisan operator's console and the Polsek dispatch console that covers it. `raise` raises an alert
 * and resolves with its incident's id once the Polsek console has it.
 */
async function permisanAndItsPolsek(url: string) {
  const dispatch = await consoleFor(url, 'dispatch.nusakambangan');
  const heard: string[] = [];
  dispatch.socket.on('alert:new', ({ incidentId }) => heard.push(incidentId));
  const operator = await consoleFor(url, 'operator.permisan');
  return {
    async raise(): Promise<string> {
      const raised = await operator.socket.emitWithAck('alert:raise', uniqueAlert());
      if (!raised.ok) throw new Error(JSON.stringify(raised.error));
      const { id } = raised.data.incident;
      await waitFor(() => heard.includes(id), { what: `alert:new for ${id} at the Polsek console` });
      return id;
    },
  };
}

async function stopWithSigterm(proc: Running) {
  proc.child.kill('SIGTERM');
  const outcome = await Promise.race([
    proc.exited,
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 8_000).unref()),
  ]);
  if (outcome === 'timeout') throw new Error(`no exit within 8 s of SIGTERM:\n${proc.stderr}`);
  return outcome;
}

describe('npm start (server/main.ts) with the embedded Redis', () => {
  it('When started with SEED_DEMO=1 on an empty data dir, Then listens, lists the demo accounts, is ready and lets a demo user log in', async () => {
    const dataDir = await tempDir();
    const port = await freePort();
    const { server, url } = await startServer(dataDir, port);

    expect(server.stdout).toContain(`Demo mode: every demo account's password is "${DEMO_PASSWORD}"`);
    // The embedded store syncs every write.
    expect(server.stdout).not.toContain('does not sync every write');
    for (const username of ['operator.permisan', 'dispatch.nusakambangan', 'supervisor.kanwil', 'admin'])
      expect(server.stdout).toContain(username);
    expect((await get(url, '/readyz')).status).toBe(200);
    const session = await login(url, 'operator.permisan');
    expect(session.user).toMatchObject({ username: 'operator.permisan', unitId: 'lapas-permisan' });

    // The CLI finds the server's redis-server through DATA_DIR alone and leaves it running.
    const pid = await embeddedRedisPid(dataDir);
    const listed = await users(dataDir, 'list');
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^USERNAME\s+ROLE\s+UNIT\s+DISABLED$/m);
    expect(listed.stdout).toMatch(/^dispatch\.nusakambangan\s+dispatcher\s+polsek-nusakambangan\s+no$/m);
    expect(listed.stdout).toMatch(/^operator\.permisan\s+operator\s+lapas-permisan\s+no$/m);
    expect(await embeddedRedisPid(dataDir)).toBe(pid);
    expect(isRunning(pid)).toBe(true);
    expect((await get(url, '/readyz')).status).toBe(200);
  }, 60_000);

  it('When an alert is raised, Then consoles get it through a second redis-server that keeps no append-only file, and the store keeps no broadcasts', async () => {
    const dataDir = await tempDir();
    const { url } = await startServer(dataDir, await freePort());
    const { raise } = await permisanAndItsPolsek(url);
    const raised = await raise();

    const stream = redisKeys('sng:').socketStream;
    const open = async (name: string) => {
      const client = new Redis((await embeddedRedis(dataDir, name)).address, { lazyConnect: true });
      await client.connect();
      return client;
    };
    const [store, sockets] = [await open('redis'), await open('redis-socket')];
    try {
      expect(await sockets.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
      // The store ends escalation workers' waits on a 10 ms clock; the broadcast Redis has no such waits.
      expect(await store.config('GET', 'hz')).toEqual(['hz', '100']);
      expect(await sockets.config('GET', 'hz')).toEqual(['hz', '10']);
      expect(await sockets.exists(stream)).toBe(1);
      expect(await store.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await store.exists(stream)).toBe(0);
      expect(await store.exists(redisKeys('sng:').incident(raised))).toBe(1);
    } finally {
      store.disconnect();
      sockets.disconnect();
    }
  }, 60_000);

  it('When both embedded redis-servers die under a running server, Then it starts them again on their addresses, the store keeps what it held, and alerts reach consoles again', async () => {
    const dataDir = await tempDir();
    const { server, url } = await startServer(dataDir, await freePort());
    const { raise } = await permisanAndItsPolsek(url);
    const before = await raise();

    const [store, sockets] = [await embeddedRedis(dataDir), await embeddedRedis(dataDir, 'redis-socket')];
    process.kill(store.pid, 'SIGKILL');
    process.kill(sockets.pid, 'SIGKILL');
    await waitFor(
      async () => {
        // Each address record is rewritten as its redis-server comes back.
        const [s, b] = await Promise.all([
          embeddedRedis(dataDir).catch(() => undefined),
          embeddedRedis(dataDir, 'redis-socket').catch(() => undefined),
        ]);
        return (
          !!s && !!b && s.pid !== store.pid && b.pid !== sockets.pid && isRunning(s.pid) && isRunning(b.pid)
        );
      },
      { what: 'both redis-servers to be started again', timeoutMs: 20_000 },
    );
    expect(await embeddedRedis(dataDir)).toMatchObject({ address: store.address });
    expect(await embeddedRedis(dataDir, 'redis-socket')).toMatchObject({ address: sockets.address });
    await waitFor(async () => (await get(url, '/readyz')).status === 200, {
      what: 'ready again',
      timeoutMs: 20_000,
    });
    expect(server.stdout).toContain('embedded redis-server exited; restarting it');

    // The same console connections go on: a new alert is stored and delivered, and the old one is still there.
    await raise();
    const { accessToken } = await login(url, 'dispatch.nusakambangan');
    expect((await get(url, `/api/incidents/${before}`, accessToken)).status).toBe(200);
  }, 60_000);

  it('When sent SIGTERM, Then exits 0 and stops its redis-server; started again it keeps CLI-made users and its JWT secret', async () => {
    const dataDir = await tempDir();
    const port = await freePort();
    const first = await startServer(dataDir, port);
    const added = await users(
      dataDir,
      'add',
      'karupam.nirbaya',
      '--role',
      'operator',
      '--unit',
      'lapas-nirbaya',
      '--name',
      'Karupam Nirbaya',
      '--password',
      'kunci-rahasia-nirbaya',
    );
    expect(added).toMatchObject({ code: 0, stderr: '' });
    expect(added.stdout).toContain('Created user "karupam.nirbaya" (operator at lapas-nirbaya)');
    // A password given on the command line is not echoed.
    expect(added.stdout).not.toContain('kunci-rahasia-nirbaya');
    const earlier = await login(first.url, 'karupam.nirbaya', 'kunci-rahasia-nirbaya');
    const secret = await readFile(path.join(dataDir, 'jwt-secret'), 'utf8');
    const [redisPid, socketRedisPid] = await embeddedRedisPids(dataDir);

    expect(await stopWithSigterm(first.server)).toEqual({ code: 0, signal: null });
    expect(isRunning(redisPid)).toBe(false);
    expect(isRunning(socketRedisPid)).toBe(false);
    expect(existsSync(path.join(dataDir, 'redis', 'address.json'))).toBe(false);
    expect(existsSync(path.join(dataDir, 'redis-socket', 'address.json'))).toBe(false);

    const second = await startServer(dataDir, port);
    expect(await readFile(path.join(dataDir, 'jwt-secret'), 'utf8')).toBe(secret);
    expect(await embeddedRedisPid(dataDir)).not.toBe(redisPid);
    // Same key, same store: a token issued before the restart still opens the API.
    expect((await get(second.url, '/api/topology', earlier.accessToken)).status).toBe(200);
    const again = await login(second.url, 'karupam.nirbaya', 'kunci-rahasia-nirbaya');
    expect(again.user).toMatchObject({
      role: 'operator',
      unitId: 'lapas-nirbaya',
      displayName: 'Karupam Nirbaya',
    });
  }, 60_000);

  it('When its terminal closes (SIGHUP to the group), Then a single server process answers what it holds, exits 0 and stops its redis-servers', async () => {
    const { dataDir, server, raise } = await serverHoldingARaise({
      SERVER_PROCESSES: '1',
      SHUTDOWN_GRACE_MS: '5000',
    });
    const redis = await embeddedRedisPids(dataDir);

    process.kill(-(server.child.pid ?? 0), 'SIGHUP');
    // Long enough for a process that does not wait for it to have dropped the request; well inside the grace.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await raise.finish()).toMatch(/^HTTP\/1\.1 201 /m);
    expect(await server.exited).toEqual({ code: 0, signal: null });
    for (const pid of redis) expect(isRunning(pid)).toBe(false);
  }, 60_000);

  it('When a store first served in demo mode is started for real, Then it refuses while a demo account still opens with the demo password, saying which and what to do, and starts once they are closed', async () => {
    const dataDir = await tempDir();
    const port = await freePort();
    const trial = await startServer(dataDir, port);
    expect(await stopWithSigterm(trial.server)).toEqual({ code: 0, signal: null });

    const real = () =>
      launch(
        process.execPath,
        ['--import', 'tsx', 'server/main.ts'],
        envFor(dataDir, { PORT: String(port), NODE_ENV: 'production', SERVER_PROCESSES: '1' }),
      );
    const refused = real();
    expect((await refused.exited).code).not.toBe(0);
    const said = refused.stdout + refused.stderr;
    expect(said).toContain('still open with the published demo password');
    expect(said).toContain('admin');
    expect(said).toContain('npm run users -- disable <name>');

    for (const { username } of demoAccounts) {
      const closed = username === 'admin' ? 'reset-password' : 'disable';
      expect((await users(dataDir, closed, username)).code).toBe(0);
    }
    const started = real();
    await waitFor(() => started.stdout.includes('Sinergi is listening'), {
      what: 'the server to start once the demo accounts are closed',
      timeoutMs: 30_000,
    });
    const demoLogin = await post(`http://127.0.0.1:${port}`, '/api/auth/login', {
      username: 'admin',
      password: DEMO_PASSWORD,
    });
    expect(demoLogin.status).toBe(401);
  }, 90_000);

  it('When started for real with ADMIN_PASSWORD_FILE on an empty store, Then admin opens with the password in the file and no output shows it; a file holding no usable password stops start-up saying why', async () => {
    const dataDir = await tempDir();
    const port = await freePort();
    const file = path.join(dataDir, 'admin-password');
    const real = () =>
      launch(
        process.execPath,
        ['--import', 'tsx', 'server/main.ts'],
        envFor(dataDir, {
          PORT: String(port),
          NODE_ENV: 'production',
          SERVER_PROCESSES: '1',
          ADMIN_PASSWORD_FILE: file,
        }),
      );
    await writeFile(file, 'pendek\n');
    const refused = real();
    expect((await refused.exited).code).toBe(1);
    expect(refused.stderr).toContain(
      `ADMIN_PASSWORD_FILE ${file} holds no usable password: at least 12 characters`,
    );

    const password = randomBytes(15).toString('base64url');
    await writeFile(file, `${password}\n`);
    const started = real();
    await waitFor(() => started.stdout.includes('Sinergi is listening'), {
      what: 'the server to start',
      timeoutMs: 30_000,
    });
    expect(started.stdout).toContain(`First start: created user "admin" with the password in ${file}.`);
    expect(started.stdout + started.stderr).not.toContain(password);
    const signedIn = await post(`http://127.0.0.1:${port}`, '/api/auth/login', {
      username: 'admin',
      password,
    });
    expect(signedIn.status).toBe(200);
  }, 90_000);

  it('When REDIS_URL names a Redis that does not sync every write, Then it starts and warns once that acknowledged alerts could be lost', async () => {
    const store = await startOwnRedis('lax-store');
    try {
      const dataDir = await tempDir();
      const port = await freePort();
      const { server } = await startServer(dataDir, port, {
        REDIS_URL: store.redis.url,
        JWT_SECRET: randomBytes(32).toString('base64url'),
      });
      await waitFor(() => server.stdout.includes('does not sync every write'), {
        what: 'the warning about the store',
      });
      expect(server.stdout.split('does not sync every write')).toHaveLength(2);
    } finally {
      await store.stop();
    }
  }, 60_000);

  it('When redis-server is not on PATH and no REDIS_URL is set, Then exits non-zero saying how to install it', async () => {
    const dataDir = await tempDir();
    // An empty PATH; node itself is started by its absolute path with the tsx loader.
    const emptyBin = await tempDir();
    const proc = launch(
      process.execPath,
      ['--import', 'tsx', 'server/main.ts'],
      { ...envFor(dataDir), PATH: emptyBin, PORT: String(await freePort()) },
      30_000,
    );
    const { code } = await proc.exited;
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(proc.stderr).toContain('redis-server was not found on PATH');
    expect(proc.stderr).toContain('REDIS_URL');
    expect(proc.stderr).not.toMatch(/\n\s+at /);
    expect(proc.stdout).not.toContain('Sinergi is listening');
  }, 60_000);
});

/** The server processes `npm start` forked: its children that run main.ts. */
async function serverProcesses(proc: Running): Promise<number[]> {
  const children = await childPids(proc.child.pid ?? -1);
  const cmdlines = await Promise.all(
    children.map((pid) => readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')),
  );
  return children.filter((_, i) => cmdlines[i]?.includes('server/main.ts'));
}

/** Dispatch consoles of the Polsek covering Permisan, each recording the incidents it was told of. */
async function dispatchConsoles(url: string, count: number, transports: string[]) {
  const { accessToken } = await login(url, 'dispatch.nusakambangan');
  const consoles: { socket: ConsoleClient; heard: string[] }[] = [];
  // One after another, so that each lands where the balancer's counts say.
  for (let i = 0; i < count; i++) {
    const socket = await connectConsole(url, accessToken, { transports, timeout: 5000 });
    const heard: string[] = [];
    socket.on('alert:new', ({ incidentId }) => heard.push(incidentId));
    consoles.push({ socket, heard });
  }
  return consoles;
}

async function raiseAtPermisan(url: string, transports: string[]): Promise<string> {
  const { accessToken } = await login(url, 'operator.permisan');
  const operator = await connectConsole(url, accessToken, { transports });
  const raised = await operator.emitWithAck('alert:raise', uniqueAlert());
  if (!raised.ok) throw new Error(JSON.stringify(raised.error));
  return raised.data.incident.id;
}

describe('npm start with several server processes (SERVER_PROCESSES=2)', () => {
  it('When consoles use HTTP long-polling only, Then every request reaches the process that holds its session, an alert reaches consoles on both processes, /metrics counts the sockets of both, and Ctrl-C stops them all', async () => {
    const dataDir = await tempDir();
    const { server, url } = await startServer(dataDir, await freePort(), { SERVER_PROCESSES: '2' });
    const servers = await serverProcesses(server);
    expect(servers).toHaveLength(2);

    // The balancer gives each new console to the process with fewer: two on each.
    const consoles = await dispatchConsoles(url, 4, ['polling']);
    const id = await raiseAtPermisan(url, ['polling']);
    for (const c of consoles)
      await waitFor(() => c.heard.includes(id), { what: 'alert:new at every dispatch console' });
    const metrics = (await fetch(`${url}/metrics`).then((r) => r.text())).split('\n');
    expect(metrics).toContain('sinergi_sockets_connected{unit_type="precinct"} 4');
    expect(metrics).toContain('sinergi_sockets_connected{unit_type="facility"} 1');
    // What both processes read from the one Redis is counted once: the incident's timer and the auditor's
    // next run.
    expect(metrics).toContain('sinergi_escalation_queue_jobs{state="delayed"} 2');
    for (const c of consoles) expect(c.socket.io.engine.transport.name).toBe('polling');

    // A terminal's Ctrl-C reaches the whole process group.
    const redis = await embeddedRedisPids(dataDir);
    process.kill(-(server.child.pid ?? 0), 'SIGINT');
    const outcome = await Promise.race([
      server.exited,
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000).unref()),
    ]);
    expect(outcome).toEqual({ code: 0, signal: null });
    for (const pid of [...servers, ...redis]) expect(isRunning(pid)).toBe(false);
  }, 60_000);

  it('When consoles connect all at once, as every console does after a restart, Then the balancer spreads them evenly over the processes', async () => {
    const dataDir = await tempDir();
    const port = await freePort();
    const { server, url } = await startServer(dataDir, port, { SERVER_PROCESSES: '2' });
    const servers = await serverProcesses(server);
    expect(servers).toHaveLength(2);
    const { accessToken } = await login(url, 'dispatch.nusakambangan');

    await Promise.all(
      Array.from({ length: 40 }, () => connectConsole(url, accessToken, { transports: ['websocket'] })),
    );
    // Each process holds its half of the consoles (give or take the sign-in's kept-alive HTTP connection).
    const held = await Promise.all(servers.map((pid) => establishedOn(pid, port)));
    expect(held.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(40);
    for (const n of held) expect(n).toBeGreaterThanOrEqual(19);
  }, 60_000);

  it('When one server process stops answering, Then /readyz on the port says not ready and names it, and ready again once it answers', async () => {
    const dataDir = await tempDir();
    const { server, url } = await startServer(dataDir, await freePort(), { SERVER_PROCESSES: '2' });
    const servers = (await serverProcesses(server)).sort((a, b) => a - b);
    expect(servers).toHaveLength(2);
    expect(await get(url, '/readyz')).toMatchObject({ status: 200, body: { failing: [] } });

    // The later one: plain HTTP requests, counting no consoles, go to the first, which still answers.
    const frozen = servers[1] ?? -1;
    process.kill(frozen, 'SIGSTOP');
    try {
      const answer = await get(url, '/readyz');
      expect(answer.status).toBe(503);
      expect(answer.body.failing).toEqual([expect.stringMatching(/^server \d+: no_answer$/)]);
    } finally {
      process.kill(frozen, 'SIGCONT');
    }
    await waitFor(async () => (await get(url, '/readyz')).status === 200, { what: 'ready again' });
  }, 60_000);

  it('When a server process is killed, Then its consoles lose it and the others do not, new consoles connect while its replacement starts, the replacement serves, and SIGTERM stops everything', async () => {
    const dataDir = await tempDir();
    const { server, url } = await startServer(dataDir, await freePort(), {
      SERVER_PROCESSES: '2',
      LOG_LEVEL: 'info',
    });
    const [victim, survivor] = await serverProcesses(server);
    if (!victim || !survivor) throw new Error('expected two server processes');
    const first = await dispatchConsoles(url, 2, ['websocket']);
    const lost: number[] = [];
    for (const [i, c] of first.entries()) c.socket.on('disconnect', () => void lost.push(i));

    process.kill(victim, 'SIGKILL');
    const replacement = await waitFor(
      async () => (await serverProcesses(server)).find((pid) => pid !== victim && pid !== survivor),
      { what: 'a replacement process', timeoutMs: 10_000 },
    );
    // Connected while the replacement starts: none of them may be handed to it before it serves.
    const during = (
      await Promise.all(Array.from({ length: 6 }, () => dispatchConsoles(url, 1, ['websocket'])))
    ).flat();
    await waitFor(() => lost.length === 1, { what: 'the killed process’s console to be disconnected' });
    await waitFor(() => server.stdout.includes('server process replaced'), {
      what: 'the replacement',
      timeoutMs: 20_000,
    });
    expect(await serverProcesses(server)).toEqual(expect.arrayContaining([survivor, replacement]));
    // The survivor holds seven consoles; the next ones go to the replacement.
    const after = await dispatchConsoles(url, 2, ['websocket']);

    const id = await raiseAtPermisan(url, ['websocket']);
    const connected = [...first.filter((_, i) => !lost.includes(i)), ...during, ...after];
    expect(connected).toHaveLength(9);
    for (const c of connected)
      await waitFor(() => c.heard.includes(id), { what: 'alert:new at every connected console' });
    expect(lost).toHaveLength(1);

    const redis = await embeddedRedisPids(dataDir);
    expect(await stopWithSigterm(server)).toEqual({ code: 0, signal: null });
    for (const pid of [survivor, replacement, ...redis]) expect(isRunning(pid)).toBe(false);
  }, 90_000);

  it('When a server process running escalation workers dies, Then one still serving takes its partitions over at once, its replacement runs none, and levels keep firing', async () => {
    const dataDir = await tempDir();
    const { server, url } = await startServer(dataDir, await freePort(), {
      SERVER_PROCESSES: '2',
      ESCALATION_PARTITIONS: '2',
      LOG_LEVEL: 'info',
      ESCALATION_FILE: 'test/fixtures/one-step-escalation.json',
    });
    const running = () =>
      server.stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { msg?: string; pid?: number; partitions?: number[] })
        .filter((entry) => entry.msg === 'escalation workers running');
    // The two partitions are shared out: each process runs the workers of one.
    const shares = running().sort((a, b) => (a.partitions?.[0] ?? 0) - (b.partitions?.[0] ?? 0));
    expect(shares.map((s) => s.partitions)).toEqual([[0], [1]]);
    const victim = shares[0]?.pid;
    const survivor = shares[1]?.pid;
    if (victim === undefined || survivor === undefined) throw new Error('expected two server processes');
    expect(new Set(await serverProcesses(server))).toEqual(new Set([victim, survivor]));
    process.kill(victim, 'SIGKILL');
    await waitFor(() => server.stdout.includes('escalation workers handed over'), {
      what: 'the primary to hand the escalation workers over',
    });
    await waitFor(() => running().length === 3, { what: 'the survivor to run them' });
    expect(running()[2]).toMatchObject({ pid: survivor, partitions: [0] });

    // An incident whose timers are in the partition taken over (half of them are): the one-step policy
    // climbs each chain once, 1.5 s after the raise.
    const operator = await connectConsole(url, (await login(url, 'operator.permisan')).accessToken, {
      transports: ['websocket'],
    });
    let id: string | undefined;
    for (let i = 0; i < 20 && id === undefined; i++) {
      const raised = await operator.emitWithAck('alert:raise', uniqueAlert());
      if (!raised.ok) throw new Error(JSON.stringify(raised.error));
      if (partitionOf(raised.data.incident.id, 2) === 0) id = raised.data.incident.id;
    }
    if (id === undefined) throw new Error('no incident landed in a taken-over partition');
    const { accessToken } = await login(url, 'admin');
    const climbed = await waitFor(
      async () => {
        const res = await get(url, `/api/incidents/${id}/events?limit=1000`, accessToken);
        const chains = (res.body.events as { type: string; data: { chain: string } }[])
          .filter((e) => e.type === 'escalated')
          .map((e) => e.data.chain);
        return chains.length >= 2 && chains;
      },
      { what: 'both chains to climb', timeoutMs: 15_000, intervalMs: 100 },
    );
    expect(climbed.sort()).toEqual(['corrections', 'police']);
    await waitFor(() => server.stdout.includes('server process replaced'), {
      what: 'the replacement',
      timeoutMs: 20_000,
    });
    expect(running()).toHaveLength(3);
  }, 60_000);

  it('When a policy file cannot be read, Then exits 1 with its error once, having started no redis-server and no server process', async () => {
    const dataDir = await tempDir();
    const proc = launch(
      process.execPath,
      ['--import', 'tsx', 'server/main.ts'],
      {
        ...envFor(dataDir),
        PORT: String(await freePort()),
        SERVER_PROCESSES: '2',
        ESCALATION_FILE: path.join(dataDir, 'missing.json'),
      },
      30_000,
    );
    expect(await proc.exited).toEqual({ code: 1, signal: null });
    expect(proc.stderr.match(/Cannot read escalation file/g)).toHaveLength(1);
    expect(proc.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(path.join(dataDir, 'redis'))).toBe(false);
  }, 60_000);

  it('When SIGTERM reaches the primary while an alert raised over HTTP is still arriving, Then the server process waits for it: the raise is answered 201, and everything exits 0', async () => {
    const { server, raise } = await serverHoldingARaise({
      SERVER_PROCESSES: '2',
      SHUTDOWN_GRACE_MS: '5000',
    });

    const stopped = stopWithSigterm(server);
    // Long enough for a process that does not wait for it to have dropped the request; well inside the grace.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await raise.finish()).toMatch(/^HTTP\/1\.1 201 /m);
    expect(await stopped).toEqual({ code: 0, signal: null });
  }, 60_000);

  it('When the group’s SIGTERM reaches the server processes after the primary’s order to stop, Then it is not taken for a second signal: they still answer what they hold, and everything exits 0', async () => {
    const { server, raise } = await serverHoldingARaise({
      SERVER_PROCESSES: '2',
      SHUTDOWN_GRACE_MS: '5000',
      LOG_LEVEL: 'info',
    });
    const servers = await serverProcesses(server);

    // `kill -TERM -<pgid>` (or systemd's) reaches each process of the group when the kernel gets to it: here,
    // after the primary's order has reached both server processes.
    const stopped = stopWithSigterm(server);
    await waitFor(() => server.stdout.split('"reason":"ordered by the primary"').length === 3, {
      what: 'both server processes to begin stopping',
    });
    for (const pid of servers) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {} // One holding nothing may have exited already.
    }
    expect(await raise.finish()).toMatch(/^HTTP\/1\.1 201 /m);
    expect(await stopped).toEqual({ code: 0, signal: null });
    expect(server.stdout).not.toContain('second signal');
  }, 60_000);

  it('When its terminal closes (SIGHUP to the group), Then the server processes leave the stop to the primary: they answer what they hold, and everything exits 0', async () => {
    const { dataDir, server, raise } = await serverHoldingARaise({
      SERVER_PROCESSES: '2',
      SHUTDOWN_GRACE_MS: '5000',
    });
    const servers = await serverProcesses(server);
    const redis = await embeddedRedisPids(dataDir);

    process.kill(-(server.child.pid ?? 0), 'SIGHUP');
    // Long enough for a process that does not wait for it to have dropped the request; well inside the grace.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await raise.finish()).toMatch(/^HTTP\/1\.1 201 /m);
    expect(await server.exited).toEqual({ code: 0, signal: null });
    for (const pid of [...servers, ...redis]) expect(isRunning(pid)).toBe(false);
  }, 60_000);

  it('When clients reach the port while every server process is still starting, Then each is answered once one is ready, none left hanging', async () => {
    const dataDir = await tempDir();
    const port = await freePort();
    const server = launch(
      process.execPath,
      ['--import', 'tsx', 'server/main.ts'],
      envFor(dataDir, { PORT: String(port), SERVER_PROCESSES: '2' }),
    );
    // A probe every 100 ms from the start; those the port refuses (not listening yet) are dropped.
    const accepted: Promise<string>[] = [];
    while (!server.stdout.includes('Sinergi is listening')) {
      if (server.child.exitCode !== null) throw new Error(`server exited early:\n${server.stderr}`);
      const probe = probeHealth(port);
      accepted.push(probe.then((status) => (status === 'refused' ? '' : status)));
      await new Promise((r) => setTimeout(r, 100));
    }
    const answers = (await Promise.all(accepted)).filter((a) => a !== '');
    // The port is open while the server processes start (about two seconds here): some probes came then.
    expect(answers.length).toBeGreaterThan(0);
    expect(answers).toEqual(Array(answers.length).fill('HTTP/1.1 200 OK'));
  }, 60_000);

  it('When the server processes die while requests with a body are in flight, Then those requests end at once, for their clients to retry, not at their own timeouts', async () => {
    const { server, raise } = await serverHoldingARaise({ SERVER_PROCESSES: '2' });

    const killedAt = Date.now();
    for (const pid of await serverProcesses(server)) process.kill(pid, 'SIGKILL');
    await Promise.race([raise.closed, new Promise((r) => setTimeout(r, 10_000))]);
    // Without the primary ending it, the connection stays open until the client gives up.
    expect(Date.now() - killedAt).toBeLessThan(5000);
  }, 60_000);

  it('When replacements keep dying soon after they come up, Then each is restarted later than the one before, not as fast as it starts', async () => {
    const dataDir = await tempDir();
    const { server } = await startServer(dataDir, await freePort(), {
      SERVER_PROCESSES: '2',
      LOG_LEVEL: 'info',
    });
    const delays = () =>
      server.stdout
        .split('\n')
        .filter((line) => line.includes('a server process exited'))
        .map((line) => (JSON.parse(line) as { retryInMs: number }).retryInMs);
    const replaced = () => server.stdout.split('server process replaced').length - 1;

    let [victim] = await serverProcesses(server);
    for (let death = 1; death <= 2; death++) {
      if (victim === undefined) throw new Error('no server process');
      const before = new Set(await serverProcesses(server));
      process.kill(victim, 'SIGKILL');
      await waitFor(() => replaced() === death, { what: `replacement ${death}`, timeoutMs: 30_000 });
      victim = (await serverProcesses(server)).find((pid) => !before.has(pid));
    }
    const [first, second] = delays();
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(first ?? 0);
  }, 90_000);

  it('When one server process begins to stop while it drains a request, Then new consoles go to the other meanwhile and its escalation partitions are taken over at once', async () => {
    // A raise held in flight, so that the process it reached takes its time to stop. With no console
    // anywhere yet the balancer hands it to the first process forked.
    const { server, url, raise } = await serverHoldingARaise({
      SERVER_PROCESSES: '2',
      ESCALATION_PARTITIONS: '2',
      SHUTDOWN_GRACE_MS: '5000',
      LOG_LEVEL: 'info',
    });
    const holder = Math.min(...(await serverProcesses(server)));
    process.kill(holder, 'SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    expect(isRunning(holder)).toBe(true);
    await waitFor(() => server.stdout.includes('escalation workers handed over'), {
      what: 'its partitions taken over while it drains',
      timeoutMs: 3000,
    });

    const consoles = await dispatchConsoles(url, 4, ['websocket']);
    const lost: number[] = [];
    for (const [i, c] of consoles.entries()) c.socket.on('disconnect', () => void lost.push(i));
    expect(await raise.finish()).toMatch(/^HTTP\/1\.1 201 /m);
    await waitFor(() => !isRunning(holder), { what: 'the stopping process to exit', timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 1000));
    expect(lost).toEqual([]);
  }, 90_000);

  it('When a console sends its connect packet right behind the WebSocket upgrade, Then every one is answered: no byte is lost between the primary and the server process', async () => {
    const dataDir = await tempDir();
    const port = await freePort();
    const { url } = await startServer(dataDir, port, { SERVER_PROCESSES: '2' });
    const { accessToken } = await login(url, 'dispatch.nusakambangan');
    const answers = await Promise.all(
      Array.from({ length: 40 }, () => upgradeThenConnectAtOnce(port, accessToken)),
    );
    for (const answer of answers) {
      expect(answer).toContain('HTTP/1.1 101 Switching Protocols');
      // "40{"sid":…}": the namespace accepted the connect packet.
      expect(answer).toContain('40{"sid":"');
    }
  }, 60_000);
});

/**
 * A console on a raw TCP socket: the WebSocket upgrade, then, a moment later and before the server can have
 * answered, the Socket.IO connect packet with its token, as a quick client on a fast link sends them.
 * Resolves with everything the server sent back within `waitMs`.
 */
async function upgradeThenConnectAtOnce(port: number, token: string, waitMs = 3000): Promise<string> {
  const socket = createConnection({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
  });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(
    'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n' +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
      'Sec-WebSocket-Version: 13\r\n\r\n',
  );
  await new Promise((r) => setTimeout(r, 1));
  socket.write(maskedTextFrame(`40${JSON.stringify({ token })}`));
  await new Promise((r) => setTimeout(r, waitMs));
  socket.destroy();
  return received;
}

/** `npm start` with an alert raised over HTTP held in flight at a server process, its body not sent yet. */
async function serverHoldingARaise(extra: Record<string, string>) {
  const dataDir = await tempDir();
  const port = await freePort();
  const { server, url } = await startServer(dataDir, port, extra);
  const { accessToken } = await login(url, 'operator.permisan');
  const raise = await heldRequest(port, '/api/alerts', uniqueAlert(), accessToken);
  return { dataDir, server, url, port, raise };
}

/**
 * A JSON POST on a raw TCP socket whose body is held back: resolves once a server process has taken the
 * request (it answered `100 Continue`). `finish` sends the body and resolves with everything the server
 * sent back by the time the connection closed.
 */
async function heldRequest(port: number, pathname: string, body: unknown, token: string) {
  const payload = JSON.stringify(body);
  const socket = createConnection({ host: '127.0.0.1', port });
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  // A reset shows in what was received: no answer.
  socket.on('error', () => {});
  socket.write(
    `POST ${pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(payload)}\r\nAuthorization: Bearer ${token}\r\n` +
      'Expect: 100-continue\r\nConnection: close\r\n\r\n',
  );
  await waitFor(() => received.includes('100 Continue'), { what: 'a server process to take the request' });
  return {
    /** Settles when the connection ends, whatever ended it. */
    closed,
    async finish(): Promise<string> {
      if (!socket.destroyed) socket.write(payload);
      await closed;
      return received;
    },
  };
}

/** GET /healthz on a fresh connection: its status line, `refused`, or `hung` after 20 s without an answer. */
function probeHealth(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let received = '';
    const done = (outcome: string) => {
      socket.destroy();
      resolve(outcome);
    };
    socket.setTimeout(20_000, () => done('hung'));
    socket.once('connect', () => socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (received.includes('\r\n')) done(received.slice(0, received.indexOf('\r\n')));
    });
    socket.once('error', (error: NodeJS.ErrnoException) =>
      done(error.code === 'ECONNREFUSED' ? 'refused' : `error ${error.code}`),
    );
    socket.once('end', () => done(`ended: ${received}`));
  });
}

/** One client-to-server WebSocket text frame (clients must mask theirs). */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const length =
    payload.length < 126
      ? Buffer.from([0x81, 0x80 | payload.length])
      : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([length, mask, payload.map((b, i) => b ^ (mask[i % 4] ?? 0))]);
}

describe('npm run users (server/cli/users.ts)', () => {
  it('When the role does not fit the unit, Then exits non-zero naming --role, and leaves no redis-server behind', async () => {
    const dataDir = await tempDir();
    const result = await users(dataDir, 'add', 'piket.batu', '--role', 'dispatcher', '--unit', 'lapas-batu');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('Role does not fit the unit');
    expect(result.stderr).toContain('--role: a dispatcher cannot belong to facility "lapas-batu"');
    expect(result.stderr).not.toMatch(/\n\s+at /);
    // No server ran, so the CLI started the embedded Redis itself, and stopped it.
    expect(existsSync(path.join(dataDir, 'redis', 'address.json'))).toBe(false);
  }, 60_000);

  it('When a command line is mistyped, Then exits 2 with the usage and opens no store', async () => {
    const dataDir = await tempDir();
    const result = await users(dataDir, 'disable');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('disable takes one <username>');
    expect(result.stderr).toContain('Usage: npm run users');
    expect(existsSync(path.join(dataDir, 'redis'))).toBe(false);
  }, 30_000);

  it('When the password comes on standard input (--password -), Then the account opens with it, and it was never an argument that ps shows', async () => {
    const dataDir = await tempDir();
    const { url } = await startServer(dataDir, await freePort());
    const password = 'kunci-dari-masukan-standar';
    const cli = launch(
      'sh',
      [
        '-c',
        `printf '%s\\n' "$NEW_PASSWORD" | ${TSX} server/cli/users.ts add piket.besi --role operator --unit lapas-besi --password -`,
      ],
      envFor(dataDir, { NEW_PASSWORD: password }),
      30_000,
    );
    expect((await cli.exited).code).toBe(0);
    expect(cli.stdout).toContain('Created user "piket.besi"');
    expect(cli.stdout).not.toContain(password);
    await login(url, 'piket.besi', password);
  }, 60_000);

  it('When a user added with a generated password is disabled, Then that user can no longer log in', async () => {
    const dataDir = await tempDir();
    const { url } = await startServer(dataDir, await freePort());

    const added = await users(
      dataDir,
      'add',
      'piket.nusakambangan',
      '--role',
      'dispatcher',
      '--unit',
      'polsek-nusakambangan',
    );
    expect(added.code).toBe(0);
    const password = /shown only this once: (\S+)$/m.exec(added.stdout)?.[1] ?? '';
    expect(password.length).toBeGreaterThanOrEqual(20);
    await login(url, 'piket.nusakambangan', password);

    const disabled = await users(dataDir, 'disable', 'piket.nusakambangan');
    expect(disabled).toMatchObject({ code: 0, stderr: '' });
    expect(disabled.stdout).toContain('Disabled "piket.nusakambangan"');
    const refused = await post(url, '/api/auth/login', { username: 'piket.nusakambangan', password });
    expect(refused.status).toBe(401);
    expect((await users(dataDir, 'list')).stdout).toMatch(
      /^piket\.nusakambangan\s+dispatcher\s+polsek-nusakambangan\s+yes$/m,
    );
  }, 60_000);
});
