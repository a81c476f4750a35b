import type { Redis } from 'ioredis';
import { type RedisKeys, SESSION_USED_SUFFIX } from './keys.ts';

export type RotateOutcome = 'rotated' | 'reused' | 'invalid';
export type EndOutcome = 'ended' | 'absent' | 'invalid';

/**
 * How many rotated-away refresh secrets a session remembers: a day of refreshes at the default 15-minute
 * access tokens. An older one presented again is refused as unknown rather than caught as a replay, so a
 * console that stays signed in for months keeps a record of fixed size instead of one growing forever.
 */
export const USED_SECRETS_KEPT = 96;

// Compares the presented refresh secret with the current one; a match rotates it and puts the old one first
// in the session's list of used ones. Any used one, not only the last, means the token was stolen and
// replayed (or the client misbehaved), so the whole session ends: a thief who rotates several times cannot
// outrun detection. KEYS: session, user's sessions, used list.
const ROTATE = `
local current = redis.call('HGET', KEYS[1], 'secret')
if not current then return {'invalid'} end
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'secret', ARGV[2])
  redis.call('LPUSH', KEYS[3], ARGV[1])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
  return {'rotated'}
end
if redis.call('LPOS', KEYS[3], ARGV[1]) then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SREM', KEYS[2], ARGV[4])
  return {'reused'}
end
return {'invalid'}
`;

// Ends the session only for a holder of one of its refresh secrets: its ids alone are readable in any
// access token. A used secret ends it too, as a replay would. KEYS: session, user's sessions, used list.
const END = `
local current = redis.call('HGET', KEYS[1], 'secret')
if not current then return {'absent'} end
if current ~= ARGV[1] and not redis.call('LPOS', KEYS[3], ARGV[1]) then return {'invalid'} end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[2])
return {'ended'}
`;

// Session keys share the user's hash tag, so this stays within one slot.
const REVOKE_ALL = `
local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do redis.call('DEL', ARGV[1] .. id, ARGV[1] .. id .. ARGV[2]) end
redis.call('DEL', KEYS[1])
return #ids
`;

export function createSessionRepository(redis: Redis, keys: RedisKeys) {
  // The KEYS of ROTATE and END, in their order.
  const scriptKeys = (userId: string, sessionId: string) =>
    [
      keys.session(userId, sessionId),
      keys.userSessions(userId),
      keys.sessionUsed(userId, sessionId),
    ] as const;

  return {
    async create(sessionId: string, userId: string, secretHash: string, ttlSeconds: number): Promise<void> {
      await redis
        .multi()
        .hset(keys.session(userId, sessionId), {
          userId,
          secret: secretHash,
          createdAt: new Date().toISOString(),
        })
        .expire(keys.session(userId, sessionId), ttlSeconds)
        .sadd(keys.userSessions(userId), sessionId)
        // No session outlives the newest expiry, so neither should the index of them.
        .expire(keys.userSessions(userId), ttlSeconds)
        .exec();
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
        3,
        ...scriptKeys(userId, sessionId),
        presented,
        next,
        ttlSeconds,
        sessionId,
        USED_SECRETS_KEPT,
      )) as [RotateOutcome];
      return status;
    },

    /** Logout: ends the session when `presented` is the hash of one of its refresh secrets. */
    async end(sessionId: string, userId: string, presented: string): Promise<EndOutcome> {
      const [status] = (await redis.eval(END, 3, ...scriptKeys(userId, sessionId), presented, sessionId)) as [
        EndOutcome,
      ];
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

    async revokeAll(userId: string): Promise<number> {
      return (await redis.eval(
        REVOKE_ALL,
        1,
        keys.userSessions(userId),
        keys.session(userId, ''),
        SESSION_USED_SUFFIX,
      )) as number;
    },
  };
}

export type SessionRepository = ReturnType<typeof createSessionRepository>;
