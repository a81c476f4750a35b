import { startEmbeddedRedis } from './embedded-redis.ts';
import { checkRedisServer, createRedis, waitReady } from './redis-connection.ts';

export interface RedisStore {
  readonly url: string;
  readonly embedded: boolean;
  readonly version: string;
  /** Stops the embedded redis-server if this process started it; a no-op otherwise. */
  release(): Promise<void>;
}

export interface RedisStoreSettings {
  dataDir: string;
  redis: { url?: string | undefined; appendfsync: 'always' | 'everysec' };
}

/**
 * The Redis every part of Sinergi uses: `REDIS_URL` when set, otherwise the embedded redis-server on
 * `<DATA_DIR>/redis` (started here, or the one another Sinergi process already runs on that data).
 */
export async function openRedisStore(settings: RedisStoreSettings): Promise<RedisStore> {
  const embedded = settings.redis.url
    ? undefined
    : await startEmbeddedRedis({ dataDir: settings.dataDir, appendfsync: settings.redis.appendfsync });
  const url = settings.redis.url ?? embedded?.url ?? '';
  const probe = createRedis(url, 'tool', { lazyConnect: true });
  probe.on('error', () => {});
  try {
    await probe.connect().catch(() => {});
    await waitReady(probe);
    const { version } = await checkRedisServer(probe);
    return {
      url,
      embedded: embedded !== undefined,
      version,
      release: () => embedded?.stop() ?? Promise.resolve(),
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  } finally {
    probe.disconnect();
  }
}
