import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedRedis } from '../../server/redis/embedded-redis.ts';
import { STORE_HZ } from '../../server/redis/redis-store.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/** One throwaway redis-server for the run (or TEST_REDIS_URL); each test file works under its own key prefix. */
export default async function setup(project: TestProject) {
  if (process.env.TEST_REDIS_URL) {
    project.provide('redisUrl', process.env.TEST_REDIS_URL);
    return;
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sinergi-test-redis-'));
  // everysec: the suite's own store needs no crash durability, and fsync on every write would slow it.
  // The store's clock, as `npm start` runs it.
  const redis = await startEmbeddedRedis({ dataDir, appendfsync: 'everysec', hz: STORE_HZ });
  project.provide('redisUrl', redis.url);
  return async () => {
    await redis.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
}
