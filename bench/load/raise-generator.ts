import { randomUUID } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import { type Category, categories } from '../../shared/categories.ts';
import type { Ack } from '../../shared/envelope.ts';
import type { ClientToServerEvents, CommandResult, ServerToClientEvents } from '../../shared/events.ts';
import type { RaiseAlertInput } from '../../shared/incident.ts';
import { serveGenerator } from '../lib/processes.ts';
import { wallNow } from '../lib/stats.ts';

/**
 * Operator consoles of some Lapas, raising alerts over Socket.IO at a fixed rate (open loop: each raise is
 * sent at its scheduled time whether or not earlier ones were answered, and its latency counts from that
 * time, so a slow server cannot hide its queue by slowing the generator down).
 */

type Console = Socket<ServerToClientEvents, ClientToServerEvents>;
type RaiseAck = Ack<CommandResult<'alert:raise'>>;

export interface ConsoleSpec {
  facilityId: string;
  blocks: string[];
  token: string;
  connections: number;
}

export interface StepRequest {
  /** Raises per second from this generator. */
  rate: number;
  durationMs: number;
  /** Share of raises that repeat the place and kind of an alert acknowledged a moment ago (dedup: joins it). */
  attachShare: number;
  /** Share of raises that resend an acknowledged raise with its clientRef (idempotency: a duplicate). */
  retryShare: number;
  /** Fixed severity, or undefined to cycle 1–4. */
  severity?: 1 | 2 | 3 | 4;
  /** How long to wait for the last answers after the last send. */
  settleMs: number;
}

export interface StepReport {
  sent: number;
  /** Milliseconds from each raise's scheduled send time to its acknowledgement, for every answered raise. */
  latencies: number[];
  /** Answered with ok and a new alert. */
  stored: number;
  /** New alerts that opened an incident (the rest joined one). */
  opened: number;
  /** The id of each alert answered as new, and of each incident it opened: checked against the store. */
  storedAlertIds: string[];
  openedIncidentIds: string[];
  /** Resent raises answered as duplicates of the original alert. */
  duplicatesOk: number;
  /** Resent raises answered with anything else (a second alert, another id): an idempotency failure. */
  duplicatesWrong: number;
  errors: Record<string, number>;
  unanswered: number;
  /** How far behind schedule the generator itself fell at worst (its own CPU starvation). */
  maxScheduleLagMs: number;
  cpuSeconds: number;
}

const consoles: { facilityId: string; blocks: string[]; sockets: Console[] }[] = [];
let nextScope = 0;

function connect(url: string, token: string): Promise<Console> {
  const socket: Console = io(url, {
    auth: { token },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(err));
  });
}

async function step(req: StepRequest): Promise<StepReport> {
  const cpuStart = process.cpuUsage();
  const report: StepReport = {
    sent: 0,
    latencies: [],
    stored: 0,
    opened: 0,
    storedAlertIds: [],
    openedIncidentIds: [],
    duplicatesOk: 0,
    duplicatesWrong: 0,
    errors: {},
    unanswered: 0,
    maxScheduleLagMs: 0,
    cpuSeconds: 0,
  };
  // Recently acknowledged raises, for attach and retry picks.
  const recent: { facility: number; payload: RaiseAlertInput; alertId: string }[] = [];
  let pending = 0;
  const total = Math.round((req.rate * req.durationMs) / 1000);
  const start = wallNow();
  const scopeCount = consoles.reduce((n, c) => n + c.blocks.length * categories.length, 0);

  const newScope = () => {
    // Walk every (Lapas, category, block) in turn, so a place comes back only after all others.
    let index = nextScope++ % scopeCount;
    for (let f = 0; f < consoles.length; f++) {
      const c = consoles[f] as (typeof consoles)[number];
      const size = c.blocks.length * categories.length;
      if (index < size) {
        return {
          facility: f,
          category: categories[index % categories.length] as Category,
          block: c.blocks[Math.floor(index / categories.length)] as string,
        };
      }
      index -= size;
    }
    throw new Error('unreachable');
  };

  const send = (i: number) => {
    const scheduled = start + (i * 1000) / req.rate;
    const roll = Math.random();
    const pick = recent.length > 0 ? recent[Math.floor(Math.random() * recent.length)] : undefined;
    let facility: number;
    let payload: RaiseAlertInput;
    let retryOf: string | undefined;
    if (pick && roll < req.retryShare) {
      facility = pick.facility;
      payload = pick.payload;
      retryOf = pick.alertId;
    } else if (pick && roll < req.retryShare + req.attachShare) {
      facility = pick.facility;
      payload = { ...pick.payload, clientRef: randomUUID(), description: `bench ${i} (same place)` };
    } else {
      const scope = newScope();
      facility = scope.facility;
      const c = consoles[facility] as (typeof consoles)[number];
      payload = {
        clientRef: randomUUID(),
        facilityId: c.facilityId,
        category: scope.category,
        severity: req.severity ?? (((i % 4) + 1) as 1 | 2 | 3 | 4),
        location: { block: scope.block },
        description: `bench ${i}`,
      };
    }
    const c = consoles[facility] as (typeof consoles)[number];
    const socket = c.sockets[i % c.sockets.length] as Console;
    report.sent++;
    pending++;
    socket
      .timeout(req.durationMs + req.settleMs)
      .emit('alert:raise', payload as never, (err: Error | null, res: RaiseAck) => {
        pending--;
        if (err) {
          report.unanswered++;
          return;
        }
        report.latencies.push(wallNow() - scheduled);
        if (!res.ok) {
          report.errors[res.error.code] = (report.errors[res.error.code] ?? 0) + 1;
          return;
        }
        if (retryOf !== undefined) {
          if (res.data.duplicate && res.data.alert.id === retryOf) report.duplicatesOk++;
          else report.duplicatesWrong++;
          return;
        }
        if (res.data.duplicate) {
          report.duplicatesWrong++;
          return;
        }
        report.stored++;
        report.storedAlertIds.push(res.data.alert.id);
        if (res.data.incident.seq === 1) {
          report.opened++;
          report.openedIncidentIds.push(res.data.incident.id);
        }
        recent.push({ facility, payload, alertId: res.data.alert.id });
        if (recent.length > 200) recent.shift();
      });
  };

  let i = 0;
  while (i < total) {
    const now = wallNow();
    const due = Math.min(total, Math.floor(((now - start) * req.rate) / 1000) + 1);
    if (due > i)
      report.maxScheduleLagMs = Math.max(report.maxScheduleLagMs, now - (start + (i * 1000) / req.rate));
    for (; i < due; i++) send(i);
    await new Promise((r) => setTimeout(r, 1));
  }
  const deadline = wallNow() + req.settleMs;
  while (pending > 0 && wallNow() < deadline) await new Promise((r) => setTimeout(r, 5));
  report.unanswered += pending;
  const cpu = process.cpuUsage(cpuStart);
  report.cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return report;
}

serveGenerator({
  async connect({ url, specs }: { url: string; specs: ConsoleSpec[] }) {
    for (const spec of specs) {
      const sockets = await Promise.all(
        Array.from({ length: spec.connections }, () => connect(url, spec.token)),
      );
      consoles.push({ facilityId: spec.facilityId, blocks: spec.blocks, sockets });
    }
    return { connected: consoles.reduce((n, c) => n + c.sockets.length, 0) };
  },
  step: (req: StepRequest) => step(req),
  async close() {
    for (const c of consoles) for (const s of c.sockets) s.disconnect();
    return { closed: true };
  },
});
