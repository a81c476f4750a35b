import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import type { Server } from 'socket.io';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '../server/redis/embedded-redis.ts';
import { redisKeys } from '../server/storage/keys.ts';
import { rooms } from '../shared/rooms.ts';
import { uniqueAlert } from './support/alerts.ts';
import { closeConsoles, connectConsole, consoleFor, get } from './support/consoles.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { addAccount, startTestServer, TEST_JWT_SECRET, type TestServer } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

// Two Sinergi processes (in one test process, but sharing nothing except Redis and the key prefix), as two
// replicas behind a load balancer would.
let a: TestServer;
let b: TestServer;
beforeAll(async () => {
  a = await startTestServer();
  b = await startTestServer({ prefix: a.prefix, seedDemo: false });
});
afterEach(closeConsoles);
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

describe('two servers on one Redis', () => {
  it('delivers a broadcast to Polsek Nusakambangan made on server A to its dispatcher on server B, and not to Polsek Cilacap Tengah', async () => {
    const nusakambangan = (await consoleFor(b.url, 'dispatch.nusakambangan')).socket;
    const cilacap = (await consoleFor(b.url, 'dispatch.cilacap')).socket;
    const received = { nusakambangan: [] as unknown[], cilacap: [] as unknown[] };
    nusakambangan.onAny((event: string, payload: unknown) => received.nusakambangan.push({ event, payload }));
    cilacap.onAny((event: string, payload: unknown) => received.cilacap.push({ event, payload }));
    // Nothing is connected to A: whatever arrives went through the Redis adapter.
    expect(a.app.io.of('/').sockets.size).toBe(0);

    // A probe event that is no part of the protocol, so the typed hub does not know it.
    const hubA = a.app.io as unknown as Server;
    hubA.to(rooms.unit({ type: 'precinct', id: 'polsek-nusakambangan' })).emit('test:probe', { n: 1 });
    await waitFor(() => received.nusakambangan.length > 0, { what: 'the probe on B' });
    expect(received.nusakambangan).toEqual([{ event: 'test:probe', payload: { n: 1 } }]);

    // A's broadcasts reach B in order through one stream: once a later one reaches Cilacap, the probe
    // would already have, had it been sent there.
    hubA.to(rooms.unit({ type: 'precinct', id: 'polsek-cilacap-tengah' })).emit('test:sentinel', { n: 2 });
    await waitFor(() => received.cilacap.length > 0, { what: 'the sentinel on B' });
    expect(received.cilacap).toEqual([{ event: 'test:sentinel', payload: { n: 2 } }]);
  });

  it('When an admin on server A disables a user, Then that user’s console on server B is disconnected', async () => {
    const { password } = await addAccount(a, {
      username: 'guard.batu',
      role: 'operator',
      unitId: 'lapas-batu',
    });
    const { socket: guard, session } = await consoleFor(b.url, 'guard.batu', password);
    const bystander = (await consoleFor(b.url, 'dispatch.cilacap')).socket;
    const ended: unknown[] = [];
    guard.on('session:ended', (payload) => ended.push(payload));

    await a.app.services.users.update(session.user.id, { disabled: true });

    await waitFor(() => guard.disconnected, { what: 'the disabled user’s socket on B to drop' });
    expect(ended).toEqual([{ reason: 'revoked' }]);
    expect(bystander.connected).toBe(true);
    // The token it held no longer opens a console on either server.
    await expect(connectConsole(b.url, session.accessToken)).rejects.toThrow('unauthorized');
    await expect(connectConsole(a.url, session.accessToken)).rejects.toThrow('unauthorized');
  });

  it('When a user is disabled with the users tool, Then their open console is disconnected too', async () => {
    const { password } = await addAccount(a, {
      username: 'guard.besi',
      role: 'operator',
      unitId: 'lapas-besi',
    });
    const { socket: guard } = await consoleFor(b.url, 'guard.besi', password);
    const ended: unknown[] = [];
    guard.on('session:ended', (payload) => ended.push(payload));

    const tool = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'server/cli/users.ts', 'disable', 'guard.besi'],
      {
        env: {
          ...process.env,
          REDIS_URL: inject('redisUrl'),
          REDIS_KEY_PREFIX: a.prefix,
          JWT_SECRET: TEST_JWT_SECRET,
        },
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(tool.status, tool.stderr).toBe(0);
    await waitFor(() => guard.disconnected, { what: 'the disabled user’s console to drop' });
    expect(ended).toEqual([{ reason: 'revoked' }]);
  });
});

describe('two servers whose broadcasts go through a Redis of their own (SOCKET_REDIS_URL)', () => {
  let own: Awaited<ReturnType<typeof startOwnRedis>>;
  let sockets: EmbeddedRedis;
  let c: TestServer;
  let d: TestServer;
  beforeAll(async () => {
    own = await startOwnRedis('socket-redis', { appendonly: false });
    sockets = own.redis;
    const env = { SOCKET_REDIS_URL: sockets.url };
    c = await startTestServer({ env });
    d = await startTestServer({ env, prefix: c.prefix, seedDemo: false });
  });
  afterAll(async () => {
    await Promise.all([c?.close(), d?.close()]);
    // The one restarted below, then the first (stopped already) and its directory.
    await sockets?.stop();
    await own?.stop();
  });

  it('delivers an alert raised on one to the Polsek console on the other, and leaves no broadcast in the store', async () => {
    const dispatch = (await consoleFor(d.url, 'dispatch.nusakambangan')).socket;
    const heard: string[] = [];
    dispatch.on('alert:new', ({ incidentId }) => heard.push(incidentId));
    const operator = (await consoleFor(c.url, 'operator.permisan')).socket;
    const raised = await operator.emitWithAck('alert:raise', uniqueAlert());
    if (!raised.ok) throw new Error(JSON.stringify(raised.error));
    await waitFor(() => heard.includes(raised.data.incident.id), { what: 'alert:new on the other server' });

    const stream = redisKeys(c.prefix).socketStream;
    const store = new Redis(inject('redisUrl'));
    const socketClient = new Redis(sockets.url);
    try {
      expect(await socketClient.exists(stream)).toBe(1);
      expect(await store.exists(stream)).toBe(0);
      expect(await store.exists(redisKeys(c.prefix).incident(raised.data.incident.id))).toBe(1);
    } finally {
      store.disconnect();
      socketClient.disconnect();
    }
  });

  it('reports not ready while the broadcast Redis is down, and ready again once it is back', async () => {
    expect((await get(c.url, '/readyz')).status).toBe(200);
    await sockets.stop();
    await waitFor(async () => (await get(c.url, '/readyz')).status === 503, { what: 'readyz 503' });
    expect((await get(c.url, '/readyz')).body).toMatchObject({ failing: ['socket_redis'] });
    sockets = await startEmbeddedRedis({
      dataDir: own.dataDir,
      appendfsync: 'everysec',
      appendonly: false,
    });
    await waitFor(async () => (await get(c.url, '/readyz')).status === 200, {
      what: 'readyz 200',
      timeoutMs: 15_000,
    });
  }, 30_000);
});
