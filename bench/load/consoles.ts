/**
 * A load generator holding many consoles, each its own WebSocket connection authenticated as a control-room
 * workstation is. It records when each `alert:new` arrives; the bench process computes latencies and checks
 * deliveries from these receipts.
 *
 * Two clients, chosen per `connect`:
 * - `wire` (default): the Socket.IO wire protocol (Engine.IO 4 over WebSocket) spoken directly with `ws` — the
 *   same handshake, the same access token in the CONNECT packet, every heartbeat answered — reading only each
 *   frame's event name and the alert's bench index instead of decoding the whole payload. A console's
 *   decoding happens on its own machine; here it would take the two cores the server is measured on.
 * - `socket.io-client`: the client library itself, every payload decoded (about four times the CPU).
 */
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { serveGenerator } from '../lib/processes.ts';
import { wallNow } from '../lib/stats.ts';

export type ConsoleClient = 'wire' | 'socket.io-client';

export interface ConsoleSpec {
  /** The bench's name for this console, echoed in reports. */
  key: number;
  url: string;
  /** The handshake `auth`: `{ token }` for Sinergi, `{ rooms }` for the bare baseline. */
  auth: Record<string, unknown>;
}

export interface ConsoleReceipts {
  key: number;
  /** Alert index of each `alert:new` received, in arrival order. */
  alerts: number[];
  /** Arrival of each, milliseconds after the run's origin (`wallNow()` clock). */
  at: number[];
}

const BENCH_INDEX = /#(\d+)\b/;

interface Held {
  spec: ConsoleSpec;
  close(): void;
  receipts: ConsoleReceipts;
  /** How many of `receipts` the last report carried: any after it arrived late. */
  reported: number;
  /** Why the connection ended while it should have stayed open. */
  dropped?: string;
}

const held: Held[] = [];
let origin = 0;
let received = 0;
let unreadable = 0;
let closing = false;

function record(entry: Held, index: number | undefined, at: number) {
  if (index === undefined || !Number.isInteger(index)) {
    unreadable++;
    return;
  }
  received++;
  entry.receipts.alerts.push(index);
  entry.receipts.at.push(Math.round(at * 1000) / 1000);
}

function noteDrop(entry: Held, reason: string) {
  if (!closing) entry.dropped ??= reason;
}

function openWithLibrary(spec: ConsoleSpec, timeoutMs: number): Promise<Held> {
  const socket: Socket = io(spec.url, {
    auth: spec.auth,
    transports: ['websocket'],
    // A dropped console is a finding of the run, not something to hide by reconnecting.
    reconnection: false,
    forceNew: true,
    timeout: timeoutMs,
  });
  const entry: Held = {
    spec,
    close: () => socket.disconnect(),
    receipts: { key: spec.key, alerts: [], at: [] },
    reported: 0,
  };
  socket.on('alert:new', (payload: { alert?: { description?: unknown } }) => {
    const at = wallNow() - origin;
    const match = BENCH_INDEX.exec(String(payload?.alert?.description ?? ''));
    record(entry, match ? Number(match[1]) : undefined, at);
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => {
      socket.on('disconnect', (reason) => noteDrop(entry, reason));
      resolve(entry);
    });
    socket.once('connect_error', (error) => {
      socket.close();
      reject(error);
    });
  });
}

// Engine.IO packet types, then Socket.IO's within a "4" (message) packet.
const OPEN = 0x30; // '0'
const PING = 0x32; // '2'
const MESSAGE = 0x34; // '4'
const ALERT_NEW = Buffer.from('42["alert:new",');
const MARK = Buffer.from('Bench #');

/**
 * The bench index of an `alert:new` frame: from the alert's description, the last one in the frame (the
 * payload is `{ incidentId, seq, incident, alert }`, and an incident repeats its first alert's description).
 */
function benchIndex(frame: Buffer): number | undefined {
  const at = frame.lastIndexOf(MARK);
  if (at < 0) return undefined;
  let value = 0;
  let digits = 0;
  for (let i = at + MARK.length; i < frame.length; i++) {
    const c = frame[i] ?? 0;
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
    digits++;
  }
  return digits > 0 ? value : undefined;
}

function openOnWire(spec: ConsoleSpec, timeoutMs: number): Promise<Held> {
  const url = new URL('/socket.io/', spec.url);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = 'EIO=4&transport=websocket';
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const entry: Held = {
    spec,
    close: () => ws.close(),
    receipts: { key: spec.key, alerts: [], at: [] },
    reported: 0,
  };
  let connected = false;
  let settled = false;
  return new Promise((resolve, reject) => {
    const fail = (error: Error) => {
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error('timeout')), timeoutMs);
    ws.on('message', (data: Buffer) => {
      const at = wallNow() - origin;
      const type = data[0];
      if (type === MESSAGE) {
        if (data.subarray(0, ALERT_NEW.length).equals(ALERT_NEW)) record(entry, benchIndex(data), at);
        else if (data[1] === 0x30 && !connected) {
          // "40{sid}": the namespace accepted the handshake's token.
          connected = true;
          settled = true;
          clearTimeout(timer);
          resolve(entry);
        } else if (data[1] === 0x34 && !connected) {
          // "44{message}": refused, as `connect_error`.
          const refusal = JSON.parse(data.subarray(2).toString()) as { message?: string };
          fail(new Error(refusal.message ?? 'refused'));
        } else if (data[1] === 0x31 && connected) {
          connected = false;
          noteDrop(entry, 'io server disconnect');
        }
      } else if (type === PING) ws.send('3');
      else if (type === OPEN) ws.send(`40${JSON.stringify(spec.auth)}`);
    });
    ws.on('close', () => {
      if (connected) noteDrop(entry, 'transport close');
      else if (!settled) fail(new Error('closed during the handshake'));
      connected = false;
    });
    ws.on('error', (error) => {
      if (!settled) fail(error);
    });
  });
}

serveGenerator({
  /** Opens consoles, a bounded number at a time; resolves once every one connected or failed. */
  async connect(payload: {
    consoles: ConsoleSpec[];
    client?: ConsoleClient;
    concurrency?: number;
    timeoutMs?: number;
  }) {
    closing = false;
    const open = payload.client === 'socket.io-client' ? openWithLibrary : openOnWire;
    const queue = [...payload.consoles];
    const errors = new Map<string, number>();
    let connected = 0;
    const worker = async () => {
      for (let spec = queue.shift(); spec; spec = queue.shift()) {
        try {
          held.push(await open(spec, payload.timeoutMs ?? 30_000));
          connected++;
        } catch (error) {
          const message = (error as Error).message;
          errors.set(message, (errors.get(message) ?? 0) + 1);
        }
      }
    };
    await Promise.all(Array.from({ length: payload.concurrency ?? 50 }, worker));
    return {
      connected,
      failed: payload.consoles.length - connected,
      errors: Object.fromEntries(errors),
      pid: process.pid,
    };
  },

  /**
   * Forgets what was received and starts counting from `origin` (a `wallNow()` reading of the bench). Answers
   * with what arrived after the last report, console by console: nothing should have.
   */
  async reset(payload: { origin: number }) {
    origin = payload.origin;
    received = 0;
    unreadable = 0;
    const late = held.flatMap((h) =>
      h.receipts.alerts.length > h.reported
        ? [{ key: h.spec.key, count: h.receipts.alerts.length - h.reported }]
        : [],
    );
    for (const entry of held) {
      entry.receipts = { key: entry.spec.key, alerts: [], at: [] };
      entry.reported = 0;
    }
    return { consoles: held.length, late };
  },

  async counts() {
    return { received, unreadable, consoles: held.length };
  },

  async report() {
    for (const entry of held) entry.reported = entry.receipts.alerts.length;
    return {
      consoles: held.map((h) => h.receipts),
      unreadable,
      dropped: held.flatMap((h) => (h.dropped ? [{ key: h.spec.key, reason: h.dropped }] : [])),
    };
  },

  /** Disconnects every console and waits until their sockets are closed. */
  async close() {
    closing = true;
    const closed = held.splice(0);
    for (const entry of closed) entry.close();
    return { closed: closed.length };
  },
});
