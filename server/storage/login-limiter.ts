import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { DomainError } from '../../shared/errors.ts';
import type { RedisKeys } from './keys.ts';

export interface LoginLimits {
  /** Failed logins per username from all addresses: one account guessed from many machines. */
  maxFailuresPerUser: number;
  /** Failed logins per username from one address: a workstation that keeps failing locks out only itself. */
  maxFailuresPerUserAndIp: number;
  maxAttemptsPerIp: number;
  windowSeconds: number;
}

/**
 * Counters in Redis, shared by every process: all attempts per client address (a flood from one machine),
 * failed attempts per username from one address, and per username from all of them. A control room's
 * workstations share an account, so one where somebody keeps mistyping must not lock the others out of it
 * in the middle of a night: it locks out itself, and the account as a whole only at a higher count, which
 * still stops it being guessed from many machines.
 *
 * A failure is counted once its password is known wrong, and a right password is let in only if the
 * counts are still below their limits when it is known right: guesses sent all at once are each judged
 * against the failures counted by then, so they win no more than guesses sent one by one (and once a limit
 * is reached, a right guess is refused like the wrong ones). Right passwords take nothing from the budgets:
 * the workstations may all log in at the same moment.
 */
export function createLoginLimiter(redis: Redis, keys: RedisKeys, limits: LoginLimits) {
  const perIp = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: keys.rateLimitPrefix('login-ip'),
    points: limits.maxAttemptsPerIp,
    duration: limits.windowSeconds,
  });
  const failures = (name: string, points: number) =>
    new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: keys.rateLimitPrefix(name),
      points,
      duration: limits.windowSeconds,
      blockDuration: limits.windowSeconds,
    });
  const perUser = failures('login-user', limits.maxFailuresPerUser);
  const perUserAndIp = failures('login-user-ip', limits.maxFailuresPerUserAndIp);
  /** Each failure count of an attempt, with the key it is counted under. */
  const counts = (ip: string, username: string) =>
    [
      [perUser, username],
      [perUserAndIp, `${ip}/${username}`],
    ] as const;

  const limited = (res: RateLimiterRes) =>
    new DomainError('rate_limited', 'Too many login attempts; try again later', {
      retryAfterMs: res.msBeforeNext,
    });
  const rethrow = (error: unknown): never => {
    if (error instanceof RateLimiterRes) throw limited(error);
    throw new DomainError('unavailable', 'The login service is unavailable', {}, { cause: error });
  };

  const checkBelowLimits = async (ip: string, username: string) => {
    for (const [limiter, key] of counts(ip, username)) {
      const counted = await limiter.get(key).catch(rethrow);
      if (counted && counted.consumedPoints >= limiter.points) throw limited(counted);
    }
  };

  return {
    /** Counts an attempt from the address, and refuses it when the address or the account is over a limit. */
    async admit(ip: string, username: string): Promise<void> {
      await perIp.consume(ip).catch(rethrow);
      await checkBelowLimits(ip, username);
    },
    /** A wrong password: counted, and refused as over a limit once one is reached. */
    async recordFailure(ip: string, username: string): Promise<void> {
      for (const [limiter, key] of counts(ip, username)) await limiter.consume(key).catch(rethrow);
    },
    /**
     * A right password: refused if failures reached a limit meanwhile, else this workstation's failures are
     * forgotten. The account's count from all addresses runs out with its window only: forgotten at every
     * routine login, it would let guesses spread over many machines go on for ever.
     */
    async recordSuccess(ip: string, username: string): Promise<void> {
      await checkBelowLimits(ip, username);
      await perUserAndIp.delete(`${ip}/${username}`).catch(() => undefined);
    },
  };
}

export type LoginLimiter = ReturnType<typeof createLoginLimiter>;
