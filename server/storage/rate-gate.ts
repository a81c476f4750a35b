import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { DomainError } from '../../shared/errors.ts';
import type { RedisKeys } from './keys.ts';

/**
 * A per-key budget of actions per window, shared by every process through Redis. While that Redis cannot
 * answer, each process keeps the budget in its own memory: a limit must never be what stops an alert.
 */
export function createRateGate(redis: Redis, keys: RedisKeys, name: string, perMinute: number) {
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: keys.rateLimitPrefix(name),
    points: perMinute,
    duration: 60,
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ points: perMinute, duration: 60 }),
  });
  return {
    async consume(key: string): Promise<void> {
      try {
        await limiter.consume(key);
      } catch (error) {
        if (error instanceof RateLimiterRes) {
          throw new DomainError('rate_limited', `Too many ${name} actions; slow down`, {
            retryAfterMs: error.msBeforeNext,
          });
        }
        throw error;
      }
    },

    /** Gives back a point taken for an action that turned out not to count. */
    async refund(key: string): Promise<void> {
      await limiter.reward(key, 1);
    },
  };
}

export type RateGate = ReturnType<typeof createRateGate>;
