import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { redisKeys } from '../server/storage/keys.ts';
import { createSessionRepository } from '../server/storage/sessions.repository.ts';
import { uniqueAlert } from './support/alerts.ts';
import {
  type ConsoleClient,
  closeConsoles,
  connectConsole,
  consoleFor,
  login,
  openConsole,
  post,
} from './support/consoles.ts';
import { addAccount, startTestServer, type TestServer } from './support/test-server.ts';
import { tokenExpiringIn } from './support/tokens.ts';
import { waitFor } from './support/wait-for.ts';

let server: TestServer;
/** A login's session id, the middle part of its refresh token. */
const sessionOf = (login: { refreshToken: string }) => login.refreshToken.split('.')[1];
beforeAll(async () => {
  server = await startTestServer();
});
afterEach(closeConsoles);
afterAll(() => server.close());

describe('socket handshake', () => {
  it('refuses a console without a token with connect_error "unauthorized"', async () => {
    await expect(connectConsole(server.url, undefined)).rejects.toThrow('unauthorized');
  });

  it('refuses a garbage token, a token signed with another key and an expired token', async () => {
    const { session } = await consoleFor(server.url, 'operator.permisan');
    await expect(connectConsole(server.url, 'not-a-jwt')).rejects.toThrow('unauthorized');
    const forged = await tokenExpiringIn(
      session.accessToken,
      600,
      'another-secret-that-is-long-enough-to-sign',
    );
    await expect(connectConsole(server.url, forged)).rejects.toThrow('unauthorized');
    const expired = await tokenExpiringIn(session.accessToken, -10);
    await expect(connectConsole(server.url, expired)).rejects.toThrow('unauthorized');
  });

  it("joins a Permisan operator to exactly its Lapas room, its role room, its own user room and its login's room", async () => {
    const { socket, session } = await consoleFor(server.url, 'operator.permisan');
    const res = await socket.emitWithAck('session:whoami', {});
    expect(res).toEqual({
      ok: true,
      data: {
        user: session.user,
        rooms: [
          'facility:lapas-permisan',
          'role:lapas-permisan:operator',
          `user:${session.user.id}`,
          `session:${sessionOf(session)}`,
        ].sort(),
        expiresAt: session.accessTokenExpiresAt,
      },
    });
  });

  it('joins a Polresta commander to its command room only', async () => {
    const { socket, session } = await consoleFor(server.url, 'commander.cilacap');
    const res = await socket.emitWithAck('session:whoami', {});
    expect(res.ok && res.data.rooms).toEqual(
      [
        'command:polresta-cilacap',
        'role:polresta-cilacap:commander',
        `user:${session.user.id}`,
        `session:${sessionOf(session)}`,
      ].sort(),
    );
  });

  it('accepts browsers only from the allowed origins', async () => {
    const { session } = await consoleFor(server.url, 'operator.permisan');
    await expect(
      connectConsole(server.url, session.accessToken, { extraHeaders: { origin: 'http://evil.example' } }),
    ).rejects.toThrow();
    const allowed = await connectConsole(server.url, session.accessToken, {
      extraHeaders: { origin: 'http://localhost:8080' },
    });
    expect(allowed.connected).toBe(true);
  });
});

describe('a connected console', () => {
  it('is told its session ended and is disconnected when its access token expires', async () => {
    const { session } = await consoleFor(server.url, 'dispatch.nusakambangan');
    const socket = await connectConsole(server.url, await tokenExpiringIn(session.accessToken, 2));
    const ended: unknown[] = [];
    socket.on('session:ended', (payload) => ended.push(payload));
    await waitFor(() => socket.disconnected, { timeoutMs: 6000, what: 'the expired console to be dropped' });
    expect(ended).toEqual([{ reason: 'expired' }]);
  });

  it('When the only console connected drops for a moment and an alert for its unit is raised meanwhile, Then on reconnecting it recovers that alert, once', async () => {
    const { accessToken } = await login(server.url, 'dispatch.nusakambangan');
    const watcher = openConsole(server.url, accessToken, {
      reconnection: true,
      reconnectionDelay: 1000,
      randomizationFactor: 0,
    });
    await waitFor(() => watcher.connected, { what: 'the dispatch console' });
    const heard: string[] = [];
    watcher.on('alert:new', ({ incidentId }) => heard.push(incidentId));
    // Raised over HTTP, as a panic button does: no console of any party is connected but the watcher.
    const operator = await login(server.url, 'operator.permisan');
    const raise = async () => {
      const res = await post(server.url, '/api/alerts', uniqueAlert(), operator.accessToken);
      if (res.status !== 201) throw new Error(JSON.stringify(res.body));
      return res.body.incident.id as string;
    };
    // Recovery resumes from the last broadcast the console received: give it one.
    const before = await raise();
    await waitFor(() => heard.includes(before), { what: 'the first alert' });

    watcher.io.engine.close();
    // Nobody is connected now: the alert is broadcast to rooms with no console in them.
    await waitFor(() => server.app.io.of('/').adapter.sids.size === 0, {
      what: 'the server to see the drop',
    });
    const missed = await raise();
    await waitFor(() => watcher.connected && watcher.recovered, { what: 'a recovered reconnection' });
    await waitFor(() => heard.includes(missed), { what: 'the alert raised during the drop' });
    await new Promise((r) => setTimeout(r, 300));
    expect(heard).toEqual([before, missed]);
  });

  it('recovers its state after a short drop, but not once its account was disabled meanwhile, and is sent nothing it missed', async () => {
    const guard = await addAccount(server, {
      username: 'guard.nirbaya',
      role: 'operator',
      unitId: 'lapas-nirbaya',
    });
    const chief = await addAccount(server, {
      username: 'chief.nirbaya',
      role: 'security_chief',
      unitId: 'lapas-nirbaya',
    });
    const session = await login(server.url, 'guard.nirbaya', guard.password);
    const socket = openConsole(server.url, session.accessToken, {
      reconnection: true,
      reconnectionDelay: 100,
    });
    await waitFor(() => socket.connected, { what: 'first connection' });
    const heard: string[] = [];
    socket.on('alert:new', ({ incidentId }) => heard.push(incidentId));
    // Recovery resumes from the last broadcast the console received: give it one.
    const first = await socket.emitWithAck(
      'alert:raise',
      uniqueAlert({ facilityId: 'lapas-nirbaya', severity: 1 }),
    );
    await waitFor(() => first.ok && heard.includes(first.data.incident.id), { what: 'the first alert' });

    // A short drop of the transport: Socket.IO reconnects and recovers the session.
    socket.io.engine.close();
    await waitFor(() => socket.connected && socket.recovered, { what: 'a recovered reconnection' });

    // Dropped again, this time without reconnecting by itself; an alert for its Lapas is raised and the
    // account disabled meanwhile.
    socket.io.reconnection(false);
    socket.io.engine.close();
    await waitFor(() => !server.app.io.of('/').sockets.has(socket.id ?? ''), {
      what: 'the server to see the drop',
    });
    const chiefLogin = await login(server.url, 'chief.nirbaya', chief.password);
    const missed = await post(
      server.url,
      '/api/alerts',
      uniqueAlert({ facilityId: 'lapas-nirbaya', severity: 1, location: { block: 'b' } }),
      chiefLogin.accessToken,
    );
    expect(missed.status).toBe(201);
    await server.app.services.users.update(guard.user.id, { disabled: true });

    // Recovery must run the auth middleware, refuse, and send nothing the session missed. Socket.IO's client
    // would hold back events that come before the refusal; a hostile one would not, so the wire is read.
    const onTheWire: unknown[] = [];
    socket.io.on('packet', (packet) => packet.type === 2 && onTheWire.push(packet.data));
    const refused = new Promise<Error>((resolve) => socket.once('connect_error', resolve));
    socket.connect();
    expect((await refused).message).toBe('unauthorized');
    expect(socket.connected).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    expect(onTheWire).toEqual([]);
    expect(heard).toEqual([first.ok && first.data.incident.id]);
  });
});

describe('a connection recovered under another login', () => {
  it("When a workstation reconnects its socket with the next shift's token of another Lapas, Then it leaves the rooms of the login it had and gets nothing of that Lapas", async () => {
    const permisan = await login(server.url, 'operator.permisan');
    const batu = await login(server.url, 'operator.batu');
    const socket = openConsole(server.url, permisan.accessToken, {
      reconnection: true,
      reconnectionDelay: 100,
    });
    await waitFor(() => socket.connected, { what: 'the Permisan console' });
    const heard: string[] = [];
    socket.on('alert:new', ({ incidentId }) => heard.push(incidentId));
    const chief = await login(server.url, 'chief.permisan');
    const raiseAtPermisan = async () => {
      const res = await post(server.url, '/api/alerts', uniqueAlert(), chief.accessToken);
      if (res.status !== 201) throw new Error(JSON.stringify(res.body));
      return res.body.incident.id as string;
    };
    // Recovery resumes from the last broadcast the console received: give it one.
    const before = await raiseAtPermisan();
    await waitFor(() => heard.includes(before), { what: 'the first alert' });

    socket.auth = { token: batu.accessToken };
    socket.io.reconnection(false);
    socket.io.engine.close();
    await waitFor(() => !server.app.io.of('/').sockets.has(socket.id ?? ''), {
      what: 'the server to see the drop',
    });
    const missed = await raiseAtPermisan();
    socket.connect();
    await waitFor(() => socket.connected && socket.recovered, { what: 'a recovered reconnection' });
    const after = await raiseAtPermisan();

    const rooms = server.app.io.of('/').sockets.get(socket.id ?? '')?.rooms;
    expect(rooms?.has('facility:lapas-permisan')).toBe(false);
    expect(rooms?.has('facility:lapas-batu')).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(heard).toEqual([before]);
    expect(heard).not.toContain(missed);
    expect(heard).not.toContain(after);
  });
});

describe('a session ended before its token expires', () => {
  async function ended(socket: ConsoleClient) {
    const told = new Promise((resolve) => socket.once('session:ended', resolve));
    await waitFor(() => socket.disconnected, { what: 'the console to be dropped' });
    return told;
  }

  it('When a console logs out, Then the sockets of that session are told and dropped, and those of another session of the same account keep receiving', async () => {
    const leaving = await login(server.url, 'dispatch.nusakambangan');
    const staying = await login(server.url, 'dispatch.nusakambangan');
    const [gone, kept] = await Promise.all([
      connectConsole(server.url, leaving.accessToken),
      connectConsole(server.url, staying.accessToken),
    ]);
    const told = ended(gone);
    expect((await post(server.url, '/api/auth/logout', { refreshToken: leaving.refreshToken })).status).toBe(
      204,
    );
    expect(await told).toEqual({ reason: 'revoked' });

    const heard = new Promise<{ incidentId: string }>((resolve) => kept.once('alert:new', resolve));
    const operator = await login(server.url, 'operator.permisan');
    const raised = await post(server.url, '/api/alerts', uniqueAlert(), operator.accessToken);
    expect((await heard).incidentId).toBe(raised.body.incident.id);
    expect(kept.connected).toBe(true);
  });

  it('When a refresh token is presented a second time, Then the sockets of its session are dropped: a stolen copy stops receiving', async () => {
    const session = await login(server.url, 'dispatch.nusakambangan');
    const thief = await connectConsole(server.url, session.accessToken);
    const told = ended(thief);
    expect((await post(server.url, '/api/auth/refresh', { refreshToken: session.refreshToken })).status).toBe(
      200,
    );
    expect(thief.connected).toBe(true);
    expect((await post(server.url, '/api/auth/refresh', { refreshToken: session.refreshToken })).status).toBe(
      401,
    );
    expect(await told).toEqual({ reason: 'revoked' });
  });
});

describe('each command re-checks the caller', () => {
  it('When a session ends without the revocation message reaching this server, Then its next raise is refused, the console dropped, and nothing stored', async () => {
    const { socket, session } = await consoleFor(server.url, 'operator.permisan');
    const redis = new Redis(inject('redisUrl'));
    try {
      // Straight in the store: as if the revocation had been published while this server was cut off.
      const [, sessionId = ''] = session.refreshToken.split('.');
      await createSessionRepository(redis, redisKeys(server.prefix)).revoke(sessionId, session.user.id);
      const alert = uniqueAlert();
      const dropped = new Promise((resolve) => socket.once('disconnect', resolve));
      const res = await socket.emitWithAck('alert:raise', alert);
      expect(res).toMatchObject({ ok: false, error: { code: 'unauthorized' } });
      await dropped;
      // Nothing was stored: the same report from a new session is new, not a retry of a stored one.
      const again = await consoleFor(server.url, 'operator.permisan');
      expect(await again.socket.emitWithAck('alert:raise', alert)).toMatchObject({
        ok: true,
        data: { duplicate: false, incident: { alertCount: 1 } },
      });
    } finally {
      redis.disconnect();
    }
  });
});
