import type { Alert, Incident } from '../../shared/incident.ts';
import { effectiveSeverity } from '../../shared/incident-decisions.ts';
import { rooms } from '../../shared/rooms.ts';
import { partyRooms, routeIncident } from '../../shared/routing.ts';
import type { Severity } from '../../shared/severity.ts';
import type { TopologyIndex } from '../../shared/topology.ts';
import type { ConsoleClient } from '../load/consoles.ts';
import type { RaiseOutcome } from '../load/raiser.ts';
import type { DeliverySystem } from './delivery.ts';
import { facilityIds, type PlannedAlert, raisePayload } from './fan-out-load.ts';
import { startGenerator } from './processes.ts';
import type { SinergiStack } from './sinergi.ts';

interface RaiseAck {
  ok: boolean;
  data?: { incident: Incident; alert: Alert; duplicate: boolean };
  error?: { code?: string; message?: string } | string;
}

const asRaiseAck = (ack: unknown) => (ack ?? {}) as RaiseAck;

/**
 * Who is owed each committed Sinergi alert, computed with `routeIncident` over the topology rather than read
 * from the server: an alert that joins an active incident goes to its parties, the union of the routes of
 * every alert committed to it so far — and routing is monotonic in severity, so that is the route of their
 * highest severity — in the order the server committed them (each acknowledgement carries the incident's seq).
 */
export function sinergiEntitlement(
  topology: TopologyIndex,
  alerts: readonly PlannedAlert[],
  outcomes: readonly RaiseOutcome[],
): Map<number, ReadonlySet<string>> {
  const byIncident = new Map<string, { index: number; seq: number }[]>();
  for (const o of outcomes) {
    const data = asRaiseAck(o.ack).data;
    if (!data) continue;
    const list = byIncident.get(data.incident.id) ?? [];
    list.push({ index: o.index, seq: data.incident.seq });
    byIncident.set(data.incident.id, list);
  }
  const entitled = new Map<number, ReadonlySet<string>>();
  for (const list of byIncident.values()) {
    list.sort((a, b) => a.seq - b.seq);
    let severity: Severity = 1;
    for (const { index } of list) {
      const alert = alerts[index];
      if (!alert) continue;
      severity = Math.max(
        severity,
        effectiveSeverity({ severity: alert.severity, silent: false }),
      ) as Severity;
      entitled.set(index, new Set(routeIncident(topology, alert.facilityId, severity).parties));
    }
  }
  return entitled;
}

/** A Sinergi system's record of what it delivered, for the baseline to replay. */
export interface Delivered {
  entitlement: Map<number, ReadonlySet<string>>;
  /** Exactly what Sinergi's consoles received for each alert, rebuilt from the raise's acknowledgement. */
  payloads: Map<number, unknown>;
}

/**
 * Sinergi under test: each unit's consoles share its account's token (logged in once); each Lapas raises
 * from its operator's console on the first server process; `urlOf` spreads consoles over the processes.
 */
export function sinergiSystem(
  name: string,
  stack: SinergiStack,
  options: {
    alerts: readonly PlannedAlert[];
    consoles: { key: number; unitId: string }[];
    urlOf: (key: number) => string;
    client: ConsoleClient;
  },
): DeliverySystem & { delivered: Delivered } {
  const token = (unitId: string) => stack.accounts.get(unitId)?.accessToken ?? '';
  const raiserUrl = stack.servers[0]?.url ?? '';
  const history: RaiseOutcome[] = [];
  const delivered: Delivered = { entitlement: new Map(), payloads: new Map() };
  return {
    name,
    delivered,
    client: options.client,
    consoles: options.consoles.map((c) => ({
      ...c,
      url: options.urlOf(c.key),
      auth: { token: token(c.unitId) },
    })),
    raisers: facilityIds(stack.topology).map((facilityId) => ({
      set: name,
      facilityId,
      url: raiserUrl,
      auth: { token: token(facilityId) },
    })),
    event: 'alert:raise',
    pids: { server: stack.servers.map((s) => s.child.pid), redis: [stack.redis.pid] },
    schedule: (alerts) =>
      alerts.map((a) => ({
        index: a.index,
        facilityId: a.facilityId,
        offsetMs: a.offsetMs,
        args: raisePayload(a),
      })),
    entitlement(outcomes) {
      // Incidents outlive a round: later rounds' alerts join them, so the whole history decides.
      history.push(...outcomes);
      const all = sinergiEntitlement(stack.topology, options.alerts, history);
      const round = new Map<number, ReadonlySet<string>>();
      for (const o of outcomes) {
        const units = all.get(o.index);
        const data = asRaiseAck(o.ack).data;
        if (!units || !data) continue;
        round.set(o.index, units);
        delivered.entitlement.set(o.index, units);
        delivered.payloads.set(o.index, {
          incidentId: data.incident.id,
          seq: data.incident.seq,
          incident: data.incident,
          alert: data.alert,
        });
      }
      return round;
    },
    // The server stamps `raisedAt` when it decides (after re-checking the caller, idempotency, the raise
    // budget and deduplication), before it commits and publishes: it splits each latency in two.
    phases(outcomes, origin, firstArrival) {
      const toDecision: number[] = [];
      const decisionToFirstConsole: number[] = [];
      for (const o of outcomes) {
        const raisedAt = asRaiseAck(o.ack).data?.alert.raisedAt;
        if (raisedAt === undefined) continue;
        const decided = Date.parse(raisedAt) - origin;
        toDecision.push(decided - o.sentAt);
        const first = firstArrival.get(o.index);
        if (first !== undefined) decisionToFirstConsole.push(first - decided);
      }
      return { toDecision, decisionToFirstConsole };
    },
    ackOk: (ack) => asRaiseAck(ack).ok === true,
    ackError: (ack) => {
      const error = asRaiseAck(ack).error;
      return typeof error === 'string' ? error : (error?.code ?? 'unknown');
    },
  };
}

/**
 * The baseline: the same consoles in the same units (joining their unit's room by name), the same alerts at
 * the same moments, each with the exact payload Sinergi delivered for it, to the rooms of exactly the units
 * Sinergi owed it to. A round replays what Sinergi's same round delivered, so Sinergi goes first.
 */
export function bareSystem(
  name: string,
  topology: TopologyIndex,
  options: {
    url: string;
    pid: number;
    consoles: { key: number; unitId: string }[];
    client: ConsoleClient;
    replay: Delivered;
  },
): DeliverySystem {
  const roomOf = (unitId: string) => {
    const unit = topology.unit(unitId);
    return unit ? [rooms.unit(unit)] : [];
  };
  const { replay } = options;
  return {
    name,
    client: options.client,
    consoles: options.consoles.map((c) => ({ ...c, url: options.url, auth: { rooms: roomOf(c.unitId) } })),
    // The raisers sit in their Lapas's room as Sinergi's operators do, so the server writes as many frames.
    raisers: facilityIds(topology).map((facilityId) => ({
      set: name,
      facilityId,
      url: options.url,
      auth: { rooms: roomOf(facilityId) },
    })),
    event: 'raise',
    pids: { server: [options.pid] },
    schedule: (alerts) =>
      alerts.flatMap((a) => {
        const units = replay.entitlement.get(a.index);
        const payload = replay.payloads.get(a.index);
        if (!units || payload === undefined) return [];
        const args = { rooms: partyRooms(topology, [...units]), payload };
        return [{ index: a.index, facilityId: a.facilityId, offsetMs: a.offsetMs, args }];
      }),
    entitlement: (outcomes) =>
      new Map(
        outcomes.flatMap((o) => {
          const units = replay.entitlement.get(o.index);
          return units && (o.ack as { ok?: boolean } | undefined)?.ok ? [[o.index, units] as const] : [];
        }),
      ),
    ackOk: (ack) => (ack as { ok?: boolean } | undefined)?.ok === true,
    ackError: (ack) => String((ack as { error?: unknown } | undefined)?.error ?? 'unknown'),
  };
}

/** The bare Socket.IO server in its own process (bench/load/bare-server.ts). */
export async function startBareServer() {
  const server = startGenerator('bench/load/bare-server.ts', {});
  try {
    const { url, pid } = await server.request<{ url: string; pid: number }>('listen');
    return { url, pid, stop: () => server.stop() };
  } catch (error) {
    await server.stop();
    throw error;
  }
}

export function payloadBytesMedian(delivered: Delivered): number {
  const sizes = [...delivered.payloads.values()]
    .map((p) => Buffer.byteLength(JSON.stringify(p)))
    .sort((a, b) => a - b);
  return sizes[Math.floor(sizes.length / 2)] ?? 0;
}
