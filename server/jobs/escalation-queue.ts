import { randomUUID } from 'node:crypto';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  type Chain,
  type ChainNeed,
  type ChainState,
  type ChainWake,
  chainNeeds,
  type IncidentTimerJob,
  incidentWake,
} from '../../shared/escalation.ts';
import type { EscalationClock } from '../domain/escalation-service.ts';
import type { EscalationTimers, IncidentChange } from '../domain/incident-writer.ts';
import type { Metrics } from '../metrics.ts';
import type { IncidentRepository } from '../storage/incidents.repository.ts';
import { allPartitions, escalationQueueName, partitionOf } from './escalation-partitions.ts';

/** `timer` is an incident's one timer; `escalate` and `resume` are the chain timers earlier versions stored. */
export type EscalationJobName = 'timer' | 'escalate' | 'resume' | 'audit';

// BullMQ forbids ':' in job ids; an incident's timer has one id for its whole life, so that every change
// finds and replaces it, and scheduling it twice is a no-op.
export const jobIds = {
  timer: (incidentId: string) => `tmr.${incidentId}`,
  /** A one-off wake for a change that came while the timer ran, where the auditor looks for it. */
  followUp: (incidentId: string) => `tmr.${incidentId}.next`,
  /** One for a change that came while the follow-up ran too, noted on the incident for the auditor. */
  spareFollowUp: (incidentId: string) => `tmr.${incidentId}.${randomUUID()}`,
};

// The ids earlier versions gave a chain's timer and the end of its hold: the auditor counts such a job, still
// pending, as the chain's timer, since running it sets the incident's.
const legacyJobIds = {
  escalate: (incidentId: string, chain: Chain, level: number) => `esc.${incidentId}.${chain}.${level}`,
  resume: (incidentId: string, chain: Chain, generation: number) =>
    `res.${incidentId}.${chain}.${generation}`,
};

// Events after which the timer may have to change. Notes never move a chain, an attached alert only when it
// brought another policy, and a climb or a resume is made by the timer's own run, which sets it again.
const MOVES_CHAINS = new Set<IncidentChange['event']['type']>([
  'opened',
  'alert_attached',
  'acknowledged',
  'status_changed',
  'escalation_held',
  'escalation_repaired',
]);

// BullMQ hands out jobs without a priority before any prioritized one. A timer waking only to page a level
// again carries one, so that when the engine is busy a level climbing, or a hold running out, goes before a
// repeat page to a level already paged.
export const REMINDER_PRIORITY = 10;

const PENDING = new Set(['delayed', 'waiting', 'active', 'prioritized', 'waiting-children']);

// An incident's timer is one job for the incident's whole life, moved back to the delayed set after each wake,
// and BullMQ never resets a job's count of failed attempts: any limit would be reached by transient failures
// spread over a long incident, and the timer then left to the auditor, levels and reminders late. So a failed
// run is retried for as long as the timer exists, after a capped backoff, so that one failing at once every
// time costs a run every few seconds, never a spin. BullMQ has no strategy named 'timer': the worker's
// (timerRetryDelay) is asked.
const TIMER_RETRIES = {
  attempts: Number.MAX_SAFE_INTEGER,
  backoff: { type: 'timer' },
};

/** How long a timer's run waits after its `attemptsMade`th failure: doubling from 200 ms, at most 5 s. */
export function timerRetryDelay(attemptsMade: number): number {
  return Math.min(5000, 200 * 2 ** Math.max(0, attemptsMade - 1));
}

// How often a change's sync sets the timer again for a later state it found stored, before leaving the rest
// to the syncs of the changes still coming (each of which checks the same way) and to the auditor.
const CATCH_UP_ATTEMPTS = 3;

/**
 * The escalation timers as BullMQ delayed jobs, one per incident whose chains wait for anything: it wakes at
 * the earliest climb, end of hold or reminder round of either chain, moving itself back to the delayed set
 * after each (see the worker), and goes when no chain waits. Both chains of a policy usually wait alike, so
 * one wake climbs or pages both: half the jobs that a timer per chain ran, and a page can never be due at
 * once with the climb that supersedes it.
 */
export function createEscalationQueue(deps: {
  connection: Redis;
  prefix: string;
  metrics: Metrics;
  partitions: number;
  /** The incidents as stored, for a sync that finds a later change than its own, and their spare timers. */
  incidents: Pick<IncidentRepository, 'seq' | 'load' | 'spareTimer' | 'noteSpareTimer'>;
  now?: () => number;
}) {
  const queues = allPartitions(deps.partitions).map((partition) => {
    const queue = new Queue(escalationQueueName(partition), {
      connection: deps.connection,
      prefix: deps.prefix,
      defaultJobOptions: {
        attempts: 5,
        backoff: { type: 'exponential', delay: 200 },
        // Gone once done, so an incident whose chains start waiting again can schedule the same id again.
        removeOnComplete: true,
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    });
    // BullMQ re-emits the connection's errors here, which the connection's own listener already logs; with
    // no listener at all, each one would go raw to stderr on every reconnect attempt while Redis is down.
    queue.on('error', () => undefined);
    return queue;
  });
  const queueOf = (incidentId: string) => queues[partitionOf(incidentId, queues.length)] as Queue;
  const now = deps.now ?? Date.now;

  function add(incidentId: string, wake: ChainWake, jobId = jobIds.timer(incidentId)) {
    const data: IncidentTimerJob = { incidentId, at: new Date(wake.at).toISOString() };
    return queueOf(incidentId).add('timer', data, {
      jobId,
      delay: Math.max(0, wake.at - now()),
      ...TIMER_RETRIES,
      ...(!wake.climb && { priority: REMINDER_PRIORITY }),
    });
  }

  /**
   * A job's state, then the job. In this order: a run that ends between the two reads sets the job's time
   * for what it read of the incident, and the time read before it (already past) would pass for that. Read
   * after the state, the job is as a run that began after the caller's commit left it, or not yet run.
   */
  async function stateThenJob(incidentId: string, jobId: string) {
    const queue = queueOf(incidentId);
    const state = await queue.getJobState(jobId);
    const job: Job | undefined = state === 'unknown' ? undefined : await queue.getJob(jobId);
    return { state, job };
  }

  /**
   * Sets job `jobId` to wake by `wake`, or removes it when nothing waits; false when it is running and cannot
   * be moved. A pending job that wakes sooner stays: it decides on the incident as it is then.
   */
  async function placeJob(incidentId: string, jobId: string, wake: ChainWake | undefined) {
    const { state, job: existing } = await stateThenJob(incidentId, jobId);
    if (existing) {
      if (state === 'active') return false;
      if (wake && PENDING.has(state) && Date.parse(existing.data.at) <= wake.at) return true;
      const removed = await existing.remove().then(
        () => true,
        () => false,
      );
      if (!wake && removed && PENDING.has(state)) deps.metrics.escalationCancelled.inc();
    }
    if (wake) await add(incidentId, wake, jobId);
    return true;
  }

  /**
   * Sets an incident's timer to wake by `wake`, or removes it when nothing waits. With `decidedOn`, the seq of
   * the incident `wake` was reckoned on, it then catches up with any change committed after that one.
   */
  async function arm(incidentId: string, wake: ChainWake | undefined, decidedOn?: number) {
    await place(incidentId, wake);
    if (decidedOn !== undefined) await catchUp(incidentId, decidedOn);
  }

  async function place(incidentId: string, wake: ChainWake | undefined) {
    if ((await placeJob(incidentId, jobIds.timer(incidentId), wake)) || !wake) return;
    // A running timer cannot be moved, and its run may have read the incident before this change: a one-off
    // follow-up wakes for what the change needs, and then sets the timer again (see the worker).
    if (await placeJob(incidentId, jobIds.followUp(incidentId), wake)) return;
    const spare = jobIds.spareFollowUp(incidentId);
    await add(incidentId, wake, spare);
    await deps.incidents.noteSpareTimer(incidentId, spare);
  }

  /**
   * Two changes' syncs may finish in either order (two processes, or one slow round trip): the sync of the
   * earlier change finishing last would leave the timer as that change needed it, for instance removed after
   * a resolve while the reopening that followed has the chains waiting again. So each sync, once done, checks
   * that no change committed after its own, and if one did, sets the timer for the incident as stored.
   */
  async function catchUp(incidentId: string, armedFor: number) {
    let seq = armedFor;
    for (let attempt = 0; attempt < CATCH_UP_ATTEMPTS; attempt++) {
      if ((await deps.incidents.seq(incidentId)) <= seq) return;
      const stored = await deps.incidents.load(incidentId);
      if (!stored) return;
      await place(incidentId, incidentWake(stored.incident, stored.policy, now()));
      seq = stored.incident.seq;
    }
  }

  const timers: EscalationTimers = {
    async sync({ incident, event, policy }) {
      if (!MOVES_CHAINS.has(event.type)) return;
      if (event.type === 'alert_attached' && !event.data.escalation) return;
      const wake = incidentWake(incident, policy, now());
      // A brand-new incident has no timer to look up or replace; and adding one never undoes a later change's
      // (the id exists already, or nothing waits any more and the timer wakes once to find so).
      if (event.type === 'opened') {
        if (wake) await add(incident.id, wake);
        return;
      }
      await arm(incident.id, wake, incident.seq);
    },
  };

  /** A chain's pending timer as earlier versions stored it, if any. */
  async function legacyTimer(incidentId: string, chain: Chain, c: ChainState) {
    const id =
      c.status === 'held'
        ? legacyJobIds.resume(incidentId, chain, c.generation)
        : legacyJobIds.escalate(incidentId, chain, c.level + 1);
    const job: Job | undefined = await queueOf(incidentId).getJob(id);
    return job !== undefined && PENDING.has(await job.getState());
  }

  const clock: EscalationClock = {
    async missingTimers({ incident, policy }) {
      // What each chain needs next (its climb, end of hold or next reminder round, at its top level too), by
      // the worker's own rule. Reckoned afresh after each read, as the worker reckons after its run, so a timer
      // that ran meanwhile and set itself for its next round is never taken for one set too late.
      const needs = () => chainNeeds(incident, policy, now());
      if (needs().length === 0) return [];
      const pendingAt = async (jobId: string) => {
        const { state, job } = await stateThenJob(incident.id, jobId);
        return job && PENDING.has(state) ? Date.parse(job.data.at) : undefined;
      };
      // A follow-up set while the timer ran covers for it (a run that then ended with nothing due left only
      // the follow-up), and a spare set while both ran covers for both. Each is looked up only when what was
      // found before it would not do.
      const covers = (at: number | undefined) => at !== undefined && needs().every((n) => n.at >= at);
      let at = await pendingAt(jobIds.timer(incident.id));
      if (!covers(at)) at = earliest(at, await pendingAt(jobIds.followUp(incident.id)));
      if (!covers(at)) {
        const spare = await deps.incidents.spareTimer(incident.id);
        if (spare) at = earliest(at, await pendingAt(spare));
      }
      const needed = needs();
      if (at !== undefined) return needed.filter((n) => n.at < at);
      const missing: ChainNeed[] = [];
      for (const need of needed)
        if (!(await legacyTimer(incident.id, need.chain, incident.escalation.chains[need.chain])))
          missing.push(need);
      return missing;
    },
  };

  return {
    timers,
    clock,
    arm,
    /** Runs the auditor every `everyMs` (one BullMQ job scheduler, on the first partition's queue). */
    scheduleAudit: (everyMs: number) =>
      (queues[0] as Queue).upsertJobScheduler(
        'escalation-audit',
        { every: everyMs },
        { name: 'audit', opts: { removeOnComplete: true, removeOnFail: 100 } },
      ),
    /** Jobs by state, over every partition. */
    async depth() {
      const counts = await Promise.all(
        queues.map((q) => q.getJobCounts('delayed', 'waiting', 'active', 'failed')),
      );
      const total: Record<string, number> = {};
      for (const c of counts)
        for (const [state, n] of Object.entries(c)) total[state] = (total[state] ?? 0) + n;
      return total;
    },
    close: () => Promise.all(queues.map((q) => q.close())).then(() => undefined),
  };
}

export type EscalationQueue = ReturnType<typeof createEscalationQueue>;

function earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}
