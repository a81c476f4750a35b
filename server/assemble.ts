import type { Topology } from '../shared/topology.ts';
import { type App, type AppDeps, createApp } from './app.ts';
import type { Config } from './config.ts';
import { loadEscalationFile, loadTopologyFile } from './config-files.ts';
import type { Logger } from './logger.ts';
import type { SupervisionEvent } from './redis/embedded-redis.ts';
import { openRedisStore, type RedisStore } from './redis/redis-store.ts';
import { resolveJwtSecret } from './secrets.ts';

/**
 * What the server and `npm run worker` both build before their own work: the policy files read, the Redis
 * servers open (started if embedded), the app wired but not started. The caller owns both: on failure here
 * nothing is left running.
 */
export async function assemble(
  config: Config,
  logger: Logger,
  options: Pick<AppDeps, 'worker' | 'clusterMetrics'> = {},
): Promise<{ app: App; store: RedisStore; topology: Topology }> {
  const [topology, escalation] = await Promise.all([
    loadTopologyFile(config.topologyFile),
    loadEscalationFile(config.escalation.file),
  ]);
  const store = await openRedisStore(config, { serving: true, supervise: redisSupervisionLog(logger) });
  logger.info(
    { embedded: store.embedded, url: store.url, socketUrl: store.socketUrl, version: store.version },
    'redis ready',
  );
  try {
    const jwtSecret = await resolveJwtSecret(config.auth.jwtSecret, config.dataDir);
    const app = createApp({
      config,
      logger,
      redisUrl: store.url,
      socketRedisUrl: store.socketUrl,
      topology,
      escalation,
      jwtSecret,
      ...options,
    });
    return { app, store, topology };
  } catch (error) {
    await store.release();
    throw error;
  }
}

/**
 * An embedded redis-server that dies is started again on its address; until it is back, raises fail with
 * `unavailable` (the store) or consoles wait for their broadcasts (the broadcast Redis): an operator must
 * see why.
 */
export function redisSupervisionLog(logger: Logger) {
  return (event: SupervisionEvent) => {
    const { dir, port } = event;
    switch (event.type) {
      case 'exited':
        logger.error(
          { dir, port, code: event.code, signal: event.signal },
          'embedded redis-server exited; restarting it',
        );
        return;
      case 'restarted':
        logger.warn({ dir, port, pid: event.pid }, 'embedded redis-server restarted');
        return;
      case 'restart_failed':
        logger.error(
          { dir, port, err: event.error, retryInMs: event.retryInMs },
          'embedded redis-server did not restart; retrying',
        );
        return;
      case 'superseded':
        logger.fatal(
          { dir, port, otherPort: event.otherPort },
          'another process restarted the embedded redis-server on another port; restart this process to reach it',
        );
        return;
    }
  };
}
