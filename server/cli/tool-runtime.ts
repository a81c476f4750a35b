import type { Redis } from 'ioredis';
import { DomainError } from '../../shared/errors.ts';
import { indexTopology, type TopologyIndex } from '../../shared/topology.ts';
import { type Config, ConfigError, loadConfig } from '../config.ts';
import { loadTopologyFile } from '../config-files.ts';
import { createRedis, waitReady } from '../redis/redis-connection.ts';
import { isRedisUnavailable } from '../redis/redis-errors.ts';
import { openRedisStore, type RedisStore } from '../redis/redis-store.ts';
import { StartupError } from '../startup-error.ts';
import { type RedisKeys, redisKeys } from '../storage/keys.ts';

/** A mistake in how the command was typed; answered with the usage text and exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** What every command-line tool (users, verify, checkpoints, worker) needs: the server's config, topology and store. */
export interface ToolRuntime {
  readonly config: Config;
  readonly topology: TopologyIndex;
  readonly store: RedisStore;
  /** A command connection under the `tool` role. */
  readonly redis: Redis;
  readonly keys: RedisKeys;
  /** Idempotent: quits the connection, then stops the embedded Redis if this tool started it. */
  close(): Promise<void>;
}

/**
 * Opens the same store the server uses, from the same settings: `REDIS_URL`, or the embedded Redis a running
 * server recorded under `DATA_DIR` (started here on that data when no server runs, and stopped on close).
 */
export async function openToolRuntime(
  env: Record<string, string | undefined> = process.env,
): Promise<ToolRuntime> {
  const config = loadConfig(env);
  const topology = indexTopology(await loadTopologyFile(config.topologyFile));
  const store = await openRedisStore(config);
  const redis = createRedis(store.url, 'tool', { lazyConnect: true });
  // Failures surface through the commands that hit them; without a listener ioredis would print each one.
  redis.on('error', () => {});
  try {
    await redis.connect().catch(() => {});
    await waitReady(redis);
  } catch (error) {
    redis.disconnect();
    await store.release();
    throw error;
  }

  let closing: Promise<void> | undefined;
  const runClose = async () => {
    await redis.quit().catch(() => redis.disconnect());
    await store.release();
  };
  return {
    config,
    topology,
    store,
    redis,
    keys: redisKeys(config.redis.keyPrefix),
    close() {
      closing ??= runClose();
      return closing;
    },
  };
}

/** The message for an error the person at the terminal can act on; undefined for a bug. */
export function describeExpectedError(error: unknown): string | undefined {
  if (error instanceof ConfigError || error instanceof StartupError || error instanceof UsageError)
    return error.message;
  if (error instanceof DomainError) {
    const issues = error.details.issues ?? [];
    return [error.message, ...issues.map((i) => `  - ${i.path}: ${i.message}`)].join('\n');
  }
  if (isRedisUnavailable(error)) return `Redis is unavailable: ${(error as Error).message}`;
  return undefined;
}

/**
 * Runs a tool's body, then reports: expected errors as one readable message on stderr (exit 1, or 2 for
 * usage), anything else with its stack, since that is a bug. Sets the exit code rather than exiting, so
 * output is flushed and a leaked handle shows up as a hang in tests instead of hiding.
 */
export async function runTool(tool: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    const expected = describeExpectedError(error);
    process.stderr.write(
      `${tool}: ${expected ?? `unexpected failure: ${(error as Error).stack ?? String(error)}`}\n`,
    );
    process.exitCode = error instanceof UsageError ? 2 : 1;
  }
}
