import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IncidentEvent } from '../shared/incident.ts';
import { uniqueAlert } from './support/alerts.ts';
import { closeConsoles, consoleFor } from './support/consoles.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterEach(closeConsoles);
afterAll(() => server.close());

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
