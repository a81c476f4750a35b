import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedRedis } from '../server/redis/embedded-redis.ts';
import { createRedis, waitReady } from '../server/redis/redis-connection.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { waitFor } from './support/wait-for.ts';

// A Redis of its own: its count of socket reads must see only this file's traffic.
let own: Awaited<ReturnType<typeof startOwnRedis>>;
let redis: EmbeddedRedis;
let observer: Redis;
beforeAll(async () => {
  own = await startOwnRedis('coalescing', { appendonly: false });
  redis = own.redis;
  observer = new Redis(redis.url);
});
afterAll(async () => {
  observer.disconnect();
  await own.stop();
});

/** How many times Redis has read from client sockets so far, the observer's own INFO included. */
async function readsByRedis(): Promise<number> {
  const info = await observer.info('stats');
  return Number(/^total_reads_processed:(\d+)/m.exec(info)?.[1]);
}

/** Sends a burst of commands issued together and returns their replies and the reads Redis needed for them. */
async function burst(client: Redis, n: number) {
  const before = await readsByRedis();
  const replies = await Promise.all(
    Array.from({ length: n }, (_, i) => client.set(`k${i}`, String(i)).then(() => client.get(`k${i}`))),
  );
  // Less the observer's own INFO, counted as it is read.
  return { replies, reads: (await readsByRedis()) - before - 1 };
}

describe('commands a server connection issues together', () => {
  it('When fifty commands are issued in one turn, Then Redis receives them in one read and every reply matches its command', async () => {
    const client = createRedis(redis.url, 'commands');
    await waitReady(client);
    try {
      const { replies, reads } = await burst(client, 50);
      expect(replies).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
      // The SETs arrive as one write, then the GETs issued as their replies came in: two reads, not a hundred.
      expect(reads).toBeLessThanOrEqual(4);
    } finally {
      client.disconnect();
    }
  });

  it('When the connection drops and comes back, Then the new connection coalesces too', async () => {
    const client = createRedis(redis.url, 'commands');
    await waitReady(client);
    try {
      const id = await client.client('ID');
      await observer.client('KILL', 'ID', String(id));
      await waitFor(async () => (await client.client('ID').catch(() => id)) !== id, {
        what: 'the reconnect',
      });
      const { replies, reads } = await burst(client, 50);
      expect(replies).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
      expect(reads).toBeLessThanOrEqual(4);
    } finally {
      client.disconnect();
    }
  });
});
