import cluster from 'node:cluster';
import { HANDOFF_ENV, Handoff, type ToPrimary, ToServer } from './messages.ts';

/** A server process's line to the primary that forked it (see `primary.ts`). */
export interface ServerLink {
  readonly id: number;
  readonly handoff: Handoff;
  /** Tells the primary this process serves; `banner`: lines for it to print. */
  ready(banner: string[]): void;
  /** The metrics of every server process, summed by the primary. */
  clusterMetrics(): Promise<string>;
  /** Runs `stop` when the primary orders a shutdown or is gone. */
  onStop(stop: (reason: string) => void): void;
  /** Runs `take` when the primary hands this process the escalation workers. */
  onEscalate(take: () => void): void;
}

const METRICS_TIMEOUT_MS = 10_000;

/**
 * The link when this process is a server process Sinergi's primary forked; undefined when it serves alone
 * (also under another cluster manager, which shares the port itself).
 */
export function serverLink(): ServerLink | undefined {
  const worker = cluster.worker;
  const given = process.env[HANDOFF_ENV];
  if (!cluster.isWorker || !worker || given === undefined) return undefined;
  const handoff = Handoff.parse(JSON.parse(given));
  const send = (message: ToPrimary) => process.send?.(message);
  const pending = new Map<number, { resolve: (text: string) => void; reject: (error: Error) => void }>();
  // An order that comes while the process is still starting is kept for the handler it registers then.
  const stop = latch<string>();
  const escalate = latch<true>();
  let seq = 0;
  process.on('message', (raw) => {
    const parsed = ToServer.safeParse(raw);
    if (!parsed.success) return;
    const message = parsed.data;
    if (message.type === 'sinergi:shutdown') {
      stop.fire('ordered by the primary');
      return;
    }
    if (message.type === 'sinergi:escalate') {
      escalate.fire(true);
      return;
    }
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (message.text !== undefined) waiting?.resolve(message.text);
    else waiting?.reject(new Error(message.error ?? 'no metrics'));
  });
  // An orphaned server process would hold its sockets with nobody to restart or stop it.
  process.on('disconnect', () => stop.fire('the primary is gone'));
  return {
    id: worker.id,
    handoff,
    ready: (banner) => send({ type: 'sinergi:ready', banner }),
    clusterMetrics() {
      const id = ++seq;
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error('the primary did not answer with metrics'));
        }, METRICS_TIMEOUT_MS);
        pending.set(id, {
          resolve: (text) => {
            clearTimeout(timer);
            resolve(text);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        });
        send({ type: 'sinergi:metrics-request', id });
      });
    },
    onStop: (handler) => stop.on(handler),
    onEscalate: (handler) => escalate.on(() => handler()),
  };
}

/** A one-time signal that also reaches handlers registered after it fired. */
function latch<T>() {
  let fired: { value: T } | undefined;
  const handlers: ((value: T) => void)[] = [];
  return {
    fire(value: T) {
      fired ??= { value };
      for (const handler of handlers) handler(value);
    },
    on(handler: (value: T) => void) {
      handlers.push(handler);
      if (fired) handler(fired.value);
    },
  };
}
