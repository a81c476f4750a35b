import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import type { PublicUser } from '../../shared/auth.ts';
import { DomainError } from '../../shared/errors.ts';
import { type EscalationConfig, selectPolicy, snapshotOf } from '../../shared/escalation.ts';
import type {
  AckAlert,
  AddNote,
  Incident,
  ListIncidentsQuery,
  RaiseAlert,
  SyncResult,
  TransitionIncident,
} from '../../shared/incident.ts';
import { LIST_SCAN_LIMIT } from '../../shared/incident.ts';
import {
  buildAlert,
  checkMayRaise,
  checkVisible,
  decideAck,
  decideNote,
  decideRaise,
  decideTransition,
  sees,
  type Viewer,
} from '../../shared/incident-decisions.ts';
import { isActive } from '../../shared/incident-lifecycle.ts';
import { replay } from '../../shared/incident-reducer.ts';
import { routeIncident } from '../../shared/routing.ts';
import type { TopologyIndex } from '../../shared/topology.ts';
import type { AlertRef, IncidentRepository, ListedIncident } from '../storage/incidents.repository.ts';
import type { OpenedIndex, OpenedRow } from '../storage/opened-index.ts';
import type { RateGate } from '../storage/rate-gate.ts';
import { COMMIT_ATTEMPTS, type IncidentWriter, seal } from './incident-writer.ts';
import { sharedReads } from './shared-reads.ts';

export interface RaiseOrigin {
  /** The raising console's login: none of its consoles may show the alarm of a silent raise. */
  sessionId?: string;
  /** The caller as re-checked now, when the check runs alongside the first reads; nothing is stored before it passes. */
  standing?: Promise<PublicUser>;
}

/** The unit whose indexes hold what a user may see; every unit's for an administrator. */
const scopeOf = (user: PublicUser) => (user.role === 'admin' ? undefined : user.unitId);

const JOIN_EVENTS = 100;
/** How far into a timeline a raise's ref written by an earlier version is looked for (see `duplicateOf`). */
const OLD_REF_EVENTS = 1000;
const SYNC_BATCH = 500;
const LIST_BATCH = 200;

const listCursor = (row: OpenedRow) => `${row.openedMs}:${row.id}`;

/** The heart of Sinergi: raising, acknowledging and working incidents, each change one sealed timeline event. */
export function createIncidentService(deps: {
  repo: IncidentRepository;
  openedIndex: OpenedIndex;
  writer: IncidentWriter;
  topology: TopologyIndex;
  escalation: EscalationConfig;
  gates: { raise: RateGate; note: RateGate };
  settings: { dedupWindowMs: number };
  now?: () => Date;
}) {
  const { repo, openedIndex, writer, topology, gates, settings } = deps;
  const now = () => (deps.now?.() ?? new Date()).toISOString();

  // Shared by the consoles that sync at once (a unit's workstations after a restart); each caller then keeps
  // only what it is a party to. The change counter is read first: the incidents read after it are at least
  // that new, and anything later reaches the console live or at its next sync.
  const openIn = sharedReads(async (scope: string | undefined) => {
    const head = await repo.currentChangeSeq();
    const open = await repo.loadMany(await repo.openIds(scope));
    open.sort((a, b) => b.incident.openedAt.localeCompare(a.incident.openedAt));
    return { head, open };
  });
  const changedAfter = sharedReads(async (since: number) => {
    const changes = await repo.changedSince(since, SYNC_BATCH);
    return {
      changed: await repo.loadMany(changes.map((c) => c.id)),
      cursor: changes.at(-1)?.change ?? since,
      more: changes.length === SYNC_BATCH,
    };
  });

  async function visible(viewer: Viewer, id: string): Promise<Incident> {
    return checkVisible(viewer, await repo.load(id));
  }

  /**
   * The answer to a raise sent again: its alert, and its incident as it is now, or, for the login of a silent
   * raise, which must learn nothing of what the parties did since, as that raise left it.
   */
  async function duplicateOf(ref: AlertRef, raiser: Viewer) {
    const [stored, alert] = await Promise.all([repo.load(ref.incidentId), repo.alert(ref)]);
    if (!stored || !alert) throw new DomainError('internal', 'Idempotency record points to a missing alert');
    if (sees(raiser, stored)) return { incident: stored.incident, alert, duplicate: true };
    // Refs of earlier versions name no event: the timeline up to the alert's time stands in.
    const events = await repo.events(ref.incidentId, 0, ref.seq ?? OLD_REF_EVENTS);
    const incident = ref.seq === undefined ? replay(events, alert.raisedAt) : replay(events);
    if (!incident) throw new DomainError('internal', 'Idempotency record points to a missing alert');
    return { incident, alert, duplicate: true };
  }

  return {
    async raise(connected: PublicUser, raise: RaiseAlert, origin: RaiseOrigin = {}) {
      checkMayRaise(connected, raise, topology);
      // One round trip before deciding: the caller's re-check, the idempotency and dedup reads (the commit
      // re-checks the dedup record atomically, so reading it early is safe) and the rate gate. A retry of a
      // stored alert gets its point back: only new alerts count against the limit.
      const [caller, known, firstDedup, gate] = await Promise.all([
        origin.standing ?? connected,
        repo.alertRef(connected.id, raise.clientRef),
        repo.dedupRecord(raise),
        gates.raise.consume(connected.id).then(
          () => undefined,
          (refusal: unknown) => ({ refusal }),
        ),
      ]);
      // Checked again on the account as it stands now, should its role or unit have changed since connecting.
      checkMayRaise(caller, raise, topology);
      const raiser = { user: caller, ...(origin.sessionId !== undefined && { sessionId: origin.sessionId }) };
      if (known) {
        if (!gate) await gates.raise.refund(caller.id);
        return duplicateOf(known, raiser);
      }
      if (gate) throw gate.refusal;

      const alertId = randomUUID();
      const quietFor = raise.silent ? origin.sessionId : undefined;
      for (let attempt = 0; attempt < COMMIT_ATTEMPTS; attempt++) {
        const expectedDedup = attempt === 0 ? firstDedup : await repo.dedupRecord(raise);
        const candidate = expectedDedup ? await repo.load(expectedDedup) : undefined;
        // An open raise from the login of the incident's silent raise does not join it: its answer would show
        // that login the incident, acknowledgements and all. It opens one of its own, which that login sees.
        const hidden = !raise.silent && candidate && !sees(raiser, candidate);
        const existing = candidate && !hidden && isActive(candidate.incident.status) ? candidate : undefined;
        const incidentId = existing?.incident.id ?? randomUUID();
        const at = now();
        const alert = buildAlert(raise, { alertId, incidentId }, caller, at);
        const route = routeIncident(topology, raise.facilityId, alert.severity);
        const policy = snapshotOf(selectPolicy(deps.escalation, alert.severity, alert.category));
        const pending = decideRaise(alert, route, existing?.incident, policy);
        const { incident, event, policy: inForce } = seal(pending, incidentId, existing);
        const outcome = await writer.committing(
          [{ incident, event }],
          (note) =>
            repo.raise({
              note,
              expectedSeq: existing?.incident.seq ?? 0,
              incident,
              event,
              listedOpen: true,
              alert,
              refKey: { userId: caller.id, clientRef: raise.clientRef },
              dedup: raise,
              expectedDedup,
              dedupWindowMs: settings.dedupWindowMs,
              ...(quietFor !== undefined && { quietFor }),
            }),
          (o) => o.status === 'committed',
        );
        if (outcome.status === 'duplicate') return duplicateOf(outcome, raiser);
        if (outcome.status === 'committed') {
          const quiet = [...(existing?.quiet ?? []), ...(quietFor === undefined ? [] : [quietFor])];
          await writer.delivered([{ incident, event, policy: inForce, alert, quiet }]);
          return { incident, alert, duplicate: false };
        }
      }
      throw new DomainError('unavailable', 'Too many simultaneous reports; try again');
    },

    acknowledge(caller: Viewer, ack: z.infer<typeof AckAlert>) {
      return writer.command(caller, ack.incidentId, ack.clientRef, (incident) =>
        decideAck(incident, caller.user, ack.onBehalfOf, topology, now()),
      );
    },

    transition(caller: Viewer, { incidentId, to, note, clientRef }: z.infer<typeof TransitionIncident>) {
      // A status change carries a note too, and responding ⇄ contained can flip without end: same budget.
      return writer.commandOnBudget(gates.note, caller, incidentId, clientRef, (incident) =>
        decideTransition(incident, caller.user, to, note, now()),
      );
    },

    note(caller: Viewer, { incidentId, text, clientRef }: z.infer<typeof AddNote>) {
      return writer.commandOnBudget(gates.note, caller, incidentId, clientRef, (incident) =>
        decideNote(incident, caller.user, text, now()),
      );
    },

    async get(viewer: Viewer, incidentId: string): Promise<Incident> {
      return visible(viewer, incidentId);
    },

    async join(viewer: Viewer, incidentId: string) {
      const incident = await visible(viewer, incidentId);
      return { incident, events: await repo.latestEvents(incidentId, JOIN_EVENTS) };
    },

    async events(viewer: Viewer, incidentId: string, afterSeq: number, limit: number) {
      await visible(viewer, incidentId);
      return repo.events(incidentId, afterSeq, limit);
    },

    /** What a console needs after a reconnect: everything open in its scope, and what changed since its cursor. */
    async sync(viewer: Viewer, since: number | undefined): Promise<SyncResult> {
      const { head, open } = await openIn(scopeOf(viewer.user));
      const seen = (listed: ListedIncident[]) => listed.filter((l) => sees(viewer, l)).map((l) => l.incident);
      const mine = seen(open);
      if (since === undefined || since >= head)
        return { cursor: String(head), open: mine, changed: [], more: false };
      const after = await changedAfter(since);
      return {
        cursor: String(after.more ? after.cursor : head),
        open: mine,
        changed: seen(after.changed),
        more: after.more,
      };
    },

    /**
     * Newest first, only what the caller may see. A page ends at `limit` incidents or after LIST_SCAN_LIMIT
     * rows of the index, so a filter matching little costs no more than one page; the cursor resumes after
     * the last incident returned or the last row read.
     */
    async list(viewer: Viewer, query: ListIncidentsQuery) {
      const scope = scopeOf(viewer.user);
      const minMs = query.since ? Date.parse(query.since) : 0;
      const [cursorMs, cursorId] = query.cursor?.split(':') ?? [];
      let position = cursorId === undefined ? undefined : { id: cursorId, openedMs: Number(cursorMs) };
      const found: Incident[] = [];
      for (let scanned = 0; scanned < LIST_SCAN_LIMIT; ) {
        const count = Math.min(LIST_BATCH, LIST_SCAN_LIMIT - scanned);
        const rows = await openedIndex.after(scope, position, minMs, count);
        scanned += rows.length;
        for (const listed of await repo.loadMany(rows.map((r) => r.id))) {
          if (!sees(viewer, listed)) continue;
          const { incident } = listed;
          if (query.status && incident.status !== query.status) continue;
          if (query.facilityId && incident.facilityId !== query.facilityId) continue;
          if (query.category && incident.category !== query.category) continue;
          found.push(incident);
          if (found.length === query.limit) {
            const nextCursor = listCursor({ id: incident.id, openedMs: Date.parse(incident.openedAt) });
            return { incidents: found, nextCursor };
          }
        }
        position = rows.at(-1);
        if (rows.length < count) return { incidents: found, nextCursor: null };
      }
      return { incidents: found, nextCursor: position ? listCursor(position) : null };
    },
  };
}

export type IncidentService = ReturnType<typeof createIncidentService>;
