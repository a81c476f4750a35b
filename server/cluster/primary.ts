import cluster, { type Worker } from 'node:cluster';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { setupMaster } from '@socket.io/sticky';
import { AggregatorRegistry } from 'prom-client';
import type { Config } from '../config.ts';
import { loadEscalationFile, loadTopologyFile } from '../config-files.ts';
import { inlinePartitions } from '../jobs/escalation-partitions.ts';
import { listeningLine } from '../listening-line.ts';
import { createLogger } from '../logger.ts';
import { openRedisStore } from '../redis/redis-store.ts';
import { logStoreReady, redisSupervisionLog } from '../redis/supervision-log.ts';
import { restartDelayMs } from '../restart-backoff.ts';
import { StartupError } from '../startup-error.ts';
import { followHandovers, headerOf } from './handovers.ts';
import { HANDOFF_ENV, type Handoff, ToPrimary, type ToServer } from './messages.ts';
import { pendingAnswers } from './pending-answers.ts';

/**
 * How many server processes `npm start` runs: `SERVER_PROCESSES`, or for `auto` one per core, at most
 * `AUTO_MOST`. Measured on two cores, same run, rounds alternating: two processes delivered the fan-out
 * load at about half one process's p99 (median of seven runs), at 30-65 % more server CPU per raise and per
 * escalation level, since every process reads and decodes every broadcast. That repeated work grows with
 * each process while Redis stays one thread, hence the bound; it was not measured past two cores.
 */
export function serverProcessCount(config: Pick<Config, 'http'>, cores = availableParallelism()): number {
  return config.http.processes === 'auto' ? Math.min(cores, AUTO_MOST) : config.http.processes;
}

const AUTO_MOST = 4;

/** How long `/readyz` waits for each server process's own check (a readiness probe's timeout is ~1 s). */
const READINESS_CHECK_MS = 1500;

/** How long a replacement server process must serve before restarts go back to their quickest pace. */
const SERVED_A_WHILE_MS = 30_000;

// Each process's shutdown is a handful of steps, each bounded by SHUTDOWN_GRACE_MS.
const SHUTDOWN_STEPS = 6;

/**
 * Several server processes on one port, so one Socket.IO process is not the ceiling of a multi-core host:
 * delivering an alert to hundreds of consoles is mostly writing WebSocket frames, and one process writes
 * them on one core. The primary starts (and supervises) the embedded Redis servers, owns the port, and
 * hands each new connection to a server process, keeping a Socket.IO session's HTTP long-polling requests
 * on the process that holds it (`@socket.io/sticky`); the Redis adapter carries broadcasts between them as
 * between separate hosts. A server process that dies is replaced; its consoles reconnect to the others.
 */
export async function runPrimary(config: Config, count: number): Promise<void> {
  const logger = createLogger(config.logLevel).child({ primary: true });
  // A bad policy file is reported once, before anything starts, rather than by every server process.
  await Promise.all([loadTopologyFile(config.topologyFile), loadEscalationFile(config.escalation.file)]);
  const store = await openRedisStore(config, {
    serving: true,
    supervise: redisSupervisionLog(logger),
    compactExternal: true,
  });
  logStoreReady(logger, store, true);

  const httpServer = createServer();
  setupMaster(httpServer, { loadBalancingMethod: 'least-connection' });
  const handovers = followHandovers(httpServer);
  const releases = new Map<Worker, () => void>();
  try {
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(config.http.port, config.http.host, () => resolve());
    });
  } catch (error) {
    await store.release();
    throw error;
  }
  const { port } = httpServer.address() as AddressInfo;

  // Sticky's chunks of a request are Buffers; the default JSON serialization would turn them into objects.
  cluster.setupPrimary({ serialization: 'advanced' });
  // A process that has just died can still look connected: the send then fails (EPIPE), and a failure
  // nobody listens for would be thrown as the primary's own, ending it with every other process.
  const send = (worker: Worker, message: ToServer) => {
    if (worker.isConnected())
      worker.send(
        message,
        (error) =>
          error && logger.debug({ err: error }, 'a message to a server process that has gone was lost'),
      );
  };
  // Each process runs the escalation workers of its share of the partitions (unless ESCALATION_WORKER=off).
  // Each partition's timers are a queue of their own, so no two processes compete for a job (on one queue,
  // measured on two cores, that cost 0.3-0.4 ms more server CPU per level and doubled lateness p99), and the
  // levels falling due are spread over the cores. When a process dies, one already serving takes its
  // partitions over at once; its replacement takes only partitions nobody could.
  const partitions = inlinePartitions(config.escalation);
  const held = new Map<Worker, number[]>();
  let unheld: number[] = [];
  const fork = (setUp: boolean, escalation: number[]) => {
    const handoff: Handoff = { storeUrl: store.url, socketUrl: store.socketUrl, setUp, escalation };
    const worker = cluster.fork({ [HANDOFF_ENV]: JSON.stringify(handoff) });
    held.set(worker, escalation);
    // The balancer sends a new console to the process with the fewest; one still starting counts as full,
    // since a connection handed to it before it listens for them would be lost.
    unready(worker);
    countHandovers(worker);
    const { release } = handovers.follow(worker, () => isReady(worker));
    releases.set(worker, release);
    worker.once('exit', () => releases.delete(worker));
    return worker;
  };
  const handEscalationOver = (gone: Worker) => {
    const orphaned = held.get(gone) ?? [];
    held.delete(gone);
    if (orphaned.length === 0) return;
    const taker = liveWorkers().find((w) => w !== gone && isReady(w) && w.isConnected());
    if (!taker) {
      unheld = [...unheld, ...orphaned];
      return;
    }
    held.set(taker, [...(held.get(taker) ?? []), ...orphaned]);
    send(taker, { type: 'sinergi:escalate', partitions: orphaned });
    logger.warn({ server: taker.id, partitions: orphaned }, 'escalation workers handed over');
  };

  const aggregator = new AggregatorRegistry();
  const readinessAnswers = pendingAnswers();
  /**
   * `/readyz` on the port: ready when every serving process is (the balancer may hand a request to any of
   * them). A process still starting is given no connections, so it does not count; a serving one that does
   * not answer in time counts as not ready.
   */
  const clusterReadiness = async (): Promise<string[]> => {
    const serving = liveWorkers().filter((w) => isReady(w) && w.isConnected());
    if (serving.length === 0) return ['no_server_process'];
    const each = await Promise.all(
      serving.map((w) =>
        readinessAnswers
          .ask<string[]>(
            (id) => send(w, { type: 'sinergi:readiness-check', id }),
            READINESS_CHECK_MS,
            'no answer',
          )
          .catch(() => ['no_answer'])
          .then((failing) => failing.map((name) => `server ${w.id}: ${name}`)),
      ),
    );
    return each.flat();
  };
  const readyWaiters = new Map<number, (banner: string[]) => void>();
  cluster.on('message', (worker, raw) => {
    const parsed = ToPrimary.safeParse(raw);
    if (!parsed.success) return;
    const message = parsed.data;
    switch (message.type) {
      case 'sinergi:ready':
        ready(worker);
        releases.get(worker)?.();
        readyWaiters.get(worker.id)?.(message.banner);
        readyWaiters.delete(worker.id);
        return;
      case 'sinergi:stopping':
        if (stopping) return;
        unready(worker);
        handEscalationOver(worker);
        return;
      case 'sinergi:metrics-request':
        aggregator.clusterMetrics().then(
          (text) => send(worker, { type: 'sinergi:metrics', id: message.id, text }),
          (error: Error) => send(worker, { type: 'sinergi:metrics', id: message.id, error: error.message }),
        );
        return;
      case 'sinergi:readiness-request':
        void clusterReadiness().then((failing) =>
          send(worker, { type: 'sinergi:readiness', id: message.id, failing }),
        );
        return;
      case 'sinergi:readiness-answer':
        readinessAnswers.settle(message.id, message.failing);
        return;
    }
  });
  const whenReady = (worker: Worker) =>
    new Promise<string[]>((resolve, reject) => {
      readyWaiters.set(worker.id, resolve);
      worker.once('exit', (code, signal) => {
        if (!readyWaiters.delete(worker.id)) return;
        reject(
          new StartupError(
            `a server process could not start (${signal ?? `exit code ${code}`}); its error is above`,
          ),
        );
      });
    });

  let stopping: Promise<void> | undefined;
  /** Stops every server process (each finishes its in-flight work), then the embedded Redis servers. */
  const stopAll = (reason: string) => {
    stopping ??= (async () => {
      logger.info({ reason }, 'shutting down');
      httpServer.close();
      const workers = liveWorkers();
      const exited = Promise.all(
        workers.map(
          (w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))),
        ),
      );
      for (const worker of workers) send(worker, { type: 'sinergi:shutdown' });
      const deadline = setTimeout(
        () => {
          logger.warn('server processes did not stop in time; killing them');
          for (const worker of workers) worker.process.kill('SIGKILL');
        },
        SHUTDOWN_STEPS * config.shutdownGraceMs + 1000,
      );
      await exited;
      clearTimeout(deadline);
      await store.release();
      logger.info('stopped');
    })();
    return stopping;
  };
  // SIGHUP: the terminal it was started from closing, which would otherwise end it at once, undrained.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (stopping) {
        logger.warn('second signal: exiting now');
        for (const worker of liveWorkers()) worker.process.kill('SIGKILL');
        process.exit(1);
      }
      void stopAll(signal).then(() => process.exit(0));
    });
  }
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    void stopAll('uncaughtException').then(() => process.exit(1));
  });

  let banner: string[];
  try {
    const share = (i: number) => partitions.filter((p) => p % count === i);
    const first = fork(true, share(0));
    const others = Array.from({ length: count - 1 }, (_, i) => fork(false, share(i + 1)));
    [banner = []] = await Promise.all([first, ...others].map(whenReady));
  } catch (error) {
    await stopAll('a server process failed to start');
    throw error;
  }

  // Restarts back off while replacements keep dying; one that has served a while resets the pace. Coming up
  // is not enough: one that dies soon after (on the first request of some kind) would otherwise be restarted
  // as fast as it can start, for ever.
  let failuresInARow = 0;
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    handEscalationOver(worker);
    const retryInMs = restartDelayMs(failuresInARow++);
    logger.error({ server: worker.id, code, signal, retryInMs }, 'a server process exited; starting another');
    setTimeout(() => {
      if (stopping) return;
      const replacement = fork(false, unheld);
      unheld = [];
      whenReady(replacement).then(
        () => {
          logger.warn({ server: replacement.id }, 'server process replaced');
          setTimeout(() => {
            if (!replacement.isDead()) failuresInARow = 0;
          }, SERVED_A_WHILE_MS).unref();
        },
        () => {},
      );
    }, retryInMs);
  });

  process.stdout.write(`${[listeningLine(config, port), ...banner].join('\n')}\n`);
  logger.info({ port, host: config.http.host, processes: count }, 'listening');
}

function liveWorkers(): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
}

// `clientsCount` is what @socket.io/sticky's least-connection balancing compares; a process still starting
// counts as full.
type Balanced = Worker & { clientsCount?: number };

/** How long a connection handed to a process counts for it before that process has reported it. */
const HANDOVER_COUNTS_MS = 5000;

/**
 * Sticky counts a console for a process only once that process reports the connection, milliseconds after
 * the handover: consoles connecting together (every console of the island, after a restart) all went to the
 * same process, whose count had not moved yet. A new WebSocket console counts from its handover instead,
 * until the process reports it (sticky then counts it) or, should it never become a console, for a while.
 * A long-polling handshake is left as it was: sticky learns its session's process only from that report,
 * and a next request that beats the report is balanced like a new one, so counting the handshake's process
 * at once would send it to the other process, which does not know the session.
 */
function countHandovers(worker: Worker) {
  const pending: NodeJS.Timeout[] = [];
  const adjust = (by: number) => {
    if (isReady(worker)) (worker as Balanced).clientsCount = ((worker as Balanced).clientsCount ?? 0) + by;
  };
  const send = worker.send.bind(worker);
  worker.send = ((message: unknown, ...rest: unknown[]) => {
    if (isStickyHandover(message) && isNewWebSocket(message) && isReady(worker)) {
      adjust(1);
      // Equal delays: the oldest timer fires first, so the one shifted out is the one that fired.
      pending.push(setTimeout(() => pending.shift() && adjust(-1), HANDOVER_COUNTS_MS).unref());
    }
    return (send as (...args: unknown[]) => boolean)(message, ...rest);
  }) as Worker['send'];
  worker.on('message', (message: unknown) => {
    if (!isStickyHandover(message)) return;
    const counted = pending.shift();
    if (counted === undefined) return;
    clearTimeout(counted);
    adjust(-1);
  });
}

/** Sticky's message for a new connection: primary → server process with the socket, and its report back. */
function isStickyHandover(message: unknown): boolean {
  return (message as { type?: unknown } | null)?.type === 'sticky:connection';
}

/** A handover's first chunk opens a WebSocket of no existing session (an upgrade of one carries its `sid`). */
function isNewWebSocket(message: unknown): boolean {
  const chunk = (message as { data?: unknown }).data;
  if (!Buffer.isBuffer(chunk)) return false;
  const header = headerOf(chunk);
  return /\r\nupgrade:\s*websocket/.test(header) && !/[?&]sid=/.test(header.slice(0, header.indexOf('\r\n')));
}

function unready(worker: Worker) {
  (worker as Balanced).clientsCount = Number.POSITIVE_INFINITY;
}

function ready(worker: Worker) {
  (worker as Balanced).clientsCount = 0;
}

function isReady(worker: Worker) {
  return (worker as Balanced).clientsCount !== Number.POSITIVE_INFINITY;
}
