import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';

export type RotateOutcome = 'rotated' | 'reused' | 'invalid';

// Compares the presented refresh secret with the current one; a match rotates it, the previous one means
// the token was stolen and replayed (or the client misbehaved), so the whole session ends.
const ROTATE = `
local s = redis.call('HMGET', KEYS[1], 'secret', 'prev')
if not s[1] then return {'invalid'} end
if s[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'secret', ARGV[2], 'prev', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return {'rotated'}
end
if s[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[4])
  return {'reused'}
end
return {'invalid'}
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
          prev: '',
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
