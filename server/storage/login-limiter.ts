import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { DomainError } from '../../shared/errors.ts';
import type { RedisKeys } from './keys.ts';

export interface LoginLimits {
  maxFailuresPerUser: number;
  maxAttemptsPerIp: number;
  windowSeconds: number;
}

/**
 * Two counters in Redis, shared by every process: all attempts per client address (a flood from one
 * machine) and failed attempts per username (guessing one account's password from many machines). Every
 * attempt counts against its username until it succeeds.
 */
export function createLoginLimiter(redis: Redis, keys: RedisKeys, limits: LoginLimits) {
  const perIp = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: keys.rateLimitPrefix('login-ip'),
    points: limits.maxAttemptsPerIp,
    duration: limits.windowSeconds,
  });
  const perUser = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: keys.rateLimitPrefix('login-user'),
    points: limits.maxFailuresPerUser,
    duration: limits.windowSeconds,
    blockDuration: limits.windowSeconds,
  });

  const limited = (res: RateLimiterRes) =>
    new DomainError('rate_limited', 'Too many login attempts; try again later', {
      retryAfterMs: res.msBeforeNext,
    });
  const rethrow = (error: unknown): never => {
    if (error instanceof RateLimiterRes) throw limited(error);
    throw new DomainError('unavailable', 'The login service is unavailable', {}, { cause: error });
  };

  return {
    /**
     * Takes a point from the address and from the account before the password is checked, so that guesses
     * sent in parallel cannot all pass while the first of them is still being verified.
     */
    async admit(ip: string, username: string): Promise<void> {
      await perIp.consume(ip).catch(rethrow);
      await perUser.consume(username).catch(rethrow);
    },
    /** A correct password below the limit forgets the account's earlier failures, this attempt's point too. */
    async recordSuccess(username: string): Promise<void> {
      await perUser.delete(username).catch(() => undefined);
    },
  };
}

export type LoginLimiter = ReturnType<typeof createLoginLimiter>;
