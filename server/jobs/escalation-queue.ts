import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  type Chain,
  chains,
  type EscalateJob,
  nextReminderAt,
  type RemindJob,
  type ResumeJob,
} from '../../shared/escalation.ts';
import type { Incident, IncidentEvent } from '../../shared/incident.ts';
import type { EscalationClock } from '../domain/escalation-service.ts';
import type { EscalationTimers, IncidentChange } from '../domain/incident-writer.ts';
import type { Metrics } from '../metrics.ts';

export const ESCALATION_QUEUE = 'escalation';

export type EscalationJobName = 'escalate' | 'remind' | 'resume' | 'audit';

// BullMQ forbids ':' in job ids; ids are deterministic so that scheduling twice is a no-op.
export const jobIds = {
  escalate: (incidentId: string, chain: Chain, level: number) => `esc.${incidentId}.${chain}.${level}`,
  resume: (incidentId: string, chain: Chain, generation: number) =>
    `res.${incidentId}.${chain}.${generation}`,
  remind: (j: RemindJob) => `rem.${j.incidentId}.${j.chain}.${j.level}.${j.generation}.${j.round}`,
};

// Events after which a chain's timers may have to change; notes never move a chain, and an attached alert
// only when it brought another policy (see `movesChains`).
const MOVES_CHAINS = new Set<IncidentChange['event']['type']>([
  'opened',
  'alert_attached',
  'acknowledged',
  'status_changed',
  'escalated',
  'escalation_held',
  'escalation_resumed',
  'escalation_repaired',
]);

// A new waiting period starts at these: the level's reminders start over.
const STARTS_WAIT = new Set<IncidentChange['event']['type']>([
  'opened',
  'alert_attached',
  'escalated',
  'escalation_resumed',
  'status_changed',
]);

// BullMQ hands out jobs without a priority before any prioritized one. Reminders carry one, so that when the
// engine is busy a level climbing, or a hold running out, goes before a repeat page to a level already paged.
const REMINDER_PRIORITY = 10;

const PENDING = new Set(['delayed', 'waiting', 'active', 'prioritized', 'waiting-children']);

/** The chains an event can move; the other chain's timers stay exactly as they are. */
function movedChains(event: IncidentEvent): readonly Chain[] {
  switch (event.type) {
    case 'escalated':
    case 'escalation_held':
    case 'escalation_resumed':
    case 'escalation_repaired':
      return [event.data.chain];
    case 'acknowledged':
      return [event.data.agency];
    default:
      return chains;
  }
}

/** The escalation timers as BullMQ delayed jobs: one per (incident, chain, level), removed when the chain stops. */
export function createEscalationQueue(deps: {
  connection: Redis;
  prefix: string;
  metrics: Metrics;
  now?: () => number;
}) {
  const queue = new Queue(ESCALATION_QUEUE, {
    connection: deps.connection,
    prefix: deps.prefix,
    defaultJobOptions: {
      attempts: 5,
      backoff: { type: 'exponential', delay: 200 },
      // Gone once done, so a chain that restarts at the same level can schedule the same id again.
      removeOnComplete: true,
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
  // BullMQ re-emits the connection's errors here, which the connection's own listener already logs; with no
  // listener at all, each one would go raw to stderr on every reconnect attempt while Redis is down.
  queue.on('error', () => undefined);
  const now = deps.now ?? Date.now;
  const delayUntil = (iso: string) => Math.max(0, Date.parse(iso) - now());

  /** Adds the job unless an identical one is pending; replaces a stale, finished or different one. */
  async function ensure(
    name: EscalationJobName,
    jobId: string,
    data: EscalateJob | ResumeJob,
    dueAt: string,
  ) {
    const existing = await queue.getJob(jobId);
    if (existing) {
      const state = await existing.getState();
      if (PENDING.has(state) && JSON.stringify(existing.data) === JSON.stringify(data)) return;
      // An active job cannot be removed; its run finds the chain moved on and does nothing.
      await existing.remove().catch(() => undefined);
    }
    await queue.add(name, data, { jobId, delay: delayUntil(dueAt) });
  }

  async function cancel(jobId: string) {
    const existing = await queue.getJob(jobId);
    if (!existing) return;
    const removed = await existing.remove().then(
      () => true,
      () => false,
    );
    if (removed) deps.metrics.escalationCancelled.inc();
  }

  async function syncChain(incident: Incident, chain: Chain, change: IncidentChange) {
    const reminder = firstReminder(incident, chain, change);
    // The reminder has its own id and does not depend on the next level's timer: both go at once.
    await Promise.all([
      syncNextLevel(incident, chain, change),
      reminder && queue.add(reminder.name, reminder.data, reminder.opts),
    ]);
  }

  async function syncNextLevel(incident: Incident, chain: Chain, change: IncidentChange) {
    const c = incident.escalation.chains[chain];
    const next = jobIds.escalate(incident.id, chain, c.level + 1);
    if (c.status === 'running' && c.dueAt) {
      const data = {
        incidentId: incident.id,
        chain,
        level: c.level + 1,
        generation: c.generation,
        dueAt: c.dueAt,
      };
      // Right after a level fired, the next level's timer has never been set in this generation: add it
      // without looking for one to replace (a leftover from an older generation is a no-op, and the
      // auditor's to repair), which saves the firing path two round trips.
      if (change.event.type === 'escalated')
        await queue.add('escalate', data, { jobId: next, delay: delayUntil(c.dueAt) });
      else await ensure('escalate', next, data, c.dueAt);
    } else {
      await cancel(next);
    }
    if (c.status === 'held' && c.heldUntil) {
      const data = { incidentId: incident.id, chain, generation: c.generation, dueAt: c.heldUntil };
      await ensure('resume', jobIds.resume(incident.id, chain, c.generation), data, c.heldUntil);
    }
  }

  /** Round 1 of the reminders of the level a chain now waits at, when a new waiting period starts. */
  function firstReminder(incident: Incident, chain: Chain, change: IncidentChange) {
    const c = incident.escalation.chains[chain];
    if (!(c.status === 'running' || c.status === 'exhausted') || !STARTS_WAIT.has(change.event.type))
      return undefined;
    const from = now();
    const at = nextReminderAt(c, change.policy.chains[chain].levels, from);
    if (at === undefined) return undefined;
    const job: RemindJob = {
      incidentId: incident.id,
      chain,
      level: c.level,
      generation: c.generation,
      dueAt: new Date(at).toISOString(),
      round: 1,
    };
    return {
      name: 'remind' as const,
      data: job,
      opts: { jobId: jobIds.remind(job), delay: at - from, priority: REMINDER_PRIORITY },
    };
  }

  /** Every timer of an incident that has just opened. */
  function openingTimers(change: IncidentChange) {
    const { incident } = change;
    return chains.flatMap((chain) => {
      const c = incident.escalation.chains[chain];
      const reminder = firstReminder(incident, chain, change);
      const jobs: {
        name: EscalationJobName;
        data: EscalateJob | RemindJob;
        opts: { jobId: string; delay: number; priority?: number };
      }[] = reminder ? [reminder] : [];
      if (c.status === 'running' && c.dueAt) {
        const level = c.level + 1;
        jobs.push({
          name: 'escalate',
          data: { incidentId: incident.id, chain, level, generation: c.generation, dueAt: c.dueAt },
          opts: { jobId: jobIds.escalate(incident.id, chain, level), delay: delayUntil(c.dueAt) },
        });
      }
      return jobs;
    });
  }

  const timers: EscalationTimers = {
    async sync(change) {
      if (!MOVES_CHAINS.has(change.event.type)) return;
      if (change.event.type === 'alert_attached' && !change.event.data.escalation) return;
      if (change.event.type === 'opened') {
        // A brand-new incident has no timers to look up or replace: they are added at once, in one round
        // trip. Not with addBulk: its MULTI builds an ioredis pipeline that copies every BullMQ script onto
        // itself, which cost a raise about 1.5x the CPU of the separate adds.
        await Promise.all(openingTimers(change).map((j) => queue.add(j.name, j.data, j.opts)));
        return;
      }
      await Promise.all(movedChains(change.event).map((chain) => syncChain(change.incident, chain, change)));
    },
  };

  const clock: EscalationClock = {
    async missingTimers(incident) {
      const missing: Chain[] = [];
      for (const chain of chains) {
        const c = incident.escalation.chains[chain];
        const id =
          c.status === 'running' && c.dueAt
            ? jobIds.escalate(incident.id, chain, c.level + 1)
            : c.status === 'held'
              ? jobIds.resume(incident.id, chain, c.generation)
              : undefined;
        if (!id) continue;
        const job: Job | undefined = await queue.getJob(id);
        if (!job || !PENDING.has(await job.getState()) || job.data.generation !== c.generation)
          missing.push(chain);
      }
      return missing;
    },
    async remindLater(job, delayMs) {
      await queue.add(
        'remind',
        { ...job, dueAt: new Date(now() + delayMs).toISOString() },
        { jobId: jobIds.remind(job), delay: delayMs, priority: REMINDER_PRIORITY },
      );
    },
  };

  return {
    queue,
    timers,
    clock,
    /** Runs the auditor on every worker's queue every `everyMs` (one BullMQ job scheduler, shared). */
    scheduleAudit: (everyMs: number) =>
      queue.upsertJobScheduler(
        'escalation-audit',
        { every: everyMs },
        { name: 'audit', opts: { removeOnComplete: true, removeOnFail: 100 } },
      ),
    depth: () => queue.getJobCounts('delayed', 'waiting', 'active', 'failed'),
    close: () => queue.close(),
  };
}

export type EscalationQueue = ReturnType<typeof createEscalationQueue>;
