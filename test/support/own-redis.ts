import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type EmbeddedRedisOptions, startEmbeddedRedis } from '../../server/redis/embedded-redis.ts';

/**
 * A redis-server of the test's own, in a temporary directory: for counts and faults that must see only that
 * test's traffic, not the suite's shared Redis. `stop` stops it and removes its directory.
 */
export async function startOwnRedis(
  name: string,
  options: Omit<EmbeddedRedisOptions, 'dataDir' | 'appendfsync'> = {},
) {
  const dataDir = await mkdtemp(path.join(tmpdir(), `sinergi-${name}-`));
  const redis = await startEmbeddedRedis({ dataDir, appendfsync: 'everysec', ...options });
  return {
    redis,
    dataDir,
    async stop() {
      await redis.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
