import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { redisKeys } from '../server/storage/keys.ts';
import { createUndelivered, deliveryMember } from '../server/storage/undelivered.ts';
import { uniqueAlert } from './support/alerts.ts';
import { closeConsoles, connectConsole, consoleFor, polsekHearing } from './support/consoles.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { startTestServer, type TestServer, uniquePrefix } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

// The store and the broadcast Redis of the test's own: the store is paused below, which the suite's shared
// Redis must never be.
let store: Awaited<ReturnType<typeof startOwnRedis>>;
let sockets: Awaited<ReturnType<typeof startOwnRedis>>;
let a: TestServer;
let b: TestServer;
let client: Redis;
const prefix = uniquePrefix();
const undelivered = redisKeys(prefix).undelivered;
// Short, for the test's sake, yet well above what a first delivery takes on a loaded machine.
const GRACE_MS = 2000;

beforeAll(async () => {
  [store, sockets] = await Promise.all([startOwnRedis('delivery-store'), startOwnRedis('delivery-sockets')]);
  const env = { SOCKET_REDIS_URL: sockets.redis.url, REDELIVER_AFTER_MS: String(GRACE_MS) };
  a = await startTestServer({ prefix, redisUrl: store.redis.url, env });
  b = await startTestServer({ prefix, redisUrl: store.redis.url, env, seedDemo: false });
  client = new Redis(store.redis.url);
});
afterEach(closeConsoles);
afterAll(async () => {
  client?.disconnect();
  await Promise.all([a?.close(), b?.close()]);
  await Promise.all([store?.stop(), sockets?.stop()]);
});

describe('delivery of committed changes', () => {
  it('delivers each change once and forgets it: nothing is delivered again after the grace', async () => {
    const dispatch = await consoleFor(b.url, 'dispatch.nusakambangan');
    const heard: string[] = [];
    dispatch.socket.on('alert:new', ({ alert }) => heard.push(alert.id));
    const operator = await consoleFor(a.url, 'operator.permisan');
    const res = await operator.socket.emitWithAck('alert:raise', uniqueAlert());
    if (!res.ok) throw new Error(JSON.stringify(res.error));
    await waitFor(async () => (await client.zcard(undelivered)) === 0, { what: 'the delivery confirmed' });
    // Past the grace and a few redelivery rounds (five per grace).
    await new Promise((r) => setTimeout(r, GRACE_MS * 1.4));
    expect(heard).toEqual([res.data.alert.id]);
  });

  it('When a raise is stored but its reply is lost (a store stall past the command timeout), Then the other parties still get the alert, and a retry is answered with it', async () => {
    const heard = await polsekHearing(b.url);
    const operator = await consoleFor(a.url, 'operator.permisan');
    const report = uniqueAlert({ severity: 4 });

    // Writes wait; reads (the raise's checks) go on. The commit is sent, times out at 3 s, and is applied
    // when the pause ends.
    await client.client('PAUSE', 3500, 'WRITE');
    const lost = await operator.socket.timeout(10_000).emitWithAck('alert:raise', report);
    expect(lost).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    expect(heard).toEqual([]);

    await waitFor(() => heard.includes(report.clientRef), {
      timeoutMs: 8000,
      what: 'the Polsek to get the alert whose raise answered an error',
    });
    const retry = await operator.socket.emitWithAck('alert:raise', report);
    expect(retry).toMatchObject({
      ok: true,
      data: { duplicate: true, alert: { clientRef: report.clientRef } },
    });
    await waitFor(async () => (await client.zcard(undelivered)) === 0, { what: 'the delivery confirmed' });
    expect(heard).toEqual([report.clientRef]);
  });

  it('When a silent (duress) raise is delivered again, Then the Polsek gets it and the console that raised it shows nothing, on whatever socket it is back', async () => {
    const heard = await polsekHearing(b.url);
    const operator = await consoleFor(a.url, 'operator.permisan');
    // The same login on another socket and process, as after a reconnect to a surviving process: a second
    // delivery cannot know the socket, only the login.
    const back = await connectConsole(b.url, operator.session.accessToken);
    const shown: string[] = [];
    for (const socket of [operator.socket, back])
      socket.on('alert:new', ({ alert }) => shown.push(alert.clientRef));
    const report = uniqueAlert({ severity: 1, silent: true });

    await client.client('PAUSE', 3500, 'WRITE');
    const lost = await operator.socket.timeout(10_000).emitWithAck('alert:raise', report);
    expect(lost).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    await waitFor(() => heard.includes(report.clientRef), {
      timeoutMs: 8000,
      what: 'the Polsek to get the silent alert delivered again',
    });
    await waitFor(async () => (await client.zcard(undelivered)) === 0, { what: 'the delivery confirmed' });
    expect(shown).toEqual([]);
  });

  it('When the process that made a commit stops sending its heartbeat (killed, or stuck), Then another process claims its overdue note once the heartbeat lapses, and not before', async () => {
    const keys = redisKeys(uniquePrefix());
    const aliveMs = 600;
    const maker = createUndelivered(client, keys, { id: 'maker', aliveMs });
    const survivor = createUndelivered(client, keys, { id: 'survivor', aliveMs });
    const note = maker.member({ incidentId: 'incident-1', fromSeq: 1, toSeq: 1 });
    await maker.heartbeat();
    // As its commit wrote it, already overdue.
    await client.zadd(keys.undelivered, Date.now() - 1000, note);

    expect(await survivor.claimOverdue(1000, 10)).toEqual([]);
    // Its last heartbeat lapses.
    await new Promise((r) => setTimeout(r, aliveMs + 100));

    expect(await survivor.claimOverdue(1000, 10)).toEqual([note]);
    // Claimed: pushed back for the claimer to deliver, nobody else's meanwhile.
    expect(await survivor.claimOverdue(1000, 10)).toEqual([]);
  });

  it('When a running process has a backlog of overdue notes, Then another process still finds, behind them, the note of a process that stopped', async () => {
    const keys = redisKeys(uniquePrefix());
    const busy = createUndelivered(client, keys, { id: 'busy', aliveMs: 60_000 });
    const survivor = createUndelivered(client, keys, { id: 'survivor', aliveMs: 60_000 });
    await busy.heartbeat();
    const now = Date.now();
    for (let i = 0; i < 150; i++)
      await client.zadd(
        keys.undelivered,
        now - 10_000 + i,
        busy.member({ incidentId: `busy-${i}`, fromSeq: 1, toSeq: 1 }),
      );
    const left = deliveryMember({ incidentId: 'incident-left', fromSeq: 1, toSeq: 1, by: 'gone' });
    await client.zadd(keys.undelivered, now - 1000, left);

    expect(await survivor.claimOverdue(1000, 10)).toEqual([left]);
  });
});
