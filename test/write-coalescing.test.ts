import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '../server/redis/embedded-redis.ts';
import { createRedis, waitReady } from '../server/redis/redis-connection.ts';
import { waitFor } from './support/wait-for.ts';

// A Redis of its own: its count of socket reads must see only this file's traffic.
let redis: EmbeddedRedis;
let dataDir: string;
let observer: Redis;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'sinergi-coalescing-'));
  redis = await startEmbeddedRedis({ dataDir, appendfsync: 'everysec', appendonly: false });
  observer = new Redis(redis.url);
});
afterAll(async () => {
  observer.disconnect();
  await redis.stop();
  await rm(dataDir, { recursive: true, force: true });
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
