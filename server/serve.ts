import type { AddressInfo } from 'node:net';
import { setupWorker } from '@socket.io/sticky';
import { AggregatorRegistry } from 'prom-client';
import type { Topology } from '../shared/topology.ts';
import type { App } from './app.ts';
import { assemble } from './assemble.ts';
import type { ServerLink } from './cluster/server-link.ts';
import type { Config } from './config.ts';
import {
  DEMO_PASSWORD,
  demoAccounts,
  demoAccountsStillOpen,
  ensureFirstAdmin,
  seedDemoAccounts,
} from './domain/seed.ts';
import { listeningLine } from './listening-line.ts';
import { createLogger } from './logger.ts';
import { readAdminPassword } from './secrets.ts';
import { StartupError } from './startup-error.ts';

/**
 * One server process: alone, it listens on the port itself; as one of several (`link`), the primary owns
 * the port and the embedded Redis servers and hands it connections and the Redis addresses.
 */
export async function serve(config: Config, link?: ServerLink): Promise<void> {
  // prom-client answers the primary's requests for metrics once a process constructs an aggregator: done
  // first, so a scrape while this process starts gets its (empty) answer instead of waiting out a timeout.
  if (link) new AggregatorRegistry();
  const base = createLogger(config.logLevel);
  const logger = link ? base.child({ server: link.id }) : base;
  const settings = link
    ? { ...config, redis: { ...config.redis, url: link.handoff.storeUrl, socketUrl: link.handoff.socketUrl } }
    : config;
  const { app, store, topology } = await assemble(
    settings,
    logger,
    link
      ? {
          clusterMetrics: () => link.clusterMetrics(),
          clusterReadiness: () => link.clusterReadiness().catch(() => ['primary_no_answer']),
          partitions: link.handoff.escalation,
          forked: true,
        }
      : {},
  );
  // The primary asks each process for its registry when `/metrics` is scraped.
  if (link) AggregatorRegistry.setRegistries([app.metrics.registry]);
  link?.onReadinessCheck(() => app.readiness.check());

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (reason: string, code: number) => {
    shuttingDown ??= (async () => {
      logger.info({ reason }, 'shutting down');
      // Draining takes up to the grace: meanwhile the primary hands new consoles to the other processes.
      link?.stopping();
      await app.close();
      await store.release();
      logger.info('stopped');
      process.exit(code);
    })();
    return shuttingDown;
  };
  // Exits at once on a second signal only, not on a signal after the primary's order to stop: the group's
  // SIGTERM (`kill -TERM -<pgid>`, systemd's) reaches a server process before or after that order.
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn('second signal: exiting now');
      process.exit(1);
    }
    signalled = true;
    void shutdown(signal, 0);
  };
  process.on('SIGTERM', onSignal);
  // A terminal's Ctrl-C, and its SIGHUP as it closes, reach every process of the group; under a primary, the
  // primary orders the stop.
  for (const signal of ['SIGINT', 'SIGHUP'] as const) process.on(signal, link ? () => {} : onSignal);
  link?.onStop((reason) => void shutdown(reason, 0));
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    void shutdown('uncaughtException', 1);
  });

  try {
    await app.start();
    const banner = !link || link.handoff.setUp ? await setUpOnce(config, app, topology) : [];
    if (link) {
      setupWorker(app.io);
      const running = (partitions: number[]) => logger.info({ partitions }, 'escalation workers running');
      if (link.handoff.escalation.length > 0) running(link.handoff.escalation);
      link.onEscalate((partitions) =>
        app.startEscalationWorkers(partitions).then(
          () => running(partitions),
          (err: unknown) => logger.error({ err }, 'could not start the escalation workers'),
        ),
      );
      link.ready(banner);
      logger.info('serving');
      return;
    }
    const server = app.httpServer;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.http.port, config.http.host, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    process.stdout.write(`${[listeningLine(config, port), ...banner].join('\n')}\n`);
    logger.info({ port, host: config.http.host }, 'listening');
  } catch (error) {
    await app.close();
    await store.release();
    throw error;
  }
}

/** Out of demo mode, a store whose demo accounts still open with the demo password is not served. */
async function refuseDemoPasswords(users: App['services']['users']): Promise<void> {
  const open = await demoAccountsStillOpen(users);
  if (open.length === 0) return;
  throw new StartupError(
    `These demo accounts still open with the published demo password: ${open.join(', ')}. ` +
      'Outside demo mode they would let anyone in. For each, run `npm run users -- disable <name>` or ' +
      '`npm run users -- reset-password <name>`, then start again.',
  );
}

/** Demo accounts or the first admin: the lines that tell the operator how to sign in. */
async function setUpOnce(config: Config, app: App, topology: Topology): Promise<string[]> {
  const users = app.services.users;
  const demo = config.seedDemo ? await seedDemoAccounts(users) : [];
  const rootCommand = topology.units.find(
    (u) => u.type === 'command' && u.agency === 'corrections' && u.parent === null,
  );
  if (!config.seedDemo) await refuseDemoPasswords(users);
  const file = config.adminPasswordFile;
  const admin = config.seedDemo
    ? undefined
    : await ensureFirstAdmin(
        users,
        rootCommand?.id ?? topology.units[0]?.id ?? '',
        file ? () => readAdminPassword(file) : undefined,
      );
  const lines: string[] = [];
  if (config.seedDemo) {
    lines.push(
      `Demo mode: every demo account's password is "${DEMO_PASSWORD}"${demo.length ? ` (created ${demo.length} now)` : ''}:`,
    );
    for (const a of demoAccounts) lines.push(`  ${a.username.padEnd(24)} ${a.role.padEnd(15)} ${a.unitId}`);
  }
  if (admin?.generated)
    lines.push(`First start: created user "admin" with password ${admin.generated} — shown only this once.`);
  else if (admin) lines.push(`First start: created user "admin" with the password in ${file}.`);
  return lines;
}
