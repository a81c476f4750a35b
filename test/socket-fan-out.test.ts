import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IncidentEvent } from '../shared/incident.ts';
import { uniqueAlert } from './support/alerts.ts';
import { closeConsoles, connectConsole, consoleFor, login } from './support/consoles.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';
import { tokenExpiringIn } from './support/tokens.ts';
import { waitFor } from './support/wait-for.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterEach(closeConsoles);
afterAll(() => server.close());

describe('workstations sharing one account', () => {
  it('are all told and dropped when their shared token expires, while a console on another token stays', async () => {
    const session = await login(server.url, 'dispatch.nusakambangan');
    const shared = await tokenExpiringIn(session.accessToken, 2);
    const workstations = await Promise.all([1, 2, 3].map(() => connectConsole(server.url, shared)));
    const other = await connectConsole(server.url, session.accessToken);
    const ended: unknown[] = [];
    for (const w of workstations) w.on('session:ended', (payload) => ended.push(payload));

    await waitFor(() => workstations.every((w) => w.disconnected), {
      timeoutMs: 6000,
      what: 'every workstation on the expired token to be dropped',
    });
    expect(ended).toEqual([{ reason: 'expired' }, { reason: 'expired' }, { reason: 'expired' }]);
    expect(other.connected).toBe(true);
  });

  it('keeps the expiry of a shared token for the workstations still open when one of them leaves', async () => {
    const session = await login(server.url, 'dispatch.cilacap');
    const shared = await tokenExpiringIn(session.accessToken, 2);
    const [leaving, staying] = await Promise.all([1, 2].map(() => connectConsole(server.url, shared)));
    if (!leaving || !staying) throw new Error('consoles did not connect');
    leaving.disconnect();
    const ended: unknown[] = [];
    staying.on('session:ended', (payload) => ended.push(payload));

    await waitFor(() => staying.disconnected, {
      timeoutMs: 6000,
      what: 'the remaining workstation to be dropped',
    });
    expect(ended).toEqual([{ reason: 'expired' }]);
  });

  it('each answer its own commands, on one shared listener', async () => {
    const session = await login(server.url, 'operator.permisan');
    const [one, two] = await Promise.all([1, 2].map(() => connectConsole(server.url, session.accessToken)));
    if (!one || !two) throw new Error('consoles did not connect');
    const [first, second] = await Promise.all([
      one.emitWithAck('session:whoami', {}),
      two.emitWithAck('session:whoami', {}),
    ]);
    expect(first).toMatchObject({ ok: true, data: { user: { username: 'operator.permisan' } } });
    expect(second).toMatchObject({ ok: true, data: { user: { username: 'operator.permisan' } } });
  });
});

describe('a connected console', () => {
  it('keeps nothing of its upgrade request alive: neither Engine.IO socket nor upgrade response holds it', async () => {
    const upgrades: { req: unknown; res: { req?: unknown } }[] = [];
    server.app.io.engine.use((req: unknown, res: { req?: unknown }, next: () => void) => {
      upgrades.push({ req, res });
      next();
    });
    const requests: { request: unknown }[] = [];
    server.app.io.engine.on('connection', (rawSocket: { request: unknown }) => requests.push(rawSocket));
    await consoleFor(server.url, 'dispatch.cilacap');
    expect(upgrades).toHaveLength(1);
    expect(upgrades[0]?.res.req).toBeNull();
    expect(requests.map((r) => r.request)).toEqual([null]);
  });
});

describe('the incident room', () => {
  it('gets no message for an incident just opened (nobody can be in it), and every later event', async () => {
    const stream = `${server.prefix}socket.io`;
    const operator = await consoleFor(server.url, 'operator.permisan');
    const before = await server.app.redis.xlen(stream);
    const raised = await operator.socket.emitWithAck('alert:raise', uniqueAlert({ severity: 2 }));
    if (!raised.ok) throw new Error(`raise failed: ${raised.error.code}`);
    const { incident } = raised.data;
    // One stream entry: the alert to its parties, none for the empty room.
    await waitFor(async () => (await server.app.redis.xlen(stream)) === before + 1, {
      what: 'the alert:new entry',
    });

    const chief = await consoleFor(server.url, 'chief.permisan');
    const joined = await chief.socket.emitWithAck('incident:join', { incidentId: incident.id });
    if (!joined.ok) throw new Error(`join failed: ${joined.error.code}`);
    expect(joined.data.events.map((e) => e.type)).toEqual(['opened']);
    const events: IncidentEvent[] = [];
    chief.socket.on('incident:event', ({ event }) => events.push(event));

    const again = await operator.socket.emitWithAck('alert:raise', {
      ...uniqueAlert(),
      category: incident.category,
      location: incident.location,
    });
    expect(again).toMatchObject({ ok: true, data: { incident: { id: incident.id } } });
    await waitFor(() => events.length === 1, { what: 'the attached alert in the room' });
    expect(events.map((e) => [e.seq, e.type])).toEqual([[2, 'alert_attached']]);
  });
});
