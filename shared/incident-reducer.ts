import {
  type Chain,
  type ChainState,
  chains,
  type EscalationSnapshot,
  initialChains,
  waitingAt,
} from './escalation.ts';
import type { Incident, PendingEvent, Status } from './incident.ts';
import { isTerminal } from './incident-lifecycle.ts';
import { mergeParties } from './routing.ts';

/** An event placed on an incident's timeline, with or without its hash seal. */
export type TimelineEntry = PendingEvent & { incidentId: string; seq: number };

/**
 * The timeline reducer: an incident is exactly the fold of its events. The server applies each new event
 * with this function, and replay rebuilds any past state with the same one. `policy` is the escalation
 * policy the incident's `opened` event copied (that event itself brings its own).
 */
export function applyEvent(
  state: Incident | undefined,
  event: TimelineEntry,
  policy: EscalationSnapshot | undefined,
): Incident {
  if (event.type === 'opened') {
    if (state) throw new Error(`incident ${event.incidentId} opened twice`);
    const { alert, parties, escalation } = event.data;
    return {
      id: event.incidentId,
      facilityId: alert.facilityId,
      category: alert.category,
      severity: alert.severity,
      status: 'open',
      drill: alert.drill,
      silent: alert.silent,
      location: alert.location,
      description: alert.description,
      openedAt: event.at,
      openedBy: event.actor,
      updatedAt: event.at,
      alertCount: 1,
      acks: {},
      parties,
      escalation: initialChains(escalation, event.at),
      seq: event.seq,
    };
  }
  if (!state || !policy) throw new Error(`incident ${event.incidentId}: ${event.type} before opened`);
  const levels = (chain: Chain) => policy.chains[chain].levels;
  if (event.seq !== state.seq + 1)
    throw new Error(`incident ${event.incidentId}: seq ${event.seq} after ${state.seq}`);
  const base = { ...state, seq: event.seq, updatedAt: event.at };
  const withChain = (chain: Chain, change: (c: ChainState) => ChainState): Incident => ({
    ...base,
    escalation: {
      ...state.escalation,
      chains: { ...state.escalation.chains, [chain]: change(state.escalation.chains[chain]) },
    },
  });
  switch (event.type) {
    case 'alert_attached':
      return {
        ...base,
        alertCount: state.alertCount + 1,
        severity: Math.max(state.severity, event.data.alert.severity) as Incident['severity'],
        parties: event.data.parties,
        ...(event.data.escalation && { escalation: switchPolicy(state, event.data.escalation, event.at) }),
      };
    case 'acknowledged': {
      const acked = withChain(event.data.agency, (c) => stop(c, 'acknowledged'));
      return {
        ...acked,
        acks: { ...state.acks, [event.data.agency]: event.data.ack },
        status: state.status === 'open' ? 'acknowledged' : state.status,
      };
    }
    case 'status_changed': {
      const next: Incident = {
        ...base,
        status: event.data.to,
        escalation: chainsAfter(state, policy, event.data.to, event.at),
      };
      if (isTerminal(event.data.to)) next.closedAt = event.at;
      return next;
    }
    case 'note_added':
    case 'escalation_repaired':
      return base;
    case 'escalated': {
      const { chain, level, addedUnits, firedAt } = event.data;
      const climbed = withChain(chain, (c) => ({ ...c, level, ...waitingAt(levels(chain), level, firedAt) }));
      return { ...climbed, parties: mergeParties(state.parties, addedUnits) };
    }
    case 'escalation_held':
      return withChain(event.data.chain, ({ waitFrom: _paused, ...c }) => ({
        ...c,
        status: 'held',
        dueAt: null,
        heldUntil: event.data.until,
        generation: c.generation + 1,
      }));
    case 'escalation_resumed':
      return withChain(event.data.chain, (c) => {
        const { heldUntil: _done, ...rest } = c;
        return {
          ...rest,
          generation: c.generation + 1,
          ...waitingAt(levels(event.data.chain), c.level, event.at),
        };
      });
  }
}

/**
 * A higher severity brings its own policy: chains still climbing continue from the level they reached
 * (or the new policy's top, if it has fewer), with the new policy's wait counted from now. Acknowledged,
 * held and stopped chains keep their state; they use the new levels when they move again.
 */
function switchPolicy(state: Incident, policy: EscalationSnapshot, at: string): Incident['escalation'] {
  const next = { ...state.escalation.chains };
  for (const chain of chains) {
    const c = next[chain];
    const levels = policy.chains[chain].levels;
    const level = Math.min(c.level, levels.length - 1);
    next[chain] =
      c.status === 'running' || c.status === 'exhausted'
        ? {
            ...c,
            level,
            levelCount: levels.length,
            generation: c.generation + 1,
            ...waitingAt(levels, level, at),
          }
        : { ...c, level, levelCount: levels.length };
  }
  return { policyId: policy.policyId, chains: next };
}

const stop = (chain: ChainState, status: 'acknowledged' | 'stopped'): ChainState => {
  const { heldUntil: _gone, waitFrom: _over, ...rest } = chain;
  return { ...rest, status, dueAt: null, generation: chain.generation + 1 };
};

/**
 * Resolving, closing or cancelling stops both chains; reopening a resolved case restarts, at the level it
 * had reached, every chain whose agency never acknowledged.
 */
function chainsAfter(
  state: Incident,
  policy: EscalationSnapshot,
  to: Status,
  at: string,
): Incident['escalation'] {
  const next = { ...state.escalation.chains };
  for (const chain of chains) {
    const c = next[chain];
    if (to === 'resolved' || isTerminal(to)) {
      if (c.status !== 'acknowledged') next[chain] = stop(c, 'stopped');
    } else if (state.status === 'resolved' && c.status === 'stopped') {
      next[chain] = {
        ...c,
        generation: c.generation + 1,
        ...waitingAt(policy.chains[chain].levels, c.level, at),
      };
    }
  }
  return { ...state.escalation, chains: next };
}

/** Rebuilds an incident from its timeline, optionally only up to a point in time. */
export function replay(events: Iterable<TimelineEntry>, until?: string): Incident | undefined {
  let state: Incident | undefined;
  let policy: EscalationSnapshot | undefined;
  for (const event of events) {
    if (until !== undefined && event.at > until) break;
    if (event.type === 'opened') policy = event.data.escalation;
    state = applyEvent(state, event, policy);
    if (event.type === 'alert_attached' && event.data.escalation) policy = event.data.escalation;
  }
  return state;
}
