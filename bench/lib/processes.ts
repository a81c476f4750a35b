import { type ChildProcess, fork, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { freePort } from '../../server/redis/embedded-redis.ts';

export interface ServerProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Everything the server printed on stdout so far (the first-start admin password is printed once, here). */
  stdout(): string;
  stop(): Promise<void>;
}

const TSX = ['--import', 'tsx'];

/** Node flags for the server processes, e.g. BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
export function serverNodeArgs(): string[] {
  return (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
}

/**
 * The real Sinergi server in its own process, exactly as `npm start` runs it, on loopback. Resolves once it
 * prints that it is listening.
 */
export async function startServerProcess(
  env: Record<string, string>,
  extraNodeArgs: string[] = [],
): Promise<ServerProcess> {
  const port = Number(env.PORT) || (await freePort());
  const child = spawn(process.execPath, [...extraNodeArgs, ...TSX, 'server/main.ts'], {
    env: {
      ...process.env,
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      ...env,
      PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout?.on('data', (d: Buffer) => {
    // The start-up banner is what callers need; a chatty server must not grow this without bound.
    if (stdout.length < 64 * 1024) stdout += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 60 s:\n${stderr}`)), 60_000);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      if (line.includes('is listening on')) {
        clearTimeout(timer);
        // The lines printed with it (demo accounts, the first-start password) arrive in the same chunk.
        setImmediate(resolve);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${stderr}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    stdout: () => stdout,
    stop: () => stopChild(child),
  };
}

export async function stopChild(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/**
 * A load generator in its own process (a bench/load/*.ts module), talked to over IPC: `request` sends one
 * message and resolves with the generator's reply. Generators stop by themselves when their parent goes.
 */
export function startGenerator(module: string, args: Record<string, unknown>) {
  const child = fork(module, [JSON.stringify(args)], {
    execArgv: TSX,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let seq = 0;
  const pending = new Map<number, (value: unknown) => void>();
  child.on('message', (message: { id?: number; reply?: unknown }) => {
    if (message.id !== undefined) pending.get(message.id)?.(message.reply);
    pending.delete(message.id ?? -1);
  });
  return {
    child,
    request<T>(command: string, payload: unknown = {}, timeoutMs = 300_000): Promise<T> {
      const id = ++seq;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${module}: ${command} timed out`)), timeoutMs);
        pending.set(id, (reply) => {
          clearTimeout(timer);
          const r = reply as { error?: string };
          if (r && typeof r === 'object' && 'error' in r && r.error)
            reject(new Error(`${module}: ${r.error}`));
          else resolve(reply as T);
        });
        child.send({ id, command, payload });
      });
    },
    stop: () => stopChild(child),
  };
}

/** The generator side of `startGenerator`: answers each request with its handler's result. */
export function serveGenerator(handlers: Record<string, (payload: never) => Promise<unknown>>) {
  // A generator must not outlive the bench run that started it.
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (message: { id: number; command: string; payload: never }) => {
    const handler = handlers[message.command];
    try {
      if (!handler) throw new Error(`unknown command ${message.command}`);
      process.send?.({ id: message.id, reply: await handler(message.payload) });
    } catch (error) {
      process.send?.({ id: message.id, reply: { error: (error as Error).stack ?? String(error) } });
    }
  });
}
