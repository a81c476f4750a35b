import type { AddressInfo } from 'node:net';
import { assemble } from './assemble.ts';
import { type Config, ConfigError, loadConfig } from './config.ts';
import { DEMO_PASSWORD, demoAccounts, ensureFirstAdmin, seedDemoAccounts } from './domain/seed.ts';
import { createLogger } from './logger.ts';
import { StartupError } from './startup-error.ts';

async function main(config: Config) {
  const logger = createLogger(config.logLevel);
  const { app, store, topology } = await assemble(config, logger);

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (reason: string, code: number) => {
    shuttingDown ??= (async () => {
      logger.info({ reason }, 'shutting down');
      await app.close();
      await store.release();
      logger.info('stopped');
      process.exit(code);
    })();
    return shuttingDown;
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (shuttingDown) {
        logger.warn('second signal: exiting now');
        process.exit(1);
      }
      void shutdown(signal, 0);
    });
  }
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    void shutdown('uncaughtException', 1);
  });

  try {
    await app.start();

    const users = app.services.users;
    const demo = config.seedDemo ? await seedDemoAccounts(users) : [];
    const rootCommand = topology.units.find(
      (u) => u.type === 'command' && u.agency === 'corrections' && u.parent === null,
    );
    const adminPassword = config.seedDemo
      ? undefined
      : await ensureFirstAdmin(users, rootCommand?.id ?? topology.units[0]?.id ?? '');

    const server = app.httpServer;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.http.port, config.http.host, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const shownHost =
      config.http.host === '0.0.0.0' || config.http.host === '127.0.0.1' ? 'localhost' : config.http.host;
    const lines = [`Sinergi is listening on http://${shownHost}:${port}`];
    if (config.seedDemo) {
      lines.push(
        `Demo mode: every demo account's password is "${DEMO_PASSWORD}"${demo.length ? ` (created ${demo.length} now)` : ''}:`,
      );
      for (const a of demoAccounts) lines.push(`  ${a.username.padEnd(24)} ${a.role.padEnd(15)} ${a.unitId}`);
    }
    if (adminPassword)
      lines.push(`First start: created user "admin" with password ${adminPassword} — shown only this once.`);
    process.stdout.write(`${lines.join('\n')}\n`);
    logger.info({ port, host: config.http.host }, 'listening');
  } catch (error) {
    await app.close();
    await store.release();
    throw error;
  }
}

function fail(error: unknown): never {
  if (error instanceof ConfigError || error instanceof StartupError) {
    process.stderr.write(`sinergi: ${error.message}\n`);
  } else if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    process.stderr.write(
      `sinergi: ${(error as Error).message}: another process holds the port; set PORT to another one.\n`,
    );
  } else {
    process.stderr.write(`sinergi: failed to start: ${(error as Error).stack ?? String(error)}\n`);
  }
  process.exit(1);
}

try {
  await main(loadConfig()).catch(fail);
} catch (error) {
  fail(error);
}
