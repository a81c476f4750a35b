import { StartupError } from '../startup-error.ts';
import { type CompactionEvent, type CompactionPolicy, compactWhenQuiet } from './aof-compaction.ts';
import { type EmbeddedRedis, type SupervisionEvent, startEmbeddedRedis } from './embedded-redis.ts';
import { checkRedisServer, createRedis, waitReady } from './redis-connection.ts';

export interface RedisStore {
  readonly url: string;
  /** The Redis the Socket.IO adapter broadcasts through; the store's own when none was asked for. */
  readonly socketUrl: string;
  readonly embedded: boolean;
  readonly version: string;
  /**
   * Whether the store syncs every write to disk before answering (`appendonly yes`, `appendfsync always`):
   * otherwise an acknowledged alert can be lost when its machine fails.
   */
  readonly durable: boolean;
  /** Stops the embedded redis-server if this process started it; a no-op otherwise. */
  release(): Promise<void>;
}

export interface RedisStoreSettings {
  dataDir: string;
  redis: {
    url?: string | undefined;
    socketUrl?: string | undefined;
    appendfsync: 'always' | 'everysec';
  };
}

/** Where the embedded Redis for console broadcasts keeps its (unpersisted) state, beside the store's. */
const SOCKET_REDIS_NAME = 'redis-socket';

/**
 * The store's clock: Redis ends blocking pops (a BullMQ worker waiting for its next due timer) only on its
 * `hz` ticks, every 100 ms by default; at 100 a level is at most 10 ms late for it. Exported for the bench and
 * the tests, which run the store as `npm start` does.
 */
export const STORE_HZ = 100;

/**
 * The Redis every part of Sinergi uses: `REDIS_URL` when set, otherwise the embedded redis-server on
 * `<DATA_DIR>/redis` (started here, or the one another Sinergi process already runs on that data; a
 * serving process waits out one a command-line tool started rather than lose it when the tool ends).
 *
 * Processes that serve (`serving: true`: the server, the worker) also get a Redis for the Socket.IO
 * adapter's stream: `SOCKET_REDIS_URL`, else with the embedded store a second embedded redis-server
 * without an append-only file, else the store itself. That stream is a delivery buffer holding every
 * broadcast of the recovery window; in the store it made every broadcast a synced disk write and most of
 * what each AOF rewrite copies, while nothing in it is worth keeping across a Redis restart.
 */
export async function openRedisStore(
  settings: RedisStoreSettings,
  options: {
    serving?: boolean;
    /**
     * Looks after the embedded redis-servers this process starts, reporting each step here: restarts one
     * that dies, and rewrites the store's append-only file at quiet moments.
     */
    supervise?: (event: SupervisionEvent | CompactionEvent) => void;
    /** When to rewrite the store's append-only file; the default policy unless a test needs another. */
    compaction?: { policy: CompactionPolicy; everyMs: number };
    /**
     * Also rewrite an external store's append-only file at quiet moments, when its operator has turned
     * Redis's own rule off (`auto-aof-rewrite-percentage 0`). Off in a server process its primary forked:
     * the primary does it for all of them.
     */
    compactExternal?: boolean;
  } = {},
): Promise<RedisStore> {
  const started: EmbeddedRedis[] = [];
  let compactor: { stop(): void } | undefined;
  const release = async () => {
    compactor?.stop();
    for (const redis of [...started].reverse()) await redis.stop();
  };
  try {
    const embed = async (name: string | undefined, appendonly: boolean) => {
      const redis = await startEmbeddedRedis({
        dataDir: settings.dataDir,
        appendfsync: settings.redis.appendfsync,
        appendonly,
        ...(appendonly && { hz: STORE_HZ }),
        lasting: options.serving ?? false,
        ...(name && { name }),
        ...(options.supervise && { supervise: options.supervise }),
      });
      started.push(redis);
      return redis;
    };
    const embedded = !settings.redis.url;
    const { url, owned } = settings.redis.url
      ? { url: settings.redis.url, owned: false }
      : await embed(undefined, true);
    const socketUrl =
      (options.serving && settings.redis.socketUrl) ||
      (options.serving && embedded ? (await embed(SOCKET_REDIS_NAME, false)).url : url);
    const { version, rewritesLeftToUs, durable } = await checked(url, 'the store');
    if (socketUrl !== url) await checked(socketUrl, 'the broadcast Redis');
    // With Redis's own rule off (always so on the embedded store), a lasting process rewrites the file: the
    // embedded store's owner, or every primary on an external one.
    const compacts = embedded ? owned : options.compactExternal;
    if (rewritesLeftToUs && compacts && options.serving && options.supervise)
      compactor = compactWhenQuiet(url, { ...options.compaction, report: options.supervise });
    return { url, socketUrl, embedded, version, durable, release };
  } catch (error) {
    await release();
    throw error;
  }
}

/**
 * Waits for a Redis to answer and checks it is recent enough and never evicts (a lost stream loses
 * broadcasts); says too whether it keeps an append-only file that Redis does not rewrite by itself, and
 * whether it syncs every write.
 */
async function checked(url: string, which: string) {
  const probe = createRedis(url, 'tool', { lazyConnect: true });
  probe.on('error', () => {});
  try {
    await probe.connect().catch(() => {});
    await waitReady(probe);
    const { version } = await checkRedisServer(probe);
    const [appendonly, percentage, appendfsync] = (await Promise.all([
      probe.config('GET', 'appendonly'),
      probe.config('GET', 'auto-aof-rewrite-percentage'),
      probe.config('GET', 'appendfsync'),
    ])) as [string, string][];
    const aof = appendonly?.[1] === 'yes';
    return {
      version,
      rewritesLeftToUs: aof && percentage?.[1] === '0',
      durable: aof && appendfsync?.[1] === 'always',
    };
  } catch (error) {
    // With two Redis servers, the operator must know which one to look at.
    throw error instanceof StartupError ? new StartupError(`${which}: ${error.message}`) : error;
  } finally {
    probe.disconnect();
  }
}
