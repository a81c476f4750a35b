import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RaiseAlertInput } from '../shared/incident.ts';
import { uniqueAlert } from './support/alerts.ts';
import { type ConsoleClient, closeConsoles, consoleFor, get, login } from './support/consoles.ts';
import { addAccount, startTestServer, type TestServer } from './support/test-server.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ env: { RAISE_RATE_PER_MINUTE: '3', NOTE_RATE_PER_MINUTE: '2' } });
});
afterEach(closeConsoles);
afterAll(() => server.close());

/** The note budget of two, whole: two notes go in, the third is refused. */
async function expectNotesWithinTwo(socket: ConsoleClient, incidentId: string) {
  for (const text of ['Satu', 'Dua'])
    expect(await socket.emitWithAck('incident:note', { incidentId, text })).toMatchObject({ ok: true });
  expect(await socket.emitWithAck('incident:note', { incidentId, text: 'Tiga' })).toMatchObject({
    ok: false,
    error: { code: 'rate_limited' },
  });
}

/**
 * An account of its own (no other test's actions count against its budget), its console, and an incident it
 * raised at its Lapas.
 */
async function ownIncident(
  username: string,
  role: 'operator' | 'security_chief',
  unitId: string,
  alert: Partial<RaiseAlertInput> = {},
) {
  const { password } = await addAccount(server, { username, role, unitId });
  const { socket, session } = await consoleFor(server.url, username, password);
  const raised = await socket.emitWithAck('alert:raise', uniqueAlert({ facilityId: unitId, ...alert }));
  if (!raised.ok) throw new Error(JSON.stringify(raised.error));
  return { socket, session, incidentId: raised.data.incident.id };
}

describe('per-user rate limits on raises and notes', () => {
  it('answers the raise over the limit with rate_limited and a retry time, stores nothing for it, and leaves other users alone', async () => {
    const { socket } = await consoleFor(server.url, 'operator.batu');
    const first = uniqueAlert({ facilityId: 'lapas-batu' });
    expect(await socket.emitWithAck('alert:raise', first)).toMatchObject({ ok: true });
    for (let i = 0; i < 2; i++) {
      expect(
        await socket.emitWithAck('alert:raise', uniqueAlert({ facilityId: 'lapas-batu' })),
      ).toMatchObject({ ok: true });
    }
    const over = await socket.emitWithAck('alert:raise', uniqueAlert({ facilityId: 'lapas-batu' }));
    expect(over).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    expect(!over.ok && over.error.retryAfterMs).toBeGreaterThan(0);
    const token = (await login(server.url, 'operator.batu')).accessToken;
    expect((await get(server.url, '/api/incidents?limit=100', token)).body.incidents).toHaveLength(3);

    // A retry of an alert already stored is answered from its record, even over the limit.
    expect(await socket.emitWithAck('alert:raise', first)).toMatchObject({
      ok: true,
      data: { duplicate: true },
    });
    const other = await consoleFor(server.url, 'operator.permisan');
    expect(await other.socket.emitWithAck('alert:raise', uniqueAlert())).toMatchObject({ ok: true });
  });

  it('does not count a retry of a stored alert against the limit', async () => {
    const { password } = await addAccount(server, {
      username: 'guard.nirbaya',
      role: 'operator',
      unitId: 'lapas-nirbaya',
    });
    const { socket } = await consoleFor(server.url, 'guard.nirbaya', password);
    const first = uniqueAlert({ facilityId: 'lapas-nirbaya' });
    expect(await socket.emitWithAck('alert:raise', first)).toMatchObject({ ok: true });
    // A console that lost the answers retries its report twice: still two new alerts left of three.
    for (let i = 0; i < 2; i++)
      expect(await socket.emitWithAck('alert:raise', first)).toMatchObject({ data: { duplicate: true } });
    for (let i = 0; i < 2; i++) {
      expect(
        await socket.emitWithAck('alert:raise', uniqueAlert({ facilityId: 'lapas-nirbaya' })),
      ).toMatchObject({ ok: true, data: { duplicate: false } });
    }
    expect(
      await socket.emitWithAck('alert:raise', uniqueAlert({ facilityId: 'lapas-nirbaya' })),
    ).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
  });

  it('answers the note over the limit with rate_limited and records only the notes within it', async () => {
    const raiser = await consoleFor(server.url, 'chief.permisan');
    const raised = await raiser.socket.emitWithAck('alert:raise', uniqueAlert());
    if (!raised.ok) throw new Error(JSON.stringify(raised.error));
    const incidentId = raised.data.incident.id;
    const { socket, session } = await consoleFor(server.url, 'dispatch.nusakambangan');
    await expectNotesWithinTwo(socket, incidentId);
    const events = (await get(server.url, `/api/incidents/${incidentId}/events`, session.accessToken)).body
      .events;
    expect(events.filter((e: { type: string }) => e.type === 'note_added')).toHaveLength(2);
  });

  it('counts status changes against the note budget, so a note cannot ride on endless responding ⇄ contained flips, and never limits an acknowledgement', async () => {
    const { socket, session, incidentId } = await ownIncident('watch.nirbaya', 'operator', 'lapas-nirbaya');
    const note = 'Regu masih di blok';
    expect(
      await socket.emitWithAck('incident:transition', { incidentId, to: 'responding', note }),
    ).toMatchObject({
      ok: true,
    });
    expect(
      await socket.emitWithAck('incident:transition', { incidentId, to: 'contained', note }),
    ).toMatchObject({
      ok: true,
    });
    const over = await socket.emitWithAck('incident:transition', { incidentId, to: 'responding', note });
    expect(over).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    expect(!over.ok && over.error.retryAfterMs).toBeGreaterThan(0);
    expect(await socket.emitWithAck('incident:note', { incidentId, text: note })).toMatchObject({
      ok: false,
      error: { code: 'rate_limited' },
    });
    expect(await socket.emitWithAck('alert:ack', { incidentId })).toMatchObject({ ok: true });

    const events = (await get(server.url, `/api/incidents/${incidentId}/events`, session.accessToken)).body
      .events as { type: string }[];
    expect(events.map((e) => e.type)).toEqual(['opened', 'status_changed', 'status_changed', 'acknowledged']);
  });

  it('counts holds against the note budget: a hold carries its free-text reason onto the timeline and to every party, as a note does', async () => {
    const { socket, session, incidentId } = await ownIncident(
      'kplp.nirbaya',
      'security_chief',
      'lapas-nirbaya',
      { severity: 4 },
    );
    const hold = (reason: string) =>
      socket.emitWithAck('escalation:hold', {
        incidentId,
        chain: 'corrections',
        durationSeconds: 60,
        reason,
      });

    expect(await hold('Negosiasi berjalan')).toMatchObject({ ok: true });
    expect(await hold('Negosiasi diperpanjang')).toMatchObject({ ok: true });
    expect(await hold('Masih negosiasi')).toMatchObject({ ok: false, error: { code: 'rate_limited' } });

    const events = (await get(server.url, `/api/incidents/${incidentId}/events`, session.accessToken)).body
      .events as { type: string }[];
    expect(events.map((e) => e.type)).toEqual(['opened', 'escalation_held', 'escalation_held']);
  });

  it('gives the point back for a note or status change that is refused, so a stale screen repeating one does not use up the budget', async () => {
    const { socket, incidentId } = await ownIncident('piket.nirbaya', 'operator', 'lapas-nirbaya');
    for (let i = 0; i < 3; i++) {
      expect(
        await socket.emitWithAck('incident:note', { incidentId: randomUUID(), text: 'Salah layar' }),
      ).toMatchObject({ ok: false, error: { code: 'not_found' } });
      expect(await socket.emitWithAck('incident:transition', { incidentId, to: 'closed' })).toMatchObject({
        ok: false,
        error: { code: 'invalid_transition' },
      });
    }

    await expectNotesWithinTwo(socket, incidentId);
  });

  it('does not count a note sent again with its clientRef (a retry after a lost answer) against the budget', async () => {
    const { socket, incidentId } = await ownIncident('piket.pasir-putih', 'operator', 'lapas-pasir-putih');
    const note = { incidentId, text: 'Blok A dikunci', clientRef: randomUUID() };
    expect(await socket.emitWithAck('incident:note', note)).toMatchObject({
      ok: true,
      data: { duplicate: false },
    });
    for (let i = 0; i < 3; i++)
      expect(await socket.emitWithAck('incident:note', note)).toMatchObject({
        ok: true,
        data: { duplicate: true },
      });

    expect(await socket.emitWithAck('incident:note', { incidentId, text: 'Dua' })).toMatchObject({
      ok: true,
    });
    expect(await socket.emitWithAck('incident:note', { incidentId, text: 'Tiga' })).toMatchObject({
      ok: false,
      error: { code: 'rate_limited' },
    });
    // With the budget spent, a repeat is still told its note was made, not that it was refused.
    expect(await socket.emitWithAck('incident:note', note)).toMatchObject({
      ok: true,
      data: { duplicate: true },
    });
  });
});
