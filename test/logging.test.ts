import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../server/logger.ts';
import { loggableAddress } from '../server/redis/redis-connection.ts';
import { uniqueAlert } from './support/alerts.ts';
import { makeDeviceKey, raiseWithKey } from './support/consoles.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';

// Every line the server logs, as an operator's log collector would keep it.
const lines: string[] = [];
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({
    logger: createLogger('info', 'sinergi', { write: (line: string) => void lines.push(line) }),
  });
});
afterAll(() => server?.close());

describe('what the logs hold', () => {
  it('When a panic button raises with its key, Then the request is logged but the key is not: whoever reads the logs cannot raise as that Lapas', async () => {
    const { admin, created } = await makeDeviceKey(server.url, 'Panic button Blok C', 'lapas-permisan');
    const key = created.body.key as string;
    expect((await raiseWithKey(server.url, key, uniqueAlert({ severity: 4 }))).status).toBe(201);
    expect((await raiseWithKey(server.url, `${key}x`, uniqueAlert())).status).toBe(401);

    const requests = lines.filter((l) => l.includes('"/api/alerts"'));
    expect(requests.length).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => l.includes(key))).toEqual([]);
    expect(lines.filter((l) => l.includes(admin.accessToken))).toEqual([]);
  });

  it('names a Redis without the user and password its URL carries', () => {
    const logged = loggableAddress('rediss://sinergi:S3cretRedisPass@redis.internal:6380/0');
    expect(logged).not.toContain('S3cretRedisPass');
    expect(logged).not.toContain('sinergi:');
    expect(logged).toContain('redis.internal:6380');
    expect(loggableAddress('/srv/sinergi/data/redis/redis.sock')).toBe('/srv/sinergi/data/redis/redis.sock');
  });
});
