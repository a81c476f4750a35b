import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { HELD_AT_MOST_MS, type Undelivered } from '../storage/undelivered.ts';
import type { IncidentWriter } from './incident-writer.ts';

/** How many overdue commits one round claims: the rest wait for the next round. */
const BATCH = 100;

/**
 * Delivers again the commits whose delivery nobody confirmed in time (see undelivered.ts): the process that
 * made them while it runs, any process once it has stopped. Checked five times per grace, and this process's
 * heartbeat sent as often: a change lost with its process reaches consoles about a grace after the later of
 * its commit and the process's last heartbeat.
 */
export function startRedelivery(deps: {
  undelivered: Undelivered;
  writer: IncidentWriter;
  afterMs: number;
  logger: Logger;
  metrics: Metrics;
}): {
  /** No more rounds; the heartbeat goes on, for the changes still in hand while the process stops. */
  stop(): void;
  /** The heartbeat ends too: what is left undelivered is the other processes'. */
  retire(): Promise<void>;
} {
  let running = false;
  let startedAt = 0;
  const round = async () => {
    if (running) return;
    running = true;
    startedAt = Date.now();
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
  // The heartbeat goes out on every tick, even while a round is still running (slow under load, its replies
  // seconds behind): that is when this process has commits in hand for longest. Not once a round has run for
  // as long as a note is ever held: stuck (a command that never returns), the process would otherwise keep the
  // others from the changes it has claimed for good.
  const heartbeat = () => {
    if (running && Date.now() - startedAt > HELD_AT_MOST_MS) return;
    deps.undelivered.heartbeat().catch((err: unknown) => {
      deps.logger.warn({ err }, 'could not tell the other processes this one runs; retrying');
    });
  };
  const tickMs = Math.max(100, deps.afterMs / 5);
  heartbeat();
  const beats = setInterval(heartbeat, tickMs);
  const rounds = setInterval(() => void round(), tickMs);
  beats.unref();
  rounds.unref();
  return {
    stop: () => clearInterval(rounds),
    async retire() {
      clearInterval(rounds);
      clearInterval(beats);
      await deps.undelivered.retire();
    },
  };
}
