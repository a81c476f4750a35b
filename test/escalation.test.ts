import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { z } from 'zod';
import { jobIds } from '../server/jobs/escalation-queue.ts';
import type { Chain, EscalationFired } from '../shared/escalation.ts';
import type { Incident, IncidentEvent, IncidentUpdated } from '../shared/incident.ts';
import { replay } from '../shared/incident-reducer.ts';
import type { Severity } from '../shared/severity.ts';
import { uniqueAlert } from './support/alerts.ts';
import { type ConsoleClient, closeConsoles, consoleFor, get, login } from './support/consoles.ts';
import { escalationQueues } from './support/escalation-queues.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';
import { expectValidChain } from './support/timeline.ts';
import { waitFor } from './support/wait-for.ts';

// Critical climbs every 0.3 s through four levels; high climbs once, after 2 s; medium reaches Polresta
// 1.5 s after the raise; low never climbs. One policy per severity, so uniqueAlert() keeps incidents apart.
const POLICIES = 'test/fixtures/escalation-by-severity.json';
const CRITICAL_WAIT_MS = 300;
const HIGH_WAIT_MS = 2000;
// The auditor runs this often here (every minute in production), so a lost timer is found within a test.
const AUDIT_INTERVAL_MS = 300;

type Escalated = Extract<IncidentEvent, { type: 'escalated' }>;
type Fired = z.output<typeof EscalationFired>;
type Updated = z.output<typeof IncidentUpdated>;

let server: TestServer;
let redis: Redis;
let queues: ReturnType<typeof escalationQueues>;
let adminToken: string;

beforeAll(async () => {
  server = await startTestServer({
    env: { ESCALATION_FILE: POLICIES, ESCALATION_AUDIT_INTERVAL_MS: String(AUDIT_INTERVAL_MS) },
  });
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  queues = escalationQueues(redis, server);
  adminToken = (await login(server.url, 'admin')).accessToken;
});
afterEach(closeConsoles);
afterAll(async () => {
  await queues?.close();
  await redis?.quit();
  await server?.close();
});

async function raise(severity: Severity): Promise<Incident> {
  const { socket } = await consoleFor(server.url, 'operator.permisan');
  const res = await socket.emitWithAck('alert:raise', uniqueAlert({ severity }));
  if (!res.ok) throw new Error(JSON.stringify(res.error));
  return res.data.incident;
}

async function timeline(incidentId: string): Promise<IncidentEvent[]> {
  const res = await get(server.url, `/api/incidents/${incidentId}/events?limit=1000`, adminToken);
  expect(res.status).toBe(200);
  return res.body.events;
}

async function current(incidentId: string): Promise<Incident> {
  const res = await get(server.url, `/api/incidents/${incidentId}`, adminToken);
  expect(res.status).toBe(200);
  return res.body.incident;
}

const escalations = (events: IncidentEvent[], chain: Chain) =>
  events.filter((e): e is Escalated => e.type === 'escalated' && e.data.chain === chain);

const levels = (events: IncidentEvent[], chain: Chain) => escalations(events, chain).map((e) => e.data.level);

/** Polls the timeline until `done` holds for it. */
function timelineWhen(incidentId: string, done: (events: IncidentEvent[]) => boolean, what: string) {
  return waitFor(
    async () => {
      const events = await timeline(incidentId);
      return done(events) && events;
    },
    { what, intervalMs: 50 },
  );
}

const reached = (chain: Chain, level: number) => (events: IncidentEvent[]) =>
  levels(events, chain).includes(level);

const plusMs = (iso: string, ms: number) => new Date(Date.parse(iso) + ms).toISOString();

/** Collects what one console receives. */
function listen(client: ConsoleClient) {
  const heard = { fired: [] as Fired[], updated: [] as Updated[], alerts: [] as string[] };
  client.on('escalation:fired', (m) => heard.fired.push(m));
  client.on('incident:updated', (m) => heard.updated.push(m));
  client.on('alert:new', (m) => heard.alerts.push(m.incidentId));
  return heard;
}

function jobState(id: string) {
  return queues.getJobState(id);
}

/** The job once it reached `state`, read after it did (a Job read earlier keeps its old fields). */
async function jobOnce(id: string, state: 'completed' | 'failed') {
  await waitFor(async () => (await queues.getJobState(id)) === state, { what: `job ${id} ${state}` });
  const job = await queues.getJob(id);
  if (!job) throw new Error(`job ${id} vanished`);
  return job;
}

describe('climbing the chains of command', () => {
  it('When nobody acknowledges a critical riot, Then both chains climb level by level, in order, paging each level and recording when it was due and when it fired', async () => {
    const operator = await consoleFor(server.url, 'operator.permisan');
    const chief = await consoleFor(server.url, 'chief.permisan');
    const dispatcher = await consoleFor(server.url, 'dispatch.nusakambangan');
    const commander = await consoleFor(server.url, 'commander.cilacap');
    const kanwil = await consoleFor(server.url, 'supervisor.kanwil');
    const heard = {
      operator: listen(operator.socket),
      chief: listen(chief.socket),
      dispatcher: listen(dispatcher.socket),
      commander: listen(commander.socket),
      kanwil: listen(kanwil.socket),
    };
    const raised = await operator.socket.emitWithAck('alert:raise', uniqueAlert({ severity: 4 }));
    if (!raised.ok) throw new Error(JSON.stringify(raised.error));
    const incident = raised.data.incident;
    // The operator watches the incident's room, which hears every level.
    expect(await operator.socket.emitWithAck('incident:join', { incidentId: incident.id })).toMatchObject({
      ok: true,
    });

    const events = await timelineWhen(
      incident.id,
      (e) => reached('corrections', 3)(e) && reached('police', 3)(e),
      'both chains at their top level',
    );
    expect(levels(events, 'corrections')).toEqual([1, 2, 3]);
    expect(levels(events, 'police')).toEqual([1, 2, 3]);
    // Nothing else happened: no repair, no double fire.
    expect(events.filter((e) => e.type !== 'escalated').map((e) => e.type)).toEqual(['opened']);

    for (const chain of ['corrections', 'police'] as const) {
      let dueAt = plusMs(incident.openedAt, CRITICAL_WAIT_MS);
      for (const e of escalations(events, chain)) {
        // Each level falls due one wait after the previous one fired, and records how late it was.
        expect(e.data.dueAt).toBe(dueAt);
        expect(e.data.lateMs).toBe(Date.parse(e.data.firedAt) - Date.parse(e.data.dueAt));
        expect(e.data.lateMs).toBeGreaterThanOrEqual(0);
        expect(e.data.lateMs).toBeLessThan(1000);
        expect(e.actor.userId).toBe('system');
        dueAt = plusMs(e.data.firedAt, CRITICAL_WAIT_MS);
      }
    }

    const byLevel = (chain: Chain) => escalations(events, chain).map((e) => e.data.targets.rooms);
    expect(byLevel('corrections')).toEqual([
      ['role:lapas-permisan:security_chief'],
      ['role:lapas-permisan:supervisor', 'command:korwil-nusakambangan'],
      ['command:kanwil-ditjenpas-jateng'],
    ]);
    expect(byLevel('police')).toEqual([
      ['role:polsek-nusakambangan:commander', 'precinct:polsek-cilacap-selatan'],
      ['command:polresta-cilacap'],
      ['command:polda-jateng'],
    ]);
    // Korwil, Kanwil and Polresta hear of a critical raise at once; the backup Polsek and Polda by climbing.
    expect(escalations(events, 'police').map((e) => e.data.addedUnits)).toEqual([
      ['polsek-cilacap-selatan'],
      [],
      ['polda-jateng'],
    ]);
    expect(escalations(events, 'corrections').every((e) => e.data.addedUnits.length === 0)).toBe(true);

    const lastSeq = events.at(-1)?.seq ?? 0;
    // Each console's incident:updated for the last change comes after any escalation:fired sent to it.
    for (const [name, h] of Object.entries(heard)) {
      await waitFor(() => h.updated.some((u) => u.incidentId === incident.id && u.seq === lastSeq), {
        what: `${name} to hear of the last change`,
      });
    }
    const firedTo = (h: ReturnType<typeof listen>) =>
      h.fired.filter((f) => f.incidentId === incident.id).map((f) => `${f.chain}:${f.level}`);
    expect(firedTo(heard.chief)).toEqual(['corrections:1']);
    expect(firedTo(heard.commander)).toEqual(['police:2']);
    expect(firedTo(heard.kanwil)).toEqual(['corrections:3']);
    // The Polsek's dispatch room was paged at raise; the higher levels page others.
    expect(firedTo(heard.dispatcher)).toEqual([]);
    const inRoom = firedTo(heard.operator);
    expect(inRoom.filter((f) => f.startsWith('corrections'))).toEqual([
      'corrections:1',
      'corrections:2',
      'corrections:3',
    ]);
    expect(inRoom.filter((f) => f.startsWith('police'))).toEqual(['police:1', 'police:2', 'police:3']);
    const firedMessage = heard.commander.fired.find((f) => f.incidentId === incident.id);
    const policeTwo = escalations(events, 'police')[1];
    expect(firedMessage).toMatchObject({
      chain: 'police',
      level: 2,
      label: 'Polresta Cilacap',
      dueAt: policeTwo?.data.dueAt,
      firedAt: policeTwo?.data.firedAt,
      seq: policeTwo?.seq,
    });

    // The chains waited alike, so each level of both fired at one moment, in one commit (consecutive seqs),
    // and the parties got one update for the pair, the incident after both.
    const pairs = escalations(events, 'corrections').map((c, i) => [c, escalations(events, 'police')[i]]);
    for (const [c, p] of pairs) {
      expect(p?.data.firedAt).toBe(c?.data.firedAt);
      expect(Math.abs((p?.seq ?? 0) - (c?.seq ?? 0))).toBe(1);
    }
    const updates = heard.operator.updated.filter((u) => u.incidentId === incident.id);
    expect(updates.map((u) => u.seq)).toEqual(pairs.map(([c, p]) => Math.max(c?.seq ?? 0, p?.seq ?? 0)));
    // Every party saw the level of each chain move with each escalation.
    for (const e of [...escalations(events, 'corrections'), ...escalations(events, 'police')]) {
      const update = updates.find((u) => u.seq >= e.seq);
      expect(update?.incident.escalation.chains[e.data.chain].level).toBe(e.data.level);
    }
    const final = await current(incident.id);
    for (const chain of ['corrections', 'police'] as const) {
      expect(final.escalation.chains[chain]).toMatchObject({ level: 3, status: 'exhausted', dueAt: null });
    }
    // Events committed together are sealed in turn, and the incident stored is the fold of all of them.
    expectValidChain(events);
    expect(replay(events)).toEqual(final);
    expect(final.parties).toEqual(expect.arrayContaining(['polsek-cilacap-selatan', 'polda-jateng']));
  });
});

describe('acknowledgement stops only that agency’s chain', () => {
  it.each([
    ['dispatch.nusakambangan', 'police', 'corrections'],
    ['chief.permisan', 'corrections', 'police'],
  ] as const)(
    'When %s acknowledges, Then the %s chain stops while the %s chain climbs to the top',
    async (by, acked, other) => {
      const incident = await raise(4);
      expect(await jobState(jobIds.timer(incident.id))).toBe('delayed');

      const { socket } = await consoleFor(server.url, by);
      const res = await socket.emitWithAck('alert:ack', { incidentId: incident.id });
      if (!res.ok) throw new Error(JSON.stringify(res.error));
      const stoppedAt = res.data.incident.escalation.chains[acked];
      expect(stoppedAt).toMatchObject({ status: 'acknowledged', dueAt: null });

      // The other chain takes three waits to reach its top: the acked one would have climbed meanwhile.
      const events = await timelineWhen(incident.id, reached(other, 3), `the ${other} chain at its top`);
      expect(levels(events, other)).toEqual([1, 2, 3]);
      const ackSeq = events.find((e) => e.type === 'acknowledged')?.seq ?? 0;
      expect(escalations(events, acked).filter((e) => e.seq > ackSeq)).toEqual([]);
      const final = await current(incident.id);
      expect(final.escalation.chains[acked]).toMatchObject({
        status: 'acknowledged',
        level: stoppedAt.level,
      });
      expect(final.escalation.chains[other]).toMatchObject({ status: 'exhausted', level: 3 });
    },
  );
});

describe('closing the case stops both chains', () => {
  async function command(
    by: string,
    incidentId: string,
    step: 'ack' | 'false_alarm' | 'cancelled' | 'resolved' | 'closed',
  ) {
    const { socket } = await consoleFor(server.url, by);
    const res =
      step === 'ack'
        ? await socket.emitWithAck('alert:ack', { incidentId })
        : await socket.emitWithAck('incident:transition', { incidentId, to: step });
    if (!res.ok) throw new Error(`${by} ${step}: ${JSON.stringify(res.error)}`);
    return res.data.incident;
  }

  /** Both chains halted with no timer left, and nothing recorded after this state while three waits pass. */
  async function expectBothStopped(incident: Incident) {
    for (const chain of ['corrections', 'police'] as const) {
      const c = incident.escalation.chains[chain];
      expect(['stopped', 'acknowledged']).toContain(c.status);
      expect(c.dueAt).toBeNull();
    }
    // The incident's timer goes: at once, or when a run already under way when the change came ends.
    await waitFor(async () => (await queues.getJob(jobIds.timer(incident.id))) === undefined, {
      what: 'the timer to go',
    });
    // Proving that nothing happens needs a wait: three of the policy's waits, in which a live chain climbs.
    await new Promise((r) => setTimeout(r, 3 * CRITICAL_WAIT_MS + 100));
    const events = await timeline(incident.id);
    expect(events.at(-1)?.seq).toBe(incident.seq);
  }

  it.each([
    ['operator.permisan', 'false_alarm'],
    ['chief.permisan', 'cancelled'],
  ] as const)('When %s calls an unacknowledged alarm %s, Then neither chain climbs again', async (by, to) => {
    const incident = await raise(4);
    await expectBothStopped(await command(by, incident.id, to));
  });

  it('When the police acknowledge and then resolve, Then the corrections chain stops too, and closing keeps both stopped', async () => {
    const incident = await raise(4);
    await command('dispatch.nusakambangan', incident.id, 'ack');
    const resolved = await command('dispatch.nusakambangan', incident.id, 'resolved');
    expect(resolved.escalation.chains.corrections.status).toBe('stopped');
    expect(resolved.escalation.chains.police.status).toBe('acknowledged');
    await expectBothStopped(resolved);
    await expectBothStopped(await command('chief.permisan', incident.id, 'closed'));
  });

  it('When a resolved case is reopened, Then the chain whose agency never acknowledged climbs again from where it stopped', async () => {
    const incident = await raise(4);
    await command('dispatch.nusakambangan', incident.id, 'ack');
    const resolved = await command('dispatch.nusakambangan', incident.id, 'resolved');
    const stoppedLevel = resolved.escalation.chains.corrections.level;
    const reopened = await (async () => {
      const { socket } = await consoleFor(server.url, 'dispatch.nusakambangan');
      const res = await socket.emitWithAck('incident:transition', {
        incidentId: incident.id,
        to: 'responding',
      });
      if (!res.ok) throw new Error(JSON.stringify(res.error));
      return res.data.incident;
    })();
    expect(reopened.escalation.chains.corrections).toMatchObject({ status: 'running', level: stoppedLevel });
    expect(reopened.escalation.chains.police.status).toBe('acknowledged');
    const events = await timelineWhen(
      incident.id,
      reached('corrections', stoppedLevel + 1),
      'the climb to resume',
    );
    const next = escalations(events, 'corrections').find((e) => e.seq > reopened.seq);
    expect(next?.data).toMatchObject({
      level: stoppedLevel + 1,
      dueAt: plusMs(reopened.updatedAt, CRITICAL_WAIT_MS),
    });
    expect(escalations(events, 'police').filter((e) => e.seq > reopened.seq)).toEqual([]);
  });
});

describe('holding a chain', () => {
  it('refuses a hold from a role that does not own the chain, or from a non-party, and records nothing', async () => {
    const incident = await raise(4);
    const cases = [
      { by: 'dispatch.nusakambangan', chain: 'police', code: 'forbidden' },
      { by: 'operator.permisan', chain: 'corrections', code: 'forbidden' },
      { by: 'chief.permisan', chain: 'police', code: 'forbidden' },
      { by: 'commander.cilacap', chain: 'corrections', code: 'forbidden' },
      { by: 'supervisor.kanwil', chain: 'police', code: 'forbidden' },
      { by: 'operator.batu', chain: 'corrections', code: 'not_found' },
    ] as const;
    for (const { by, chain, code } of cases) {
      const { socket } = await consoleFor(server.url, by);
      const res = await socket.emitWithAck('escalation:hold', {
        incidentId: incident.id,
        chain,
        durationSeconds: 60,
        reason: 'Sudah ditangani di lapangan',
      });
      expect(res, `${by} holding ${chain}`).toMatchObject({ ok: false, error: { code } });
    }
    // A chain its agency acknowledged has nothing left to hold.
    const chief = await consoleFor(server.url, 'chief.permisan');
    expect(await chief.socket.emitWithAck('alert:ack', { incidentId: incident.id })).toMatchObject({
      ok: true,
    });
    expect(
      await chief.socket.emitWithAck('escalation:hold', {
        incidentId: incident.id,
        chain: 'corrections',
        durationSeconds: 60,
        reason: 'Sudah ditangani di lapangan',
      }),
    ).toMatchObject({ ok: false, error: { code: 'invalid_transition' } });
    const events = await timeline(incident.id);
    expect(events.filter((e) => e.type === 'escalation_held')).toEqual([]);
  });

  it('rejects malformed holds with validation_failed naming the field', async () => {
    const incident = await raise(3);
    const { socket } = await consoleFor(server.url, 'chief.permisan');
    const good = { incidentId: incident.id, chain: 'corrections', durationSeconds: 60, reason: 'Apel' };
    const bad: [Record<string, unknown>, string][] = [
      [{ ...good, durationSeconds: 0 }, 'durationSeconds'],
      [{ ...good, durationSeconds: 4 * 3600 + 1 }, 'durationSeconds'],
      [{ ...good, durationSeconds: 1.5 }, 'durationSeconds'],
      [{ ...good, reason: '   ' }, 'reason'],
      [{ ...good, chain: 'army' }, 'chain'],
      [{ ...good, incidentId: 'not-an-id' }, 'incidentId'],
      [{ ...good, until: '2030-01-01T00:00:00Z' }, '(root)'],
    ];
    for (const [payload, path] of bad) {
      // The typed client would refuse these; they are what a broken or hostile console sends.
      const res = await (socket.emitWithAck as (e: string, p: unknown) => Promise<unknown>)(
        'escalation:hold',
        payload,
      );
      expect(res, JSON.stringify(payload)).toMatchObject({
        ok: false,
        error: {
          code: 'validation_failed',
          issues: expect.arrayContaining([expect.objectContaining({ path })]),
        },
      });
    }
    const { reason: _missing, ...withoutReason } = good;
    expect(
      await (socket.emitWithAck as (e: string, p: unknown) => Promise<unknown>)(
        'escalation:hold',
        withoutReason,
      ),
    ).toMatchObject({ ok: false, error: { code: 'validation_failed' } });
    const events = await timeline(incident.id);
    expect(events.map((e) => e.type)).toEqual(['opened']);
  });

  it.each([
    ['chief.permisan', 'corrections', 'police'],
    ['supervisor.kanwil', 'corrections', 'police'],
    ['commander.cilacap', 'police', 'corrections'],
  ] as const)(
    'When %s holds the %s chain for a second, Then it stays at its level, resumes by itself, and climbs again while the %s chain never paused',
    async (by, chain, other) => {
      const incident = await raise(4);
      const { socket } = await consoleFor(server.url, by);
      const res = await socket.emitWithAck('escalation:hold', {
        incidentId: incident.id,
        chain,
        durationSeconds: 1,
        reason: 'Tim sudah di lokasi, menunggu laporan',
      });
      if (!res.ok) throw new Error(JSON.stringify(res.error));
      const held = res.data.incident.escalation.chains[chain];
      expect(held).toMatchObject({ status: 'held', dueAt: null });
      // The incident's timer wakes no later than the end of the hold.
      const timer = await queues.getJob(jobIds.timer(incident.id));
      expect(Date.parse(timer?.data.at)).toBeLessThanOrEqual(Date.parse(held.heldUntil ?? ''));

      const events = await timelineWhen(
        incident.id,
        (e) => levels(e, chain).includes(held.level + 1) && reached(other, 3)(e),
        'the held chain to climb again',
      );
      const heldEvent = events.find((e) => e.type === 'escalation_held');
      const resumed = events.find((e) => e.type === 'escalation_resumed');
      expect(heldEvent).toMatchObject({
        actor: { username: by },
        data: { chain, reason: 'Tim sudah di lokasi, menunggu laporan', until: held.heldUntil },
      });
      expect(resumed).toMatchObject({ data: { chain }, actor: { userId: 'system' } });
      if (!heldEvent || !resumed) throw new Error('hold or resume missing');
      expect(Date.parse(resumed.at)).toBeGreaterThanOrEqual(Date.parse(held.heldUntil ?? ''));
      // The hold lasted about three waits, and the chain did not move during it.
      expect(escalations(events, chain).filter((e) => e.seq > heldEvent.seq && e.seq < resumed.seq)).toEqual(
        [],
      );
      const after = escalations(events, chain).find((e) => e.seq > resumed.seq);
      expect(after?.data).toMatchObject({
        level: held.level + 1,
        dueAt: plusMs(resumed.at, CRITICAL_WAIT_MS),
      });
      expect(levels(events, other)).toEqual([1, 2, 3]);
    },
  );
});

describe('a rising severity brings its own policy', () => {
  it('When a medium fight is joined by a critical alert for the same block, Then it escalates on the critical timings from then on', async () => {
    const { socket } = await consoleFor(server.url, 'operator.permisan');
    const first = uniqueAlert({ severity: 2 });
    const opened = await socket.emitWithAck('alert:raise', first);
    if (!opened.ok) throw new Error(JSON.stringify(opened.error));
    expect(opened.data.incident.escalation.policyId).toBe('medium-police-reaches-polresta');

    const worse = await socket.emitWithAck('alert:raise', { ...first, clientRef: randomUUID(), severity: 4 });
    if (!worse.ok) throw new Error(JSON.stringify(worse.error));
    expect(worse.data.incident.id).toBe(opened.data.incident.id);
    expect(worse.data.incident.escalation.policyId).toBe('critical-fast');
    expect(worse.data.incident.escalation.chains.corrections.levelCount).toBe(4);

    // Medium would not climb for ten minutes; critical climbs every 0.3 s to the top of both chains.
    const events = await timelineWhen(
      opened.data.incident.id,
      (e) => reached('corrections', 3)(e) && reached('police', 3)(e),
      'both chains at the critical policy’s top',
    );
    expect(levels(events, 'corrections')).toEqual([1, 2, 3]);
    expect(levels(events, 'police')).toEqual([1, 2, 3]);
    const attached = events.find((e) => e.type === 'alert_attached');
    expect(attached?.type === 'alert_attached' && attached.data.escalation?.policyId).toBe('critical-fast');
  });
});

describe('escalation widens who is a party', () => {
  it('When a medium alarm climbs to Polresta, Then the Polresta commander, unable to see it before, gets it as a new alert and can join it', async () => {
    const commander = await consoleFor(server.url, 'commander.cilacap');
    const heard = listen(commander.socket);
    const token = commander.session.accessToken;
    const incident = await raise(2);
    expect(incident.parties).toEqual(['lapas-permisan', 'polsek-nusakambangan']);

    const expectHidden = async () => {
      expect(await commander.socket.emitWithAck('incident:join', { incidentId: incident.id })).toMatchObject({
        ok: false,
        error: { code: 'not_found' },
      });
      expect((await get(server.url, `/api/incidents/${incident.id}`, token)).status).toBe(404);
      expect((await get(server.url, `/api/incidents/${incident.id}/events`, token)).status).toBe(404);
      const list = await get(server.url, '/api/incidents?limit=100', token);
      expect(list.body.incidents.map((i: Incident) => i.id)).not.toContain(incident.id);
    };
    await expectHidden();
    // Level 1 pages the Kapolsek and the backup Polsek, still not Polresta.
    const atOne = await timelineWhen(incident.id, reached('police', 1), 'police level 1');
    expect(levels(atOne, 'police')).toEqual([1]);
    await expectHidden();
    expect(heard.alerts).not.toContain(incident.id);

    await waitFor(() => heard.alerts.includes(incident.id), { what: 'alert:new at Polresta' });
    expect(heard.alerts.filter((id) => id === incident.id)).toHaveLength(1);
    const joined = await commander.socket.emitWithAck('incident:join', { incidentId: incident.id });
    if (!joined.ok) throw new Error(JSON.stringify(joined.error));
    expect(joined.data.incident.parties).toContain('polresta-cilacap');
    expect(joined.data.incident.escalation.chains.police.level).toBe(2);
    expect(joined.data.events.map((e) => e.type)).toEqual(['opened', 'escalated', 'escalated']);
    expect((await get(server.url, `/api/incidents/${incident.id}`, token)).status).toBe(200);
    const list = await get(server.url, '/api/incidents?limit=100', token);
    expect(list.body.incidents.map((i: Incident) => i.id)).toContain(incident.id);
    expect(heard.fired.filter((f) => f.incidentId === incident.id).map((f) => f.level)).toEqual([2]);
  });
});

describe('exactly once', () => {
  it('When the incident’s timer runs five times at once as the level falls due and a copy is queued under another id, Then the level fires once', async () => {
    // High climbs once, after 2 s; the runs below start when it falls due, as the scheduled timer does.
    const incident = await raise(3);
    const dueAt = incident.escalation.chains.police.dueAt;
    if (!dueAt) throw new Error('police chain not running');
    const timer = { incidentId: incident.id, at: dueAt };
    const copyId = `copy-${randomUUID()}`;
    await queues
      .of(incident.id)
      .add('timer', timer, { jobId: copyId, delay: Date.parse(dueAt) - Date.now(), removeOnComplete: false });
    await new Promise((r) => setTimeout(r, Date.parse(dueAt) - Date.now()));
    const runs = await Promise.all(
      Array.from({ length: 5 }, () => server.app.services.escalation.wake(timer)),
    );
    await jobOnce(copyId, 'completed');
    const events = await timelineWhen(
      incident.id,
      (e) => reached('police', 1)(e) && reached('corrections', 1)(e),
      'both chains at level 1',
    );
    // However many runs woke for it, each chain's level 1 is on the timeline once.
    expect(levels(events, 'police')).toEqual([1]);
    expect(levels(events, 'corrections')).toEqual([1]);
    expect(runs.flatMap((r) => r.firedLateMs).length).toBeLessThanOrEqual(2);
    await (await queues.getJob(copyId))?.remove();
  });

  it('When a job carries data that fails its schema, Then it fails at once without retries and changes nothing', async () => {
    const incident = await raise(1);
    const poisoned = await queues
      .of(incident.id)
      .add(
        'timer',
        { incidentId: incident.id, at: 'yesterday' },
        { attempts: 5, backoff: { type: 'fixed', delay: 50 }, removeOnFail: false },
      );
    const unknown = await queues
      .of(incident.id)
      .add(
        'explode',
        { incidentId: incident.id },
        { attempts: 5, backoff: { type: 'fixed', delay: 50 }, removeOnFail: false },
      );
    for (const [job, reason] of [
      [poisoned, /invalid timer job data/],
      [unknown, /unknown job explode/],
    ] as const) {
      const failed = await jobOnce(job.id ?? '', 'failed');
      expect(failed.attemptsMade).toBe(1);
      expect(failed.failedReason).toMatch(reason);
      await failed.remove();
    }
    expect((await timeline(incident.id)).map((e) => e.type)).toEqual(['opened']);
    expect((await current(incident.id)).seq).toBe(incident.seq);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metricValue(metrics, 'sinergi_jobs_failed_total{name="timer"}')).toBeGreaterThanOrEqual(1);
  });
});

describe('the auditor', () => {
  it('When a pending timer is removed by hand, Then the auditor puts it back, records the repair, and the level fires on time', async () => {
    const incident = await raise(3);
    const id = jobIds.timer(incident.id);
    const job = await queues.getJob(id);
    if (!job) throw new Error('no pending timer after the raise');
    await job.remove();
    expect(await queues.getJob(id)).toBeUndefined();

    const repairs = (events: IncidentEvent[]) => events.filter((e) => e.type === 'escalation_repaired');
    const repaired = await timelineWhen(
      incident.id,
      (e) => repairs(e).length === 2,
      'the auditor to repair the timer of both chains',
    );
    // Both chains waited on the timer removed: each repair is recorded, with the climb it was set for.
    expect(repairs(repaired).map((e) => e.data)).toEqual(
      expect.arrayContaining(
        (['corrections', 'police'] as const).map((chain) => ({
          chain,
          timer: 'escalate',
          level: 1,
          dueAt: incident.escalation.chains[chain].dueAt,
        })),
      ),
    );
    expect(repairs(repaired).every((e) => e.actor.userId === 'system')).toBe(true);
    expect(await jobState(id)).toBe('delayed');
    for (const repair of repairs(repaired))
      expect(Date.parse(repair.at)).toBeLessThan(Date.parse(incident.openedAt) + HIGH_WAIT_MS);

    const events = await timelineWhen(
      incident.id,
      (e) => reached('corrections', 1)(e) && reached('police', 1)(e),
      'both chains at level 1',
    );
    // Repaired before they fell due, both fire at their original due time, once.
    for (const chain of ['corrections', 'police'] as const) {
      const fired = escalations(events, chain);
      expect(fired).toHaveLength(1);
      expect(fired[0]?.data.dueAt).toBe(plusMs(incident.openedAt, HIGH_WAIT_MS));
      expect(fired[0]?.data.lateMs).toBeLessThan(1000);
    }
    expect(repairs(events)).toHaveLength(2);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metricValue(metrics, 'sinergi_escalation_repaired_total')).toBeGreaterThanOrEqual(1);
    const lastRun = metricValue(metrics, 'sinergi_escalation_audit_last_run_seconds');
    expect(Date.now() / 1000 - lastRun).toBeLessThan(5);
  });
});

describe('metrics', () => {
  it('When levels have fired and an incident was acknowledged by both agencies, Then /metrics shows lateness, fired, cancelled, queue depth and the auditor heartbeat', async () => {
    const incident = await raise(4);
    const dispatch = await consoleFor(server.url, 'dispatch.nusakambangan');
    expect(await dispatch.socket.emitWithAck('alert:ack', { incidentId: incident.id })).toMatchObject({
      ok: true,
    });
    await timelineWhen(incident.id, reached('corrections', 1), 'corrections level 1');
    const cancelled = async () =>
      metricValue(await (await fetch(`${server.url}/metrics`)).text(), 'sinergi_escalation_cancelled_total');
    // High waits 2 s: its timer is pending, not running, when both agencies acknowledge.
    const quiet = await raise(3);
    const before = await cancelled();
    const chief = await consoleFor(server.url, 'chief.permisan');
    for (const socket of [dispatch.socket, chief.socket])
      expect(await socket.emitWithAck('alert:ack', { incidentId: quiet.id })).toMatchObject({ ok: true });
    expect(await cancelled()).toBe((Number.isNaN(before) ? 0 : before) + 1);
    const metrics = await waitFor(
      async () => {
        const text = await (await fetch(`${server.url}/metrics`)).text();
        return metricValue(text, 'sinergi_escalation_audit_last_run_seconds') > 0 && text;
      },
      { what: 'an auditor run' },
    );
    expect(metricValue(metrics, 'sinergi_escalation_fired_total')).toBeGreaterThanOrEqual(1);
    expect(metricValue(metrics, 'sinergi_escalation_lateness_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(metrics).toMatch(/^sinergi_escalation_lateness_seconds_bucket\{le="0\.1"\} \d+$/m);
    // The corrections chain still has its next level waiting as a delayed job.
    expect(metricValue(metrics, 'sinergi_escalation_queue_jobs{state="delayed"}')).toBeGreaterThanOrEqual(1);
  });
});

/** The value of one sample in Prometheus text format; NaN when absent. */
function metricValue(text: string, sample: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : Number.NaN;
}
