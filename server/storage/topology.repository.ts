import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Topology } from '../../shared/topology.ts';
import type { RedisKeys } from './keys.ts';

/**
 * The store keeps the topology in force, so every process and tool on it can tell which one that is.
 * Returns the previous fingerprint when this call replaced a different one.
 */
export async function recordTopology(redis: Redis, keys: RedisKeys, topology: Topology) {
  const json = JSON.stringify(topology);
  const fingerprint = createHash('sha256').update(json).digest('hex').slice(0, 16);
  const previous = await redis.hget(keys.topology, 'fingerprint');
  if (previous !== fingerprint) {
    await redis.hset(keys.topology, { fingerprint, json, recordedAt: new Date().toISOString() });
  }
  return {
    fingerprint,
    /** Set only when a different topology was in force before this call. */
    previous: previous !== null && previous !== fingerprint ? previous : undefined,
    seeded: previous === null,
  };
}
