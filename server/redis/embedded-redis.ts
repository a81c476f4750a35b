import { type ChildProcess, spawn } from 'node:child_process';
import { access, chmod, constants, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import { restartDelayMs } from '../restart-backoff.ts';
import { StartupError } from '../startup-error.ts';

export interface EmbeddedRedisOptions {
  dataDir: string;
  appendfsync: 'always' | 'everysec';
  /** Its directory under `dataDir`: one per embedded Redis. */
  name?: string;
  /** False for a Redis whose data is worthless after a restart: no append-only file at all. */
  appendonly?: boolean;
  /**
   * This process serves for hours (a server, a worker). It never attaches to a Redis that a short-lived tool
   * started, which stops when the tool does: it waits for that one to stop and starts its own.
   */
  lasting?: boolean;
  /** Defaults to the `redis-server` found on PATH. */
  binary?: string;
  startTimeoutMs?: number;
  /** How often a second Redis runs its timers (its `hz`); Redis's own default (10) when unset. */
  hz?: number;
  /**
   * Keep the redis-server this process launches running: should it exit other than through `stop()`, start
   * it again on the same address and files (clients reconnect by themselves), reporting each step here.
   */
  supervise?: (event: SupervisionEvent) => void;
}

/** `address` is where clients reach it (see `EmbeddedRedis.url`). */
export type SupervisionEvent =
  | { type: 'exited'; dir: string; address: string; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'restarted'; dir: string; address: string; pid: number }
  | { type: 'restart_failed'; dir: string; address: string; error: unknown; retryInMs: number }
  /**
   * A command-line tool launched one on the same files while this one's was down: it stops when the tool
   * does, and this one is started again then.
   */
  | { type: 'waiting_for_tool'; dir: string; address: string; other: string }
  /** Another lasting process launched one on the same files while this one's was down: supervision ends. */
  | { type: 'superseded'; dir: string; address: string; other: string };

export interface EmbeddedRedis {
  /** What clients connect to: the path of its Unix socket, or `redis://127.0.0.1:<port>` where none fits. */
  readonly url: string;
  /** False when another Sinergi process started it and this one only attached. */
  readonly owned: boolean;
  /** The OS process id of redis-server, for fault tests. */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

interface AddressRecord {
  /** Its client address; records written before Unix sockets hold `host` and `port` instead. */
  address?: string;
  host?: string;
  port?: number;
  pid: number;
  dir: string;
  /** Started by a lasting process; absent in records written before tools were told apart. */
  lasting?: boolean;
}

/** How long a lasting process waits for a tool's Redis to stop before giving up. */
const OUTLAST_TOOL_MS = 60_000;

// The wrapper holds the write end of a pipe from the parent: when the parent dies, even by SIGKILL,
// `read` sees end-of-file and the child redis-server is stopped instead of being orphaned.
const WRAPPER = `
exec 3<&0
"$0" "$@" </dev/null &
pid=$!
( read -r _ <&3; kill -TERM "$pid" 2>/dev/null ) &
wait "$pid"
`;

const INSTALL_HINT =
  'Install it (Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`) ' +
  'or set REDIS_URL=redis://127.0.0.1:6379 to use a running Redis 6.2 or newer.';

export const REDIS_MISSING_MESSAGE = `redis-server was not found on PATH. ${INSTALL_HINT}`;

export async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function redisDir(dataDir: string, name = 'redis'): string {
  return path.resolve(dataDir, name);
}

function addressFile(dir: string): string {
  return path.join(dir, 'address.json');
}

// The longest socket path every platform's `sun_path` holds (104 bytes on macOS, 108 on Linux, with its NUL).
const MAX_SOCKET_PATH = 100;

/**
 * The embedded Redis listens on a Unix socket only, never on TCP: the socket's mode (700) lets no one but
 * the user running Sinergi connect, where any local user could reach a loopback port of a Redis that has no
 * password. It is also cheaper: over loopback TCP every command's write and reply go through the kernel's
 * whole TCP stack, and a raise sends a dozen. A data dir too deep for a socket path gets loopback TCP.
 */
function socketPath(dir: string): string | undefined {
  const socket = path.join(dir, 'redis.sock');
  return Buffer.byteLength(socket) <= MAX_SOCKET_PATH ? socket : undefined;
}

const tcpAddress = (port: number) => `redis://127.0.0.1:${port}`;

function addressOf(record: AddressRecord): string {
  return record.address ?? tcpAddress(record.port ?? 0);
}

/**
 * Starts a private redis-server with its data under `<dataDir>/<name>` (`redis` by default), or attaches to
 * the one another Sinergi process (server or command-line tool) already runs on the same data.
 */
export async function startEmbeddedRedis(options: EmbeddedRedisOptions): Promise<EmbeddedRedis> {
  const dir = redisDir(options.dataDir, options.name);
  // Its files hold every password hash, session and incident: for this account only, as its socket is.
  // Also a directory an earlier version made open to all.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);

  // Long enough for another process's launch, which has the start-up timeout of its own.
  const deadline = Date.now() + 2 * (options.startTimeoutMs ?? 15_000);
  for (;;) {
    let running = await findRunning(dir);
    if (running?.lasting === false && options.lasting) running = await outlast(dir, running);
    if (running) return attached(running);
    // Two processes starting together must not both launch a redis-server on the same files: one launches,
    // the other waits for its address and attaches.
    const unlock = await lockLaunch(dir);
    if (unlock) {
      try {
        const launched = await findRunning(dir);
        return launched ? attached(launched) : await launchFree(dir, options);
      } finally {
        await unlock();
      }
    }
    if (Date.now() > deadline)
      throw new StartupError(`another process has been starting the embedded Redis in ${dir} for too long`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function launchFree(dir: string, options: EmbeddedRedisOptions): Promise<EmbeddedRedis> {
  const binary = options.binary ?? (await findOnPath('redis-server'));
  if (!binary) throw new StartupError(REDIS_MISSING_MESSAGE);
  // Otherwise the shell wrapper fails, and the report would point at an empty redis log.
  if (!(await isExecutable(binary)))
    throw new StartupError(`redis-server was not found at ${binary}. ${INSTALL_HINT}`);

  // A port picked as free can be taken before redis binds it; try again with another.
  const socket = socketPath(dir);
  let lastError: unknown;
  for (let attempt = 0; attempt < (socket ? 1 : 3); attempt++) {
    const listen: Listen = socket ? { socket } : { port: await freePort() };
    try {
      return await launch(binary, dir, listen, options);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

/**
 * Takes the right to launch in `dir`: a file created exclusively, holding this process's identity. Resolves
 * with its release, or with nothing while that process runs; a file whose holder has gone is removed.
 */
async function lockLaunch(dir: string): Promise<(() => Promise<void>) | undefined> {
  const file = path.join(dir, 'launching.pid');
  if (await createHeld(file)) return () => rm(file, { force: true });
  // Left behind by a process killed while launching. Two processes finding it at once must not both remove
  // it: the second would remove the lock the first had taken since, and both would launch on the same files.
  // So it is removed under a lock of its own, held for one read and one removal.
  const clearing = `${file}.clearing`;
  if (await createHeld(clearing)) {
    try {
      if (await heldByTheGone(file)) await rm(file, { force: true });
    } finally {
      await rm(clearing, { force: true });
    }
  } else if (await heldByTheGone(clearing)) await rm(clearing, { force: true });
  return undefined;
}

/** Creates `file` holding this process's identity; false when it exists already. */
async function createHeld(file: string): Promise<boolean> {
  try {
    await writeFile(file, `${await identity(process.pid)}\n`, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return false;
  }
}

/**
 * Whether a lock file names a process that has gone. Its pid may since be another process's, or this one's
 * (in a container, processes start at the same pids every time): its start time tells.
 */
async function heldByTheGone(file: string): Promise<boolean> {
  const holder = (await readFile(file, 'utf8').catch(() => '')).trim();
  return holder !== '' && !(await stillRuns(holder));
}

/** Whether the process an `identity` names still runs: that pid, started at that time. */
async function stillRuns(recorded: string): Promise<boolean> {
  const pid = Number.parseInt(recorded, 10);
  return (await isRunning(pid)) && (await identity(pid)) === recorded;
}

/**
 * A process's pid with, where /proc tells it (Linux), its start time: unlike the pid alone, it does not
 * name a later process given the same pid.
 */
async function identity(pid: number): Promise<string> {
  const start = (await procStat(pid))[19];
  return start ? `${pid} ${start}` : String(pid);
}

/** Where a launched redis-server listens: its Unix socket, or a loopback port where no socket path fits. */
type Listen = { socket: string } | { port: number };

const listenAddress = (listen: Listen) => ('socket' in listen ? listen.socket : tcpAddress(listen.port));

interface RedisChild {
  child: ChildProcess;
  exited: Promise<void>;
  pid: number;
}

async function launch(
  binary: string,
  dir: string,
  listen: Listen,
  options: EmbeddedRedisOptions,
): Promise<EmbeddedRedis> {
  let current = await spawnRedis(binary, dir, listen, options);
  const address = listenAddress(listen);
  let stopping: Promise<void> | undefined;

  const supervise = (running: RedisChild) => {
    const report = options.supervise;
    if (!report) return;
    running.child.once('exit', (code, signal) => {
      if (stopping) return;
      // The wrapper's watcher still waits on the pipe to signal the old pid; let it go now, before that pid
      // can be anyone else's.
      running.child.stdin?.end();
      report({ type: 'exited', dir, address, code, signal });
      void restart(report);
    });
  };
  const restart = async (report: (event: SupervisionEvent) => void) => {
    for (let attempt = 0; !stopping; attempt++) {
      // A command-line tool may have launched one on these files while ours was down. It stops with the
      // tool, and then ours must be back: wait for that outside the lock, which others need meanwhile.
      const tool = await findRunning(dir);
      if (tool?.lasting === false) {
        report({ type: 'waiting_for_tool', dir, address, other: addressOf(tool) });
        while (!stopping && (await isRunning(tool.pid))) await new Promise((r) => setTimeout(r, 100).unref());
        continue;
      }
      let failure: unknown;
      // Under the launch lock, as at start-up: two redis-servers must never run on the same files.
      const unlock = await lockLaunch(dir);
      try {
        if (!unlock) throw new Error('another process is launching a redis-server on these files');
        const other = await findRunning(dir);
        // A tool's, started since the look above: waited for next time round.
        if (other?.lasting === false) continue;
        if (other) {
          report({ type: 'superseded', dir, address, other: addressOf(other) });
          return;
        }
        current = await spawnRedis(binary, dir, listen, options);
        if (stopping) {
          await stopChild(current.child, current.exited, current.pid);
          return;
        }
        supervise(current);
        report({ type: 'restarted', dir, address, pid: current.pid });
        return;
      } catch (error) {
        failure = error;
      } finally {
        await unlock?.();
      }
      const retryInMs = restartDelayMs(attempt);
      report({ type: 'restart_failed', dir, address, error: failure, retryInMs });
      await new Promise((r) => setTimeout(r, retryInMs).unref());
    }
  };
  supervise(current);

  return {
    url: address,
    owned: true,
    get pid() {
      return current.pid;
    },
    stop: () => {
      stopping ??= (async () => {
        await stopChild(current.child, current.exited, current.pid);
        await forgetAddress(dir, current.pid);
      })();
      return stopping;
    },
  };
}

/** Starts redis-server listening as told, serving `dir`, and records its address once it answers. */
async function spawnRedis(
  binary: string,
  dir: string,
  listen: Listen,
  options: EmbeddedRedisOptions,
): Promise<RedisChild> {
  const logFile = path.join(dir, 'redis.log');
  const args = [
    ...('socket' in listen
      ? ['--port', '0', '--unixsocket', listen.socket, '--unixsocketperm', '700']
      : ['--bind', '127.0.0.1', '--port', String(listen.port), '--protected-mode', 'yes']),
    ...['--dir', dir, '--logfile', logFile, '--daemonize', 'no', '--save', ''],
    ...(options.appendonly === false
      ? ['--appendonly', 'no']
      : // Rewritten by its owner at a quiet moment, not by Redis mid-burst (see aof-compaction.ts).
        ['--appendonly', 'yes', '--appendfsync', options.appendfsync, '--auto-aof-rewrite-percentage', '0']),
    ...['--maxmemory-policy', 'noeviction'],
    ...(options.hz ? ['--hz', String(options.hz)] : []),
  ];
  // Its own process group: a terminal's Ctrl-C goes to Sinergi alone, which stops Redis last, after the
  // servers' in-flight writes (the pipe above still ends it if Sinergi dies).
  const child = spawn('/bin/sh', ['-c', WRAPPER, binary, ...args], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const address = listenAddress(listen);
  // Long enough for another process's launch, which has the start-up timeout of its own.
  const deadline = Date.now() + 2 * (options.startTimeoutMs ?? 15_000);
  let pid: number | undefined;
  while (pid === undefined) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new StartupError(`redis-server exited during start-up; see ${logFile}:\n${await tail(logFile)}`);
    }
    if (Date.now() > deadline) {
      await stopChild(child, exited);
      throw new StartupError(`redis-server did not answer PING within the start-up timeout; see ${logFile}`);
    }
    pid = await pingPid(address);
    if (pid === undefined) await new Promise((r) => setTimeout(r, 50));
  }

  const record: AddressRecord = { address, pid, dir, lasting: options.lasting ?? false };
  // Written aside and renamed into place: a process looking for the server (a tool, the other server
  // processes) never reads a half-written record and takes the server for gone, as it would at a restart.
  const draft = `${addressFile(dir)}.${process.pid}`;
  await writeFile(draft, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(draft, addressFile(dir));
  return { child, exited, pid };
}

/** Stops the wrapper and its redis-server, whose `pid` is known once it has answered. */
async function stopChild(child: ChildProcess, exited: Promise<void>, pid?: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // Closing the pipe makes the wrapper send SIGTERM: redis flushes its AOF and exits cleanly.
  child.stdin?.end();
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000).unref());
  if ((await Promise.race([exited, timeout])) === 'timeout') {
    killGroup(child);
    await exited;
    // Orphaned by its killed wrapper, redis-server dies when the kernel gets to it and is reaped by init:
    // until it has gone it holds its files, and its address record must keep any start from launching
    // a second one on them. Bounded: a process stuck in the kernel must not hold a shutdown for ever.
    const until = Date.now() + 10_000;
    while (pid !== undefined && Date.now() < until && (await isRunning(pid)))
      await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Kills the wrapper's whole process group (spawned detached, it leads one): redis-server too, and anything
 * it forked. Killing the wrapper alone would leave redis-server running on its files, orphaned.
 */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // ESRCH: every one of them has exited meanwhile.
  }
}

async function readAddress(dir: string): Promise<AddressRecord | undefined> {
  try {
    return JSON.parse(await readFile(addressFile(dir), 'utf8')) as AddressRecord;
  } catch {
    return undefined;
  }
}

/**
 * Removes the address record if it is redis-server `pid`'s: one stopped while down may find a tool's there
 * instead, which must stay while the tool's runs.
 */
async function forgetAddress(dir: string, pid: number): Promise<void> {
  if ((await readAddress(dir))?.pid === pid) await rm(addressFile(dir), { force: true });
}

async function findRunning(dir: string): Promise<AddressRecord | undefined> {
  const record = await readAddress(dir);
  if (!record) return undefined;
  // The address may since belong to an unrelated Redis: only attach if it serves this very directory.
  const client = probe(addressOf(record));
  try {
    await client.connect();
    const [, servedDir] = (await client.config('GET', 'dir')) as [string, string];
    if (path.resolve(servedDir) === dir) return record;
  } catch {
    // Not running any more: a stale record from a process that was killed.
  } finally {
    client.disconnect();
  }
  await rm(addressFile(dir), { force: true });
  return undefined;
}

/**
 * Waits until the tool that started the Redis in `dir` has finished and stopped it. Resolves with a
 * lasting process's record should one have started there meanwhile, else with nothing (start one).
 */
async function outlast(dir: string, tool: AddressRecord): Promise<AddressRecord | undefined> {
  const deadline = Date.now() + OUTLAST_TOOL_MS;
  for (;;) {
    // Its process, not a connection attempt, says when it is gone: a connection that fails once under load
    // must not let a second redis-server start on the same files.
    if (!processExists(tool.pid)) return findRunning(dir);
    if (Date.now() > deadline)
      throw new StartupError(
        `a command-line tool (pid ${tool.pid} runs its redis-server) holds the embedded Redis in ${dir} and ` +
          `did not finish within ${OUTLAST_TOOL_MS / 1000} s; let it finish, then start again`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Whether a process runs: a zombie has died and holds no files, though it lingers until it is reaped. */
async function isRunning(pid: number): Promise<boolean> {
  return processExists(pid) && (await procStat(pid))[0] !== 'Z';
}

/**
 * The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses): the first
 * is its state, the twentieth its start time. None where there is no /proc (macOS) or the process has gone.
 */
async function procStat(pid: number): Promise<string[]> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat ? stat.slice(stat.lastIndexOf(')') + 2).split(' ') : [];
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function attached(record: AddressRecord): EmbeddedRedis {
  return {
    url: addressOf(record),
    owned: false,
    pid: record.pid,
    stop: async () => {},
  };
}

/** A connection for one question, made by `connect()`: it never retries, and fails rather than waits. */
function probe(address: string): Redis {
  const client = new Redis(address, {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  client.on('error', () => {});
  return client;
}

/** The server's process id once it answers PING, undefined while it does not. */
async function pingPid(address: string): Promise<number | undefined> {
  const client = probe(address);
  try {
    await client.connect();
    await client.ping();
    const info = await client.info('server');
    return Number(/process_id:(\d+)/.exec(info)?.[1]);
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

async function tail(file: string, lines = 10): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
