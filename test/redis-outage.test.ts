import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '../server/redis/embedded-redis.ts';
import { redisKeys } from '../server/storage/keys.ts';
import { uniqueAlert } from './support/alerts.ts';
import { closeConsoles, consoleFor, get, post } from './support/consoles.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';

let dataDir: string;
let redis: EmbeddedRedis;
let server: TestServer;
const logged: { msg: string; err?: { message: string } }[] = [];
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'sinergi-outage-'));
  redis = await startEmbeddedRedis({ dataDir, appendfsync: 'everysec' });
  server = await startTestServer({
    redisUrl: redis.url,
    logger: pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) }),
  });
});
afterAll(async () => {
  closeConsoles();
  await server.close();
  await redis.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('when Redis goes away', () => {
  it('answers a raise with "unavailable" well within the console ack timeout, and HTTP with 503', async () => {
    const { socket, session } = await consoleFor(server.url, 'operator.permisan');
    await redis.stop();
    const started = Date.now();
    const res = await socket.timeout(5000).emitWithAck('alert:raise', {
      clientRef: randomUUID(),
      facilityId: 'lapas-permisan',
      category: 'riot',
      severity: 4,
      location: { block: 'a' },
      description: 'x',
    });
    expect(res).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    expect(Date.now() - started).toBeLessThan(5000);
    const http = await post(server.url, '/api/alerts', { nothing: true }, session.accessToken);
    expect(http.status).toBe(503);
    expect(http.body.error.code).toBe('unavailable');
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);

    // A login is refused the same way, and the log says what failed underneath.
    const login = await post(server.url, '/api/auth/login', {
      username: 'operator.permisan',
      password: 'sinergi-demo',
    });
    expect(login.status).toBe(503);
    expect(login.body.error).toEqual({ code: 'unavailable', message: 'The login service is unavailable' });
    expect(logged).toContainEqual(
      expect.objectContaining({
        msg: 'request answered unavailable',
        err: expect.objectContaining({ message: expect.any(String) }),
      }),
    );
  });
});

describe('when the broadcast Redis goes away', () => {
  it('still stores and acknowledges raises, keeps the notes of their delivery, and each process keeps the raise budget meanwhile', async () => {
    const store = await startOwnRedis('store');
    const broadcasts = await startOwnRedis('broadcasts');
    const own = await startTestServer({
      redisUrl: store.redis.url,
      env: { SOCKET_REDIS_URL: broadcasts.redis.url, RAISE_RATE_PER_MINUTE: '3' },
    });
    try {
      const { socket, session } = await consoleFor(own.url, 'operator.permisan');
      await broadcasts.stop();
      const answers = [];
      for (let i = 0; i < 4; i++)
        answers.push(await socket.timeout(5000).emitWithAck('alert:raise', uniqueAlert()));
      expect(answers.map((a) => (a.ok ? 'ok' : a.error.code))).toEqual(['ok', 'ok', 'ok', 'rate_limited']);
      for (const answer of answers.slice(0, 3)) {
        if (!answer.ok) continue;
        const stored = await get(own.url, `/api/incidents/${answer.data.incident.id}`, session.accessToken);
        expect(stored.status).toBe(200);
      }
      // Their broadcasts wait in this process's memory: the notes of their delivery stay, for another process
      // to deliver them should this one stop before the broadcast Redis is back.
      await new Promise((r) => setTimeout(r, 500));
      const client = new Redis(store.redis.url);
      try {
        expect(await client.zcard(redisKeys(own.prefix).undelivered)).toBe(3);
      } finally {
        client.disconnect();
      }
    } finally {
      await own.close();
      await store.stop();
    }
  });
});
