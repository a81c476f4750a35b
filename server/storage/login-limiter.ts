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
 * machine) and failed attempts per username (guessing one account's password from many machines).
 *
 * A failure is counted once its password is known wrong, and a right password is let in only if the account
 * is still below its limit when it is known right: guesses sent all at once are each judged against the
 * failures counted by then, so they win no more than guesses sent one by one (and once the limit is reached,
 * a right guess is refused like the wrong ones). The workstations of a control room, which share an account,
 * may all log in at the same moment: right passwords take nothing from the account's budget.
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

  const checkBelowLimit = async (username: string) => {
    const failures = await perUser.get(username).catch(rethrow);
    if (failures && failures.consumedPoints >= limits.maxFailuresPerUser) throw limited(failures);
  };

  return {
    /** Counts an attempt from the address, and refuses it when the address or the account is over its limit. */
    async admit(ip: string, username: string): Promise<void> {
      await perIp.consume(ip).catch(rethrow);
      await checkBelowLimit(username);
    },
    /** A wrong password: counted, and refused as over the limit once it is reached. */
    async recordFailure(username: string): Promise<void> {
      await perUser.consume(username).catch(rethrow);
    },
    /** A right password: refused if failures reached the limit meanwhile, else it forgets them. */
    async recordSuccess(username: string): Promise<void> {
      await checkBelowLimit(username);
      await perUser.delete(username).catch(() => undefined);
    },
  };
}

export type LoginLimiter = ReturnType<typeof createLoginLimiter>;
