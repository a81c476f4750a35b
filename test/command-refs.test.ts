import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { seal } from '../server/domain/incident-writer.ts';
import { createIncidentRepository } from '../server/storage/incidents.repository.ts';
import { redisKeys } from '../server/storage/keys.ts';
import { decideNote } from '../shared/incident-decisions.ts';
import { uniqueAlert } from './support/alerts.ts';
import { closeConsoles, consoleFor, get, joinedTimeline } from './support/consoles.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

// A console that lost the answer to a command (a timeout, a dropped connection) cannot tell whether it was
// applied; it sends it again with the same clientRef. Two processes on one Redis: the retry may land on the
// other one after a reconnect.
let a: TestServer;
let b: TestServer;
let redis: Redis;
// Short, so that a second delivery of a change, were there one, comes within the tests.
const GRACE_MS = 500;
beforeAll(async () => {
  const env = { REDELIVER_AFTER_MS: String(GRACE_MS) };
  a = await startTestServer({ env });
  b = await startTestServer({ prefix: a.prefix, seedDemo: false, env });
  redis = new Redis(inject('redisUrl'));
});
afterEach(closeConsoles);
afterAll(async () => {
  redis?.disconnect();
  await b.close();
  await a.close();
});

async function opened(username = 'operator.permisan', input = uniqueAlert()) {
  const { socket } = await consoleFor(a.url, username);
  const res = await socket.emitWithAck('alert:raise', input);
  if (!res.ok) throw new Error(JSON.stringify(res.error));
  return res.data.incident;
}

describe('a command sent again with its clientRef', () => {
  it('When a note is sent three times at once with one clientRef through two processes, Then the timeline holds it once, one answer made it and the others say it was made already, and the parties hear of it once', async () => {
    const incident = await opened();
    const police = await consoleFor(b.url, 'dispatch.nusakambangan');
    const updates: number[] = [];
    police.socket.on('incident:updated', (u) => u.incidentId === incident.id && updates.push(u.seq));
    const chiefA = await consoleFor(a.url, 'chief.permisan');
    const chiefB = await consoleFor(b.url, 'chief.permisan');
    const note = { incidentId: incident.id, text: `Blok A dikunci ${randomUUID()}`, clientRef: randomUUID() };

    const answers = await Promise.all(
      [chiefA, chiefB, chiefA].map((c) => c.socket.emitWithAck('incident:note', note)),
    );

    for (const answer of answers) expect(answer).toMatchObject({ ok: true });
    const made = answers.map((r) => (r.ok ? r.data.duplicate : undefined)).sort();
    expect(made).toEqual([false, true, true]);
    const notes = (await joinedTimeline(chiefA.socket, incident.id)).filter((e) => e.type === 'note_added');
    expect(notes).toHaveLength(1);
    for (const answer of answers) if (answer.ok) expect(answer.data.incident.seq).toBe(incident.seq + 1);
    await waitFor(() => updates.includes(incident.seq + 1), { what: 'the note reaching the Polsek' });
    // A later change is delivered, and nothing else came before it.
    await police.socket.emitWithAck('alert:ack', { incidentId: incident.id });
    await waitFor(() => updates.includes(incident.seq + 2), { what: 'the ack reaching the Polsek' });
    // Three graces: time for a second delivery of either change to arrive, were there one.
    await new Promise((r) => setTimeout(r, 3 * GRACE_MS));
    expect(updates).toEqual([incident.seq + 1, incident.seq + 2]);
  });

  it('When a commit carrying a command already made reaches the store, even one decided on the latest state, Then the store refuses it as a repeat and keeps the incident as it was', async () => {
    const incident = await opened();
    const { session } = await consoleFor(a.url, 'chief.permisan');
    const repo = createIncidentRepository(redis, redisKeys(a.prefix));
    const request = { userId: session.user.id, clientRef: randomUUID() };
    // Each decided on the incident as stored now, as a writer that has just read it would.
    const note = async (text: string) => {
      const stored = await repo.load(incident.id);
      if (!stored) throw new Error('incident not stored');
      const pending = decideNote(stored.incident, session.user, text, new Date().toISOString());
      const sealed = seal(pending, incident.id, stored);
      return repo.append({
        note: `${incident.id}/${sealed.event.seq}/${sealed.event.seq}`,
        expectedSeq: stored.incident.seq,
        incident: sealed.incident,
        event: sealed.event,
        listedOpen: true,
        request,
      });
    };

    expect(await note('Satu')).toMatchObject({ status: 'committed' });
    expect(await note('Dua')).toEqual({ status: 'duplicate', seq: incident.seq + 1 });

    expect((await repo.load(incident.id))?.incident.seq).toBe(incident.seq + 1);
  });

  it('When the login that raised silently sends its raise again after the Polsek acknowledged, Then the answer shows the incident as it was raised, not what the parties did since', async () => {
    const operator = await consoleFor(a.url, 'operator.permisan');
    const report = uniqueAlert({ severity: 1, silent: true });
    const first = await operator.socket.emitWithAck('alert:raise', report);
    if (!first.ok) throw new Error(JSON.stringify(first.error));
    const police = await consoleFor(b.url, 'dispatch.nusakambangan');
    const incidentId = first.data.incident.id;
    expect(await police.socket.emitWithAck('alert:ack', { incidentId })).toMatchObject({ ok: true });
    expect(
      await police.socket.emitWithAck('incident:note', { incidentId, text: 'Tim menuju lokasi' }),
    ).toMatchObject({ ok: true });

    const again = await operator.socket.emitWithAck('alert:raise', report);

    expect(again).toMatchObject({ ok: true, data: { duplicate: true } });
    if (!again.ok) return;
    expect(again.data.incident).toEqual(first.data.incident);
  });

  it('When a status change is sent again after another officer changed the incident, Then it is answered as made with the incident as it is now, not refused, and stored once', async () => {
    const incident = await opened();
    const police = await consoleFor(a.url, 'dispatch.nusakambangan');
    const chief = await consoleFor(b.url, 'chief.permisan');
    const move = {
      incidentId: incident.id,
      to: 'responding' as const,
      note: 'Dalmas berangkat',
      clientRef: randomUUID(),
    };
    expect(await police.socket.emitWithAck('incident:transition', move)).toMatchObject({
      ok: true,
      data: { duplicate: false, incident: { status: 'responding' } },
    });
    expect(
      await chief.socket.emitWithAck('incident:note', { incidentId: incident.id, text: 'Blok A dikunci' }),
    ).toMatchObject({ ok: true });

    const again = await police.socket.emitWithAck('incident:transition', move);

    expect(again).toMatchObject({
      ok: true,
      data: { duplicate: true, incident: { status: 'responding', seq: incident.seq + 2 } },
    });
    const types = (await joinedTimeline(chief.socket, incident.id)).map((e) => e.type);
    expect(types).toEqual(['opened', 'status_changed', 'note_added']);
  });

  it('When an acknowledgement and a hold are each sent twice with their clientRef, Then each is stored once and the repeat says so', async () => {
    const incident = await opened('operator.permisan', uniqueAlert({ severity: 4 }));
    const chief = await consoleFor(a.url, 'chief.permisan');
    const police = await consoleFor(b.url, 'dispatch.nusakambangan');
    const hold = {
      incidentId: incident.id,
      chain: 'corrections' as const,
      durationSeconds: 600,
      reason: 'Negosiasi berjalan',
      clientRef: randomUUID(),
    };
    const ack = { incidentId: incident.id, clientRef: randomUUID() };

    const holds = [await chief.socket.emitWithAck('escalation:hold', hold)];
    holds.push(await chief.socket.emitWithAck('escalation:hold', hold));
    const acks = [await police.socket.emitWithAck('alert:ack', ack)];
    acks.push(await police.socket.emitWithAck('alert:ack', ack));

    expect(holds.map((r) => r.ok && r.data.duplicate)).toEqual([false, true]);
    expect(acks.map((r) => r.ok && r.data.duplicate)).toEqual([false, true]);
    const types = (await joinedTimeline(chief.socket, incident.id)).map((e) => e.type);
    expect(types).toEqual(['opened', 'escalation_held', 'acknowledged']);
  });

  it('When two officers happen to give the same clientRef, Then each one’s note is stored: a clientRef is its sender’s', async () => {
    const incident = await opened();
    const chief = await consoleFor(a.url, 'chief.permisan');
    const police = await consoleFor(b.url, 'dispatch.nusakambangan');
    const clientRef = randomUUID();

    const answers = [
      await chief.socket.emitWithAck('incident:note', { incidentId: incident.id, text: 'Satu', clientRef }),
      await police.socket.emitWithAck('incident:note', { incidentId: incident.id, text: 'Dua', clientRef }),
    ];

    expect(answers.map((r) => r.ok && r.data.duplicate)).toEqual([false, false]);
    const notes = (await joinedTimeline(chief.socket, incident.id)).filter((e) => e.type === 'note_added');
    expect(notes).toHaveLength(2);
  });

  it('When a retry names an incident its sender may not see, Then it is answered not_found like any other command', async () => {
    const incident = await opened();
    const outsider = await consoleFor(a.url, 'operator.batu');
    const note = { incidentId: incident.id, text: 'Bukan urusan kami', clientRef: randomUUID() };
    for (let i = 0; i < 2; i++)
      expect(await outsider.socket.emitWithAck('incident:note', note)).toMatchObject({
        ok: false,
        error: { code: 'not_found' },
      });
    const token = (await consoleFor(a.url, 'chief.permisan')).session.accessToken;
    const events = (await get(a.url, `/api/incidents/${incident.id}/events`, token)).body.events;
    expect(events).toHaveLength(1);
  });

  it('refuses a clientRef that is not a UUID, naming the field, and stores nothing', async () => {
    const incident = await opened();
    const { socket } = await consoleFor(a.url, 'chief.permisan');
    const res = await socket.emitWithAck('incident:note', {
      incidentId: incident.id,
      text: 'Satu',
      clientRef: 'ulang-1',
    });
    expect(res).toMatchObject({ ok: false, error: { code: 'validation_failed' } });
    expect(!res.ok && res.error.issues?.map((i) => i.path)).toEqual(['clientRef']);
    expect(await joinedTimeline(socket, incident.id)).toHaveLength(1);
  });
});
