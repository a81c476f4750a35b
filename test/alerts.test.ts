import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { uniqueAlert } from './support/alerts.ts';
import { type ConsoleClient, closeConsoles, consoleFor, get } from './support/consoles.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterEach(closeConsoles);
afterAll(() => server.close());

const everyone = [
  'operator.permisan',
  'chief.permisan',
  'operator.batu',
  'dispatch.nusakambangan',
  'dispatch.cilacap',
  'commander.cilacap',
  'supervisor.kanwil',
] as const;

/** Connects every demo console and records the `alert:new` messages each receives. */
async function connectAll() {
  const received = new Map<string, string[]>();
  const consoles = new Map<string, ConsoleClient>();
  for (const username of everyone) {
    const { socket } = await consoleFor(server.url, username);
    received.set(username, []);
    socket.on('alert:new', ({ incidentId }) => received.get(username)?.push(incidentId));
    consoles.set(username, socket);
  }
  return { consoles, received };
}

describe('routing an alert at raise', () => {
  it('delivers a critical Permisan riot to Permisan, Polsek Nusakambangan, Kanwil and Polresta — never to Batu or Polsek Cilacap Tengah', async () => {
    const { consoles, received } = await connectAll();
    const res = await consoles
      .get('operator.permisan')
      ?.emitWithAck('alert:raise', uniqueAlert({ severity: 4 }));
    if (!res?.ok) throw new Error(JSON.stringify(res));
    const id = res.data.incident.id;
    const entitled = [
      'operator.permisan',
      'chief.permisan',
      'dispatch.nusakambangan',
      'supervisor.kanwil',
      'commander.cilacap',
    ];
    await waitFor(() => entitled.every((u) => received.get(u)?.includes(id)), {
      what: 'delivery to every entitled console',
    });
    // Anything misrouted would have arrived through the same adapter in the same time; give it a margin.
    await new Promise((r) => setTimeout(r, 200));
    expect(received.get('operator.batu')).toEqual([]);
    expect(received.get('dispatch.cilacap')).toEqual([]);
  });

  it('delivers a medium Permisan fight only to the Permisan control room and Polsek Nusakambangan', async () => {
    const { consoles, received } = await connectAll();
    const res = await consoles
      .get('chief.permisan')
      ?.emitWithAck('alert:raise', uniqueAlert({ severity: 2 }));
    if (!res?.ok) throw new Error(JSON.stringify(res));
    const id = res.data.incident.id;
    await waitFor(() =>
      ['operator.permisan', 'chief.permisan', 'dispatch.nusakambangan'].every((u) =>
        received.get(u)?.includes(id),
      ),
    );
    await new Promise((r) => setTimeout(r, 200));
    for (const outsider of ['operator.batu', 'dispatch.cilacap', 'commander.cilacap', 'supervisor.kanwil']) {
      expect(received.get(outsider), outsider).toEqual([]);
    }
  });

  it('lets Batu neither join a Permisan incident nor read it over REST', async () => {
    const permisan = await consoleFor(server.url, 'operator.permisan');
    const batu = await consoleFor(server.url, 'operator.batu');
    const res = await permisan.socket.emitWithAck('alert:raise', uniqueAlert({ severity: 4 }));
    if (!res.ok) throw new Error(JSON.stringify(res));
    const id = res.data.incident.id;
    expect(await batu.socket.emitWithAck('incident:join', { incidentId: id })).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    expect((await get(server.url, `/api/incidents/${id}`, batu.session.accessToken)).status).toBe(404);
    expect((await get(server.url, `/api/incidents/${id}/events`, batu.session.accessToken)).status).toBe(404);
    expect((await get(server.url, `/api/incidents/${id}`, permisan.session.accessToken)).status).toBe(200);
  });
});
