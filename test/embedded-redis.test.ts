import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import {
  type EmbeddedRedis,
  findOnPath,
  freePort,
  redisDir,
  type SupervisionEvent,
  startEmbeddedRedis,
} from '../server/redis/embedded-redis.ts';
import { checkRedisServer } from '../server/redis/redis-connection.ts';
import { openRedisStore } from '../server/redis/redis-store.ts';
import { StartupError } from '../server/startup-error.ts';
import { isRunning } from './support/processes.ts';
import { waitFor } from './support/wait-for.ts';

const started: EmbeddedRedis[] = [];
const clients: Redis[] = [];
const dirs: string[] = [];
const children: ChildProcessByStdio<null, Readable, Readable>[] = [];
const childRedisPids: number[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  // A killed child's redis-server stops a moment later; its data dir can go only then.
  for (const pid of childRedisPids.splice(0))
    await waitFor(() => !isRunning(pid), { timeoutMs: 10_000, what: `redis-server ${pid} to exit` });
  for (const client of clients.splice(0)) client.disconnect();
  await Promise.all(started.splice(0).map((r) => r.stop()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sinergi-embedded-'));
  dirs.push(dir);
  return dir;
}

async function start(
  dataDir: string,
  appendfsync: 'always' | 'everysec' = 'always',
  lasting = false,
): Promise<EmbeddedRedis> {
  const redis = await startEmbeddedRedis({ dataDir, appendfsync, lasting });
  started.push(redis);
  return redis;
}

/** Another process holding the embedded Redis on `dataDir`, as a short-lived tool or a lasting server would. */
async function startInChild(dataDir: string, kind: 'tool' | 'lasting') {
  const parent = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/fixtures/embedded-redis-parent.ts', dataDir, kind],
    { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 },
  );
  children.push(parent);
  let output = '';
  parent.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const { pid } = await waitFor(
    () => (output.includes('\n') ? (JSON.parse(output) as { pid: number; url: string }) : undefined),
    { timeoutMs: 15_000, what: 'the child to report its redis-server' },
  );
  childRedisPids.push(pid);
  return { parent, pid };
}

function connect(url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

async function configValue(client: Redis, key: string): Promise<string | undefined> {
  return ((await client.config('GET', key)) as string[])[1];
}

describe('the embedded Redis', () => {
  it('keeps its files (every password hash, session and incident) readable by this account only, also in a directory an earlier version left open', async () => {
    const dataDir = await tempDataDir();
    await mkdir(redisDir(dataDir), { mode: 0o755 });
    const redis = await start(dataDir, 'always');
    await connect(redis.url).set('probe', 'x');
    expect((await stat(redisDir(dataDir))).mode & 0o777).toBe(0o700);
    const fresh = await tempDataDir();
    await start(fresh);
    expect((await stat(redisDir(fresh))).mode & 0o777).toBe(0o700);
  });

  it('starts a private redis-server, reachable through its Unix socket alone, that keeps an append-only file and never evicts', async () => {
    const dataDir = await tempDataDir();
    const redis = await start(dataDir, 'always');
    expect(redis.owned).toBe(true);
    // Reached only through its Unix socket, which no other user may open: it listens on no TCP port.
    const socket = path.join(redisDir(dataDir), 'redis.sock');
    expect(redis.url).toBe(socket);
    expect((await stat(socket)).mode & 0o777).toBe(0o700);

    const client = connect(redis.url);
    expect(await configValue(client, 'appendonly')).toBe('yes');
    expect(await configValue(client, 'appendfsync')).toBe('always');
    expect(await configValue(client, 'maxmemory-policy')).toBe('noeviction');
    expect(await configValue(client, 'port')).toBe('0');
    expect(await configValue(client, 'dir')).toBe(redisDir(dataDir));

    const record = JSON.parse(await readFile(path.join(redisDir(dataDir), 'address.json'), 'utf8'));
    expect(record).toMatchObject({ address: socket, pid: redis.pid });
  });

  it('listens on 127.0.0.1 instead when the data dir is too deep for a Unix socket path', async () => {
    const dataDir = path.join(await tempDataDir(), 'd'.repeat(100));
    const redis = await start(dataDir);
    expect(redis.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const client = connect(redis.url);
    expect(await client.ping()).toBe('PONG');
    expect(await configValue(client, 'bind')).toBe('127.0.0.1');
  });

  it('uses the configured appendfsync', async () => {
    const redis = await start(await tempDataDir(), 'everysec');
    expect(await configValue(connect(redis.url), 'appendfsync')).toBe('everysec');
  });

  it('keeps the data across a stop and a start on the same data dir', async () => {
    const dataDir = await tempDataDir();
    const first = await start(dataDir);
    await connect(first.url).set('incident:1', 'riot at Permisan blok C');
    await first.stop();

    const second = await start(dataDir);
    expect(await connect(second.url).get('incident:1')).toBe('riot at Permisan blok C');
  });

  it('When stopped, Then the redis-server process is gone and its address record removed', async () => {
    const dataDir = await tempDataDir();
    const redis = await start(dataDir);
    const pid = redis.pid ?? -1;
    expect(isRunning(pid)).toBe(true);

    await redis.stop();
    expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(path.join(redisDir(dataDir), 'address.json'))).toBe(false);
  });

  it('When its redis-server does not act on SIGTERM, Then stop kills it and returns only once it has gone', async () => {
    const dataDir = await tempDataDir();
    const redis = await start(dataDir);
    const pid = redis.pid ?? -1;
    // Stopped, it leaves the SIGTERM pending, as a redis-server stuck on its disk or refusing to shut down does.
    process.kill(pid, 'SIGSTOP');
    onTestFinished(() => {
      if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    });

    await redis.stop();
    // Else it goes on running on the files with no record of it, and the next start launches a second.
    expect(isRunning(pid)).toBe(false);
  }, 30_000);

  it('When another process already runs it on the same data, Then attaches instead of starting another', async () => {
    const dataDir = await tempDataDir();
    const owner = await start(dataDir);
    const second = await start(dataDir);

    expect(second.owned).toBe(false);
    expect(second.url).toBe(owner.url);
    expect(second.pid).toBe(owner.pid);
    // Only the owner stops it.
    await second.stop();
    expect(await connect(owner.url).ping()).toBe('PONG');
  });

  it('ignores a stale address record left by a killed process and starts a new server', async () => {
    const dataDir = await tempDataDir();
    const deadPort = await freePort();
    await mkdir(redisDir(dataDir), { recursive: true });
    await writeFile(
      path.join(redisDir(dataDir), 'address.json'),
      JSON.stringify({ host: '127.0.0.1', port: deadPort, pid: 999_999, dir: redisDir(dataDir) }),
    );

    const redis = await start(dataDir);
    expect(redis.owned).toBe(true);
    expect(redis.url).not.toContain(String(deadPort));
    expect(await connect(redis.url).ping()).toBe('PONG');
  });

  it('When its parent process is killed with SIGKILL, Then redis-server does not outlive it', async () => {
    const { parent, pid } = await startInChild(await tempDataDir(), 'tool');
    expect(isRunning(pid)).toBe(true);

    parent.kill('SIGKILL');
    await waitFor(() => !isRunning(pid), { timeoutMs: 10_000, what: `redis-server ${pid} to exit` });
  });

  it('When a command-line tool runs the embedded Redis, Then a server waits for it to finish and starts its own instead of attaching to it', async () => {
    const dataDir = await tempDataDir();
    const tool = await startInChild(dataDir, 'tool');
    let served: EmbeddedRedis | undefined;
    const serving = startEmbeddedRedis({ dataDir, appendfsync: 'everysec', lasting: true }).then((r) => {
      served = r;
      started.push(r);
      return r;
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(served).toBeUndefined();

    tool.parent.kill('SIGKILL');
    const redis = await serving;
    expect(redis.owned).toBe(true);
    expect(redis.pid).not.toBe(tool.pid);
    expect(await connect(redis.url).ping()).toBe('PONG');
  });

  // A process killed while launching leaves its launching.pid behind. Its pid may since be another process's
  // (pid 1 here), or this very one's: in a container, processes start at the same pids every time.
  it.each([
    ['another process', '1'],
    ['this process, in an earlier life', `${process.pid} 0`],
  ])('When a launch lock left behind names a pid that is now %s, Then starts at once', async (_, holder) => {
    const dataDir = await tempDataDir();
    await mkdir(redisDir(dataDir), { recursive: true });
    await writeFile(path.join(redisDir(dataDir), 'launching.pid'), `${holder}\n`);

    const redis = await startEmbeddedRedis({ dataDir, appendfsync: 'everysec', startTimeoutMs: 2_000 });
    started.push(redis);
    expect(redis.owned).toBe(true);
  });

  it('When the lock for clearing a stale launch lock was left behind too, by a process since gone, Then starts', async () => {
    const dataDir = await tempDataDir();
    await mkdir(redisDir(dataDir), { recursive: true });
    await writeFile(path.join(redisDir(dataDir), 'launching.pid'), '1\n');
    await writeFile(path.join(redisDir(dataDir), 'launching.pid.clearing'), '1\n');

    const redis = await startEmbeddedRedis({ dataDir, appendfsync: 'everysec', startTimeoutMs: 5_000 });
    started.push(redis);
    expect(redis.owned).toBe(true);
  });

  it('When three processes start it at the same moment on a launch lock left by a process since gone, Then one redis-server runs and the others attach to it', async () => {
    const dataDir = await tempDataDir();
    await mkdir(redisDir(dataDir), { recursive: true });
    await writeFile(path.join(redisDir(dataDir), 'launching.pid'), '1\n');
    const redis = await Promise.all([start(dataDir), start(dataDir), start(dataDir)]);
    expect(redis.filter((r) => r.owned)).toHaveLength(1);
    expect(new Set(redis.map((r) => r.pid)).size).toBe(1);
  });

  it('When three processes start it at the same moment on an empty data dir, Then one redis-server runs and the others attach to it', async () => {
    const dataDir = await tempDataDir();
    const redis = await Promise.all([start(dataDir), start(dataDir), start(dataDir)]);
    expect(redis.filter((r) => r.owned)).toHaveLength(1);
    expect(new Set(redis.map((r) => r.pid)).size).toBe(1);
    expect(await connect(redis[0]?.url ?? '').ping()).toBe('PONG');
  });

  it('When a server runs the embedded Redis, Then a tool and another server attach to it', async () => {
    const dataDir = await tempDataDir();
    const server = await startInChild(dataDir, 'lasting');
    for (const lasting of [false, true]) {
      const redis = await start(dataDir, 'everysec', lasting);
      expect(redis).toMatchObject({ owned: false, pid: server.pid });
    }
  });

  it('When redis-server is not installed, Then says how to install it or set REDIS_URL', async () => {
    const dataDir = await tempDataDir();
    const error = await startEmbeddedRedis({
      dataDir,
      appendfsync: 'always',
      binary: path.join(dataDir, 'no-redis-server-here'),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toContain('apt-get install redis-server');
    expect((error as Error).message).toContain('REDIS_URL');
  });
});

/** A redis-server that refuses to start while the `flag` file exists, as one would on a full disk. */
async function refusingRedisServer(dataDir: string) {
  const flag = path.join(dataDir, 'refuse-to-start');
  const binary = path.join(dataDir, 'redis-server-or-refuse');
  const real = await findOnPath('redis-server');
  await writeFile(binary, `#!/bin/sh\n[ -e "${flag}" ] && exit 1\nexec "${real}" "$@"\n`, { mode: 0o755 });
  return { flag, binary };
}

/** A supervised embedded Redis, started as a server starts it, whose redis-server refuses to start while `flag` exists. */
async function supervisedRefusing(options: { lasting?: boolean } = {}) {
  const dataDir = await tempDataDir();
  const { flag, binary } = await refusingRedisServer(dataDir);
  const events: SupervisionEvent[] = [];
  const redis = await startEmbeddedRedis({
    dataDir,
    appendfsync: 'always',
    binary,
    ...options,
    supervise: (event) => events.push(event),
  });
  started.push(redis);
  return { dataDir, flag, events, redis };
}

/**
 * A server's supervised store whose redis-server died and cannot start again, and a command-line tool that
 * started one of its own on the same files meanwhile, once the server has looked again.
 */
async function supervisedWhileToolHoldsIt() {
  const { dataDir, flag, events, redis } = await supervisedRefusing({ lasting: true });
  await writeFile(flag, '');
  process.kill(redis.pid ?? -1, 'SIGKILL');
  // The tool runs the real redis-server: whatever failed for the server has cleared for it.
  const tool = await startInChild(dataDir, 'tool');
  await rm(flag);
  const seen = await waitFor(
    () => events.find((e) => e.type === 'waiting_for_tool' || e.type === 'superseded'),
    {
      timeoutMs: 20_000,
      what: "the server's next restart to find the tool's redis-server",
    },
  );
  return { dataDir, redis, events, tool, seen };
}

describe('a supervised embedded Redis', () => {
  it('When its redis-server dies and cannot start again at first, Then it retries at a slowing pace and comes back on the same address with its data', async () => {
    const { flag, events, redis } = await supervisedRefusing();
    const client = new Redis(redis.url, { maxRetriesPerRequest: null });
    client.on('error', () => {});
    clients.push(client);
    await client.set('incident', 'kept');
    const first = redis.pid;
    if (first === undefined) throw new Error('no pid');

    await writeFile(flag, '');
    process.kill(first, 'SIGKILL');
    await waitFor(() => events.filter((e) => e.type === 'restart_failed').length >= 2, {
      what: 'two failed restarts',
    });
    expect(events[0]).toMatchObject({ type: 'exited', address: redis.url, signal: null });
    const delays = events.flatMap((e) => (e.type === 'restart_failed' ? [e.retryInMs] : []));
    expect(delays.slice(0, 2)).toEqual([250, 1000]);

    await rm(flag);
    await waitFor(() => events.some((e) => e.type === 'restarted'), {
      what: 'the restart',
      timeoutMs: 15_000,
    });
    expect(redis.pid).not.toBe(first);
    expect(isRunning(redis.pid ?? 0)).toBe(true);
    // The client reconnects by itself to the same address, and the append-only file kept the data.
    expect(await client.get('incident')).toBe('kept');

    // A stop is not a death: nothing starts again.
    const last = redis.pid ?? 0;
    await redis.stop();
    await new Promise((r) => setTimeout(r, 500));
    expect(isRunning(last)).toBe(false);
    expect(events.filter((e) => e.type === 'restarted')).toHaveLength(1);
  }, 30_000);

  it('When a command-line tool starts it while its redis-server is down, Then waits for the tool to finish and starts its own again', async () => {
    const { redis, events, tool, seen } = await supervisedWhileToolHoldsIt();
    expect(seen).toMatchObject({ type: 'waiting_for_tool', address: redis.url, other: redis.url });

    tool.parent.kill('SIGKILL');
    await waitFor(() => events.some((e) => e.type === 'restarted'), {
      timeoutMs: 15_000,
      what: 'the restart',
    });
    expect(redis.pid).not.toBe(tool.pid);
    expect(isRunning(redis.pid ?? 0)).toBe(true);
    expect(await connect(redis.url).ping()).toBe('PONG');
  }, 45_000);

  it("When stopped while a command-line tool holds it, Then leaves the tool's redis-server its address record", async () => {
    const { dataDir, redis, tool } = await supervisedWhileToolHoldsIt();

    await redis.stop();
    const record = JSON.parse(await readFile(path.join(redisDir(dataDir), 'address.json'), 'utf8'));
    expect(record).toMatchObject({ pid: tool.pid });
  }, 45_000);
});

describe('checkRedisServer', () => {
  it('accepts the embedded Redis as started', async () => {
    const redis = await start(await tempDataDir());
    expect((await checkRedisServer(connect(redis.url))).version).toMatch(/^\d+\.\d+/);
  });

  it('When maxmemory-policy is not noeviction, Then refuses with a message that says how to fix it', async () => {
    const redis = await start(await tempDataDir());
    const client = connect(redis.url);
    await client.config('SET', 'maxmemory-policy', 'allkeys-lru');

    const error = await checkRedisServer(client).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toContain('"allkeys-lru"');
    expect((error as Error).message).toContain('CONFIG SET maxmemory-policy noeviction');
  });
});

describe('openRedisStore with a broadcast Redis of its own', () => {
  it('When SOCKET_REDIS_URL names a Redis that may evict, Then start-up is refused naming that Redis, and the store is left alone', async () => {
    const store = await start(await tempDataDir());
    const sockets = await start(await tempDataDir());
    await connect(sockets.url).config('SET', 'maxmemory-policy', 'allkeys-lru');

    const error = await openRedisStore(
      {
        dataDir: await tempDataDir(),
        redis: { url: store.url, socketUrl: sockets.url, appendfsync: 'always' },
      },
      { serving: true },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toMatch(/^the broadcast Redis: .*"allkeys-lru"/);
    expect(await connect(store.url).ping()).toBe('PONG');
  });
});
