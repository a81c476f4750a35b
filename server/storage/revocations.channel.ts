import type { Redis } from 'ioredis';
import type { SessionRevocations } from '../domain/user-service.ts';
import type { RedisKeys } from './keys.ts';

/**
 * Revocations travel over one pub/sub channel, so any process — a server, a worker or a command-line tool —
 * can make every server drop a user's sockets at once.
 */
export function revocationPublisher(redis: Redis, keys: RedisKeys): SessionRevocations {
  return {
    async userRevoked(userId) {
      await redis.publish(keys.revocations, userId);
    },
  };
}

/** Calls `onRevoked` for every revocation published from now on; `subscriber` is given over to it. */
export async function subscribeRevocations(
  subscriber: Redis,
  keys: RedisKeys,
  onRevoked: (userId: string) => void,
) {
  subscriber.on('message', (channel: string, userId: string) => {
    if (channel === keys.revocations) onRevoked(userId);
  });
  await subscriber.subscribe(keys.revocations);
}
