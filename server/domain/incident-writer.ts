import { DomainError } from '../../shared/errors.ts';
import type { EscalationSnapshot } from '../../shared/escalation.ts';
import type { Alert, ChangeResult, Incident, IncidentEvent, PendingEvent } from '../../shared/incident.ts';
import { checkVisible, type Viewer } from '../../shared/incident-decisions.ts';
import { isTerminal } from '../../shared/incident-lifecycle.ts';
import { applyEvent } from '../../shared/incident-reducer.ts';
import {
  bringsAlert,
  type CommandRequest,
  type IncidentRepository,
  type StoredIncident,
} from '../storage/incidents.repository.ts';
import type { RateGate } from '../storage/rate-gate.ts';
import { parseDelivery, type Undelivered } from '../storage/undelivered.ts';
import { GENESIS_HASH, sealEvent } from './timeline-seal.ts';

export interface IncidentChange {
  incident: Incident;
  event: IncidentEvent;
  /** The escalation policy copied when the incident opened. */
  policy: EscalationSnapshot;
  /** The alert behind `alert:new`: the new one for a raise, the opening one when escalation adds parties. */
  alert?: Alert;
  /** Every session a silent raise of the incident came from, this change's included: none of their consoles hears of it. */
  quiet: readonly string[];
  /** A later change committed with this one follows it: this incident is not the latest. */
  superseded?: boolean;
}

/** Told after every committed change, to deliver it; the transport decides how. */
export interface IncidentPublisher {
  changed(change: IncidentChange): void;
}

/** Keeps each chain's escalation timer in step with the incident after every change. */
export interface EscalationTimers {
  sync(change: IncidentChange): Promise<void>;
}

/** How often a change is decided again after losing a race to another writer before giving up. */
export const COMMIT_ATTEMPTS = 20;

/** Applies a pending event to the state it was decided on and seals it into the chain. */
export function seal(pending: PendingEvent, incidentId: string, before: StoredIncident | undefined) {
  const entry = { ...pending, incidentId, seq: (before?.incident.seq ?? 0) + 1 };
  const policy =
    pending.type === 'opened' || pending.type === 'alert_attached'
      ? (pending.data.escalation ?? before?.policy)
      : before?.policy;
  if (!policy) throw new Error(`incident ${incidentId}: ${pending.type} before opened`);
  // An event that brings a new policy is itself applied under the one in force before it.
  const incident = applyEvent(before?.incident, entry, before?.policy ?? policy);
  return { incident, policy, event: sealEvent(entry, before?.lastHash ?? GENESIS_HASH) };
}

/** A command's `clientRef` is its sender's: another user's equal one is another command. */
const requestOf = (caller: Viewer, clientRef: string | undefined): CommandRequest | undefined =>
  clientRef === undefined ? undefined : { userId: caller.user.id, clientRef };

/** A change of one commit, as far as its delivery note goes. */
type Committed = Pick<IncidentChange, 'incident' | 'event'>;

/**
 * The one path by which an existing incident changes: decide on the latest state, commit only if nobody
 * changed it meanwhile (else decide again), then deliver the change and set its timers.
 */
export function createIncidentWriter(deps: {
  repo: IncidentRepository;
  publisher: IncidentPublisher;
  timers: EscalationTimers;
  undelivered: Undelivered;
  /**
   * Whether what is published now leaves this process (the broadcast Redis answers). While it does not, the
   * adapter holds broadcasts in memory, so a change's note is kept, for another process to deliver should
   * this one stop first.
   */
  broadcastReady: () => boolean;
  onTimerError: (error: unknown, change: IncidentChange) => void;
}) {
  const { repo, publisher, timers, undelivered } = deps;

  /** The note of the commit that stores `changes` (one incident's, oldest first): the member it writes. */
  function memberOf(changes: readonly Committed[]): string {
    const first = changes[0];
    const last = changes.at(-1);
    if (!first || !last) throw new Error('a commit without changes has no note');
    return undelivered.member({
      incidentId: first.incident.id,
      fromSeq: first.event.seq,
      toSeq: last.event.seq,
    });
  }

  /** Publishes changes, oldest first, and sets their timers. */
  async function publish(changes: IncidentChange[]): Promise<void> {
    for (const change of changes) {
      publisher.changed(change);
      // The change is already durable; a timer that fails to set is found and set again by the auditor.
      await timers.sync(change).catch((error: unknown) => deps.onTimerError(error, change));
    }
  }

  const forget = (member: string) => {
    if (deps.broadcastReady()) undelivered.delivered(member);
    else undelivered.release(member);
  };

  /**
   * Sends the commit of `changes`, holding its note as this process's own (see undelivered.ts) until
   * `delivered` forgets it; released at once when the commit stores nothing or fails.
   */
  async function committing<T>(
    changes: readonly Committed[],
    commit: (note: string) => Promise<T>,
    stored: (outcome: T) => boolean,
  ): Promise<T> {
    const member = memberOf(changes);
    undelivered.hold(member);
    try {
      const outcome = await commit(member);
      if (!stored(outcome)) undelivered.release(member);
      return outcome;
    } catch (error) {
      undelivered.release(member);
      throw error;
    }
  }

  /** Delivers the changes one commit stored, and forgets the commit's note. */
  async function delivered(changes: IncidentChange[]): Promise<void> {
    if (changes.length === 0) return;
    const member = memberOf(changes);
    try {
      await publish(await withAlerts(changes));
    } catch (error) {
      undelivered.release(member);
      throw error;
    }
    forget(member);
  }

  /**
   * Each change with the alert behind its `alert:new`: the one its event brought, or, for units an escalation
   * added, the opening one (read once, however many chains climbed in the commit).
   */
  async function withAlerts(changes: IncidentChange[]): Promise<IncidentChange[]> {
    let opening: Promise<Alert | undefined> | undefined;
    const out: IncidentChange[] = [];
    for (const change of changes) {
      const { event } = change;
      let alert = bringsAlert(event) ? event.data.alert : undefined;
      if (event.type === 'escalated' && event.data.addedUnits.length > 0) {
        opening ??= repo.openingAlert(event.incidentId);
        alert = await opening;
      }
      out.push(alert ? { ...change, alert } : change);
    }
    return out;
  }

  /** The answer to a command applied before: the incident as it is now, as a sync would show it. */
  async function duplicateOf(id: string) {
    const stored = await repo.load(id);
    if (!stored) throw new DomainError('not_found', 'No such incident');
    return { stored, events: [], duplicate: true as const };
  }

  /**
   * Changes decided in turn, each on the state the one before leaves, committed together: one round trip
   * and one write of the incident for all of them (an incident's timer climbing both chains at once).
   */
  async function changeAll(
    id: string,
    decisions: readonly ((stored: StoredIncident) => PendingEvent | null)[],
    options: {
      /** The incident as the caller last read it: decided on first, saving a read when it is still current. */
      known?: StoredIncident;
      /** The client's command these decisions carry out: once applied, a repeat stores nothing. */
      request?: CommandRequest;
    } = {},
  ): Promise<{ stored: StoredIncident; events: IncidentEvent[]; duplicate?: true }> {
    const { known, request } = options;
    for (let attempt = 0; attempt < COMMIT_ATTEMPTS; attempt++) {
      // A repeat is found before deciding: decided again on the state its first sending left, it could be
      // refused (a status it reached already) or made twice. The commit checks again, atomically.
      const [before, applied] = await Promise.all([
        attempt === 0 && known ? known : repo.load(id),
        request && repo.requestApplied(id, request),
      ]);
      if (applied !== undefined) return duplicateOf(id);
      if (!before) throw new DomainError('not_found', 'No such incident');
      let after = before;
      const changes: IncidentChange[] = [];
      for (const decide of decisions) {
        const pending = decide(after);
        if (!pending) continue;
        const { incident, event, policy } = seal(pending, id, after);
        changes.push({ incident, event, policy, quiet: after.quiet });
        after = { ...after, incident, policy, lastHash: event.hash };
      }
      const last = changes.at(-1);
      if (!last) return { stored: before, events: [] };
      const outcome = await committing(
        changes,
        (note) =>
          repo.append({
            note,
            expectedSeq: before.incident.seq,
            incident: last.incident,
            event: last.event,
            earlier: changes.slice(0, -1).map((c) => c.event),
            listedOpen: !isTerminal(last.incident.status),
            ...(request && { request }),
          }),
        (o) => o.status === 'committed',
      );
      if (outcome.status === 'committed') {
        await delivered(changes.map((c) => (c === last ? c : { ...c, superseded: true })));
        return { stored: after, events: changes.map((c) => c.event) };
      }
      if (outcome.status === 'duplicate') return duplicateOf(id);
    }
    throw new DomainError('unavailable', 'The incident is changing too fast; try again');
  }

  async function change(
    id: string,
    decide: (stored: StoredIncident) => PendingEvent | null,
    request?: CommandRequest,
  ): Promise<{ stored: StoredIncident; event?: IncidentEvent; duplicate?: true }> {
    const { stored, events, duplicate } = await changeAll(id, [decide], request ? { request } : {});
    const [event] = events;
    return { stored, ...(event && { event }), ...(duplicate && { duplicate }) };
  }

  /**
   * A client's command on an incident the caller sees, decided on the latest state and applied once per
   * `clientRef`: a repeat is answered with the incident as it is now, should the caller still see it.
   */
  async function command(
    caller: Viewer,
    id: string,
    clientRef: string | undefined,
    decide: (incident: Incident) => PendingEvent | null,
  ): Promise<ChangeResult> {
    const request = requestOf(caller, clientRef);
    const { stored, duplicate } = await change(
      id,
      (current) => decide(checkVisible(caller, current)),
      request,
    );
    if (duplicate) return { incident: checkVisible(caller, stored), duplicate: true };
    return { incident: stored.incident, duplicate: false };
  }

  return {
    delivered,
    committing,
    changeAll,

    /**
     * Delivers again a commit whose note fell overdue: its events, each with the incident as it is now (the
     * latest a console can be told), the last bringing the parties the update.
     */
    async redeliver(member: string): Promise<void> {
      const delivery = parseDelivery(member);
      const stored = delivery && (await repo.load(delivery.incidentId));
      // A note naming nothing that exists is forgotten rather than claimed for ever. Otherwise the note itself
      // is forgotten once what it names is out, even should fewer events be found than it names.
      if (!delivery || !stored) return undelivered.delivered(member);
      const { incidentId, fromSeq, toSeq } = delivery;
      const events = await repo.events(incidentId, fromSeq - 1, toSeq - fromSeq + 1);
      // The incident as stored keeps the sessions of its silent raises, none of which hears of it again.
      const changes = events.map((event, i) => ({
        ...stored,
        event,
        ...(i < events.length - 1 && { superseded: true }),
      }));
      await publish(await withAlerts(changes));
      forget(member);
    },

    change,
    command,

    /**
     * A command that spends a point of `gate` (free text to every party), given back should it be refused or
     * turn out a repeat. A repeat is answered as one even with no points left: it was made, and its sender
     * must not be told otherwise.
     */
    async commandOnBudget(
      gate: RateGate,
      caller: Viewer,
      id: string,
      clientRef: string | undefined,
      decide: (incident: Incident) => PendingEvent | null,
    ): Promise<ChangeResult> {
      try {
        return await gate.spend(
          caller.user.id,
          () => command(caller, id, clientRef, decide),
          (result) => !result.duplicate,
        );
      } catch (error) {
        const limited = error instanceof DomainError && error.code === 'rate_limited';
        const request = limited && requestOf(caller, clientRef);
        if (!request || (await repo.requestApplied(id, request)) === undefined) throw error;
        return { incident: checkVisible(caller, (await duplicateOf(id)).stored), duplicate: true };
      }
    },
  };
}

export type IncidentWriter = ReturnType<typeof createIncidentWriter>;
