import type { z } from 'zod';
import {
  type Chain,
  type ChainNeed,
  type ChainWake,
  dueOnWake,
  type HoldEscalation,
  type IncidentTimerJob,
  incidentWake,
  resolveTargets,
} from '../../shared/escalation.ts';
import type { Incident } from '../../shared/incident.ts';
import {
  decideEscalation,
  decideHold,
  decideRepair,
  decideResume,
  type Viewer,
} from '../../shared/incident-decisions.ts';
import type { TopologyIndex } from '../../shared/topology.ts';
import type { IncidentRepository, StoredIncident } from '../storage/incidents.repository.ts';
import type { RateGate } from '../storage/rate-gate.ts';
import type { IncidentWriter } from './incident-writer.ts';

/** What the auditor asks of the timers beyond the writer's per-change sync. */
export interface EscalationClock {
  /**
   * What the chains of an incident next need of its timer (a climb, an end of hold, a reminder round) that the
   * timer would miss: none pending, or set too late.
   */
  missingTimers(stored: Pick<StoredIncident, 'incident' | 'policy'>): Promise<ChainNeed[]>;
}

/** What an incident's timer did when it woke, and when it wakes next (undefined: nothing waits). */
export interface WakeOutcome {
  /** How late each level it fired was, in ms. */
  firedLateMs: number[];
  /** Climbs and resumes that found the chain already moved on (acknowledged, held, fired by another run). */
  skipped: number;
  next: ChainWake | undefined;
  /** The seq of the incident `next` was reckoned on (0: no such incident). */
  seq: number;
}

export interface ReminderPublisher {
  reminded(reminder: {
    incident: Incident;
    chain: Chain;
    level: number;
    round: number;
    rooms: string[];
    /** Sessions never to be told of the incident (see `StoredIncident`). */
    quiet: readonly string[];
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
  /** A hold carries free text onto the timeline and to every party, as a note does: the same budget. */
  noteGate: RateGate;
  now?: () => Date;
}) {
  const { repo, writer, topology, clock } = deps;
  const now = () => (deps.now?.() ?? new Date()).toISOString();

  return {
    /**
     * An incident's timer woke: climbs the chains whose climb has come, resumes those whose hold ran out, pages
     * each other waiting level again when a round fell due, and says when to wake next, all decided on the
     * incident as it is now.
     */
    async wake(timer: IncidentTimerJob): Promise<WakeOutcome> {
      let stored = await repo.load(timer.incidentId);
      if (!stored) return { firedLateMs: [], skipped: 0, next: undefined, seq: 0 };
      const at = now();
      const nowMs = Date.parse(at);
      const plannedMs = Date.parse(timer.at);
      const due = dueOnWake(stored.incident, stored.policy, plannedMs, nowMs);
      const outcome: WakeOutcome = { firedLateMs: [], skipped: 0, next: undefined, seq: 0 };
      // Decided first on the incident as read, saving a read. The climbs and resumes due now go in one commit,
      // at one moment, so that chains that waited alike go on waiting alike and climb together again.
      const moves = [
        ...due.climbs.map(
          (chain) => (current: StoredIncident) =>
            decideEscalation(current.incident, current.policy, chain, topology, at),
        ),
        ...due.resumes.map((chain) => (current: StoredIncident) => decideResume(current.incident, chain, at)),
      ];
      if (moves.length > 0) {
        const result = await writer.changeAll(timer.incidentId, moves, { known: stored });
        stored = result.stored;
        for (const event of result.events)
          if (event.type === 'escalated') outcome.firedLateMs.push(event.data.lateMs);
        outcome.skipped += moves.length - result.events.length;
      }
      const { incident, policy } = stored;
      // The rounds are reckoned again on the incident as the commit left it, which may have been read anew after
      // a change that came meanwhile: a round is counted from the start of its chain's wait at its level, which
      // each generation begins anew (an alert bringing another policy, say), and is claimed under that wait.
      const { rounds } = dueOnWake(incident, policy, plannedMs, nowMs);
      const pages = rounds.flatMap(({ chain, level, round }) => {
        const notify = policy.chains[chain].levels[level]?.notify;
        const wait = `${chain}.${incident.escalation.chains[chain].generation}.${level}`;
        return notify ? [{ chain, level, round, notify, wait }] : [];
      });
      if (pages.length > 0) {
        const claimed = await repo.claimPages(incident.id, pages);
        for (const [i, { chain, level, round, notify }] of pages.entries()) {
          if (!claimed[i]) continue;
          const { rooms } = resolveTargets(topology, incident.facilityId, notify);
          deps.publisher.reminded({ incident, chain, level, round, rooms, quiet: stored.quiet });
        }
      }
      outcome.next = incidentWake(incident, policy, nowMs);
      outcome.seq = incident.seq;
      return outcome;
    },

    hold(caller: Viewer, hold: z.infer<typeof HoldEscalation>) {
      return writer.commandOnBudget(deps.noteGate, caller, hold.incidentId, hold.clientRef, (incident) =>
        decideHold(incident, caller.user, hold, now()),
      );
    },

    /**
     * Reconciles every open incident with its timer: a waiting chain whose timer is missing (lost in a crash
     * between commit and scheduling, or failed) or set too late for its climb, end of hold or next reminder
     * round gets it back, and the repair is recorded.
     */
    async audit(): Promise<AuditReport> {
      const loads = await Promise.allSettled((await repo.openIds(undefined)).map((id) => repo.load(id)));
      const failed: unknown[] = [];
      let checked = 0;
      let repaired = 0;
      const repair = async (stored: StoredIncident) => {
        const { incident } = stored;
        for (const need of await clock.missingTimers(stored)) {
          const found = incident.escalation.chains[need.chain];
          const { event } = await writer.change(incident.id, ({ incident: current }) =>
            decideRepair(current, found, need, now()),
          );
          if (event) repaired++;
        }
      };
      for (const load of loads) {
        if (load.status === 'rejected') failed.push(load.reason);
        const stored = load.status === 'fulfilled' && load.value;
        if (!stored) continue;
        checked++;
        if (Date.parse(now()) - Date.parse(stored.incident.updatedAt) < SETTLE_MS) continue;
        await repair(stored).catch((error: unknown) => failed.push(error));
      }
      // An incident that cannot be read (its policy text refused) or repaired (a timeout) must not keep the
      // others from their audit.
      if (failed.length > 0)
        throw new AggregateError(failed, 'open incidents the auditor could not read or repair');
      return { checked, repaired };
    },
  };
}

export type EscalationService = ReturnType<typeof createEscalationService>;
