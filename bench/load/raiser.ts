/**
 * A load generator that raises alerts on a fixed schedule from one connection per Lapas (an operator's
 * control-room console), open loop: a slow acknowledgement never delays the next raise.
 */
import { io, type Socket } from 'socket.io-client';
import { serveGenerator } from '../lib/processes.ts';
import { wallNow } from '../lib/stats.ts';

export interface RaiserSpec {
  /** The set of raisers (one per system under test) this one belongs to. */
  set: string;
  facilityId: string;
  url: string;
  auth: Record<string, unknown>;
}

export interface ScheduledRaise {
  index: number;
  facilityId: string;
  /** When to send, milliseconds after the schedule starts. */
  offsetMs: number;
  args: unknown;
}

export interface RaiseOutcome {
  index: number;
  /** Milliseconds after the run's origin (`wallNow()` clock) at which the raise was due. */
  sentAt: number;
  /** How far behind that this process sent it. */
  lagMs: number;
  ackAt: number;
  /** The acknowledgement as the server sent it, or `{ error }` when none came in time. */
  ack: unknown;
}

// By set, then by Lapas.
const raisers = new Map<string, Map<string, Socket>>();

function open(spec: RaiserSpec): Promise<Socket> {
  const socket = io(spec.url, {
    auth: spec.auth,
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (error) => {
      socket.close();
      reject(new Error(`raiser for ${spec.facilityId}: ${error.message}`));
    });
  });
}

serveGenerator({
  async connect(payload: { raisers: RaiserSpec[] }) {
    const sockets = await Promise.all(payload.raisers.map(open));
    payload.raisers.forEach((spec, i) => {
      const socket = sockets[i];
      const set = raisers.get(spec.set) ?? new Map<string, Socket>();
      if (socket) set.set(spec.facilityId, socket);
      raisers.set(spec.set, set);
    });
    return { connected: sockets.length };
  },

  /**
   * Sends each raise at its offset and resolves with every outcome once all are acknowledged or timed out;
   * each outcome's `sentAt` is when the raise was due.
   */
  async run(payload: {
    set: string;
    event: string;
    origin: number;
    schedule: ScheduledRaise[];
    ackTimeoutMs: number;
  }) {
    const { schedule, origin } = payload;
    const set = raisers.get(payload.set);
    const outcomes: RaiseOutcome[] = [];
    let next = 0;
    let settled = 0;
    const start = wallNow() + 50;
    await new Promise<void>((done) => {
      const send = (raise: ScheduledRaise) => {
        const socket = set?.get(raise.facilityId);
        // Timed from when it was due, not from when this process got to it: a load generator falling behind
        // must not hide the delay from the latency (coordinated omission).
        const sentAt = start + raise.offsetMs - origin;
        const lagMs = wallNow() - origin - sentAt;
        const record = (ack: unknown) => {
          outcomes.push({ index: raise.index, sentAt, lagMs, ackAt: wallNow() - origin, ack });
          if (++settled === schedule.length) done();
        };
        if (!socket) {
          record({ error: `no raiser connected for ${raise.facilityId}` });
          return;
        }
        socket
          .timeout(payload.ackTimeoutMs)
          .emit(payload.event, raise.args, (error: Error | null, ack: unknown) => {
            record(error ? { error: error.message } : ack);
          });
      };
      const tick = () => {
        const elapsed = wallNow() - start;
        while (next < schedule.length && (schedule[next]?.offsetMs ?? 0) <= elapsed) {
          const raise = schedule[next++];
          if (raise) send(raise);
        }
        if (next < schedule.length) {
          setTimeout(tick, Math.max(0, (schedule[next]?.offsetMs ?? 0) - (wallNow() - start)));
        }
      };
      if (schedule.length === 0) done();
      else setTimeout(tick, 50);
    });
    return { outcomes };
  },

  async close() {
    for (const set of raisers.values()) for (const socket of set.values()) socket.disconnect();
    raisers.clear();
    return {};
  },
});
