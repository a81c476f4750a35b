import type { Topology } from '../shared/topology.ts';
import { type App, type AppDeps, createApp } from './app.ts';
import type { Config } from './config.ts';
import { loadEscalationFile, loadTopologyFile } from './config-files.ts';
import type { Logger } from './logger.ts';
import { openRedisStore, type RedisStore } from './redis/redis-store.ts';
import { logStoreReady, redisSupervisionLog } from './redis/supervision-log.ts';
import { resolveJwtSecret } from './secrets.ts';

/**
 * What the server and `npm run worker` both build before their own work: the policy files read, the Redis
 * servers open (started if embedded), the app wired but not started. The caller owns both: on failure here
 * nothing is left running.
 */
export async function assemble(
  config: Config,
  logger: Logger,
  options: Pick<AppDeps, 'partitions' | 'clusterMetrics' | 'clusterReadiness'> & { forked?: boolean } = {},
): Promise<{ app: App; store: RedisStore; topology: Topology }> {
  const [topology, escalation] = await Promise.all([
    loadTopologyFile(config.topologyFile),
    loadEscalationFile(config.escalation.file),
  ]);
  const { forked, ...deps } = options;
  const store = await openRedisStore(config, {
    serving: true,
    supervise: redisSupervisionLog(logger),
    compactExternal: !forked,
  });
  // A forked server process's primary has said it already.
  logStoreReady(logger, store, !forked);
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
      ...deps,
    });
    return { app, store, topology };
  } catch (error) {
    await store.release();
    throw error;
  }
}
