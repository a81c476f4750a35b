import type { Incident, PendingEvent } from './incident.ts';
import { isTerminal } from './incident-lifecycle.ts';

/** An event placed on an incident's timeline, with or without its hash seal. */
export type TimelineEntry = PendingEvent & { incidentId: string; seq: number };

/**
 * The timeline reducer: an incident is exactly the fold of its events. The server applies each new event
 * with this function, and replay rebuilds any past state with the same one.
 */
export function applyEvent(state: Incident | undefined, event: TimelineEntry): Incident {
  if (event.type === 'opened') {
    if (state) throw new Error(`incident ${event.incidentId} opened twice`);
    const { alert, parties } = event.data;
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
      seq: event.seq,
    };
  }
  if (!state) throw new Error(`incident ${event.incidentId}: ${event.type} before opened`);
  if (event.seq !== state.seq + 1)
    throw new Error(`incident ${event.incidentId}: seq ${event.seq} after ${state.seq}`);
  const base = { ...state, seq: event.seq, updatedAt: event.at };
  switch (event.type) {
    case 'alert_attached':
      return {
        ...base,
        alertCount: state.alertCount + 1,
        severity: Math.max(state.severity, event.data.alert.severity) as Incident['severity'],
        parties: event.data.parties,
      };
    case 'acknowledged':
      return {
        ...base,
        acks: { ...state.acks, [event.data.agency]: event.data.ack },
        status: state.status === 'open' ? 'acknowledged' : state.status,
      };
    case 'status_changed': {
      const next: Incident = { ...base, status: event.data.to };
      if (isTerminal(event.data.to)) next.closedAt = event.at;
      return next;
    }
    case 'note_added':
      return base;
  }
}

/** Rebuilds an incident from its timeline, optionally only up to a point in time. */
export function replay(events: Iterable<TimelineEntry>, until?: string): Incident | undefined {
  let state: Incident | undefined;
  for (const event of events) {
    if (until !== undefined && event.at > until) break;
    state = applyEvent(state, event);
  }
  return state;
}
