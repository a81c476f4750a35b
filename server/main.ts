import cluster from 'node:cluster';
import { runPrimary, serverProcessCount } from './cluster/primary.ts';
import { serverLink } from './cluster/server-link.ts';
import { ConfigError, loadConfig } from './config.ts';
import { StartupError } from './startup-error.ts';

async function main() {
  const config = loadConfig();
  const count = serverProcessCount(config);
  if (cluster.isPrimary && count > 1) {
    await runPrimary(config, count);
    return;
  }
  // Loaded only where it serves: a primary starts sooner and holds less without the server's code.
  const { serve } = await import('./serve.ts');
  await serve(config, serverLink());
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

await main().catch(fail);
