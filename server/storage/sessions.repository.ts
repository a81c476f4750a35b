import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';

export type RotateOutcome = 'rotated' | 'reused' | 'invalid';
export type EndOutcome = 'ended' | 'absent' | 'invalid';

// Compares the presented refresh secret with the current one; a match rotates it and keeps the old one as a
// `used:<hash>` field. Any used one, not only the last, means the token was stolen and replayed (or the
// client misbehaved), so the whole session ends: a thief who rotates several times cannot outrun detection.
const ROTATE = `
local current = redis.call('HGET', KEYS[1], 'secret')
if not current then return {'invalid'} end
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'secret', ARGV[2], 'used:' .. ARGV[1], '1')
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return {'rotated'}
end
if redis.call('HEXISTS', KEYS[1], 'used:' .. ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[4])
  return {'reused'}
end
return {'invalid'}
`;

// Ends the session only for a holder of one of its refresh secrets: its ids alone are readable in any
// access token. A used secret ends it too, as a replay would.
const END = `
local current = redis.call('HGET', KEYS[1], 'secret')
if not current then return {'absent'} end
if current ~= ARGV[1] and redis.call('HEXISTS', KEYS[1], 'used:' .. ARGV[1]) == 0 then return {'invalid'} end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return {'ended'}
`;

// Session keys share the user's hash tag, so this stays within one slot.
const REVOKE_ALL = `
local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do redis.call('DEL', ARGV[1] .. id) end
redis.call('DEL', KEYS[1])
return #ids
`;

export function createSessionRepository(redis: Redis, keys: RedisKeys) {
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
        2,
        keys.session(userId, sessionId),
        keys.userSessions(userId),
        presented,
        next,
        ttlSeconds,
        sessionId,
      )) as [RotateOutcome];
      return status;
    },

    /** Logout: ends the session when `presented` is the hash of one of its refresh secrets. */
    async end(sessionId: string, userId: string, presented: string): Promise<EndOutcome> {
      const [status] = (await redis.eval(
        END,
        2,
        keys.session(userId, sessionId),
        keys.userSessions(userId),
        presented,
        sessionId,
      )) as [EndOutcome];
      return status;
    },

    async isAlive(userId: string, sessionId: string): Promise<boolean> {
      return (await redis.exists(keys.session(userId, sessionId))) === 1;
    },

    async revoke(sessionId: string, userId: string): Promise<void> {
      await redis
        .multi()
        .del(keys.session(userId, sessionId))
        .srem(keys.userSessions(userId), sessionId)
        .exec();
    },

    async revokeAll(userId: string): Promise<number> {
      return (await redis.eval(REVOKE_ALL, 1, keys.userSessions(userId), keys.session(userId, ''))) as number;
    },
  };
}

export type SessionRepository = ReturnType<typeof createSessionRepository>;
