import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createIncidentRepository } from '../server/storage/incidents.repository.ts';
import { redisKeys } from '../server/storage/keys.ts';
import { canonicalJson } from '../shared/canonical-json.ts';
import type { Incident, IncidentEvent, RaiseAlertInput } from '../shared/incident.ts';
import { uniqueAlert } from './support/alerts.ts';
import {
  closeConsoles,
  connectConsole,
  consoleFor,
  get,
  login,
  makeDeviceKey,
  post,
  raiseWithKey,
} from './support/consoles.ts';
import { addAccount, startTestServer, type TestServer } from './support/test-server.ts';
import { expectValidChain } from './support/timeline.ts';
import { waitFor } from './support/wait-for.ts';

let a: TestServer;
let b: TestServer;
let redis: Redis;
beforeAll(async () => {
  redis = new Redis(inject('redisUrl'));
  a = await startTestServer();
  // A second process on the same Redis and key prefix.
  b = await startTestServer({ prefix: a.prefix, seedDemo: false });
});
afterEach(closeConsoles);
afterAll(async () => {
  redis.disconnect();
  await b.close();
  await a.close();
});

const alert = uniqueAlert;

async function raised(username: string, input: RaiseAlertInput, server = a) {
  const { socket } = await consoleFor(server.url, username);
  const res = await socket.emitWithAck('alert:raise', input);
  if (!res.ok) throw new Error(JSON.stringify(res.error));
  return res.data;
}

async function timeline(id: string, token: string): Promise<IncidentEvent[]> {
  const res = await get(a.url, `/api/incidents/${id}/events?limit=1000`, token);
  expect(res.status).toBe(200);
  return res.body.events;
}

describe('idempotency and deduplication', () => {
  it('stores one alert when the same clientRef is sent 20 times at once through two server processes', async () => {
    const session = await login(a.url, 'operator.permisan');
    const input = alert();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        post(i % 2 ? a.url : b.url, '/api/alerts', input, session.accessToken).then((r) => r.body),
      ),
    );
    const alertIds = new Set(results.map((r) => r.alert.id));
    expect(alertIds.size).toBe(1);
    expect(results.filter((r) => r.duplicate === false)).toHaveLength(1);
    const events = await timeline(results[0].incident.id, session.accessToken);
    expect(events.map((e) => e.type)).toEqual(['opened']);
  });

  it('attaches a second alert for the same Lapas, category and block to the open incident', async () => {
    const first = alert({ severity: 2 });
    const one = await raised('operator.permisan', first);
    const two = await raised('chief.permisan', { ...first, clientRef: randomUUID(), severity: 3 });
    expect(two.incident.id).toBe(one.incident.id);
    expect(two.incident.alertCount).toBe(2);
    expect(two.incident.severity).toBe(3);
    const session = await login(a.url, 'chief.permisan');
    expect((await timeline(one.incident.id, session.accessToken)).map((e) => e.type)).toEqual([
      'opened',
      'alert_attached',
    ]);
  });

  it('answers a retry of an attached alert with that alert, also where an earlier version stored it', async () => {
    const first = alert({ severity: 2 });
    const one = await raised('operator.permisan', first);
    const second = { ...first, clientRef: randomUUID(), description: 'Perkelahian meluas ke blok sebelah' };
    const two = await raised('chief.permisan', second);
    // The alert is kept once, in the event that brought it; the idempotency ref names that event.
    const chief = (await login(a.url, 'chief.permisan')).user.id;
    const ref = `${a.prefix}alert-ref:${chief}:${second.clientRef}`;
    expect(await redis.get(ref)).toBe(`${one.incident.id}/${two.alert.id}/2`);
    const alerts = `${a.prefix}{inc:${one.incident.id}}:alerts`;
    expect(await redis.exists(alerts)).toBe(0);

    const retry = () => raised('chief.permisan', second, b);
    expect(await retry()).toMatchObject({
      duplicate: true,
      alert: two.alert,
      incident: { id: one.incident.id },
    });
    // Earlier versions' refs named no event: the alerts hash held its seq, and before that the alert itself.
    await redis.set(ref, `${one.incident.id}/${two.alert.id}`, 'KEEPTTL');
    await redis.hset(alerts, two.alert.id, '2');
    expect(await retry()).toMatchObject({ duplicate: true, alert: two.alert });
    await redis.hset(alerts, two.alert.id, JSON.stringify(two.alert));
    expect(await retry()).toMatchObject({ duplicate: true, alert: two.alert });
  });

  it('opens a new incident for a drill even where a real one is open, and marks it as a drill', async () => {
    const real = alert();
    const one = await raised('operator.permisan', real);
    const drill = await raised('operator.permisan', { ...real, clientRef: randomUUID(), drill: true });
    expect(drill.incident.id).not.toBe(one.incident.id);
    expect(drill.incident.drill).toBe(true);
  });

  it('widens the parties when an attached alert raises the severity to critical', async () => {
    const kanwil = await consoleFor(a.url, 'supervisor.kanwil');
    const seen: string[] = [];
    kanwil.socket.on('alert:new', ({ incidentId }) => seen.push(incidentId));
    const first = alert({ severity: 2 });
    const one = await raised('operator.permisan', first);
    const two = await raised('operator.permisan', { ...first, clientRef: randomUUID(), severity: 4 });
    expect(two.incident.parties).toEqual(
      expect.arrayContaining(['kanwil-ditjenpas-jateng', 'polresta-cilacap']),
    );
    await waitFor(() => seen.includes(one.incident.id), { what: 'Kanwil hearing of the escalated incident' });
  });
});

describe('a finished incident in the store', () => {
  it('keeps no reminder pages and no spare-timer note once it is final', async () => {
    const { socket } = await consoleFor(a.url, 'operator.permisan');
    const raised = await socket.emitWithAck('alert:raise', alert({ severity: 1 }));
    if (!raised.ok) throw new Error(JSON.stringify(raised.error));
    const { id, escalation } = raised.data.incident;
    const keys = redisKeys(a.prefix);
    // As a waiting chain leaves them: the rounds paged, and where a spare timer went.
    const repo = createIncidentRepository(redis, keys);
    const wait = `police.${escalation.chains.police.generation}.${escalation.chains.police.level}`;
    expect(await repo.claimPages(id, [{ wait, round: 1 }])).toEqual([true]);
    await repo.noteSpareTimer(id, randomUUID());
    expect(await redis.exists(keys.incidentPages(id))).toBe(1);

    const ended = await socket.emitWithAck('incident:transition', { incidentId: id, to: 'false_alarm' });
    expect(ended).toMatchObject({ ok: true, data: { incident: { status: 'false_alarm' } } });
    expect(await redis.exists(keys.incidentPages(id))).toBe(0);
    expect(await redis.hget(keys.incident(id), 'spareTimer')).toBeNull();

    // A timer run that read the incident before it ended pages nobody and brings neither back.
    expect(await repo.claimPages(id, [{ wait, round: 2 }])).toEqual([false]);
    await repo.noteSpareTimer(id, randomUUID());
    expect(await redis.exists(keys.incidentPages(id))).toBe(0);
    expect(await redis.hget(keys.incident(id), 'spareTimer')).toBeNull();
  });
});

describe('escalation policies in the store', () => {
  /** The opening event as Redis holds it, and the policy text its reference points to. */
  async function storedOpening(incidentId: string) {
    const [entry] = await redis.xrange(`${a.prefix}{inc:${incidentId}}:events`, '1-1', '1-1');
    const [, json = '', field, ref = ''] = entry?.[1] ?? [];
    expect(field).toBe('p');
    return { json, ref, policy: await redis.get(`${a.prefix}policy:${ref}`) };
  }

  it('stores each policy once however many incidents it serves, and gives every timeline back whole', async () => {
    const critical = await Promise.all(
      [0, 1, 2].map(() => raised('operator.permisan', alert({ severity: 4 }))),
    );
    const medium = await raised('operator.batu', alert({ facilityId: 'lapas-batu', severity: 2 }));
    const stored = await Promise.all([...critical, medium].map((r) => storedOpening(r.incident.id)));
    for (const { json, policy } of stored) {
      expect(json).not.toContain('"chains"');
      expect(policy).toContain('"chains"');
    }
    expect(new Set(stored.map((s) => s.ref)).size).toBe(2);
    expect(stored[3]?.ref).not.toBe(stored[0]?.ref);

    const session = await login(a.url, 'supervisor.kanwil');
    for (const { incident } of critical) {
      const events = await timeline(incident.id, session.accessToken);
      expect(events[0]).toMatchObject({ type: 'opened', data: { escalation: { policyId: 'critical' } } });
      expectValidChain(events);
    }
    const batu = await login(a.url, 'operator.batu');
    const [opened] = await timeline(medium.incident.id, batu.accessToken);
    expect(opened).toMatchObject({ type: 'opened', data: { escalation: { policyId: 'medium' } } });
    // A new process reads the policy from the store, not from what it wrote.
    const loaded = await createIncidentRepository(redis, redisKeys(a.prefix)).load(medium.incident.id);
    expect(loaded?.policy.policyId).toBe('medium');
    expect(loaded?.policy.chains.police.levels.length).toBeGreaterThan(1);
    expect(await redis.hexists(`${a.prefix}{inc:${medium.incident.id}}`, 'policy')).toBe(0);
  });

  it('puts the policy an attached alert brings in force, and keeps it in that alert’s event', async () => {
    const first = alert({ severity: 2 });
    const one = await raised('operator.permisan', first);
    await raised('operator.permisan', { ...first, clientRef: randomUUID(), severity: 4 });
    const repo = createIncidentRepository(redis, redisKeys(a.prefix));
    expect((await repo.load(one.incident.id))?.policy.policyId).toBe('critical');
    const events = await repo.events(one.incident.id, 0, 10);
    expect(
      events.map((e) => [e.type, 'escalation' in e.data ? e.data.escalation?.policyId : undefined]),
    ).toEqual([
      ['opened', 'medium'],
      ['alert_attached', 'critical'],
    ]);
    expectValidChain(events);
  });

  it('refuses a policy whose stored text was altered, rather than escalating by it', async () => {
    const { incident } = await raised('operator.permisan', alert({ severity: 4 }));
    const ref = await redis.hget(`${a.prefix}{inc:${incident.id}}`, 'policyRef');
    expect(ref).toMatch(/^[0-9a-f]{64}$/);
    const key = `${a.prefix}policy:${ref}`;
    const text = (await redis.get(key)) ?? '';
    try {
      await redis.set(key, text.replace('"waitSeconds":30', '"waitSeconds":3000'));
      const repo = createIncidentRepository(redis, redisKeys(a.prefix));
      await expect(repo.load(incident.id)).rejects.toThrow(/altered/);
      await expect(repo.events(incident.id, 0, 10)).rejects.toThrow(/altered/);
    } finally {
      await redis.set(key, text);
    }
  });

  it('loads an incident stored by an earlier version, with its policy’s text inline', async () => {
    const { incident } = await raised('operator.permisan', alert({ severity: 4 }));
    const session = await login(a.url, 'operator.permisan');
    const [opened] = await timeline(incident.id, session.accessToken);
    if (!opened) throw new Error('no opened event');
    const key = `${a.prefix}{inc:${incident.id}}`;
    await redis.hdel(key, 'policyRef');
    await redis.hset(key, 'policy', canonicalJson(opened.type === 'opened' && opened.data.escalation));
    await redis.del(`${key}:events`);
    await redis.xadd(`${key}:events`, '1-1', 'e', JSON.stringify(opened));

    const repo = createIncidentRepository(redis, redisKeys(a.prefix));
    expect((await repo.load(incident.id))?.policy.policyId).toBe('critical');
    const events = await timeline(incident.id, session.accessToken);
    expect(events).toEqual([opened]);
    // Working it goes on as before: the acknowledgement chains to the opening event.
    const { socket } = await consoleFor(a.url, 'operator.permisan');
    expect((await socket.emitWithAck('alert:ack', { incidentId: incident.id })).ok).toBe(true);
    expectValidChain(await timeline(incident.id, session.accessToken));
  });
});

describe('acknowledgement per agency', () => {
  it('records exactly two acks when both agencies ack at once, twice each, through two processes', async () => {
    const { incident } = await raised('operator.permisan', alert());
    const facility = await consoleFor(a.url, 'operator.permisan');
    const facility2 = await consoleFor(b.url, 'chief.permisan');
    const police = await consoleFor(b.url, 'dispatch.nusakambangan');
    const police2 = await consoleFor(a.url, 'dispatch.nusakambangan');
    const results = await Promise.all(
      [facility, facility2, police, police2].map((c) =>
        c.socket.emitWithAck('alert:ack', { incidentId: incident.id }),
      ),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    const events = await timeline(incident.id, facility.session.accessToken);
    const acks = events.filter((e) => e.type === 'acknowledged');
    expect(acks.map((e) => (e.type === 'acknowledged' ? e.data.agency : '')).sort()).toEqual([
      'corrections',
      'police',
    ]);
    expectValidChain(events);
    const final = (await get(a.url, `/api/incidents/${incident.id}`, facility.session.accessToken)).body
      .incident as Incident;
    expect(final.status).toBe('acknowledged');
    expect(final.acks.corrections?.timeToAckMs).toBeGreaterThanOrEqual(0);
    expect(final.acks.police?.by.unitId).toBe('polsek-nusakambangan');
  });

  it('records a police ack received by radio, with who recorded it', async () => {
    const { incident } = await raised('operator.permisan', alert());
    const { socket } = await consoleFor(a.url, 'operator.permisan');
    const res = await socket.emitWithAck('alert:ack', {
      incidentId: incident.id,
      onBehalfOf: { unitId: 'polsek-nusakambangan', channel: 'radio', note: 'Bripka Santoso via HT' },
    });
    if (!res.ok) throw new Error(JSON.stringify(res.error));
    expect(res.data.incident.acks.police).toMatchObject({
      channel: 'radio',
      onBehalfOf: 'polsek-nusakambangan',
      by: { username: 'operator.permisan' },
    });
    expect(res.data.incident.acks.corrections).toBeUndefined();
  });

  it('refuses an ack on behalf of a unit that is not a party', async () => {
    const { incident } = await raised('operator.permisan', alert());
    const { socket } = await consoleFor(a.url, 'operator.permisan');
    const res = await socket.emitWithAck('alert:ack', {
      incidentId: incident.id,
      onBehalfOf: { unitId: 'polsek-cilacap-tengah', channel: 'phone', note: 'x' },
    });
    expect(res).toMatchObject({ ok: false, error: { code: 'forbidden' } });
  });
});

describe('working an incident', () => {
  it('walks the whole lifecycle with both agencies and keeps an unbroken, valid hash chain', async () => {
    const { incident } = await raised('operator.permisan', alert({ severity: 4 }));
    const chief = await consoleFor(a.url, 'chief.permisan');
    const police = await consoleFor(b.url, 'dispatch.nusakambangan');
    const commander = await consoleFor(a.url, 'commander.cilacap');
    const events: IncidentEvent[] = [];
    await chief.socket.emitWithAck('incident:join', { incidentId: incident.id });
    chief.socket.on('incident:event', ({ event }) => events.push(event));
    const steps = [
      () => police.socket.emitWithAck('alert:ack', { incidentId: incident.id }),
      () =>
        police.socket.emitWithAck('incident:transition', {
          incidentId: incident.id,
          to: 'responding',
          note: 'Dalmas berangkat',
        }),
      () => chief.socket.emitWithAck('incident:note', { incidentId: incident.id, text: 'Blok A dikunci' }),
      () => chief.socket.emitWithAck('incident:transition', { incidentId: incident.id, to: 'contained' }),
      () => police.socket.emitWithAck('incident:transition', { incidentId: incident.id, to: 'resolved' }),
      () => commander.socket.emitWithAck('incident:transition', { incidentId: incident.id, to: 'closed' }),
    ];
    for (const step of steps) expect(await step()).toMatchObject({ ok: true });
    await waitFor(() => events.length === 6, { what: 'six incident:event messages in the room' });
    expect(events.map((e) => e.seq)).toEqual([2, 3, 4, 5, 6, 7]);
    const all = await timeline(incident.id, chief.session.accessToken);
    expect(all.map((e) => e.type)).toEqual([
      'opened',
      'acknowledged',
      'status_changed',
      'note_added',
      'status_changed',
      'status_changed',
      'status_changed',
    ]);
    expectValidChain(all);
    const closed = await chief.socket.emitWithAck('incident:transition', {
      incidentId: incident.id,
      to: 'responding',
    });
    expect(closed).toMatchObject({ ok: false, error: { code: 'invalid_transition' } });
  });

  it('refuses an illegal transition and a forbidden one, and stores nothing for either', async () => {
    const { incident } = await raised('operator.permisan', alert());
    const police = await consoleFor(a.url, 'dispatch.nusakambangan');
    expect(
      await police.socket.emitWithAck('incident:transition', { incidentId: incident.id, to: 'closed' }),
    ).toMatchObject({
      ok: false,
      error: { code: 'invalid_transition' },
    });
    expect(
      await police.socket.emitWithAck('incident:transition', { incidentId: incident.id, to: 'false_alarm' }),
    ).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect((await timeline(incident.id, police.session.accessToken)).length).toBe(1);
  });

  it('sends every party an incident:updated carrying the incident id and seq', async () => {
    const { incident } = await raised('operator.permisan', alert());
    const police = await consoleFor(b.url, 'dispatch.nusakambangan');
    const updates: { incidentId: string; seq: number }[] = [];
    police.socket.on('incident:updated', (u) => updates.push({ incidentId: u.incidentId, seq: u.seq }));
    const chief = await consoleFor(a.url, 'chief.permisan');
    await chief.socket.emitWithAck('alert:ack', { incidentId: incident.id });
    await waitFor(() => updates.some((u) => u.incidentId === incident.id && u.seq === 2));
  });
});

describe('silent (duress) raise', () => {
  it('routes a silent low-severity raise as critical, and keeps the alarm off the raising console', async () => {
    const raiser = await consoleFor(a.url, 'operator.permisan');
    const chief = await consoleFor(a.url, 'chief.permisan');
    const kanwil = await consoleFor(b.url, 'supervisor.kanwil');
    const heard = { raiser: [] as string[], chief: [] as string[], kanwil: [] as string[] };
    raiser.socket.on('alert:new', (m) => heard.raiser.push(m.incidentId));
    chief.socket.on('alert:new', (m) => heard.chief.push(m.incidentId));
    kanwil.socket.on('alert:new', (m) => heard.kanwil.push(m.incidentId));
    const res = await raiser.socket.emitWithAck(
      'alert:raise',
      alert({ category: 'hostage', severity: 1, silent: true }),
    );
    if (!res.ok) throw new Error(JSON.stringify(res.error));
    expect(res.data.incident.severity).toBe(4);
    expect(res.data.alert.reportedSeverity).toBe(1);
    await waitFor(
      () => heard.chief.includes(res.data.incident.id) && heard.kanwil.includes(res.data.incident.id),
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(heard.raiser).toEqual([]);
  });

  it('When the Polsek acknowledges a silent raise and the raising login syncs, lists or looks it up, Then that login learns nothing of it, while its colleagues do', async () => {
    const session = await login(a.url, 'operator.permisan');
    const raiser = await connectConsole(a.url, session.accessToken);
    const colleague = await consoleFor(b.url, 'operator.permisan');
    const told = { raiser: [] as string[], colleague: [] as string[] };
    for (const event of [
      'alert:new',
      'incident:updated',
      'escalation:fired',
      'escalation:reminder',
    ] as const) {
      raiser.on(event, (m: { incidentId: string }) => told.raiser.push(`${event} ${m.incidentId}`));
      colleague.socket.on(event, (m: { incidentId: string }) =>
        told.colleague.push(`${event} ${m.incidentId}`),
      );
    }
    const res = await raiser.emitWithAck('alert:raise', alert({ category: 'hostage', silent: true }));
    if (!res.ok) throw new Error(JSON.stringify(res.error));
    const { id } = res.data.incident;

    const police = await consoleFor(a.url, 'dispatch.nusakambangan');
    const acked = await police.socket.emitWithAck('alert:ack', { incidentId: id });
    expect(acked).toMatchObject({ ok: true });
    await waitFor(() => told.colleague.includes(`incident:updated ${id}`), {
      what: 'the colleague to hear of the acknowledgement',
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(told.raiser.filter((t) => t.endsWith(id))).toEqual([]);
    expect(told.colleague).toContain(`alert:new ${id}`);

    const synced = await raiser.emitWithAck('sync', {});
    if (!synced.ok) throw new Error(JSON.stringify(synced.error));
    expect(synced.data.open.map((i) => i.id)).not.toContain(id);
    const listed = await get(a.url, '/api/incidents?limit=100', session.accessToken);
    expect(listed.body.incidents.map((i: Incident) => i.id)).not.toContain(id);
    expect((await get(a.url, `/api/incidents/${id}`, session.accessToken)).status).toBe(404);
    expect(await raiser.emitWithAck('incident:join', { incidentId: id })).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    // Another login of the same account, on another workstation, sees it as any colleague does.
    const other = await login(a.url, 'operator.permisan');
    expect((await get(a.url, `/api/incidents/${id}`, other.accessToken)).status).toBe(200);
  });

  it('When a console raises silently over HTTP with its token, Then its own login gets no alert:new, while its colleagues do', async () => {
    const session = await login(a.url, 'operator.permisan');
    const raiser = await connectConsole(a.url, session.accessToken);
    const chief = await consoleFor(a.url, 'chief.permisan');
    const heard = { raiser: [] as string[], chief: [] as string[] };
    raiser.on('alert:new', (m) => heard.raiser.push(m.incidentId));
    chief.socket.on('alert:new', (m) => heard.chief.push(m.incidentId));

    const res = await post(
      a.url,
      '/api/alerts',
      alert({ category: 'hostage', silent: true }),
      session.accessToken,
    );
    expect(res.status).toBe(201);
    const { id } = res.body.incident;
    await waitFor(() => heard.chief.includes(id), { what: 'the chief to get the alarm' });
    await new Promise((r) => setTimeout(r, 200));
    expect(heard.raiser).toEqual([]);
  });
});

describe('silent (duress) raise: the raising login cannot act on it', () => {
  it('When the login that raised silently tries to acknowledge, note, hold or cancel the incident, Then each is answered not_found and nothing changes', async () => {
    // A security chief may do all four to an incident of their Lapas; from the login of the silent raise,
    // whoever forced it must find nothing to cancel.
    const raiser = await consoleFor(a.url, 'chief.permisan');
    const res = await raiser.socket.emitWithAck(
      'alert:raise',
      alert({ category: 'hostage', severity: 4, silent: true }),
    );
    if (!res.ok) throw new Error(JSON.stringify(res.error));
    const { id, seq } = res.data.incident;

    const attempts = [
      raiser.socket.emitWithAck('alert:ack', { incidentId: id }),
      raiser.socket.emitWithAck('incident:note', { incidentId: id, text: 'Salah tekan' }),
      raiser.socket.emitWithAck('escalation:hold', {
        incidentId: id,
        chain: 'corrections',
        durationSeconds: 14_400,
        reason: 'Sudah ditangani',
      }),
      raiser.socket.emitWithAck('incident:transition', { incidentId: id, to: 'cancelled' }),
    ];
    for (const answer of await Promise.all(attempts))
      expect(answer).toEqual({ ok: false, error: { code: 'not_found', message: 'No such incident' } });

    const colleague = await login(a.url, 'chief.permisan');
    const seen = await get(a.url, `/api/incidents/${id}`, colleague.accessToken);
    expect(seen.body.incident).toMatchObject({ id, seq, status: 'open' });
  });

  it('When the login that raised silently raises openly for the same place, Then it gets an incident of its own, not the hidden one with its acknowledgements', async () => {
    const raiser = await consoleFor(a.url, 'operator.permisan');
    const pressed = alert({ silent: true });
    const place = { category: pressed.category, location: pressed.location };
    const silent = await raiser.socket.emitWithAck('alert:raise', pressed);
    if (!silent.ok) throw new Error(JSON.stringify(silent.error));
    const police = await consoleFor(a.url, 'dispatch.nusakambangan');
    expect(
      await police.socket.emitWithAck('alert:ack', { incidentId: silent.data.incident.id }),
    ).toMatchObject({ ok: true });

    const open = await raiser.socket.emitWithAck('alert:raise', alert(place));
    if (!open.ok) throw new Error(JSON.stringify(open.error));

    expect(open.data.incident.id).not.toBe(silent.data.incident.id);
    expect(open.data.incident.acks).toEqual({});
    expect((await raiser.socket.emitWithAck('incident:join', { incidentId: open.data.incident.id })).ok).toBe(
      true,
    );
    // Anyone else raising for that place joins the incident the open raise opened.
    const colleague = await consoleFor(a.url, 'chief.permisan');
    const third = await colleague.socket.emitWithAck('alert:raise', alert(place));
    expect(third).toMatchObject({ ok: true, data: { incident: { id: open.data.incident.id } } });
  });
});

describe('sync after a reconnect', () => {
  it('When one incident’s stored document is damaged, Then a sync and a list still return every other incident in scope', async () => {
    const police = await consoleFor(a.url, 'dispatch.nusakambangan');
    const damaged = await raised('operator.permisan', alert());
    const sound = await raised('operator.permisan', alert());
    const key = redisKeys(a.prefix).incident(damaged.incident.id);
    const doc = (await redis.hget(key, 'doc')) ?? '';
    await redis.hset(key, 'doc', doc.slice(0, doc.length / 2));
    try {
      const synced = await police.socket.emitWithAck('sync', {});
      if (!synced.ok) throw new Error(JSON.stringify(synced.error));
      const open = synced.data.open.map((i) => i.id);
      expect(open).toContain(sound.incident.id);
      expect(open).not.toContain(damaged.incident.id);
      const listed = await get(a.url, '/api/incidents?limit=100', police.session.accessToken);
      expect(listed.status).toBe(200);
      expect(listed.body.incidents.map((i: Incident) => i.id)).toContain(sound.incident.id);
    } finally {
      await redis.hset(key, 'doc', doc);
    }
  });

  it('returns the open incidents in scope and what changed since the cursor, and nothing of other units', async () => {
    const police = await consoleFor(a.url, 'dispatch.nusakambangan');
    const first = await police.socket.emitWithAck('sync', {});
    if (!first.ok) throw new Error(JSON.stringify(first.error));
    const { incident } = await raised('operator.permisan', alert());
    const chief = await consoleFor(a.url, 'chief.permisan');
    await chief.socket.emitWithAck('incident:transition', { incidentId: incident.id, to: 'cancelled' });
    const other = await raised('operator.batu', alert({ facilityId: 'lapas-batu' }));

    const second = await police.socket.emitWithAck('sync', { since: first.data.cursor });
    if (!second.ok) throw new Error(JSON.stringify(second.error));
    const changed = second.data.changed.find((i) => i.id === incident.id);
    expect(changed?.status).toBe('cancelled');
    expect(second.data.open.some((i) => i.id === incident.id)).toBe(false);
    // Batu's incident is Polsek Nusakambangan's too (it covers every island Lapas)...
    expect(second.data.open.some((i) => i.id === other.incident.id)).toBe(true);
    // ...but never Polsek Cilacap Tengah's.
    const cilacap = await consoleFor(a.url, 'dispatch.cilacap');
    const theirs = await cilacap.socket.emitWithAck('sync', { since: first.data.cursor });
    if (!theirs.ok) throw new Error(JSON.stringify(theirs.error));
    expect(
      [...theirs.data.open, ...theirs.data.changed].filter((i) => i.facilityId !== 'lapas-cilacap'),
    ).toEqual([]);
    expect(Number(second.data.cursor)).toBeGreaterThan(Number(first.data.cursor));
  });
});

describe('REST', () => {
  it('lists only what the caller may see, newest first, with working cursor pagination and filters', async () => {
    const mine = [] as string[];
    for (let i = 0; i < 5; i++)
      mine.push((await raised('operator.batu', alert({ facilityId: 'lapas-batu' }))).incident.id);
    const batu = await login(a.url, 'operator.batu');
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await get(
        a.url,
        `/api/incidents?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        batu.accessToken,
      );
      expect(res.status).toBe(200);
      expect(res.body.incidents.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.incidents.map((i: Incident) => i.id));
      cursor = res.body.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(mine));
    const all = (await get(a.url, '/api/incidents?limit=100', batu.accessToken)).body.incidents as Incident[];
    expect(all.every((i) => i.facilityId === 'lapas-batu')).toBe(true);
    const filtered = await get(a.url, '/api/incidents?facilityId=lapas-permisan', batu.accessToken);
    expect(filtered.body.incidents).toEqual([]);
    const bad = await get(a.url, '/api/incidents?status=burning', batu.accessToken);
    expect(bad.status).toBe(400);
    expect(bad.body.error.issues[0].path).toBe('status');
  });

  it('raises through a per-device API key for its own Lapas only, and refuses a revoked key', async () => {
    const { admin, created } = await makeDeviceKey(a.url, 'Panic button Blok A', 'lapas-permisan');
    expect(created.status).toBe(201);
    const key = created.body.key as string;
    const raise = (body: RaiseAlertInput) => raiseWithKey(a.url, key, body);
    const ok = await raise(alert({ severity: 4, category: 'hostage', silent: true }));
    expect(ok.status).toBe(201);
    expect((await ok.json()).alert.raisedBy.username).toBe('device:Panic button Blok A');
    const elsewhere = await raise(alert({ facilityId: 'lapas-batu' }));
    expect(elsewhere.status).toBe(403);
    const revoked = await fetch(`${a.url}/api/api-keys/${created.body.apiKey.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${admin.accessToken}` },
    });
    expect(revoked.status).toBe(204);
    expect((await raise(alert())).status).toBe(401);
    const asOperator = await post(
      a.url,
      '/api/api-keys',
      { name: 'x', facilityId: 'lapas-permisan' },
      (await login(a.url, 'operator.permisan')).accessToken,
    );
    expect(asOperator.status).toBe(403);
  });

  it('refuses malformed bodies on POST /api/alerts and POST /api/api-keys with field issues, storing nothing', async () => {
    const operator = await login(a.url, 'operator.permisan');
    const before = (await get(a.url, '/api/incidents?limit=100', operator.accessToken)).body.incidents.length;
    const badAlert = await post(
      a.url,
      '/api/alerts',
      { ...alert(), severity: 9, clientRef: 'x' },
      operator.accessToken,
    );
    expect(badAlert.status).toBe(400);
    expect(badAlert.body.error.issues.map((i: { path: string }) => i.path).sort()).toEqual([
      'clientRef',
      'severity',
    ]);
    expect((await get(a.url, '/api/incidents?limit=100', operator.accessToken)).body.incidents.length).toBe(
      before,
    );

    const admin = await login(a.url, 'admin');
    const badKey = await post(
      a.url,
      '/api/api-keys',
      { name: '', facilityId: 'polsek-nusakambangan' },
      admin.accessToken,
    );
    expect(badKey.status).toBe(400);
    expect(badKey.body.error.issues.map((i: { path: string }) => i.path)).toEqual(['name']);
    const notALapas = await post(
      a.url,
      '/api/api-keys',
      { name: 'x', facilityId: 'polsek-nusakambangan' },
      admin.accessToken,
    );
    expect(notALapas.status).toBe(400);
    expect(notALapas.body.error.issues[0].path).toBe('facilityId');
    expect(
      (await get(a.url, '/api/api-keys', admin.accessToken)).body.apiKeys.every(
        (k: { facilityId: string }) => k.facilityId !== 'polsek-nusakambangan',
      ),
    ).toBe(true);
  });
});

describe('listing a unit with many incidents', () => {
  let own: TestServer;
  const targets = new Map<string, Incident>();
  const twins = new Map<string, string[]>();

  /**
   * An escape, then 1,500 riots opened after it: at Batu all in one millisecond (a burst of device reports
   * could leave them so), at Permisan a millisecond apart.
   */
  beforeAll(async () => {
    own = await startTestServer();
    const keys = redisKeys(own.prefix);
    const store = redis.pipeline();
    for (const [facilityId, username, apartMs] of [
      ['lapas-batu', 'operator.batu', 0],
      ['lapas-permisan', 'operator.permisan', 1],
    ] as const) {
      const { socket } = await consoleFor(own.url, username);
      const raiseAt = async (category: RaiseAlertInput['category']) => {
        const res = await socket.emitWithAck('alert:raise', alert({ facilityId, category }));
        if (!res.ok) throw new Error(JSON.stringify(res.error));
        return res.data.incident;
      };
      targets.set(facilityId, await raiseAt('escape'));
      const template = await raiseAt('riot');
      const ids = [template.id];
      for (let i = 1; i < 1500; i++) {
        const id = randomUUID();
        const openedMs = Date.parse(template.openedAt) + i * apartMs;
        ids.push(id);
        const doc = { ...template, id, openedAt: new Date(openedMs).toISOString() };
        store.hset(keys.incident(id), 'doc', JSON.stringify(doc));
        store.zadd(keys.unitIncidents(facilityId), openedMs, id);
      }
      twins.set(facilityId, ids);
    }
    await store.exec();
  });
  afterAll(() => own?.close());

  /** Every page of a listing, following `nextCursor` to the end. */
  async function pages(username: string, query: string) {
    const { accessToken } = await login(own.url, username);
    const out: { incidents: Incident[]; nextCursor: string | null }[] = [];
    let cursor: string | null = null;
    do {
      const res = await get(
        own.url,
        `/api/incidents?${query}${cursor ? `&cursor=${cursor}` : ''}`,
        accessToken,
      );
      expect(res.status).toBe(200);
      out.push(res.body);
      cursor = res.body.nextCursor;
    } while (cursor);
    return out;
  }

  it('pages through 1,500 incidents opened in the same millisecond, each exactly once, and ends', async () => {
    const listed = (await pages('operator.batu', 'limit=100')).flatMap((p) => p.incidents.map((i) => i.id));
    expect(listed).toHaveLength(1500 + 1);
    expect(listed.slice(0, 1500).sort()).toEqual(twins.get('lapas-batu')?.sort());
    expect(listed.at(-1)).toBe(targets.get('lapas-batu')?.id);
  });

  it('reads at most 1,000 incidents for a filter that matches few, answering with a cursor to go on from', async () => {
    const [first, second, ...rest] = await pages('operator.permisan', 'category=escape&limit=10');
    expect(first).toMatchObject({ incidents: [], nextCursor: expect.any(String) });
    expect(second?.incidents.map((i) => i.id)).toEqual([targets.get('lapas-permisan')?.id]);
    expect(rest).toEqual([]);
  });
});

describe('who may raise', () => {
  it('refuses a raise for another Lapas, by a dispatcher, and for a block the Lapas does not have', async () => {
    const batu = await consoleFor(a.url, 'operator.batu');
    expect(await batu.socket.emitWithAck('alert:raise', alert())).toMatchObject({
      ok: false,
      error: { code: 'forbidden' },
    });
    const police = await consoleFor(a.url, 'dispatch.nusakambangan');
    expect(await police.socket.emitWithAck('alert:raise', alert())).toMatchObject({
      ok: false,
      error: { code: 'forbidden' },
    });
    const permisan = await consoleFor(a.url, 'operator.permisan');
    expect(
      await permisan.socket.emitWithAck('alert:raise', alert({ location: { block: 'zz' } })),
    ).toMatchObject({
      ok: false,
      error: { code: 'validation_failed', issues: [{ path: 'location.block' }] },
    });
  });

  it('refuses a raise by an administrator, over a console or REST and even one placed at that Lapas, storing nothing', async () => {
    const { password } = await addAccount(a, {
      username: 'admin.permisan',
      role: 'admin',
      unitId: 'lapas-permisan',
    });
    for (const session of [await login(a.url, 'admin'), await login(a.url, 'admin.permisan', password)]) {
      const socket = await connectConsole(a.url, session.accessToken);
      expect(await socket.emitWithAck('alert:raise', alert())).toMatchObject({
        ok: false,
        error: { code: 'forbidden' },
      });
      expect((await post(a.url, '/api/alerts', alert(), session.accessToken)).status).toBe(403);
      const listed = await get(a.url, '/api/incidents?limit=100', session.accessToken);
      expect(listed.body.incidents.map((i: Incident) => i.openedBy.userId)).not.toContain(session.user.id);
    }
  });
});
