import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '../server/redis/embedded-redis.ts';
import { closeConsoles, consoleFor, post } from './support/consoles.ts';
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
