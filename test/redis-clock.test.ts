import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedRedis } from '../server/redis/embedded-redis.ts';
import { STORE_HZ } from '../server/redis/redis-store.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { startTestServer } from './support/test-server.ts';

// A Redis of its own: the PINGs counted must be the escalation worker's.
let own: Awaited<ReturnType<typeof startOwnRedis>>;
let redis: EmbeddedRedis;
let observer: Redis;
beforeAll(async () => {
  own = await startOwnRedis('clock', { hz: STORE_HZ });
  redis = own.redis;
  observer = new Redis(redis.url);
});
afterAll(async () => {
  observer.disconnect();
  await own.stop();
});

/** PINGs Redis answered while a server with its escalation worker ran for a while. */
async function pingsWhileServing(): Promise<number> {
  const server = await startTestServer({ redisUrl: redis.url });
  try {
    await observer.config('RESETSTAT');
    await new Promise((r) => setTimeout(r, 600));
    const stats = await observer.info('commandstats');
    return Number(/^cmdstat_ping:calls=(\d+)/m.exec(stats)?.[1] ?? 0);
  } finally {
    await server.close();
  }
}

describe('the clock on which Redis ends a worker’s wait for its next due timer', () => {
  it('When Redis checks timeouts 100 times a second, Then the worker leaves it alone; at Redis’s default of 10, Then it pings Redis every 10 ms so timers still fire on time', async () => {
    expect(await pingsWhileServing()).toBe(0);
    await observer.config('SET', 'hz', '10');
    try {
      expect(await pingsWhileServing()).toBeGreaterThanOrEqual(20);
    } finally {
      await observer.config('SET', 'hz', '100');
    }
  });
});
