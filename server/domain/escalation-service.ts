import type { z } from 'zod';
import type { PublicUser } from '../../shared/auth.ts';
import {
  type Chain,
  type EscalateJob,
  type HoldEscalation,
  nextReminderAt,
  type RemindJob,
  type ResumeJob,
  resolveTargets,
} from '../../shared/escalation.ts';
import type { Incident } from '../../shared/incident.ts';
import {
  checkVisible,
  decideEscalation,
  decideHold,
  decideResume,
  systemActor,
} from '../../shared/incident-decisions.ts';
import type { TopologyIndex } from '../../shared/topology.ts';
import type { IncidentRepository } from '../storage/incidents.repository.ts';
import type { IncidentWriter } from './incident-writer.ts';

/** The timers the engine needs beyond the writer's per-change sync. */
export interface EscalationClock {
  /** The chains of an incident whose running timer (escalate or resume) is missing. */
  missingTimers(incident: Incident): Promise<Chain[]>;
  remindLater(job: RemindJob, delayMs: number): Promise<void>;
}

export interface ReminderPublisher {
  reminded(reminder: {
    incident: Incident;
    chain: Chain;
    level: number;
    round: number;
    rooms: string[];
  }): void;
}

/**
 * A change's timers are set just after it commits, so a chain that moved less than this long ago may have its
 * timer on the way: the auditor leaves it to its next run rather than record a repair that was never needed.
 */
const SETTLE_MS = 1000;

export interface AuditReport {
  checked: number;
  repaired: number;
}

/** Unacknowledged incidents climb each agency's chain of command, once per level, whatever crashes. */
export function createEscalationService(deps: {
  repo: IncidentRepository;
  writer: IncidentWriter;
  topology: TopologyIndex;
  clock: EscalationClock;
  publisher: ReminderPublisher;
  now?: () => Date;
}) {
  const { repo, writer, topology, clock } = deps;
  const now = () => (deps.now?.() ?? new Date()).toISOString();

  return {
    /** A due escalation timer. Returns the fired event's lateness, or undefined when it had nothing to do. */
    async fire(job: EscalateJob): Promise<{ lateMs: number } | undefined> {
      const { event } = await writer.change(
        job.incidentId,
        ({ incident, policy }) => decideEscalation(incident, policy, job, topology, now()),
        async (fired) => {
          if (fired.type !== 'escalated' || fired.data.addedUnits.length === 0) return {};
          const alert = await repo.openingAlert(job.incidentId);
          return alert ? { alert } : {};
        },
      );
      return event?.type === 'escalated' ? { lateMs: event.data.lateMs } : undefined;
    },

    /** Pages the chain's current level again while it waits; schedules the next round. */
    async remind(job: RemindJob): Promise<boolean> {
      const stored = await repo.load(job.incidentId);
      const chain = stored?.incident.escalation.chains[job.chain];
      if (
        !stored ||
        !chain ||
        chain.status !== 'running' ||
        chain.generation !== job.generation ||
        chain.level !== job.level
      ) {
        return false;
      }
      const levels = stored.policy.chains[job.chain].levels;
      const level = levels[job.level];
      if (!level?.repeatSeconds) return false;
      const { rooms } = resolveTargets(topology, stored.incident.facilityId, level.notify);
      deps.publisher.reminded({
        incident: stored.incident,
        chain: job.chain,
        level: job.level,
        round: job.round,
        rooms,
      });
      const from = Date.parse(now());
      const next = nextReminderAt(chain, levels, from);
      if (next !== undefined) await clock.remindLater({ ...job, round: job.round + 1 }, next - from);
      return true;
    },

    async resume(job: ResumeJob): Promise<void> {
      await writer.change(job.incidentId, ({ incident }) => decideResume(incident, job, now()));
    },

    async hold(caller: PublicUser, hold: z.infer<typeof HoldEscalation>): Promise<Incident> {
      const { incident } = await writer.change(hold.incidentId, ({ incident }) =>
        decideHold(checkVisible(caller, incident), caller, hold, now()),
      );
      return incident;
    },

    /**
     * Reconciles every open incident with its timers: a running chain whose timer is missing (lost in a
     * crash between commit and scheduling, or removed by hand) gets it back, and the repair is recorded.
     */
    async audit(): Promise<AuditReport> {
      const incidents = await repo.loadMany(await repo.openIds(undefined));
      let repaired = 0;
      for (const incident of incidents) {
        if (Date.parse(now()) - Date.parse(incident.updatedAt) < SETTLE_MS) continue;
        for (const chain of await clock.missingTimers(incident)) {
          const before = incident.escalation.chains[chain];
          const { event } = await writer.change(incident.id, ({ incident: current }) => {
            const c = current.escalation.chains[chain];
            // Only if nothing moved the chain since it was found without its timer.
            if (c.generation !== before.generation || c.level !== before.level || c.status !== before.status)
              return null;
            const held = c.status === 'held';
            return {
              type: 'escalation_repaired',
              at: now(),
              actor: systemActor(current.facilityId),
              data: {
                chain,
                timer: held ? 'resume' : 'escalate',
                level: held ? c.level : c.level + 1,
                dueAt: (held ? c.heldUntil : c.dueAt) ?? now(),
              },
            };
          });
          if (event) repaired++;
        }
      }
      return { checked: incidents.length, repaired };
    },
  };
}

export type EscalationService = ReturnType<typeof createEscalationService>;
