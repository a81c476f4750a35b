import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { DomainError, type ErrorCode } from '../../shared/errors.ts';
import type { RedisKeys } from './keys.ts';

// Answers that change nothing: the caller's mistake, or a move the incident cannot make. They give the point
// back, so that a console repeating one (a stale screen) does not use up its officer's notes for a riot.
const REFUSALS = new Set<ErrorCode>([
  'validation_failed',
  'forbidden',
  'not_found',
  'conflict',
  'invalid_transition',
]);

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
  const gate = {
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

    /**
     * Runs `action` on the budget: a point is taken first, and given back should the action be refused or,
     * by `counts`, turn out to have done nothing (a command repeated after it was applied).
     */
    async spend<T>(
      key: string,
      action: () => Promise<T>,
      counts: (result: T) => boolean = () => true,
    ): Promise<T> {
      await gate.consume(key);
      try {
        const result = await action();
        if (!counts(result)) await gate.refund(key).catch(() => undefined);
        return result;
      } catch (error) {
        if (error instanceof DomainError && REFUSALS.has(error.code))
          await gate.refund(key).catch(() => undefined);
        throw error;
      }
    },
  };
  return gate;
}

export type RateGate = ReturnType<typeof createRateGate>;
