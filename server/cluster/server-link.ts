import cluster from 'node:cluster';
import { HANDOFF_ENV, Handoff, type ToPrimary, ToServer } from './messages.ts';
import { pendingAnswers } from './pending-answers.ts';

/** A server process's line to the primary that forked it (see `primary.ts`). */
export interface ServerLink {
  readonly id: number;
  readonly handoff: Handoff;
  /** Tells the primary this process serves; `banner`: lines for it to print. */
  ready(banner: string[]): void;
  /** Tells the primary this process has begun to stop, while it drains what it holds. */
  stopping(): void;
  /** The metrics of every server process, summed by the primary. */
  clusterMetrics(): Promise<string>;
  /** What every server process behind the port cannot reach, each named with its process. */
  clusterReadiness(): Promise<string[]>;
  /** Answers the primary's readiness checks of this process with `check`. */
  onReadinessCheck(check: () => Promise<string[]>): void;
  /** Runs `stop` when the primary orders a shutdown or is gone. */
  onStop(stop: (reason: string) => void): void;
  /** Runs `take` with the partitions whose escalation workers the primary hands this process. */
  onEscalate(take: (partitions: number[]) => void): void;
}

const METRICS_TIMEOUT_MS = 10_000;
// Above the primary's own wait for each process (READINESS_CHECK_MS), so its answer naming a silent
// process arrives first.
const READINESS_TIMEOUT_MS = 3000;

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
  const answers = pendingAnswers();
  // An order that comes while the process is still starting is kept for the handler it registers then.
  const stop = latch<string>();
  const escalate = mailbox<number[]>();
  let check: (() => Promise<string[]>) | undefined;
  process.on('message', (raw) => {
    const parsed = ToServer.safeParse(raw);
    if (!parsed.success) return;
    const message = parsed.data;
    switch (message.type) {
      case 'sinergi:shutdown':
        stop.fire('ordered by the primary');
        return;
      case 'sinergi:escalate':
        escalate.post(message.partitions);
        return;
      case 'sinergi:readiness-check': {
        const answer = (failing: string[]) =>
          send({ type: 'sinergi:readiness-answer', id: message.id, failing });
        if (!check) answer(['starting']);
        else check().then(answer, () => answer(['readiness_check_failed']));
        return;
      }
      case 'sinergi:readiness':
        answers.settle(message.id, message.failing);
        return;
      case 'sinergi:metrics':
        answers.settle(message.id, message.text ?? new Error(message.error ?? 'no metrics'));
        return;
    }
  });
  // An orphaned server process would hold its sockets with nobody to restart or stop it.
  process.on('disconnect', () => stop.fire('the primary is gone'));
  return {
    id: worker.id,
    handoff,
    ready: (banner) => send({ type: 'sinergi:ready', banner }),
    stopping: () => send({ type: 'sinergi:stopping' }),
    clusterMetrics: () =>
      answers.ask<string>(
        (id) => send({ type: 'sinergi:metrics-request', id }),
        METRICS_TIMEOUT_MS,
        'the primary did not answer with metrics',
      ),
    clusterReadiness: () =>
      answers.ask<string[]>(
        (id) => send({ type: 'sinergi:readiness-request', id }),
        READINESS_TIMEOUT_MS,
        'the primary did not answer the readiness check',
      ),
    onReadinessCheck: (handler) => {
      check = handler;
    },
    onStop: (handler) => stop.on(handler),
    onEscalate: (handler) => escalate.on(handler),
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

/** Messages kept until a handler is registered, then handed to it in order; later ones go to it at once. */
function mailbox<T>() {
  const kept: T[] = [];
  let handler: ((value: T) => void) | undefined;
  return {
    post(value: T) {
      if (handler) handler(value);
      else kept.push(value);
    },
    on(take: (value: T) => void) {
      handler = take;
      for (const value of kept.splice(0)) take(value);
    },
  };
}
