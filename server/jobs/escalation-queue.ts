import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  type Chain,
  type ChainTimerJob,
  type ChainWake,
  chains,
  nextWake,
  type ResumeJob,
} from '../../shared/escalation.ts';
import type { IncidentEvent } from '../../shared/incident.ts';
import type { EscalationClock } from '../domain/escalation-service.ts';
import type { EscalationTimers, IncidentChange } from '../domain/incident-writer.ts';
import type { Metrics } from '../metrics.ts';

/**
 * Timers are spread over BullMQ queues by incident, so that several processes can each run the workers of
 * their own queues without competing for the same jobs: on one queue every job woke every worker.
 */
export function escalationQueueName(partition: number): string {
  // The first keeps the name of the single queue earlier versions used, so timers stored by them still run.
  return partition === 0 ? 'escalation' : `escalation.${partition}`;
}

/** Which partition's queue holds an incident's timers: a stable hash of its id (FNV-1a). */
export function partitionOf(incidentId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < incidentId.length; i++) {
    hash ^= incidentId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

/** Every partition, 0 to `partitions` - 1. */
export function allPartitions(partitions: number): number[] {
  return Array.from({ length: partitions }, (_, p) => p);
}

/** The partitions whose workers a server runs, by ESCALATION_WORKER: all of them, or none when it only schedules. */
export function inlinePartitions(settings: { worker: 'inline' | 'off'; partitions: number }): number[] {
  return settings.worker === 'inline' ? allPartitions(settings.partitions) : [];
}

export type EscalationJobName = 'escalate' | 'resume' | 'audit';

// BullMQ forbids ':' in job ids; ids are deterministic so that scheduling twice is a no-op. A chain timer is
// named for the level it climbs to; one at the top level, which only pages again, for the level above it.
export const jobIds = {
  escalate: (incidentId: string, chain: Chain, level: number) => `esc.${incidentId}.${chain}.${level}`,
  resume: (incidentId: string, chain: Chain, generation: number) =>
    `res.${incidentId}.${chain}.${generation}`,
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

// A new waiting period starts at these: the level's reminders count from the event.
const STARTS_WAIT = new Set<IncidentChange['event']['type']>([
  'opened',
  'alert_attached',
  'escalated',
  'escalation_resumed',
  'status_changed',
]);

// BullMQ hands out jobs without a priority before any prioritized one. A chain timer waiting for a reminder
// round carries one, so that when the engine is busy a level climbing, or a hold running out, goes before a
// repeat page to a level already paged; waiting for its climb, it has none.
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

/**
 * The escalation timers as BullMQ delayed jobs. A waiting chain has one: it wakes for each reminder round of
 * the level it waits at, moving itself back to the delayed set, and then for the climb; it is removed when
 * the chain stops. One job instead of a climb and a reminder each halves what opening an incident costs
 * Redis and the server, and a page can never be due at once with the climb that supersedes it.
 */
export function createEscalationQueue(deps: {
  connection: Redis;
  prefix: string;
  metrics: Metrics;
  partitions: number;
  now?: () => number;
}) {
  const queues = allPartitions(deps.partitions).map((partition) => {
    const queue = new Queue(escalationQueueName(partition), {
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
    // BullMQ re-emits the connection's errors here, which the connection's own listener already logs; with
    // no listener at all, each one would go raw to stderr on every reconnect attempt while Redis is down.
    queue.on('error', () => undefined);
    return queue;
  });
  const queueOf = (incidentId: string) => queues[partitionOf(incidentId, queues.length)] as Queue;
  const now = deps.now ?? Date.now;
  const delayUntil = (ms: number) => Math.max(0, ms - now());

  const timerOptions = (jobId: string, wake: ChainWake) => ({
    jobId,
    delay: delayUntil(wake.at),
    ...(!wake.climb && { priority: REMINDER_PRIORITY }),
  });

  /** Adds the job unless an identical one is pending; replaces a stale, finished or different one. */
  async function ensure(
    name: EscalationJobName,
    data: ChainTimerJob | ResumeJob,
    opts: { jobId: string; delay: number; priority?: number },
  ) {
    const queue = queueOf(data.incidentId);
    const existing = await queue.getJob(opts.jobId);
    if (existing) {
      const state = await existing.getState();
      if (PENDING.has(state) && JSON.stringify(existing.data) === JSON.stringify(data)) return;
      // An active job cannot be removed; its run finds the chain moved on and does nothing.
      await existing.remove().catch(() => undefined);
    }
    await queue.add(name, data, opts);
  }

  async function cancel(incidentId: string, jobId: string) {
    const existing = await queueOf(incidentId).getJob(jobId);
    if (!existing) return;
    const removed = await existing.remove().then(
      () => true,
      () => false,
    );
    if (removed) deps.metrics.escalationCancelled.inc();
  }

  /** The timer a chain needs after a change, if it waits for anything: the next reminder or the climb. */
  function chainTimer(change: IncidentChange, chain: Chain) {
    const { incident, event } = change;
    const c = incident.escalation.chains[chain];
    const levels = change.policy.chains[chain].levels;
    const wait = levels[c.level]?.waitSeconds;
    // Repairs and policy-neutral changes keep the wait the climb was counted from.
    const waitFromMs =
      !STARTS_WAIT.has(event.type) && c.status === 'running' && c.dueAt !== null && wait !== undefined
        ? Date.parse(c.dueAt) - wait * 1000
        : Date.parse(event.at);
    const wake = nextWake(c, levels, waitFromMs, now());
    if (!wake) return undefined;
    const data: ChainTimerJob = {
      incidentId: incident.id,
      chain,
      level: c.level + 1,
      generation: c.generation,
      dueAt: c.status === 'running' ? c.dueAt : null,
      waitFrom: new Date(waitFromMs).toISOString(),
    };
    return { data, opts: timerOptions(jobIds.escalate(incident.id, chain, c.level + 1), wake) };
  }

  async function syncChain(change: IncidentChange, chain: Chain) {
    const { incident, event } = change;
    const c = incident.escalation.chains[chain];
    const timer = chainTimer(change, chain);
    if (!timer) await cancel(incident.id, jobIds.escalate(incident.id, chain, c.level + 1));
    // Right after a level fired, the next level's timer has never been set in this generation: add it
    // without looking for one to replace (a leftover from an older generation is a no-op, and the
    // auditor's to repair), which saves the firing path two round trips.
    else if (event.type === 'escalated') await queueOf(incident.id).add('escalate', timer.data, timer.opts);
    else await ensure('escalate', timer.data, timer.opts);
    if (c.status === 'held' && c.heldUntil) {
      const data = { incidentId: incident.id, chain, generation: c.generation, dueAt: c.heldUntil };
      const jobId = jobIds.resume(incident.id, chain, c.generation);
      await ensure('resume', data, { jobId, delay: delayUntil(Date.parse(c.heldUntil)) });
    }
  }

  const timers: EscalationTimers = {
    async sync(change) {
      if (!MOVES_CHAINS.has(change.event.type)) return;
      if (change.event.type === 'alert_attached' && !change.event.data.escalation) return;
      if (change.event.type === 'opened') {
        // A brand-new incident has no timers to look up or replace: they are added at once, in one round
        // trip. Not with addBulk: its MULTI builds an ioredis pipeline that copies every BullMQ script onto
        // itself, which cost a raise about 1.5x the CPU of the separate adds.
        const opening = chains.flatMap((chain) => chainTimer(change, chain) ?? []);
        const queue = queueOf(change.incident.id);
        await Promise.all(opening.map((t) => queue.add('escalate', t.data, t.opts)));
        return;
      }
      await Promise.all(movedChains(change.event).map((chain) => syncChain(change, chain)));
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
        const job: Job | undefined = await queueOf(incident.id).getJob(id);
        if (!job || !PENDING.has(await job.getState()) || job.data.generation !== c.generation)
          missing.push(chain);
      }
      return missing;
    },
  };

  return {
    timers,
    clock,
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
