import { assemble } from './assemble.ts';
import { ConfigError, loadConfig } from './config.ts';
import { allPartitions } from './jobs/escalation-partitions.ts';
import { createLogger } from './logger.ts';
import { StartupError } from './startup-error.ts';

/**
 * `npm run worker`: escalation workers without HTTP, for running more of them (or running them apart from
 * the servers, with ESCALATION_WORKER=off there). Same config and store as the server; it publishes to
 * consoles through the same Socket.IO adapter, so it needs no listening port.
 */
async function main() {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, 'sinergi-worker');
  const { app, store } = await assemble(config, logger, {
    partitions: allPartitions(config.escalation.partitions),
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'worker stopping');
    await app.close();
    await store.release();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  await app.start();
  logger.info({ concurrency: config.escalation.concurrency }, 'escalation worker running');
  process.stdout.write('Sinergi escalation worker running; stop with Ctrl-C.\n');
}

main().catch((error: unknown) => {
  const expected = error instanceof ConfigError || error instanceof StartupError;
  process.stderr.write(
    `sinergi worker: ${expected ? (error as Error).message : ((error as Error).stack ?? String(error))}\n`,
  );
  process.exit(1);
});
