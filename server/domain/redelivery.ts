import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import type { Undelivered } from '../storage/undelivered.ts';
import type { IncidentWriter } from './incident-writer.ts';

/** How many overdue commits one round claims: the rest wait for the next round. */
const BATCH = 100;

/**
 * Delivers again, from any server process, the commits whose delivery nobody confirmed in time (see
 * undelivered.ts): checked five times per grace, so a change lost with its process reaches consoles within
 * about 1.2 graces of its commit.
 */
export function startRedelivery(deps: {
  undelivered: Undelivered;
  writer: IncidentWriter;
  afterMs: number;
  logger: Logger;
  metrics: Metrics;
}): { stop(): void } {
  let running = false;
  const round = async () => {
    if (running) return;
    running = true;
    try {
      for (const member of await deps.undelivered.claimOverdue(deps.afterMs, BATCH)) {
        deps.logger.warn({ delivery: member }, 'delivering a change again: its delivery was not confirmed');
        deps.metrics.changesRedelivered.inc();
        // One that fails (its incident unreadable, a timeout) must not hold back the others claimed with it:
        // it falls overdue again and is retried, by this process or another.
        await deps.writer.redeliver(member).catch((err: unknown) => {
          deps.logger.warn({ err, delivery: member }, 'could not deliver a change again; retrying');
        });
      }
    } catch (err) {
      deps.logger.warn({ err }, 'could not claim overdue changes; retrying');
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void round(), Math.max(100, deps.afterMs / 5));
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
