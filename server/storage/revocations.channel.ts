import type { Redis } from 'ioredis';
import type { SessionRevocations } from '../domain/auth-service.ts';
import type { RedisKeys } from './keys.ts';

/**
 * Revocations travel over one pub/sub channel, so any process — a server, a worker or a command-line tool —
 * can make every server drop the sockets of a user, or of one of their sessions, at once. A message is the
 * user's id, then the session's after a space when only that one ended.
 */
export function revocationPublisher(redis: Redis, keys: RedisKeys): SessionRevocations {
  return {
    async ended(userId, sessionId) {
      await redis.publish(keys.revocations, sessionId === undefined ? userId : `${userId} ${sessionId}`);
    },
  };
}

/** Calls `onRevoked` for every revocation published from now on; `subscriber` is given over to it. */
export async function subscribeRevocations(
  subscriber: Redis,
  keys: RedisKeys,
  onRevoked: (userId: string, sessionId: string | undefined) => void,
) {
  subscriber.on('message', (channel: string, message: string) => {
    if (channel !== keys.revocations) return;
    const [userId = '', sessionId] = message.split(' ');
    onRevoked(userId, sessionId);
  });
  await subscriber.subscribe(keys.revocations);
}
