import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { LoginRequest, LoginResponse, PublicUser } from '../../shared/auth.ts';
import { DomainError } from '../../shared/errors.ts';
import type { TopologyIndex } from '../../shared/topology.ts';
import type { LoginLimiter } from '../storage/login-limiter.ts';
import type { SessionRepository } from '../storage/sessions.repository.ts';
import type { UserRecord, UserRepository } from '../storage/users.repository.ts';
import { verifyPassword } from './passwords.ts';

export interface AuthSettings {
  secret: Uint8Array;
  issuer: string;
  audience: string;
  accessTtlSeconds: number;
  refreshTtlSeconds: number;
}

/** Who is calling: established from a verified access token and the user's current record. */
export interface Principal {
  user: PublicUser;
  sessionId: string;
  /** Access-token expiry, epoch milliseconds. */
  expiresAt: number;
}

/**
 * Told when sessions end before their tokens expire, so that every process drops their sockets now: all of a
 * user's (disabled, password reset) or one (logged out, its refresh token replayed).
 */
export interface SessionRevocations {
  ended(userId: string, sessionId?: string): Promise<void>;
}

const ALGORITHM = 'HS256';
const INVALID_LOGIN = 'Invalid username or password';

export function toPublicUser(user: UserRecord, topology: TopologyIndex): PublicUser {
  return {
    id: user.id,
    username: user.username,
    displayName: user.displayName,
    role: user.role,
    unitId: user.unitId,
    unitType: topology.unit(user.unitId)?.type ?? 'command',
  };
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

export function createAuthService(deps: {
  users: UserRepository;
  sessions: SessionRepository;
  limiter: LoginLimiter;
  topology: TopologyIndex;
  settings: AuthSettings;
  revocations: SessionRevocations;
}) {
  const { users, sessions, limiter, topology, settings, revocations } = deps;

  async function issue(user: UserRecord, sessionId: string, refreshSecret: string): Promise<LoginResponse> {
    const expiresAt = Math.floor(Date.now() / 1000) + settings.accessTtlSeconds;
    const accessToken = await new SignJWT({ sid: sessionId })
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
      .setSubject(user.id)
      .setIssuer(settings.issuer)
      .setAudience(settings.audience)
      .setIssuedAt()
      .setExpirationTime(expiresAt)
      .sign(settings.secret);
    return {
      accessToken,
      accessTokenExpiresAt: new Date(expiresAt * 1000).toISOString(),
      refreshToken: `${user.id}.${sessionId}.${refreshSecret}`,
      user: toPublicUser(user, topology),
    };
  }

  /** A user who may act now: exists, is enabled and still belongs to a unit of the topology. */
  async function activeUser(userId: string): Promise<UserRecord | undefined> {
    const user = await users.findById(userId);
    return user && !user.disabled && topology.unit(user.unitId) ? user : undefined;
  }

  /** The caller as they stand now: the session not ended, the account enabled, the token not expired. */
  async function standing(userId: string, sessionId: string, expiresAt: number): Promise<Principal> {
    const [alive, user] = await Promise.all([sessions.isAlive(userId, sessionId), activeUser(userId)]);
    if (!alive || !user) throw new DomainError('unauthorized', 'Session ended');
    if (expiresAt <= Date.now()) throw new DomainError('unauthorized', 'Access token expired');
    return { user: toPublicUser(user, topology), sessionId, expiresAt };
  }

  function parseRefreshToken(token: string) {
    const [userId, sessionId, secret, ...rest] = token.split('.');
    if (!userId || !sessionId || !secret || rest.length > 0)
      throw new DomainError('unauthorized', 'Invalid refresh token');
    return { userId, sessionId, secret };
  }

  return {
    async login(request: LoginRequest, ip: string): Promise<LoginResponse> {
      await limiter.admit(ip, request.username);
      const user = await users.findByUsername(request.username);
      const passwordOk = await verifyPassword(user?.passwordHash, request.password);
      if (!user || !passwordOk || user.disabled || !topology.unit(user.unitId)) {
        await limiter.recordFailure(ip, request.username);
        throw new DomainError('unauthorized', INVALID_LOGIN);
      }
      await limiter.recordSuccess(ip, request.username);
      const sessionId = randomUUID();
      const secret = randomBytes(32).toString('base64url');
      const created = await sessions.create({
        sessionId,
        userId: user.id,
        passwordHash: user.passwordHash,
        secretHash: sha256(secret),
        ttlSeconds: settings.refreshTtlSeconds,
      });
      // The password was reset, or the account disabled, while this one was being checked.
      if (!created) throw new DomainError('unauthorized', INVALID_LOGIN);
      return issue(user, sessionId, secret);
    },

    /** Rotates the refresh token: the old one stops working; presenting it again ends the session. */
    async refresh(refreshToken: string): Promise<LoginResponse> {
      const { userId, sessionId, secret } = parseRefreshToken(refreshToken);
      const next = randomBytes(32).toString('base64url');
      const outcome = await sessions.rotate(
        sessionId,
        userId,
        sha256(secret),
        sha256(next),
        settings.refreshTtlSeconds,
      );
      if (outcome === 'reused') {
        // Someone else holds a copy of this token: whatever that copy connected must stop receiving now.
        await revocations.ended(userId, sessionId);
        throw new DomainError('unauthorized', 'Refresh token reused; the session has been ended');
      }
      if (outcome !== 'rotated') throw new DomainError('unauthorized', 'Invalid refresh token');
      const user = await activeUser(userId);
      if (!user) {
        await sessions.revoke(sessionId, userId);
        await revocations.ended(userId, sessionId);
        throw new DomainError('unauthorized', 'Account disabled');
      }
      return issue(user, sessionId, next);
    },

    async logout(refreshToken: string): Promise<void> {
      const { userId, sessionId, secret } = parseRefreshToken(refreshToken);
      // An already ended session needs no second logout; a wrong secret must not end someone else's.
      const outcome = await sessions.end(sessionId, userId, sha256(secret));
      if (outcome === 'invalid') throw new DomainError('unauthorized', 'Invalid refresh token');
      // The session's consoles on every process, not only the one logging out. Only for a session this logout
      // ended: the ids come from the caller, and consoles are found by session id alone. One ended before was
      // announced then (a logout, a revocation) or its consoles end with their token.
      if (outcome === 'ended') await revocations.ended(userId, sessionId);
    },

    /** Re-checks, at each command, that a connected socket's session and user still stand. */
    recheck(principal: Principal): Promise<Principal> {
      return standing(principal.user.id, principal.sessionId, principal.expiresAt);
    },

    /** Verifies an access token (algorithm, issuer and audience pinned) and that its session and user still stand. */
    async authenticate(accessToken: string | undefined): Promise<Principal> {
      if (!accessToken) throw new DomainError('unauthorized', 'Missing access token');
      let sub: string | undefined;
      let sid: unknown;
      let exp: number | undefined;
      try {
        ({
          payload: { sub, sid, exp },
        } = await jwtVerify(accessToken, settings.secret, {
          algorithms: [ALGORITHM],
          issuer: settings.issuer,
          audience: settings.audience,
          requiredClaims: ['sub', 'exp', 'sid'],
        }));
      } catch (error) {
        const expired = error instanceof joseErrors.JWTExpired;
        throw new DomainError('unauthorized', expired ? 'Access token expired' : 'Invalid access token');
      }
      if (!sub || typeof sid !== 'string' || exp === undefined)
        throw new DomainError('unauthorized', 'Invalid access token');
      return standing(sub, sid, exp * 1000);
    },
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
