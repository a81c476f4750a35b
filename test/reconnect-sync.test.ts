import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SyncResult } from '../shared/incident.ts';
import { uniqueAlert } from './support/alerts.ts';
import { type ConsoleClient, closeConsoles, connectConsole, consoleFor, login } from './support/consoles.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';

// A store of the test's own: the count of reads below must see this server's traffic only.
let store: Awaited<ReturnType<typeof startOwnRedis>>;
let server: TestServer;
let client: Redis;
const WORKSTATIONS = 40;

beforeAll(async () => {
  store = await startOwnRedis('reconnect-sync');
  server = await startTestServer({ redisUrl: store.redis.url });
  client = new Redis(store.redis.url);
});
afterEach(closeConsoles);
afterAll(async () => {
  client?.disconnect();
  await server?.close();
  await store?.stop();
});

async function workstations(username: string, count: number): Promise<ConsoleClient[]> {
  const { accessToken } = await login(server.url, username);
  return Promise.all(Array.from({ length: count }, () => connectConsole(server.url, accessToken)));
}

async function synced(socket: ConsoleClient, since?: string): Promise<SyncResult> {
  const res = await socket.emitWithAck('sync', since === undefined ? {} : { since });
  if (!res.ok) throw new Error(JSON.stringify(res.error));
  return res.data;
}

const commandCalls = async (command: string) => {
  const line = (await client.info('commandstats'))
    .split('\r\n')
    .find((l) => l.startsWith(`cmdstat_${command}:`));
  return Number(/calls=(\d+)/.exec(line ?? '')?.[1] ?? 0);
};

describe('a reconnect storm', () => {
  it('When every workstation of a unit syncs at once, Then each gets every open incident in scope, and the store reads them a few times, not once per workstation', async () => {
    const operator = await consoleFor(server.url, 'operator.permisan');
    const opened: string[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await operator.socket.emitWithAck('alert:raise', uniqueAlert());
      if (!res.ok) throw new Error(JSON.stringify(res.error));
      opened.push(res.data.incident.id);
    }
    const consoles = await workstations('dispatch.nusakambangan', WORKSTATIONS);
    await client.config('RESETSTAT');

    const answers = await Promise.all(consoles.map((socket) => synced(socket)));

    for (const answer of answers) expect(answer.open.map((i) => i.id).sort()).toEqual([...opened].sort());
    // Each sync reads its unit's open set (SMEMBERS) unless it shares a read that started after it asked.
    const reads = await commandCalls('smembers');
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThanOrEqual(WORKSTATIONS / 4);
  });

  it('When an alert is acknowledged as raised while a storm of syncs runs, Then a sync sent after that answer always holds it', async () => {
    const operator = await consoleFor(server.url, 'operator.permisan');
    const [late, ...storm] = await workstations('chief.permisan', 21);
    if (!late) throw new Error('no console');
    for (let round = 0; round < 5; round++) {
      const running = storm.map((socket) => synced(socket));
      const res = await operator.socket.emitWithAck('alert:raise', uniqueAlert());
      if (!res.ok) throw new Error(JSON.stringify(res.error));
      const answer = await synced(late);
      expect(answer.open.map((i) => i.id)).toContain(res.data.incident.id);
      await Promise.all(running);
    }
  });

  it('shares only what each caller may see: a Polsek that does not cover a Lapas gets none of its incidents', async () => {
    const [cilacap] = await workstations('dispatch.cilacap', 1);
    const [island] = await workstations('dispatch.nusakambangan', 1);
    if (!cilacap || !island) throw new Error('no console');
    const [theirs, ours] = await Promise.all([synced(cilacap), synced(island)]);
    expect(theirs.open.filter((i) => i.facilityId !== 'lapas-cilacap')).toEqual([]);
    expect(ours.open.length).toBeGreaterThan(0);
  });
});
