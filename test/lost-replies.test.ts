import { createHash, randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RaiseAlertInput } from '../shared/incident.ts';
import { uniqueAlert } from './support/alerts.ts';
import {
  type ConsoleClient,
  closeConsoles,
  consoleFor,
  joinedTimeline,
  login,
  polsekHearing,
  post,
} from './support/consoles.ts';
import { startOwnRedis } from './support/own-redis.ts';
import { startReplyDropper } from './support/reply-dropper.ts';
import { startTestServer, type TestServer, uniquePrefix } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

// The store is reached through a proxy that can cut the connection as Redis answers a commit; the broadcast
// Redis directly. Redelivery is set far off, so that what reaches consoles here is the first delivery.
let store: Awaited<ReturnType<typeof startOwnRedis>>;
let sockets: Awaited<ReturnType<typeof startOwnRedis>>;
let dropper: Awaited<ReturnType<typeof startReplyDropper>>;
let server: TestServer;

beforeAll(async () => {
  [store, sockets] = await Promise.all([startOwnRedis('lost-store'), startOwnRedis('lost-sockets')]);
  dropper = await startReplyDropper(store.redis.url);
  server = await startTestServer({
    redisUrl: dropper.url,
    env: { SOCKET_REDIS_URL: sockets.redis.url, REDELIVER_AFTER_MS: '60000' },
  });
  // Redis learns the commit scripts by a first raise and a first note: the reply lost below is then the one
  // to a command Redis applied, not a "no such script" answer to one it refused.
  const chief = await consoleFor(server.url, 'chief.permisan');
  const incident = await opened(chief.socket);
  await chief.socket.emitWithAck('incident:note', { incidentId: incident.id, text: 'Mulai' });
  closeConsoles();
});
afterEach(closeConsoles);
afterAll(async () => {
  await server?.close();
  await dropper?.close();
  await Promise.all([store?.stop(), sockets?.stop()]);
});

async function opened(operator: ConsoleClient) {
  const res = await operator.emitWithAck('alert:raise', uniqueAlert());
  if (!res.ok) throw new Error(JSON.stringify(res.error));
  return res.data.incident;
}

describe('a commit whose reply is lost on a dropped connection', () => {
  it('When the reply to a stored note is lost and the client sends the note again, Then the timeline holds it once and its author is told it was added', async () => {
    const chief = await consoleFor(server.url, 'chief.permisan');
    const incident = await opened(chief.socket);
    const text = `Blok A dikunci ${randomUUID()}`;
    const before = dropper.dropped;
    dropper.loseReplyTo(text);

    const res = await chief.socket
      .timeout(15_000)
      .emitWithAck('incident:note', { incidentId: incident.id, text });

    expect(dropper.dropped).toBe(before + 1);
    expect(res).toMatchObject({ ok: true, data: { incident: { seq: incident.seq + 1 } } });
    const notes = (await joinedTimeline(chief.socket, incident.id)).filter(
      (e) => e.type === 'note_added' && JSON.stringify(e.data).includes(text),
    );
    expect(notes).toHaveLength(1);
  });

  it('When the reply to a stored note carrying a clientRef is lost and the store client sends the commit again, Then its author is told it was added, not that it was added before', async () => {
    const chief = await consoleFor(server.url, 'chief.permisan');
    const incident = await opened(chief.socket);
    const text = `Blok B dikunci ${randomUUID()}`;
    dropper.loseReplyTo(text);

    const res = await chief.socket
      .timeout(15_000)
      .emitWithAck('incident:note', { incidentId: incident.id, text, clientRef: randomUUID() });

    expect(res).toMatchObject({ ok: true, data: { duplicate: false, incident: { seq: incident.seq + 1 } } });
    const notes = (await joinedTimeline(chief.socket, incident.id)).filter(
      (e) => e.type === 'note_added' && JSON.stringify(e.data).includes(text),
    );
    expect(notes).toHaveLength(1);
  });

  it('When the reply to a stored status change is lost, Then the change is answered as made, not refused as a move from the status it already reached', async () => {
    const chief = await consoleFor(server.url, 'chief.permisan');
    const incident = await opened(chief.socket);
    const note = `Tim bergerak ${randomUUID()}`;
    dropper.loseReplyTo(note);

    const res = await chief.socket
      .timeout(15_000)
      .emitWithAck('incident:transition', { incidentId: incident.id, to: 'responding', note });

    expect(res).toMatchObject({ ok: true, data: { incident: { status: 'responding' } } });
    const changes = (await joinedTimeline(chief.socket, incident.id)).filter(
      (e) => e.type === 'status_changed',
    );
    expect(changes).toHaveLength(1);
  });

  it('When the reply to a stored raise is lost, Then the raise is answered as new and the Polsek gets the alert at once, not at a redelivery', async () => {
    const heard = await polsekHearing(server.url);
    const operator = await consoleFor(server.url, 'operator.permisan');
    const report = uniqueAlert({ severity: 4, description: `Kebakaran ${randomUUID()}` });
    dropper.loseReplyTo(report.description ?? '');

    const res = await operator.socket.timeout(15_000).emitWithAck('alert:raise', report);

    expect(res).toMatchObject({
      ok: true,
      data: { duplicate: false, alert: { clientRef: report.clientRef } },
    });
    // Well inside the 60 s redelivery: the first delivery itself.
    const deadline = Date.now() + 3000;
    while (!heard.includes(report.clientRef) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(heard).toEqual([report.clientRef]);
  });
});

describe('a refresh whose reply is lost on a dropped connection', () => {
  it('When the store applied the rotation but the reply was lost, Then the refresh still succeeds and the session lives on, not ended as a replay', async () => {
    const session = await login(server.url, 'chief.permisan');
    const secret = session.refreshToken.split('.')[2] ?? '';
    dropper.loseReplyTo(createHash('sha256').update(secret).digest('base64url'));

    const rotated = await post(server.url, '/api/auth/refresh', { refreshToken: session.refreshToken });

    expect(rotated.status).toBe(200);
    const next = await post(server.url, '/api/auth/refresh', { refreshToken: rotated.body.refreshToken });
    expect(next.status).toBe(200);
  });
});

describe('an ending of a session whose reply is lost on a dropped connection', () => {
  const ended = (socket: ConsoleClient) => {
    const seen: unknown[] = [];
    socket.on('session:ended', (e) => seen.push(e));
    return seen;
  };
  const secretHash = (refreshToken: string) =>
    createHash('sha256')
      .update(refreshToken.split('.')[2] ?? '')
      .digest('base64url');

  it('When the store ended the session at a logout but the reply was lost, Then the logout succeeds and the session’s consoles are still told', async () => {
    const { socket, session } = await consoleFor(server.url, 'chief.permisan');
    const told = ended(socket);
    const before = dropper.dropped;
    dropper.loseReplyTo(secretHash(session.refreshToken));

    const res = await post(server.url, '/api/auth/logout', { refreshToken: session.refreshToken });

    expect(dropper.dropped).toBe(before + 1);
    expect(res.status).toBe(204);
    await waitFor(() => told.length > 0, { what: 'the console to hear its session ended' });
    expect(told).toEqual([{ reason: 'revoked' }]);
  });

  it('When a replayed refresh token ended the session but the reply was lost, Then it is still answered as a replay and the consoles of the copy are told', async () => {
    const { socket, session } = await consoleFor(server.url, 'chief.permisan');
    const told = ended(socket);
    const rotated = await post(server.url, '/api/auth/refresh', { refreshToken: session.refreshToken });
    expect(rotated.status).toBe(200);
    dropper.loseReplyTo(secretHash(session.refreshToken));

    const replay = await post(server.url, '/api/auth/refresh', { refreshToken: session.refreshToken });

    expect(replay.body).toMatchObject({
      error: { message: 'Refresh token reused; the session has been ended' },
    });
    await waitFor(() => told.length > 0, { what: 'the console to hear its session ended' });
  });
});

describe('a reminder round whose claim’s reply is lost or late', () => {
  // Severity 2 on these policies: both agencies' first levels are paged again every 0.3 s, and never climb.
  let paging: TestServer;
  beforeAll(async () => {
    paging = await startTestServer({
      redisUrl: dropper.url,
      env: {
        SOCKET_REDIS_URL: sockets.redis.url,
        REDELIVER_AFTER_MS: '60000',
        ESCALATION_FILE: 'test/fixtures/reminders.json',
      },
    });
  });
  afterAll(() => paging?.close());

  /** The rounds of the police chain the Polsek is paged, by incident, and a way to raise one. */
  async function polsekPaging() {
    const dispatch = await consoleFor(paging.url, 'dispatch.nusakambangan');
    const operator = await consoleFor(paging.url, 'operator.permisan');
    const rounds = new Map<string, number[]>();
    dispatch.socket.on('escalation:reminder', (r) => {
      if (r.chain === 'police') rounds.set(r.incidentId, [...(rounds.get(r.incidentId) ?? []), r.round]);
    });
    const raise = async () => {
      const res = await operator.socket.emitWithAck('alert:raise', uniqueAlert({ severity: 2 }));
      if (!res.ok) throw new Error(JSON.stringify(res.error));
      return res.data.incident;
    };
    return { rounds, raise };
  }

  it('When the store recorded the claim of a reminder round but the reply was lost, Then that round is still paged, not skipped until the next one', async () => {
    const { rounds, raise } = await polsekPaging();
    // A first round teaches Redis the claim's script: the reply lost below is then the one to a claim Redis
    // made, not a "no such script" answer to one it refused.
    const first = await raise();
    await waitFor(() => rounds.has(first.id), { what: 'a first reminder' });
    const incident = await raise();
    const before = dropper.dropped;
    // Only the claim of a reminder round names the incident's pages.
    dropper.loseReplyTo(`{inc:${incident.id}}:pages`);

    await waitFor(() => dropper.dropped === before + 1 && rounds.has(incident.id), {
      timeoutMs: 10_000,
      what: 'a reminder after the lost reply',
    });

    expect(rounds.get(incident.id)?.[0]).toBe(1);
  });

  it('When the claim of a reminder round gets no reply in time (the store 3 s behind), Then that round is still paged once, not skipped by the timer’s retry', async () => {
    const { rounds, raise } = await polsekPaging();
    const { id } = await raise();
    // Every reply on the connection of the first round's claim comes past the 3 s command timeout.
    dropper.delayRepliesAfter(`{inc:${id}}:pages`, 3500);

    await waitFor(() => rounds.has(id), { timeoutMs: 15_000, what: 'a reminder to the Polsek' });

    expect(rounds.get(id)?.[0]).toBe(1);
    // Rounds are claimed once each, whatever was sent again.
    const police = rounds.get(id) ?? [];
    expect(new Set(police).size).toBe(police.length);
  });
});

/** Raises `report` and expects it made and heard by the Polsek once, three graces (of 500 ms) later too. */
async function expectRaisedAndHeardOnce(operator: ConsoleClient, report: RaiseAlertInput, heard: string[]) {
  const res = await operator.timeout(15_000).emitWithAck('alert:raise', report);
  expect(res).toMatchObject({ ok: true, data: { duplicate: false } });
  await waitFor(() => heard.includes(report.clientRef), { what: 'the alert at the Polsek' });
  await new Promise((r) => setTimeout(r, 1500));
  expect(heard.filter((ref) => ref === report.clientRef)).toEqual([report.clientRef]);
}

describe('a commit answered while its server is too busy to read the answer', () => {
  it('When a raise’s commit is read only after its delivery note fell overdue, Then the server that made it delivers the alert once, not once more as overdue', async () => {
    const busy = await startTestServer({
      redisUrl: dropper.url,
      env: { SOCKET_REDIS_URL: sockets.redis.url, REDELIVER_AFTER_MS: '500' },
    });
    try {
      const heard = await polsekHearing(busy.url);
      const operator = await consoleFor(busy.url, 'operator.permisan');
      const report = uniqueAlert({ description: `Kerusuhan ${randomUUID()}` });
      dropper.stallAfter(report.description ?? '', 1500);

      await expectRaisedAndHeardOnce(operator.socket, report, heard);
    } finally {
      await busy.close();
    }
  });

  it('When a server’s commits are answered only after their delivery notes fell overdue while it still runs, Then another server leaves them to it, and the Polsek gets the alert once', async () => {
    const prefix = uniquePrefix();
    const env = { SOCKET_REDIS_URL: sockets.redis.url, REDELIVER_AFTER_MS: '500' };
    const busy = await startTestServer({ prefix, redisUrl: dropper.url, env });
    const other = await startTestServer({ prefix, redisUrl: store.redis.url, env, seedDemo: false });
    try {
      const heard = await polsekHearing(other.url);
      const operator = await consoleFor(busy.url, 'operator.permisan');
      const report = uniqueAlert({ description: `Kerusuhan ${randomUUID()}` });
      // Three graces: the other server's redelivery looks at the overdue note a dozen times meanwhile.
      dropper.delayRepliesAfter(report.description ?? '', 1500);

      await expectRaisedAndHeardOnce(operator.socket, report, heard);
    } finally {
      await Promise.all([busy.close(), other.close()]);
    }
  });

  it('When a server stops with a commit whose answer never came, Then another server delivers that change once it is overdue, without waiting for the stopped server’s heartbeat to lapse', async () => {
    const prefix = uniquePrefix();
    const graceMs = 5000;
    const env = { SOCKET_REDIS_URL: sockets.redis.url, REDELIVER_AFTER_MS: String(graceMs) };
    const leaving = await startTestServer({ prefix, redisUrl: dropper.url, env });
    const other = await startTestServer({ prefix, redisUrl: store.redis.url, env, seedDemo: false });
    try {
      const heard = await polsekHearing(other.url);
      const operator = await consoleFor(leaving.url, 'operator.permisan');
      const report = uniqueAlert({ description: `Kerusuhan ${randomUUID()}` });
      // Past the 3 s command timeout: the commit is applied, and its server answers that it could not tell.
      dropper.delayRepliesAfter(report.description ?? '', 6000);
      const res = await operator.socket.timeout(15_000).emitWithAck('alert:raise', report);
      expect(res).toMatchObject({ ok: false, error: { code: 'unavailable' } });

      const closing = leaving.close();
      // Its heartbeat went out until it began to stop: lapsing, it would let the change out a grace from now.
      const lapsesAt = Date.now() + graceMs;

      await waitFor(() => heard.includes(report.clientRef), {
        timeoutMs: 15_000,
        what: 'the alert at the Polsek',
      });
      expect(Date.now()).toBeLessThan(lapsesAt);
      await closing;
      expect(heard.filter((ref) => ref === report.clientRef)).toEqual([report.clientRef]);
    } finally {
      await Promise.all([leaving.close(), other.close()]);
    }
  });
});
