import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadTopologyFile } from '../server/config-files.ts';
import { DEMO_PASSWORD, demoAccounts } from '../server/domain/seed.ts';
import { AdminUserView, type LoginResponse } from '../shared/auth.ts';
import { HttpErrorResponse } from '../shared/envelope.ts';
import { type ConsoleClient, closeConsoles, connectConsole, consoleFor, login } from './support/consoles.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

const INVALID_LOGIN = { error: { code: 'unauthorized', message: 'Invalid username or password' } };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let server: TestServer;
let admin: LoginResponse;
/** Servers a single test starts with its own settings; closed after that test. */
const ownServers: TestServer[] = [];

beforeAll(async () => {
  server = await startTestServer();
  admin = await login(server.url, 'admin');
});
afterEach(async () => {
  closeConsoles();
  await Promise.all(ownServers.splice(0).map((s) => s.close()));
});
afterAll(() => server?.close());

async function startOwnServer(env: Record<string, string>) {
  const own = await startTestServer({ env });
  ownServers.push(own);
  return own;
}

interface Call {
  body?: unknown;
  token?: string;
  headers?: Record<string, string>;
  baseUrl?: string;
}

/** One HTTP call; the body is sent as given when it is a string, as JSON otherwise. */
async function call(method: string, path: string, { body, token, headers = {}, baseUrl }: Call = {}) {
  const res = await fetch(`${baseUrl ?? server.url}${path}`, {
    method,
    headers: {
      ...(body !== undefined && { 'content-type': 'application/json' }),
      ...(token && { authorization: `Bearer ${token}` }),
      ...headers,
    },
    ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  const json = res.headers.get('content-type')?.startsWith('application/json');
  return { status: res.status, headers: res.headers, body: json && text ? JSON.parse(text) : text };
}

/** Asserts the one error shape every failing request answers with, and returns its body. */
function expectError(res: { status: number; headers: Headers; body: unknown }, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(Object.keys(res.body as object)).toEqual(['error']);
  const { error } = HttpErrorResponse.parse(res.body);
  expect(error.code).toBe(code);
  expect(error.message).not.toBe('');
  return error;
}

const newUsername = () => `u.${randomUUID().slice(0, 8)}`;

/** Creates an account through the admin API, with the demo password so `consoleFor` can log it in. */
async function createUser(role: string, unitId: string): Promise<AdminUserView> {
  const res = await call('POST', '/api/users', {
    token: admin.accessToken,
    body: { username: newUsername(), displayName: 'Petugas Uji', password: DEMO_PASSWORD, role, unitId },
  });
  expect(res.status).toBe(201);
  return AdminUserView.parse(res.body.user);
}

/** Records what the server tells a console about the end of its session. */
function watchEnd(socket: ConsoleClient) {
  const seen: { ended: unknown[]; disconnect?: string } = { ended: [] };
  socket.on('session:ended', (payload) => seen.ended.push(payload));
  socket.on('disconnect', (reason) => {
    seen.disconnect = reason;
  });
  return seen;
}

describe('request bodies', () => {
  it('answers malformed JSON with 400 validation_failed', async () => {
    const res = await call('POST', '/api/auth/login', { body: '{"username": "admin", ' });
    expect(expectError(res, 400, 'validation_failed').message).toBe('Malformed JSON body');
  });

  it('answers a body that fails the schema with 400 and an issue for each bad field', async () => {
    const res = await call('POST', '/api/users', {
      token: admin.accessToken,
      body: { username: 'A!', displayName: '', password: 'short', role: 'warden', unitId: 'Lapas Batu' },
    });
    const error = expectError(res, 400, 'validation_failed');
    expect(error.issues?.map((i) => i.path).sort()).toEqual([
      'displayName',
      'password',
      'role',
      'unitId',
      'username',
    ]);
    for (const issue of error.issues ?? []) expect(issue.message).not.toBe('');
    expect(error.issues).toContainEqual({ path: 'password', message: 'at least 12 characters' });
  });

  it('refuses a field the schema does not know', async () => {
    const res = await call('POST', '/api/auth/login', {
      body: { username: 'admin', password: DEMO_PASSWORD, isAdmin: true },
    });
    expect(expectError(res, 400, 'validation_failed').issues).toHaveLength(1);
  });

  it('answers a body over 64 KiB with 413 payload_too_large', async () => {
    const res = await call('POST', '/api/auth/login', {
      body: { username: 'admin', password: 'x'.repeat(65 * 1024) },
    });
    expectError(res, 413, 'payload_too_large');
  });

  it('answers a body whose Content-Encoding it does not hold with 400 validation_failed, not as a server fault', async () => {
    for (const encoding of ['gzip', 'deflate', 'br']) {
      const res = await call('POST', '/api/auth/login', {
        body: { username: 'admin', password: DEMO_PASSWORD },
        headers: { 'content-encoding': encoding },
      });
      expectError(res, 400, 'validation_failed');
    }
  });

  it('answers a path whose escapes do not decode with 400 validation_failed, not as a server fault', async () => {
    for (const path of ['/api/incidents/%E0%A4%A', '/api/incidents/%ZZ/events', '/api/users/%ZZ'])
      expectError(await call('GET', path, { token: admin.accessToken }), 400, 'validation_failed');
  });

  it('answers an unknown route with a 404 JSON envelope, with or without a token', async () => {
    const res = await call('GET', '/no-such-page');
    expect(res.body).toEqual({ error: { code: 'not_found', message: 'No route GET /no-such-page' } });
    expectError(res, 404, 'not_found');
    expectError(await call('GET', '/api/no-such-thing', { token: admin.accessToken }), 404, 'not_found');
  });
});

describe('topology', () => {
  it('is refused without a token', async () => {
    expectError(await call('GET', '/api/topology'), 401, 'unauthorized');
  });

  it('gives the default topology to every authenticated demo account', async () => {
    const expected = JSON.parse(JSON.stringify(await loadTopologyFile('config/topology.json')));
    for (const account of demoAccounts) {
      const session = await login(server.url, account.username);
      const res = await call('GET', '/api/topology', { token: session.accessToken });
      expect(res.status, account.username).toBe(200);
      expect(res.body).toEqual(expected);
    }
  });
});

describe('user administration', () => {
  it.each(demoAccounts.filter((a) => a.role !== 'admin').map((a) => [a.username, a.role]))(
    'is forbidden to %s (%s)',
    async (username) => {
      const session = await login(server.url, username);
      const token = session.accessToken;
      const attempted = newUsername();
      const responses = [
        await call('GET', '/api/users', { token }),
        await call('GET', `/api/users/${admin.user.id}`, { token }),
        await call('POST', '/api/users', {
          token,
          body: {
            username: attempted,
            displayName: 'X',
            password: DEMO_PASSWORD,
            role: 'admin',
            unitId: 'lapas-batu',
          },
        }),
        await call('PATCH', `/api/users/${admin.user.id}`, { token, body: { disabled: true } }),
        await call('POST', `/api/users/${admin.user.id}/password`, {
          token,
          body: { password: 'taken-over-123' },
        }),
      ];
      for (const res of responses) {
        expect(res.body).toEqual({ error: { code: 'forbidden', message: 'Your role may not do this' } });
        expectError(res, 403, 'forbidden');
      }
      // Nothing was changed behind the refusals.
      expect(
        (await call('POST', '/api/auth/login', { body: { username: attempted, password: DEMO_PASSWORD } }))
          .status,
      ).toBe(401);
      expect((await call('GET', '/api/users', { token: admin.accessToken })).status).toBe(200);
    },
  );

  it('lets the admin create, list, read and rename an account, never showing a password hash', async () => {
    const username = newUsername();
    const created = await call('POST', '/api/users', {
      token: admin.accessToken,
      body: {
        username: username.toUpperCase(),
        displayName: ' Ka. KPLP Besi ',
        password: 'a-long-enough-password',
        role: 'security_chief',
        unitId: 'lapas-besi',
      },
    });
    expect(created.status).toBe(201);
    const user = AdminUserView.strict().parse(created.body.user);
    expect(user).toEqual({
      id: expect.any(String),
      username,
      displayName: 'Ka. KPLP Besi',
      role: 'security_chief',
      unitId: 'lapas-besi',
      unitType: 'facility',
      disabled: false,
      createdAt: expect.any(String),
    });

    const list = await call('GET', '/api/users', { token: admin.accessToken });
    expect(list.status).toBe(200);
    const users = AdminUserView.strict().array().parse(list.body.users);
    expect(users).toContainEqual(user);
    expect(users.map((u) => u.username)).toEqual(expect.arrayContaining(demoAccounts.map((a) => a.username)));

    const read = await call('GET', `/api/users/${user.id}`, { token: admin.accessToken });
    expect(read.body).toEqual({ user });

    const renamed = await call('PATCH', `/api/users/${user.id}`, {
      token: admin.accessToken,
      body: { displayName: 'Kepala KPLP Besi' },
    });
    expect(renamed.status).toBe(200);
    expect(renamed.body.user).toEqual({ ...user, displayName: 'Kepala KPLP Besi' });

    for (const text of [created, list, read, renamed].map((r) => JSON.stringify(r.body)))
      expect(text).not.toMatch(/argon2|passwordHash/);
    expect((await login(server.url, username, 'a-long-enough-password')).user.id).toBe(user.id);
  });

  it('answers a role that does not fit the unit with 400 and an issue on role', async () => {
    const res = await call('POST', '/api/users', {
      token: admin.accessToken,
      body: {
        username: newUsername(),
        displayName: 'Piket',
        password: DEMO_PASSWORD,
        role: 'dispatcher',
        unitId: 'lapas-batu',
      },
    });
    const error = expectError(res, 400, 'validation_failed');
    expect(error.issues?.map((i) => i.path)).toEqual(['role']);
  });

  it('answers an unknown unit with 400 and an issue on unitId', async () => {
    const res = await call('POST', '/api/users', {
      token: admin.accessToken,
      body: {
        username: newUsername(),
        displayName: 'Operator',
        password: DEMO_PASSWORD,
        role: 'operator',
        unitId: 'lapas-atlantis',
      },
    });
    const error = expectError(res, 400, 'validation_failed');
    expect(error.issues?.map((i) => i.path)).toEqual(['unitId']);
  });

  it('answers a username that is taken, in any case, with 409 conflict', async () => {
    const res = await call('POST', '/api/users', {
      token: admin.accessToken,
      body: {
        username: 'Operator.Permisan',
        displayName: 'Second Operator',
        password: DEMO_PASSWORD,
        role: 'operator',
        unitId: 'lapas-permisan',
      },
    });
    expectError(res, 409, 'conflict');
    // The existing account keeps its password.
    expect((await login(server.url, 'operator.permisan')).user.displayName).toBe(
      'Operator Ruang Kendali Permisan',
    );
  });

  it('answers an unknown user id with 404 not_found', async () => {
    const id = randomUUID();
    expectError(await call('GET', `/api/users/${id}`, { token: admin.accessToken }), 404, 'not_found');
    expectError(
      await call('PATCH', `/api/users/${id}`, { token: admin.accessToken, body: { disabled: true } }),
      404,
      'not_found',
    );
    expectError(
      await call('POST', `/api/users/${id}/password`, {
        token: admin.accessToken,
        body: { password: 'a-long-enough-password' },
      }),
      404,
      'not_found',
    );
  });

  it('answers a malformed id with 400 validation_failed on every route that takes one, changing nothing', async () => {
    const token = admin.accessToken;
    for (const id of ['not-a-uuid', `${admin.user.id}x`, 'a'.repeat(300)]) {
      for (const [method, path, body] of [
        ['GET', `/api/users/${id}`, undefined],
        ['PATCH', `/api/users/${id}`, { disabled: true }],
        ['POST', `/api/users/${id}/password`, { password: 'a-long-enough-password' }],
        ['DELETE', `/api/api-keys/${id}`, undefined],
      ] as const) {
        const error = expectError(await call(method, path, { token, body }), 400, 'validation_failed');
        expect(error.issues).toHaveLength(1);
      }
    }
    expect((await call('GET', `/api/users/${admin.user.id}`, { token })).body.user.disabled).toBe(false);
  });

  it('disabling a user refuses their next login, ends their refresh token and disconnects their console', async () => {
    const user = await createUser('operator', 'lapas-permisan');
    const { socket, session } = await consoleFor(server.url, user.username);
    const seen = watchEnd(socket);

    const res = await call('PATCH', `/api/users/${user.id}`, {
      token: admin.accessToken,
      body: { disabled: true },
    });
    expect(res.status).toBe(200);
    expect(res.body.user.disabled).toBe(true);

    await waitFor(() => seen.disconnect, { what: 'the disabled user’s console to be disconnected' });
    expect(seen.ended).toEqual([{ reason: 'revoked' }]);
    expect(seen.disconnect).toBe('io server disconnect');

    const relogin = await call('POST', '/api/auth/login', {
      body: { username: user.username, password: DEMO_PASSWORD },
    });
    expect(relogin.status).toBe(401);
    expect(relogin.body).toEqual(INVALID_LOGIN);
    expectError(
      await call('POST', '/api/auth/refresh', { body: { refreshToken: session.refreshToken } }),
      401,
      'unauthorized',
    );
    expectError(await call('GET', '/api/topology', { token: session.accessToken }), 401, 'unauthorized');
    await expect(connectConsole(server.url, session.accessToken)).rejects.toThrow('unauthorized');
  });

  it('resetting a password ends every existing session of that user', async () => {
    const user = await createUser('dispatcher', 'polsek-nusakambangan');
    const { socket, session } = await consoleFor(server.url, user.username);
    const other = await login(server.url, user.username);
    const seen = watchEnd(socket);

    const res = await call('POST', `/api/users/${user.id}/password`, {
      token: admin.accessToken,
      body: { password: 'a-brand-new-password' },
    });
    expect(res.status).toBe(204);

    await waitFor(() => seen.disconnect, { what: 'the console to be disconnected' });
    expect(seen.ended).toEqual([{ reason: 'revoked' }]);
    for (const old of [session, other]) {
      expect((await call('GET', '/api/topology', { token: old.accessToken })).status).toBe(401);
      const refreshed = await call('POST', '/api/auth/refresh', { body: { refreshToken: old.refreshToken } });
      expect(refreshed.status).toBe(401);
    }
    const oldPassword = await call('POST', '/api/auth/login', {
      body: { username: user.username, password: DEMO_PASSWORD },
    });
    expect(oldPassword.body).toEqual(INVALID_LOGIN);
    expect((await login(server.url, user.username, 'a-brand-new-password')).user.id).toBe(user.id);
  });
});

describe('operations endpoints', () => {
  it('answers /healthz with 200', async () => {
    const res = await call('GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('answers /readyz with 200 and status "ready" while Redis is up', async () => {
    const res = await call('GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready', failing: [] });
  });

  it('serves Prometheus text with the socket gauge and the HTTP latency histogram', async () => {
    const user = await createUser('security_chief', 'lapas-karanganyar');
    await consoleFor(server.url, user.username);
    const metrics = await waitFor(
      async () => {
        const res = await call('GET', '/metrics');
        return /^sinergi_sockets_connected\{unit_type="facility"\} [1-9]/m.test(res.body) && res;
      },
      { what: 'the connected console to be counted' },
    );
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(metrics.body).toContain('# TYPE sinergi_sockets_connected gauge');
    expect(metrics.body).toContain('# TYPE sinergi_http_request_duration_seconds histogram');
    expect(metrics.body).toMatch(
      /^sinergi_http_request_duration_seconds_count\{method="POST",route="\/login",status="200"\} \d+/m,
    );
  });

  it('serves /metrics to no one off this machine without METRICS_TOKEN, and with it only to who presents it', async () => {
    // One proxy hop: the address the server judges by is the client's, as nginx passes it.
    const proxied = await startOwnServer({ TRUST_PROXY: '1' });
    const remote = { 'x-forwarded-for': '203.0.113.9' };
    expectError(await call('GET', '/metrics', { baseUrl: proxied.url, headers: remote }), 403, 'forbidden');
    const local = await call('GET', '/metrics', {
      baseUrl: proxied.url,
      headers: { 'x-forwarded-for': '127.0.0.1' },
    });
    expect(local.status).toBe(200);

    const token = 'scrape-token-0123456789abcdef';
    const guarded = await startOwnServer({ TRUST_PROXY: '1', METRICS_TOKEN: token });
    for (const headers of [{}, remote, { ...remote, authorization: 'Bearer not-the-token' }])
      expectError(await call('GET', '/metrics', { baseUrl: guarded.url, headers }), 401, 'unauthorized');
    const scraped = await call('GET', '/metrics', { baseUrl: guarded.url, headers: remote, token });
    expect(scraped.status).toBe(200);
    expect(scraped.body).toContain('# TYPE sinergi_sockets_connected gauge');
  });
});

describe('request ids', () => {
  it('echoes a sane X-Request-Id', async () => {
    const res = await call('GET', '/healthz', { headers: { 'x-request-id': 'console-7.retry_2' } });
    expect(res.headers.get('x-request-id')).toBe('console-7.retry_2');
  });

  it('generates an id when none is given, also on an error response', async () => {
    expect((await call('GET', '/healthz')).headers.get('x-request-id')).toMatch(UUID);
    expect((await call('GET', '/no-such-page')).headers.get('x-request-id')).toMatch(UUID);
  });

  it.each([
    ['with spaces and markup', 'evil id <script>'],
    ['longer than 64 characters', 'a'.repeat(65)],
  ])('replaces an id %s with a generated one', async (_what, given) => {
    const res = await call('GET', '/healthz', { headers: { 'x-request-id': given } });
    expect(res.headers.get('x-request-id')).toMatch(UUID);
  });
});

describe('client addresses behind proxies', () => {
  const loginVia = (baseUrl: string, forwardedFor: string) =>
    call('POST', '/api/auth/login', {
      baseUrl,
      headers: { 'x-forwarded-for': forwardedFor },
      body: { username: newUsername(), password: 'guess' },
    });

  it('with TRUST_PROXY=0, a forged X-Forwarded-For does not dodge the per-address login limit', async () => {
    const own = await startOwnServer({ TRUST_PROXY: '0', LOGIN_MAX_ATTEMPTS_PER_IP: '3' });
    for (let i = 1; i <= 3; i++) expect((await loginVia(own.url, `203.0.113.${i}`)).status).toBe(401);
    const res = await loginVia(own.url, '203.0.113.99');
    expectError(res, 429, 'rate_limited');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('with TRUST_PROXY=1, only the address the proxy appended counts, not what the client put before it', async () => {
    const own = await startOwnServer({ TRUST_PROXY: '1', LOGIN_MAX_ATTEMPTS_PER_IP: '3' });
    for (let i = 1; i <= 3; i++)
      expect((await loginVia(own.url, `10.0.0.${i}, 203.0.113.7`)).status).toBe(401);
    expectError(await loginVia(own.url, '10.0.0.99, 203.0.113.7'), 429, 'rate_limited');
    // Another real client behind the same proxy has its own allowance.
    expect((await loginVia(own.url, '203.0.113.8')).status).toBe(401);
  });
});
