import type { z } from 'zod';
import type { PublicUser } from './auth.ts';
import { DomainError } from './errors.ts';
import {
  type Chain,
  type ChainNeed,
  type ChainState,
  type EscalationSnapshot,
  resolveTargets,
} from './escalation.ts';
import type { AckBehalf, Actor, Alert, Incident, PendingEvent, RaiseAlert, Status } from './incident.ts';
import { ACK_ROLES, checkTransition, isActive, isTerminal, NOTE_ROLES } from './incident-lifecycle.ts';
import { isParty, mergeParties, type Route } from './routing.ts';
import { CRITICAL } from './severity.ts';
import { agencyOf, type TopologyIndex } from './topology.ts';

/**
 * The domain's decisions: given the current state and a command, the one event to record (or null when the
 * command changes nothing), or a DomainError. Pure, so server and consoles agree on every rule.
 */

export const actorOf = (user: PublicUser): Actor => ({
  userId: user.id,
  username: user.username,
  unitId: user.unitId,
});

/** A silent (duress) raise is handled as critical whatever severity was picked under duress. */
export const effectiveSeverity = (raise: Pick<RaiseAlert, 'severity' | 'silent'>) =>
  raise.silent ? CRITICAL : raise.severity;

export function checkMayRaise(caller: PublicUser, raise: RaiseAlert, topology: TopologyIndex): void {
  const facility = topology.facility(raise.facilityId);
  if (!facility) throw new DomainError('not_found', `No facility "${raise.facilityId}"`);
  // An administrator works no incident, not even at a Lapas: only its control room raises (devices as operators).
  if (caller.unitId !== facility.id || !['operator', 'security_chief'].includes(caller.role)) {
    throw new DomainError('forbidden', 'You may raise alerts only for your own Lapas');
  }
  if (!facility.blocks.some((b) => b.id === raise.location.block)) {
    throw new DomainError('validation_failed', 'Unknown block', {
      issues: [
        {
          path: 'location.block',
          message: `"${raise.location.block}" is not a block of ${facility.shortName}`,
        },
      ],
    });
  }
}

export function buildAlert(
  raise: RaiseAlert,
  ids: { alertId: string; incidentId: string },
  caller: PublicUser,
  at: string,
): Alert {
  return {
    id: ids.alertId,
    incidentId: ids.incidentId,
    clientRef: raise.clientRef,
    facilityId: raise.facilityId,
    category: raise.category,
    reportedSeverity: raise.severity,
    severity: effectiveSeverity(raise),
    location: raise.location,
    description: raise.description,
    drill: raise.drill,
    silent: raise.silent,
    raisedBy: actorOf(caller),
    raisedAt: at,
  };
}

/**
 * Opens a new incident for an alert, or attaches it to the active one for the same place and kind.
 * `escalation` is the policy for the alert's own severity and category.
 */
export function decideRaise(
  alert: Alert,
  route: Route,
  existing: Incident | undefined,
  escalation: EscalationSnapshot,
): PendingEvent {
  const actor = alert.raisedBy;
  if (existing && isActive(existing.status)) {
    // A fight that turns into a riot escalates on the riot's timings from here on.
    const upgraded =
      alert.severity > existing.severity && escalation.policyId !== existing.escalation.policyId;
    return {
      type: 'alert_attached',
      at: alert.raisedAt,
      actor,
      data: {
        alert,
        parties: mergeParties(existing.parties, route.parties),
        ...(upgraded && { escalation }),
      },
    };
  }
  return { type: 'opened', at: alert.raisedAt, actor, data: { alert, parties: route.parties, escalation } };
}

/** An agency's acknowledgement; a second one by the same agency changes nothing. */
export function decideAck(
  incident: Incident,
  caller: PublicUser,
  behalf: z.infer<typeof AckBehalf> | undefined,
  topology: TopologyIndex,
  at: string,
): PendingEvent | null {
  if (!ACK_ROLES.includes(caller.role))
    throw new DomainError('forbidden', `A ${caller.role} may not acknowledge`);
  const unitId = behalf?.unitId ?? caller.unitId;
  const unit = topology.unit(unitId);
  if (!unit || !incident.parties.includes(unitId)) {
    throw new DomainError('forbidden', `${unitId} is not a party to this incident`);
  }
  if (isTerminal(incident.status)) {
    throw new DomainError('invalid_transition', `The incident is ${incident.status}; nothing to acknowledge`);
  }
  const agency = agencyOf(unit);
  if (incident.acks[agency]) return null;
  return {
    type: 'acknowledged',
    at,
    actor: actorOf(caller),
    data: {
      agency,
      ack: {
        by: actorOf(caller),
        at,
        timeToAckMs: Math.max(0, Date.parse(at) - Date.parse(incident.openedAt)),
        channel: behalf?.channel ?? 'console',
        ...(behalf && { onBehalfOf: behalf.unitId, note: behalf.note }),
      },
    },
  };
}

export function decideTransition(
  incident: Incident,
  caller: PublicUser,
  to: Status,
  note: string | undefined,
  at: string,
): PendingEvent {
  const check = checkTransition(incident.status, to, caller.role);
  if (!check.ok) throw new DomainError(check.code, check.message);
  return {
    type: 'status_changed',
    at,
    actor: actorOf(caller),
    data: { from: incident.status, to, ...(note !== undefined && { note }) },
  };
}

export function decideNote(incident: Incident, caller: PublicUser, text: string, at: string): PendingEvent {
  if (!NOTE_ROLES.includes(caller.role))
    throw new DomainError('forbidden', `A ${caller.role} may not add notes`);
  if (isTerminal(incident.status))
    throw new DomainError('invalid_transition', `The incident is ${incident.status}`);
  return { type: 'note_added', at, actor: actorOf(caller), data: { text } };
}

/** Who reads or acts: the user, and the login (session) it comes from. */
export interface Viewer {
  user: PublicUser;
  sessionId?: string;
}

/** An incident with the logins (sessions) of its silent raises. */
interface WithQuiet {
  incident: Incident;
  quiet: readonly string[];
}

/**
 * Whether the incident is the viewer's to see and to act on: its unit is a party, and it does not come from
 * the login of one of its silent raises. That login finds no trace of it, to read or to change: whoever
 * forced the raise could otherwise cancel the alarm, or hold its escalation, from that console.
 */
export const sees = (viewer: Viewer, { incident, quiet }: WithQuiet) =>
  isParty(viewer.user, incident) && (viewer.sessionId === undefined || !quiet.includes(viewer.sessionId));

/** Those it is hidden from are told the incident does not exist, so ids cannot be probed. */
export function checkVisible(viewer: Viewer, found: WithQuiet | undefined): Incident {
  if (!found || !sees(viewer, found)) throw new DomainError('not_found', 'No such incident');
  return found.incident;
}

/** Timeline events the server makes by itself (escalation) are recorded under this actor. */
export const systemActor = (unitId: string): Actor => ({ userId: 'system', username: 'sinergi', unitId });

/**
 * A chain's climb, decided on the incident as it is: one level up if, and only if, the chain is running and
 * its climb has come by `at`. Anything else (acked, held, stopped, climbed by another run meanwhile)
 * changes nothing, so the level fires once however often its timer wakes.
 */
export function decideEscalation(
  incident: Incident,
  policy: EscalationSnapshot,
  chainName: Chain,
  topology: TopologyIndex,
  at: string,
): PendingEvent | null {
  const chain = incident.escalation.chains[chainName];
  if (chain.status !== 'running' || chain.dueAt === null || Date.parse(chain.dueAt) > Date.parse(at))
    return null;
  const levelIndex = chain.level + 1;
  const level = policy.chains[chainName].levels[levelIndex];
  if (!level) return null;
  const targets = resolveTargets(topology, incident.facilityId, level.notify);
  return {
    type: 'escalated',
    at,
    actor: systemActor(incident.facilityId),
    data: {
      chain: chainName,
      level: levelIndex,
      label: level.label,
      addedUnits: targets.units.filter((u) => !incident.parties.includes(u)),
      targets,
      dueAt: chain.dueAt,
      firedAt: at,
      lateMs: Date.parse(at) - Date.parse(chain.dueAt),
    },
  };
}

/** Supervisors hold the corrections chain, police commanders the police chain. */
const HOLDERS: Record<Chain, readonly string[]> = {
  corrections: ['supervisor', 'security_chief'],
  police: ['commander'],
};

export function decideHold(
  incident: Incident,
  caller: PublicUser,
  hold: { chain: Chain; durationSeconds: number; reason: string },
  at: string,
): PendingEvent {
  if (!HOLDERS[hold.chain].includes(caller.role)) {
    throw new DomainError('forbidden', `A ${caller.role} may not hold the ${hold.chain} chain`);
  }
  const chain = incident.escalation.chains[hold.chain];
  if (chain.status !== 'running' && chain.status !== 'held') {
    throw new DomainError(
      'invalid_transition',
      `The ${hold.chain} chain is ${chain.status}; there is nothing to hold`,
    );
  }
  const until = new Date(Date.parse(at) + hold.durationSeconds * 1000).toISOString();
  return {
    type: 'escalation_held',
    at,
    actor: actorOf(caller),
    data: { chain: hold.chain, until, reason: hold.reason },
  };
}

/**
 * The auditor's record of a chain's timer set again for what the chain needs (its climb, the end of its hold,
 * or a reminder round at its level), made only if the chain has not moved since it was found without one.
 */
export function decideRepair(
  incident: Incident,
  found: ChainState,
  need: ChainNeed,
  at: string,
): PendingEvent | null {
  const c = incident.escalation.chains[need.chain];
  if (c.generation !== found.generation || c.level !== found.level || c.status !== found.status) return null;
  const timer = c.status === 'held' ? 'resume' : need.climb ? 'escalate' : 'remind';
  return {
    type: 'escalation_repaired',
    at,
    actor: systemActor(incident.facilityId),
    data: {
      chain: need.chain,
      timer,
      level: timer === 'escalate' ? c.level + 1 : c.level,
      dueAt: new Date(need.at).toISOString(),
    },
  };
}

/** A held chain resumes by itself once its hold has run out, unless it moved meanwhile (ack, longer hold, stop). */
export function decideResume(incident: Incident, chainName: Chain, at: string): PendingEvent | null {
  const chain = incident.escalation.chains[chainName];
  if (chain.status !== 'held' || !chain.heldUntil || Date.parse(chain.heldUntil) > Date.parse(at))
    return null;
  return {
    type: 'escalation_resumed',
    at,
    actor: systemActor(incident.facilityId),
    data: { chain: chainName },
  };
}
