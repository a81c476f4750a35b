import { Redis, type RedisOptions } from 'ioredis';
import { z } from 'zod';
import { StartupError } from '../startup-error.ts';
import { coalesceWrites } from './write-coalescing.ts';

/**
 * Where a Redis is: a `redis://` or `rediss://` URL, or the absolute path of a Unix socket (ioredis's own
 * convention), which is cheaper than loopback TCP for a Redis on the same machine.
 */
export const RedisAddress = z.union([
  z.url({ protocol: /^rediss?$/ }),
  z.string().regex(/^\/[^?]*$/, 'a redis:// or rediss:// URL, or the absolute path of a Unix socket'),
]);

/** An address as it may be logged: a URL's user and password (as `REDIS_URL` may carry them) blanked out. */
export function loggableAddress(address: string): string {
  if (address.startsWith('/')) return address;
  const url = new URL(address);
  if (url.username) url.username = '***';
  if (url.password) url.password = '***';
  return url.href;
}

export type RedisRole = 'commands' | 'adapter' | 'limits' | 'queue' | 'worker' | 'subscriber' | 'tool';

/**
 * One connection per role. Command connections fail fast while Redis is unreachable so a console gets
 * `unavailable` within its ack timeout instead of a request queued forever; BullMQ's connections must
 * instead wait (`maxRetriesPerRequest: null`), as BullMQ requires, and so does the socket adapter.
 */
export function createRedis(
  url: string,
  role: RedisRole,
  extra: Omit<RedisOptions, 'replyMapping'> = {},
): Redis {
  // The adapter's background reads and heartbeats have no caller to fail to: they wait for Redis too.
  const blocking = role === 'queue' || role === 'worker' || role === 'adapter';
  const options: Omit<RedisOptions, 'replyMapping'> = {
    connectionName: `sinergi:${role}`,
    maxRetriesPerRequest: blocking ? null : 1,
    enableOfflineQueue: blocking,
    retryStrategy: (times: number) => Math.min(times * 100, 2000),
    ...extra,
  };
  if (!blocking) options.commandTimeout = 3000;
  const redis = new Redis(url, options);
  // A subscriber only listens, and a tool's commands go one at a time.
  if (role !== 'subscriber' && role !== 'tool') coalesceWrites(redis);
  return redis;
}

/** Waits until the connection is ready, or fails with a readable message. */
export async function waitReady(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new StartupError(
          `Redis did not become ready within ${timeoutMs} ms (${redis.options.path ?? `${redis.options.host}:${redis.options.port}`})`,
        ),
      );
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

/** BullMQ needs Redis ≥ 6.2 and loses jobs under any eviction policy other than noeviction. */
export async function checkRedisServer(redis: Redis): Promise<{ version: string }> {
  const info = await redis.info('server');
  const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? '0.0.0';
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major < 6 || (major === 6 && minor < 2)) {
    throw new StartupError(`Redis ${version} is too old: Sinergi needs Redis 6.2 or newer.`);
  }
  let policy: string | undefined;
  try {
    policy = ((await redis.config('GET', 'maxmemory-policy')) as string[])[1];
  } catch {
    throw new StartupError(
      'Could not read maxmemory-policy (CONFIG GET refused). Sinergi needs maxmemory-policy noeviction; ' +
        'allow CONFIG GET for its user or check the setting by hand.',
    );
  }
  if (policy !== 'noeviction') {
    throw new StartupError(
      `Redis maxmemory-policy is "${policy}": Sinergi needs "noeviction", or Redis may silently drop incidents ` +
        'and escalation timers. Set it with `CONFIG SET maxmemory-policy noeviction` and in redis.conf.',
    );
  }
  return { version };
}
