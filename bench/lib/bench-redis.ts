import { compactWhenQuiet } from '../../server/redis/aof-compaction.ts';
import { startEmbeddedRedis } from '../../server/redis/embedded-redis.ts';
import { STORE_HZ } from '../../server/redis/redis-store.ts';

export interface BenchRedis {
  /** The store, as the server's REDIS_URL. */
  url: string;
  pid: number | undefined;
  /** The Socket.IO adapter's Redis, as the server's SOCKET_REDIS_URL. */
  socketUrl: string;
  socketPid: number | undefined;
  stop(): Promise<void>;
}

/**
 * The two Redis servers `npm start` runs by default: the store with its append-only file, and the adapter's
 * without one. Scenarios start them themselves so that they can read the store and spread processes over them;
 * like `npm start`, the owner rewrites the store's append-only file when it is quiet (or far overdue).
 */
export async function startBenchRedis(
  dataDir: string,
  appendfsync: 'always' | 'everysec' = 'always',
): Promise<BenchRedis> {
  const store = await startEmbeddedRedis({ dataDir, appendfsync, hz: STORE_HZ });
  try {
    const sockets = await startEmbeddedRedis({
      dataDir,
      appendfsync,
      name: 'redis-socket',
      appendonly: false,
    });
    const compactor = compactWhenQuiet(store.url, {
      report: (event) =>
        console.log(
          event.type === 'compacting'
            ? `  store: rewriting its append-only file (${event.reason}, ${Math.round(event.currentBytes / 2 ** 20)} MiB)`
            : `  store: could not rewrite its append-only file: ${String(event.error)}`,
        ),
    });
    return {
      url: store.url,
      pid: store.pid,
      socketUrl: sockets.url,
      socketPid: sockets.pid,
      stop: async () => {
        compactor.stop();
        await sockets.stop();
        await store.stop();
      },
    };
  } catch (error) {
    await store.stop();
    throw error;
  }
}
