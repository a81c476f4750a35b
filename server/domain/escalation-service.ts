import type { z } from 'zod';
import type { PublicUser } from '../../shared/auth.ts';
import {
  type Chain,
  type ChainTimerJob,
  type ChainWake,
  decideReminder,
  type HoldEscalation,
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

/** What the auditor asks of the timers beyond the writer's per-change sync. */
export interface EscalationClock {
  /** The chains of an incident whose running timer (chain timer or resume) is missing. */
  missingTimers(incident: Incident): Promise<Chain[]>;
}

/** What a chain timer did when it woke. */
export type TimerOutcome =
  | { kind: 'fired'; lateMs: number }
  /** Its climb had come, but the chain had already moved on: acknowledged, held, or fired by another run. */
  | { kind: 'skipped' }
  /** It paged the waiting level again, or woke early: it wakes again then, for a round or the climb. */
  | { kind: 'sleep'; wake: ChainWake }
  /** Before its climb: the chain has moved on, or waits for nothing more. */
  | { kind: 'done' };

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
    /**
     * A chain's timer woke: once its climb has come it fires the next level; before that it pages the
     * waiting level again when a round is due, and says when to wake next.
     */
    async wake(timer: ChainTimerJob): Promise<TimerOutcome> {
      const climb = async (dueAt: string): Promise<TimerOutcome> => {
        const { event } = await writer.change(
          timer.incidentId,
          ({ incident, policy }) => decideEscalation(incident, policy, { ...timer, dueAt }, topology, now()),
          async (fired) => {
            if (fired.type !== 'escalated' || fired.data.addedUnits.length === 0) return {};
            const alert = await repo.openingAlert(timer.incidentId);
            return alert ? { alert } : {};
          },
        );
        return event?.type === 'escalated'
          ? { kind: 'fired', lateMs: event.data.lateMs }
          : { kind: 'skipped' };
      };
      const nowMs = Date.parse(now());
      if (timer.dueAt !== null && nowMs >= Date.parse(timer.dueAt)) return climb(timer.dueAt);
      const stored = await repo.load(timer.incidentId);
      if (!stored) return { kind: 'done' };
      const chain = stored.incident.escalation.chains[timer.chain];
      const levels = stored.policy.chains[timer.chain].levels;
      const decided = decideReminder(chain, levels, timer, nowMs);
      if (!decided) return { kind: 'done' };
      const { wake } = decided;
      if (wake?.climb && wake.at <= nowMs) return climb(new Date(wake.at).toISOString());
      const level = levels[chain.level];
      if (decided.round !== undefined && level) {
        const { rooms } = resolveTargets(topology, stored.incident.facilityId, level.notify);
        deps.publisher.reminded({
          incident: stored.incident,
          chain: timer.chain,
          level: chain.level,
          round: decided.round,
          rooms,
        });
      }
      return wake ? { kind: 'sleep', wake } : { kind: 'done' };
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
