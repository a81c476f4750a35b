import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEMO_PASSWORD } from '../server/domain/seed.ts';
import { redisKeys } from '../server/storage/keys.ts';
import { USED_SECRETS_KEPT } from '../server/storage/sessions.repository.ts';
import { createUserRepository } from '../server/storage/users.repository.ts';
import { LoginResponse } from '../shared/auth.ts';
import { HttpErrorResponse } from '../shared/envelope.ts';
import { type ConsoleClient, closeConsoles, consoleFor, get, login, post } from './support/consoles.ts';
import { addAccount, startTestServer, TEST_JWT_SECRET, type TestServer } from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

const INVALID_LOGIN = { error: { code: 'unauthorized', message: 'Invalid username or password' } };

let server: TestServer;
// Sits behind one proxy hop, so each test can speak as a different client address through X-Forwarded-For.
let limited: TestServer;

beforeAll(async () => {
  [server, limited] = await Promise.all([
    startTestServer(),
    startTestServer({
      env: {
        LOGIN_MAX_FAILURES_PER_USER: '3',
        LOGIN_MAX_FAILURES_PER_USER_AND_IP: '2',
        LOGIN_MAX_ATTEMPTS_PER_IP: '5',
        TRUST_PROXY: '1',
      },
    }),
  ]);
});
afterEach(closeConsoles);
afterAll(() => Promise.all([server?.close(), limited?.close()]));

let addressCount = 0;
/** A client address no other test has used, so per-address counters start at zero. */
const freshAddress = () => `198.51.100.${++addressCount}`;
const unknownUsername = () => `nobody.${randomUUID().slice(0, 8)}`;

async function loginFrom(address: string, username: string, password: string) {
  const res = await fetch(`${limited.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
    body: JSON.stringify({ username, password }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as unknown };
}

const refresh = (refreshToken: string) => post(server.url, '/api/auth/refresh', { refreshToken });
const topology = (accessToken: string) => get(server.url, '/api/topology', accessToken);

/** Signs an access token as the server would, with any one claim or key changed. */
function signAccessToken(
  session: LoginResponse,
  changes: { secret?: string; issuer?: string; audience?: string; expiresAt?: number; alg?: string } = {},
) {
  const nowSeconds = Math.floor(Date.now() / 1000);
  const sessionId = session.refreshToken.split('.')[1] ?? '';
  return new SignJWT({ sid: sessionId })
    .setProtectedHeader({ alg: changes.alg ?? 'HS256', typ: 'JWT' })
    .setSubject(session.user.id)
    .setIssuer(changes.issuer ?? 'sinergi')
    .setAudience(changes.audience ?? 'sinergi-console')
    .setIssuedAt(nowSeconds - 60)
    .setExpirationTime(changes.expiresAt ?? nowSeconds + 300)
    .sign(new TextEncoder().encode(changes.secret ?? TEST_JWT_SECRET));
}

describe('logging in', () => {
  it('answers a correct password with access and refresh tokens and the public user, never a password hash', async () => {
    const res = await post(server.url, '/api/auth/login', {
      username: 'operator.permisan',
      password: DEMO_PASSWORD,
    });
    expect(res.status).toBe(200);
    const body = LoginResponse.strict().parse(res.body);
    expect(body.user).toEqual({
      id: expect.any(String),
      username: 'operator.permisan',
      displayName: 'Operator Ruang Kendali Permisan',
      role: 'operator',
      unitId: 'lapas-permisan',
      unitType: 'facility',
    });
    expect(body.accessToken).not.toBe('');
    expect(body.refreshToken).not.toBe('');
    expect(Date.parse(body.accessTokenExpiresAt)).toBeGreaterThan(Date.now());
    const text = JSON.stringify(res.body);
    expect(text).not.toContain('argon2');
    expect(text.toLowerCase()).not.toContain('hash');
    expect((await topology(body.accessToken)).status).toBe(200);
  });

  it('accepts the username in any case and with surrounding spaces', async () => {
    const res = await post(server.url, '/api/auth/login', {
      username: '  Operator.Permisan ',
      password: DEMO_PASSWORD,
    });
    expect(res.status).toBe(200);
    expect(res.body.user.username).toBe('operator.permisan');
  });

  it('answers a wrong password and an unknown user with the same 401 and message', async () => {
    const wrongPassword = await post(server.url, '/api/auth/login', {
      username: 'operator.permisan',
      password: 'not-the-password',
    });
    const unknownUser = await post(server.url, '/api/auth/login', {
      username: unknownUsername(),
      password: DEMO_PASSWORD,
    });
    expect(wrongPassword.status).toBe(401);
    expect(unknownUser.status).toBe(401);
    expect(wrongPassword.body).toEqual(INVALID_LOGIN);
    expect(unknownUser.body).toEqual(wrongPassword.body);
  });
});

describe('login rate limits', () => {
  it('locks an account after 3 failed passwords, even from different addresses, with 429 and Retry-After', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await loginFrom(freshAddress(), 'operator.batu', 'wrong-password');
      expect(res.status).toBe(401);
    }
    // The right password does not unlock it either: a guesser must not learn when a guess was right.
    const locked = await loginFrom(freshAddress(), 'operator.batu', DEMO_PASSWORD);
    expect(locked.status).toBe(429);
    expect(HttpErrorResponse.parse(locked.body).error.code).toBe('rate_limited');
    const retryAfter = Number(locked.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(900);

    // Other accounts from the same address are unaffected.
    expect((await loginFrom(freshAddress(), 'chief.permisan', DEMO_PASSWORD)).status).toBe(200);
  });

  it('locks out of an account the workstation that failed twice, not the account: another workstation still logs in', async () => {
    const { password } = await addAccount(limited, {
      username: 'control.batu',
      role: 'operator',
      unitId: 'lapas-batu',
    });
    const mistyping = freshAddress();
    for (let i = 0; i < 2; i++) expect((await loginFrom(mistyping, 'control.batu', 'typo')).status).toBe(401);
    const refused = await loginFrom(mistyping, 'control.batu', password);
    expect(refused.status).toBe(429);
    expect(HttpErrorResponse.parse(refused.body).error.code).toBe('rate_limited');
    expect((await loginFrom(freshAddress(), 'control.batu', password)).status).toBe(200);
  });

  it('answers 401 to at most 3 of 20 wrong passwords sent at once for one account, 429 to the rest, and then to the right one too', async () => {
    const { password } = await addAccount(limited, {
      username: 'guard.parallel',
      role: 'operator',
      unitId: 'lapas-batu',
    });
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => loginFrom(freshAddress(), 'guard.parallel', `guess-${i}`)),
    );
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 401)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(17);
    expect((await loginFrom(freshAddress(), 'guard.parallel', password)).status).toBe(429);
  });

  it('lets in every workstation of a control room logging in to its shared account at the same moment, however many', async () => {
    const { password } = await addAccount(limited, {
      username: 'control.room',
      role: 'operator',
      unitId: 'lapas-batu',
    });
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => loginFrom(freshAddress(), 'control.room', password)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
  });

  it('counts failures for an unknown username too, so probing for accounts is limited the same way', async () => {
    const username = unknownUsername();
    for (let i = 0; i < 3; i++) expect((await loginFrom(freshAddress(), username, 'guess')).status).toBe(401);
    expect((await loginFrom(freshAddress(), username, 'guess')).status).toBe(429);
  });

  it("forgets a workstation's own failures once it logs in below the limits", async () => {
    const { password } = await addAccount(limited, {
      username: 'desk.kanwil',
      role: 'supervisor',
      unitId: 'kanwil-ditjenpas-jateng',
    });
    const desk = freshAddress();
    expect((await loginFrom(desk, 'desk.kanwil', 'typo-one')).status).toBe(401);
    expect((await loginFrom(desk, 'desk.kanwil', password)).status).toBe(200);
    expect((await loginFrom(desk, 'desk.kanwil', 'typo-two')).status).toBe(401);
    // Not forgotten, the desk's two failures would have reached its limit of two, and this be refused.
    expect((await loginFrom(desk, 'desk.kanwil', password)).status).toBe(200);
  });

  it('does not forgive guesses from other addresses when the account logs in: they still reach its limit', async () => {
    const { password } = await addAccount(limited, {
      username: 'guard.spread',
      role: 'operator',
      unitId: 'lapas-batu',
    });
    expect((await loginFrom(freshAddress(), 'guard.spread', 'guess-1')).status).toBe(401);
    expect((await loginFrom(freshAddress(), 'guard.spread', 'guess-2')).status).toBe(401);
    // The control room logs in as usual between the guesses...
    expect((await loginFrom(freshAddress(), 'guard.spread', password)).status).toBe(200);
    expect((await loginFrom(freshAddress(), 'guard.spread', 'guess-3')).status).toBe(401);
    // ...and the third guess still locks the account for the window.
    expect((await loginFrom(freshAddress(), 'guard.spread', 'guess-4')).status).toBe(429);
  });

  it('refuses a sixth attempt from one address with 429 and Retry-After, whatever the account, but not other addresses', async () => {
    const address = freshAddress();
    for (let i = 0; i < 5; i++) {
      const username = i % 2 === 0 ? unknownUsername() : 'commander.cilacap';
      const res = await loginFrom(address, username, i % 2 === 0 ? 'guess' : DEMO_PASSWORD);
      expect(res.status).toBe(i % 2 === 0 ? 401 : 200);
    }
    const flooded = await loginFrom(address, 'commander.cilacap', DEMO_PASSWORD);
    expect(flooded.status).toBe(429);
    expect(HttpErrorResponse.parse(flooded.body).error.code).toBe('rate_limited');
    expect(Number(flooded.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    expect((await loginFrom(freshAddress(), 'commander.cilacap', DEMO_PASSWORD)).status).toBe(200);
  });
});

describe('refresh token rotation', () => {
  it('issues working new tokens and refuses the old refresh token afterwards', async () => {
    const first = await login(server.url, 'operator.permisan');
    const res = await refresh(first.refreshToken);
    expect(res.status).toBe(200);
    const second = LoginResponse.parse(res.body);
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.user).toEqual(first.user);
    expect((await topology(second.accessToken)).status).toBe(200);

    const replay = await refresh(first.refreshToken);
    expect(replay.status).toBe(401);
    expect(HttpErrorResponse.parse(replay.body).error.code).toBe('unauthorized');
  });

  it('ends the whole session when an old refresh token is presented again', async () => {
    const first = await login(server.url, 'operator.permisan');
    const second = LoginResponse.parse((await refresh(first.refreshToken)).body);

    expect((await refresh(first.refreshToken)).status).toBe(401);

    expect((await refresh(second.refreshToken)).status).toBe(401);
    expect((await topology(second.accessToken)).status).toBe(401);
    expect((await topology(first.accessToken)).status).toBe(401);
  });

  it('ends the whole session when a refresh token from several rotations ago is replayed', async () => {
    // A thief who rotated twice with a stolen token must still be caught when the owner's old one returns.
    const first = await login(server.url, 'operator.permisan');
    const second = LoginResponse.parse((await refresh(first.refreshToken)).body);
    const third = LoginResponse.parse((await refresh(second.refreshToken)).body);

    expect((await refresh(first.refreshToken)).status).toBe(401);

    expect((await refresh(third.refreshToken)).status).toBe(401);
    expect((await topology(third.accessToken)).status).toBe(401);
  });

  it('keeps a record of fixed size for a console that refreshes for days, and still catches a recent token replayed', async () => {
    const first = await login(server.url, 'operator.permisan');
    const [userId = '', sessionId = ''] = first.refreshToken.split('.');
    const keys = redisKeys(server.prefix);
    const redis = new Redis(inject('redisUrl'));
    const footprint = async () => {
      let bytes = 0;
      for (const key of [keys.session(userId, sessionId), keys.sessionUsed(userId, sessionId)])
        bytes += Number(await redis.memory('USAGE', key, 'SAMPLES', 0)) || 0;
      return bytes;
    };
    try {
      const tokens = [first];
      const rotate = async (times: number) => {
        for (let i = 0; i < times; i++) {
          const last = tokens.at(-1) as LoginResponse;
          tokens.push(LoginResponse.parse((await refresh(last.refreshToken)).body));
        }
      };
      await rotate(USED_SECRETS_KEPT);
      const afterADay = await footprint();
      await rotate(USED_SECRETS_KEPT);
      // Twice the refreshes, the same record (a few bytes of encoding aside).
      expect(await footprint()).toBeLessThanOrEqual(afterADay * 1.05);

      // A token older than the record is refused, and does not end the session it no longer belongs to.
      const ancient = await refresh(first.refreshToken);
      expect(ancient.status).toBe(401);
      expect(ancient.body).toMatchObject({ error: { message: 'Invalid refresh token' } });
      const current = tokens.at(-1) as LoginResponse;
      expect((await topology(current.accessToken)).status).toBe(200);

      // A recent one replayed still ends it.
      const recent = tokens.at(-5) as LoginResponse;
      expect((await refresh(recent.refreshToken)).body).toMatchObject({
        error: { message: 'Refresh token reused; the session has been ended' },
      });
      expect((await topology(current.accessToken)).status).toBe(401);
      expect(await footprint()).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('keeps an account’s index of sessions to the live ones, however long its workstations sign in day after day', async () => {
    const redis = new Redis(inject('redisUrl'));
    const keys = redisKeys(server.prefix);
    try {
      const first = await login(server.url, 'dispatch.nusakambangan');
      const [userId = ''] = first.refreshToken.split('.');
      // Sessions that ran out, as yesterday's logins of the shared account have.
      const gone: string[] = [];
      for (let i = 0; i < 3; i++) {
        const old = await login(server.url, 'dispatch.nusakambangan');
        const [, sessionId = ''] = old.refreshToken.split('.');
        await redis.del(keys.session(userId, sessionId));
        gone.push(sessionId);
      }

      const today = await login(server.url, 'dispatch.nusakambangan');

      const indexed = await redis.smembers(keys.userSessions(userId));
      for (const sessionId of gone) expect(indexed).not.toContain(sessionId);
      for (const live of [first, today]) expect(indexed).toContain(live.refreshToken.split('.')[1]);
    } finally {
      redis.disconnect();
    }
  });

  it('refuses a malformed or made-up refresh token with 401', async () => {
    const session = await login(server.url, 'operator.permisan');
    const [userId, sessionId] = session.refreshToken.split('.');
    for (const refreshToken of ['garbage', `${userId}.${sessionId}.made-up-secret`, 'a.b.c.d']) {
      const res = await refresh(refreshToken);
      expect(res.status).toBe(401);
      expect(HttpErrorResponse.parse(res.body).error.code).toBe('unauthorized');
    }
    expect((await topology(session.accessToken)).status).toBe(200);
  });
});

describe('logging out', () => {
  it('ends the session: its refresh token is refused and its access token gets 401', async () => {
    const session = await login(server.url, 'chief.permisan');
    const other = await login(server.url, 'chief.permisan');

    const res = await post(server.url, '/api/auth/logout', { refreshToken: session.refreshToken });
    expect(res.status).toBe(204);

    expect((await refresh(session.refreshToken)).status).toBe(401);
    const refused = await topology(session.accessToken);
    expect(refused.status).toBe(401);
    expect(HttpErrorResponse.parse(refused.body).error.code).toBe('unauthorized');

    // Only that session: the same user on another console stays logged in.
    expect((await topology(other.accessToken)).status).toBe(200);
  });

  it('does not end a session for someone who knows its ids but not its refresh secret', async () => {
    // The user and session ids are readable in every access token, so they prove nothing on their own.
    const session = await login(server.url, 'chief.permisan');
    const [userId, sessionId] = session.refreshToken.split('.');
    const res = await post(server.url, '/api/auth/logout', { refreshToken: `${userId}.${sessionId}.forged` });
    expect(res.status).toBe(401);
    expect((await topology(session.accessToken)).status).toBe(200);
    expect((await refresh(session.refreshToken)).status).toBe(200);
  });

  it('ends the session when logging out with a refresh token it has already rotated away from', async () => {
    const first = await login(server.url, 'chief.permisan');
    const second = LoginResponse.parse((await refresh(first.refreshToken)).body);
    expect((await post(server.url, '/api/auth/logout', { refreshToken: first.refreshToken })).status).toBe(
      204,
    );
    expect((await topology(second.accessToken)).status).toBe(401);
    expect((await refresh(second.refreshToken)).status).toBe(401);
  });

  it('does not disconnect the consoles of a session named by a logout that ends nothing', async () => {
    const target = await consoleFor(server.url, 'chief.permisan');
    const witness = await consoleFor(server.url, 'chief.permisan');
    const ended = (socket: ConsoleClient) => {
      const seen: unknown[] = [];
      socket.on('session:ended', (e) => seen.push(e));
      return seen;
    };
    const targetEnded = ended(target.socket);
    const witnessEnded = ended(witness.socket);
    const [, sessionId] = target.session.refreshToken.split('.');

    // Session ids are readable in every access token; a made-up user id with one ends no session.
    const res = await post(server.url, '/api/auth/logout', { refreshToken: `nobody.${sessionId}.junk` });
    expect(res.status).toBe(204);
    // A real logout after it: once its console hears of it, the one before has been delivered too.
    await post(server.url, '/api/auth/logout', { refreshToken: witness.session.refreshToken });
    await waitFor(() => witnessEnded.length > 0, { what: 'the witness session to end' });

    expect(targetEnded).toEqual([]);
    expect(target.socket.connected).toBe(true);
    expect((await topology(target.session.accessToken)).status).toBe(200);
  });

  it('answers a second logout with the same token as done', async () => {
    const session = await login(server.url, 'chief.permisan');
    expect((await post(server.url, '/api/auth/logout', { refreshToken: session.refreshToken })).status).toBe(
      204,
    );
    expect((await post(server.url, '/api/auth/logout', { refreshToken: session.refreshToken })).status).toBe(
      204,
    );
  });
});

describe('access tokens', () => {
  it('accepts a token signed exactly as the server signs it (the control for the refusals below)', async () => {
    const session = await login(server.url, 'dispatch.nusakambangan');
    expect((await topology(await signAccessToken(session))).status).toBe(200);
  });

  it.each([
    ['signed with another secret', { secret: 'another-secret-that-is-also-32-characters-or-more' }],
    ['signed with HS512 instead of HS256', { alg: 'HS512' }],
    ['from another issuer', { issuer: 'someone-else' }],
    ['for another audience', { audience: 'another-app' }],
    ['expired', { expiresAt: Math.floor(Date.now() / 1000) - 10 }],
  ])('refuses a token %s with 401', async (_what, changes) => {
    const session = await login(server.url, 'dispatch.nusakambangan');
    const res = await topology(await signAccessToken(session, changes));
    expect(res.status).toBe(401);
    expect(HttpErrorResponse.parse(res.body).error.code).toBe('unauthorized');
  });

  it('refuses an unsigned token with alg "none"', async () => {
    const session = await login(server.url, 'dispatch.nusakambangan');
    const unsigned = new UnsecuredJWT({ sid: session.refreshToken.split('.')[1] })
      .setSubject(session.user.id)
      .setIssuer('sinergi')
      .setAudience('sinergi-console')
      .setIssuedAt()
      .setExpirationTime('5m')
      .encode();
    const res = await topology(unsigned);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: { code: 'unauthorized', message: 'Invalid access token' } });
  });

  it('says "expired" for an expired token so the console knows to refresh', async () => {
    const session = await login(server.url, 'dispatch.nusakambangan');
    const expired = await signAccessToken(session, { expiresAt: Math.floor(Date.now() / 1000) - 10 });
    expect((await topology(expired)).body).toEqual({
      error: { code: 'unauthorized', message: 'Access token expired' },
    });
  });
});

describe('a password reset', () => {
  it('When a login with the old password is being checked as the password is reset, Then no session of the old password outlives the reset', async () => {
    const admin = await login(server.url, 'admin');
    for (let attempt = 0; attempt < 5; attempt++) {
      const { user, password } = await addAccount(server, {
        username: `reset.race.${randomUUID().slice(0, 8)}`,
        role: 'security_chief',
        unitId: 'lapas-batu',
      });
      const [signIn, reset] = await Promise.all([
        post(server.url, '/api/auth/login', { username: user.username, password }),
        post(server.url, `/api/users/${user.id}/password`, { password: randomUUID() }, admin.accessToken),
      ]);
      expect(reset.status).toBe(204);
      // Either the login came too late for the old password, or its session was ended by the reset.
      if (signIn.status === 200) {
        const session = LoginResponse.parse(signIn.body);
        expect((await refresh(session.refreshToken)).status).toBe(401);
        expect((await topology(session.accessToken)).status).toBe(401);
      } else {
        expect(signIn.body).toEqual(INVALID_LOGIN);
      }
    }
  });
});

describe("the index of a user's sessions", () => {
  it('outlives every session in it, also after the refresh lifetime is shortened, so a reset still finds them all', async () => {
    const shorter = await startTestServer({
      prefix: server.prefix,
      seedDemo: false,
      env: { REFRESH_TOKEN_TTL_SECONDS: '60' },
    });
    try {
      const { user, password } = await addAccount(server, {
        username: `sessions.${randomUUID().slice(0, 8)}`,
        role: 'operator',
        unitId: 'lapas-batu',
      });
      const early = await login(server.url, user.username, password);
      const late = await login(shorter.url, user.username, password);
      expect((await post(shorter.url, '/api/auth/refresh', { refreshToken: late.refreshToken })).status).toBe(
        200,
      );
      const index = redisKeys(server.prefix).userSessions(user.id);
      // The first session lives 24 h; neither the second login nor its refresh may cut the index to 60 s.
      expect(await server.app.redis.ttl(index)).toBeGreaterThan(23 * 3600);

      const admin = await login(server.url, 'admin');
      await post(server.url, `/api/users/${user.id}/password`, { password: randomUUID() }, admin.accessToken);
      expect((await refresh(early.refreshToken)).status).toBe(401);
    } finally {
      await shorter.close();
    }
  });
});

describe('stored passwords', () => {
  it('keeps every password as an argon2id hash with m=19456, t=2, p=1', async () => {
    const admin = await login(server.url, 'admin');
    const created = await post(
      server.url,
      '/api/users',
      {
        username: `hash.${randomUUID().slice(0, 8)}`,
        displayName: 'Hash Check',
        password: 'a-long-enough-password',
        role: 'operator',
        unitId: 'lapas-besi',
      },
      admin.accessToken,
    );
    expect(created.status).toBe(201);
    expect(
      (
        await post(
          server.url,
          `/api/users/${created.body.user.id}/password`,
          { password: 'another-long-enough-password' },
          admin.accessToken,
        )
      ).status,
    ).toBe(204);

    const users = await createUserRepository(server.app.redis, redisKeys(server.prefix)).list();
    expect(users.length).toBeGreaterThan(1);
    for (const user of users) {
      expect(user.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[^$]+\$[^$]+$/);
    }
  });
});
