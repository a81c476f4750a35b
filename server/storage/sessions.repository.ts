import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';

export type RotateOutcome = 'rotated' | 'reused' | 'invalid';
export type EndOutcome = 'ended' | 'absent' | 'invalid';

/**
 * How many rotated-away refresh secrets a session remembers: a day of refreshes at the default 15-minute
 * access tokens. An older one presented again is refused as unknown rather than caught as a replay, so a
 * console that stays signed in for months keeps a record of fixed size instead of one growing forever.
 */
export const USED_SECRETS_KEPT = 96;

// The index of a user's sessions must outlive every session in it, so a new expiry only ever lengthens it:
// with a shorter refresh lifetime set since, a login would otherwise cut it below an older session's, and a
// password reset would no longer find that session to end it.
const KEEP_INDEX = `
local function keepIndex(index, ttl)
  local left = redis.call('TTL', index)
  if left >= 0 and left >= tonumber(ttl) then return end
  redis.call('EXPIRE', index, ttl)
end
`;

// A session is created only for the password just verified and an account still enabled: a reset or a
// disabling that ended the user's sessions while the password was being checked (tens of milliseconds)
// must not be outlived by a session made from the old password. Sessions that expired leave their ids in the
// index, which a control room's shared account, signing in all day, never lets lapse: each login drops
// those of sessions gone, so the index holds about the live ones. KEYS: user, session, user's sessions.
// ARGV: hash, user id, secret hash, created at, TTL, session id, the user's session key prefix.
const CREATE = `${KEEP_INDEX}
local found = redis.call('HMGET', KEYS[1], 'passwordHash', 'disabled')
if found[1] ~= ARGV[1] or found[2] == '1' then return 0 end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('EXISTS', ARGV[7] .. id) == 0 then redis.call('SREM', KEYS[3], id) end
end
redis.call('HSET', KEYS[2], 'userId', ARGV[2], 'secret', ARGV[3], 'createdAt', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[6])
keepIndex(KEYS[3], ARGV[5])
return 1
`;

// Compares the presented refresh secret with the current one; a match rotates it and puts the old one first
// in the session's list of used ones. Any used one, not only the last, means the token was stolen and
// replayed (or the client misbehaved), so the whole session ends: a thief who rotates several times cannot
// outrun detection. KEYS: session, user's sessions, used list, ended mark.
const ROTATE = `${KEEP_INDEX}
local current = redis.call('HGET', KEYS[1], 'secret')
if not current then
  -- This very replay, sent again by the Redis client after its reply was lost: it ended the session, and
  -- must still be answered as a replay, for the copy's consoles to be told.
  if redis.call('GET', KEYS[4]) == 'reused:' .. ARGV[1] then return {'reused'} end
  return {'invalid'}
end
-- This very rotation, sent again by the Redis client after its reply was lost: the secret it set (random,
-- this request's own) is current and the one it retired is the latest used. Not a replay.
if current == ARGV[2] and redis.call('LINDEX', KEYS[3], 0) == ARGV[1] then return {'rotated'} end
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'secret', ARGV[2])
  redis.call('LPUSH', KEYS[3], ARGV[1])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  keepIndex(KEYS[2], ARGV[3])
  return {'rotated'}
end
if redis.call('LPOS', KEYS[3], ARGV[1]) then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SREM', KEYS[2], ARGV[4])
  redis.call('SET', KEYS[4], 'reused:' .. ARGV[1], 'EX', ARGV[6])
  return {'reused'}
end
return {'invalid'}
`;

// Ends the session only for a holder of one of its refresh secrets: its ids alone are readable in any
// access token. A used secret ends it too, as a replay would. This very logout, sent again by the Redis client
// after its reply was lost, is answered as ending it: its consoles must still be told. KEYS: session, user's
// sessions, used list, ended mark.
const END = `
local current = redis.call('HGET', KEYS[1], 'secret')
if not current then
  if redis.call('GET', KEYS[4]) == 'ended:' .. ARGV[1] then return {'ended'} end
  return {'absent'}
end
if current ~= ARGV[1] and not redis.call('LPOS', KEYS[3], ARGV[1]) then return {'invalid'} end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('SET', KEYS[4], 'ended:' .. ARGV[1], 'EX', ARGV[3])
return {'ended'}
`;

// How long an ended session keeps the mark of how it ended: the Redis client sends a command again once it
// has reconnected, within seconds.
const ENDED_MARK_SECONDS = 60;

export function createSessionRepository(redis: Redis, keys: RedisKeys) {
  // The KEYS of ROTATE and END, in their order.
  const scriptKeys = (userId: string, sessionId: string) =>
    [
      keys.session(userId, sessionId),
      keys.userSessions(userId),
      keys.sessionUsed(userId, sessionId),
      keys.sessionEnded(userId, sessionId),
    ] as const;

  return {
    /**
     * Starts a session for a user whose stored password hash is still `passwordHash` and who is not disabled;
     * false, and nothing stored, otherwise.
     */
    async create(session: {
      sessionId: string;
      userId: string;
      passwordHash: string;
      secretHash: string;
      ttlSeconds: number;
    }): Promise<boolean> {
      const { sessionId, userId } = session;
      const created = await redis.eval(
        CREATE,
        3,
        keys.user(userId),
        keys.session(userId, sessionId),
        keys.userSessions(userId),
        session.passwordHash,
        userId,
        session.secretHash,
        new Date().toISOString(),
        session.ttlSeconds,
        sessionId,
        keys.session(userId, ''),
      );
      return created === 1;
    },

    async rotate(
      sessionId: string,
      userId: string,
      presented: string,
      next: string,
      ttlSeconds: number,
    ): Promise<RotateOutcome> {
      const [status] = (await redis.eval(
        ROTATE,
        4,
        ...scriptKeys(userId, sessionId),
        presented,
        next,
        ttlSeconds,
        sessionId,
        USED_SECRETS_KEPT,
        ENDED_MARK_SECONDS,
      )) as [RotateOutcome];
      return status;
    },

    /** Logout: ends the session when `presented` is the hash of one of its refresh secrets. */
    async end(sessionId: string, userId: string, presented: string): Promise<EndOutcome> {
      const [status] = (await redis.eval(
        END,
        4,
        ...scriptKeys(userId, sessionId),
        presented,
        sessionId,
        ENDED_MARK_SECONDS,
      )) as [EndOutcome];
      return status;
    },

    async isAlive(userId: string, sessionId: string): Promise<boolean> {
      return (await redis.exists(keys.session(userId, sessionId))) === 1;
    },

    async revoke(sessionId: string, userId: string): Promise<void> {
      await redis
        .multi()
        .del(keys.session(userId, sessionId), keys.sessionUsed(userId, sessionId))
        .srem(keys.userSessions(userId), sessionId)
        .exec();
    },
  };
}

export type SessionRepository = ReturnType<typeof createSessionRepository>;
