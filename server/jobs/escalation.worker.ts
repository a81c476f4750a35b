import { DelayedError, type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { z } from 'zod';
import { ChainTimerJob, type ChainWake, IncidentTimerJob, ResumeJob } from '../../shared/escalation.ts';
import type { EscalationService } from '../domain/escalation-service.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { escalationQueueName } from './escalation-partitions.ts';
import {
  type EscalationJobName,
  type EscalationQueue,
  jobIds,
  REMINDER_PRIORITY,
  timerRetryDelay,
} from './escalation-queue.ts';

export interface WorkerSettings {
  concurrency: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
}

// BullMQ waits for the next delayed job with a BZPOPMIN whose timeout Redis checks only on its own clock
// (hz, 10 times a second by default) or when a command arrives: on a quiet Redis a due level waited up to
// 100 ms more. The embedded Redis runs at hz 100. On one slower than that, the worker sends a PING this often
// to make Redis look at its timeouts, 100 trivial commands a second, which also cost an idle server about
// 5 % of a core.
const TIMEOUT_NUDGE_MS = 10;
const PROMPT_HZ = 1000 / TIMEOUT_NUDGE_MS;

/** Redis's hz, or 0 when it will not say (CONFIG refused): then it is assumed slow. */
async function redisHz(connection: Redis): Promise<number> {
  try {
    const [, hz] = (await connection.config('GET', 'hz')) as [string, string];
    return Number(hz) || 0;
  } catch {
    return 0;
  }
}

/** A job whose data fails its schema can never succeed: fail it for good instead of retrying it. */
function parseJob<S extends z.ZodType>(schema: S, job: Job): z.output<S> {
  const parsed = schema.safeParse(job.data);
  if (!parsed.success) throw new UnrecoverableError(`invalid ${job.name} job data: ${parsed.error.message}`);
  return parsed.data;
}

/**
 * Runs the incident timers (climbs, ends of holds, reminders) and audit jobs of one partition's queue; any
 * number of these may run on one Redis. The worker owns `connection`: closing the worker closes it.
 */
export function startEscalationWorker(deps: {
  connection: Redis;
  prefix: string;
  partition: number;
  service: EscalationService;
  /** Sets an incident's timer (for follow-ups, and the jobs earlier versions stored). */
  arm: EscalationQueue['arm'];
  logger: Logger;
  metrics: Metrics;
  settings: WorkerSettings;
}) {
  const { service, metrics, logger } = deps;
  /** Moves a timer that has run back to the delayed set, to wake at `wake`, under the same id. */
  async function sleepUntil(job: Job, token: string | undefined, timer: IncidentTimerJob, wake: ChainWake) {
    const priority = wake.climb ? 0 : REMINDER_PRIORITY;
    // Sent together: one round trip.
    await Promise.all([
      ...(job.priority !== priority ? [job.changePriority({ priority })] : []),
      job.updateData({ ...timer, at: new Date(wake.at).toISOString() }),
      job.moveToDelayed(wake.at, token),
    ]);
  }

  const processors: Record<EscalationJobName, (job: Job, token?: string) => Promise<unknown>> = {
    async timer(job, token) {
      const timer = parseJob(IncidentTimerJob, job);
      const outcome = await service.wake(timer);
      for (const lateMs of outcome.firedLateMs) {
        metrics.escalationFired.inc();
        metrics.escalationLateness.observe(lateMs / 1000);
      }
      if (outcome.skipped > 0) metrics.escalationSkipped.inc(outcome.skipped);
      // A follow-up (see `arm`) runs once, and hands what comes next to the incident's timer, then catches up
      // with any change committed since its read: removing the timer for a resolved incident must not outlast
      // the reopening that came meanwhile and set it again.
      if (job.id !== jobIds.timer(timer.incidentId)) {
        await deps.arm(timer.incidentId, outcome.next, outcome.seq);
        return { fired: outcome.firedLateMs.length };
      }
      if (!outcome.next) return { fired: outcome.firedLateMs.length };
      await sleepUntil(job, token, timer, outcome.next);
      throw new DelayedError();
    },
    // Timers stored by earlier versions hand over to the incident's timer, from when the chain began waiting.
    async escalate(job) {
      const legacy = parseJob(ChainTimerJob, job);
      await deps.arm(legacy.incidentId, { at: Date.parse(legacy.waitFrom), climb: true });
      return null;
    },
    async resume(job) {
      const legacy = parseJob(ResumeJob, job);
      await deps.arm(legacy.incidentId, { at: Date.parse(legacy.dueAt), climb: true });
      return null;
    },
    async audit() {
      const report = await service.audit();
      metrics.escalationRepaired.inc(report.repaired);
      metrics.escalationAuditLastRun.set(Date.now() / 1000);
      if (report.repaired > 0) logger.warn(report, 'escalation auditor repaired missing timers');
      return report;
    },
  };

  const worker = new Worker(
    escalationQueueName(deps.partition),
    async (job, token) => {
      const process = processors[job.name as EscalationJobName];
      if (!process) throw new UnrecoverableError(`unknown job ${job.name}`);
      return process(job, token);
    },
    {
      connection: deps.connection,
      prefix: deps.prefix,
      concurrency: deps.settings.concurrency,
      lockDuration: deps.settings.lockDurationMs,
      stalledInterval: deps.settings.stalledIntervalMs,
      // A job whose worker died or lost its lock is taken over by another, however often that happened
      // before: BullMQ never resets a job's count of stalls, and an incident's timer is one job for the
      // incident's whole life. None can spin: each stall waits for a lock to lapse and a stalled check.
      maxStalledCount: Number.MAX_SAFE_INTEGER,
      settings: { backoffStrategy: timerRetryDelay },
    },
  );
  // Background failures are reported, never thrown: the process keeps serving.
  worker.on('failed', (job, err) => {
    metrics.jobsFailed.inc({ name: job?.name ?? 'unknown' });
    logger.error(
      { err, jobId: job?.id, name: job?.name, attempts: job?.attemptsMade },
      'escalation job failed',
    );
  });
  worker.on('stalled', (jobId) => {
    metrics.jobsStalled.inc();
    logger.warn({ jobId }, 'escalation job stalled; another worker takes it over');
  });
  worker.on('error', (err) => logger.error({ err }, 'escalation worker error'));
  let nudge: NodeJS.Timeout | undefined;
  let closed = false;
  void redisHz(deps.connection).then((hz) => {
    if (closed || hz >= PROMPT_HZ) return;
    logger.info(
      { hz },
      `Redis hz below ${PROMPT_HZ}: pinging it every ${TIMEOUT_NUDGE_MS} ms so timers fire on time`,
    );
    nudge = setInterval(() => {
      if (deps.connection.status === 'ready') deps.connection.ping().catch(() => undefined);
    }, TIMEOUT_NUDGE_MS);
    nudge.unref();
  });
  // BullMQ never closes a connection it is handed; left open, it would reconnect forever after shutdown.
  worker.on('closed', () => {
    closed = true;
    clearInterval(nudge);
    deps.connection.disconnect();
  });
  return worker;
}
