import { randomBytes } from 'node:crypto';
import { createServer, type Server as HttpServer } from 'node:http';
import type { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { EscalationConfig } from '../shared/escalation.ts';
import { indexTopology, type Topology, type TopologyIndex } from '../shared/topology.ts';
import type { Config } from './config.ts';
import { type ApiKeyService, createApiKeyService } from './domain/api-key-service.ts';
import { type AuthService, createAuthService } from './domain/auth-service.ts';
import { createEscalationService, type EscalationService } from './domain/escalation-service.ts';
import { createIncidentService, type IncidentService } from './domain/incident-service.ts';
import { createIncidentWriter } from './domain/incident-writer.ts';
import { startRedelivery } from './domain/redelivery.ts';
import { createUserService, type UserService } from './domain/user-service.ts';
import { startEscalationWorker } from './jobs/escalation.worker.ts';
import { inlinePartitions } from './jobs/escalation-partitions.ts';
import { createEscalationQueue } from './jobs/escalation-queue.ts';
import type { Logger } from './logger.ts';
import { createMetrics, type Metrics, registerQueueDepth } from './metrics.ts';
import { createRedis, waitReady } from './redis/redis-connection.ts';
import { createApiKeyRepository } from './storage/api-keys.repository.ts';
import { createIncidentRepository } from './storage/incidents.repository.ts';
import { redisKeys } from './storage/keys.ts';
import { createLoginLimiter } from './storage/login-limiter.ts';
import { createOpenedIndex } from './storage/opened-index.ts';
import { createRateGate } from './storage/rate-gate.ts';
import { revocationPublisher, subscribeRevocations } from './storage/revocations.channel.ts';
import { createSessionRepository } from './storage/sessions.repository.ts';
import { recordTopology } from './storage/topology.repository.ts';
import { createUndelivered } from './storage/undelivered.ts';
import { createUserRepository } from './storage/users.repository.ts';
import { createHttpApp } from './transport/http/http-app.ts';
import type { Readiness } from './transport/http/ops.routes.ts';
import type { HandlerContext } from './transport/socket/define-handler.ts';
import { createHub } from './transport/socket/hub.ts';
import { incidentHandlers } from './transport/socket/incident.handlers.ts';
import { createIncidentPublisher } from './transport/socket/incident-publisher.ts';
import { sessionHandlers } from './transport/socket/session.handlers.ts';
import type { Hub } from './transport/socket/socket-types.ts';

export interface AppDeps {
  config: Config;
  logger: Logger;
  redisUrl: string;
  /** The Redis of the Socket.IO adapter's stream; the store's by default. */
  socketRedisUrl?: string;
  topology: Topology;
  escalation: EscalationConfig;
  jwtSecret: Uint8Array;
  /**
   * The partitions whose escalation workers run in this process (default: every partition, or none with
   * ESCALATION_WORKER=off).
   */
  partitions?: number[];
  /** What `/metrics` serves when this process is one of several on a port: every process's metrics. */
  clusterMetrics?: () => Promise<string>;
  /** What `/readyz` answers when this process is one of several on a port: every process's readiness. */
  clusterReadiness?: () => Promise<string[]>;
}

export interface App {
  readonly httpServer: HttpServer;
  readonly io: Hub;
  readonly metrics: Metrics;
  readonly topology: TopologyIndex;
  readonly redis: Redis;
  /** This process's own readiness, whatever `/readyz` answers. */
  readonly readiness: Readiness;
  readonly services: {
    auth: AuthService;
    users: UserService;
    incidents: IncidentService;
    apiKeys: ApiKeyService;
    escalation: EscalationService;
  };
  /** Connects to Redis and records the topology; call before listening. */
  start(): Promise<void>;
  /** Runs the escalation workers of these partitions in this process from now on, those it does not already. */
  startEscalationWorkers(partitions: number[]): Promise<void>;
  /** Idempotent, ordered shutdown; every step runs even if an earlier one fails. */
  close(): Promise<void>;
}

/** The composition root: builds every part and wires them, but never listens. */
export function createApp(deps: AppDeps): App {
  const { config, logger } = deps;
  const keys = redisKeys(config.redis.keyPrefix);
  const topology = indexTopology(deps.topology);
  const metrics = createMetrics();

  const redis = createRedis(deps.redisUrl, 'commands');
  const adapterRedis = createRedis(deps.socketRedisUrl ?? deps.redisUrl, 'adapter');
  // The raise and note budgets live beside the broadcasts, in the Redis that keeps nothing on disk: their
  // counters need not outlive a restart, and in the store each raise's point was a synced write of its own
  // before the commit, its fsync holding up every command behind it.
  const limitsRedis = createRedis(deps.socketRedisUrl ?? deps.redisUrl, 'limits');
  for (const [role, client] of [
    ['commands', redis],
    ['adapter', adapterRedis],
    ['limits', limitsRedis],
  ] as const) {
    client.on('error', (err) => logger.warn({ err, role }, 'redis connection error'));
  }

  const users = createUserRepository(redis, keys);
  const sessions = createSessionRepository(redis, keys);
  const limiter = createLoginLimiter(redis, keys, {
    maxFailuresPerUser: config.auth.loginMaxFailuresPerUser,
    maxFailuresPerUserAndIp: config.auth.loginMaxFailuresPerUserAndIp,
    maxAttemptsPerIp: config.auth.loginMaxAttemptsPerIp,
    windowSeconds: config.auth.loginWindowSeconds,
  });
  const revocations = revocationPublisher(redis, keys);
  const auth = createAuthService({
    users,
    sessions,
    limiter,
    topology,
    revocations,
    settings: {
      secret: deps.jwtSecret,
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      accessTtlSeconds: config.auth.accessTtlSeconds,
      refreshTtlSeconds: config.auth.refreshTtlSeconds,
    },
  });
  // The hub is built after the services that report to it.
  let publisher: ReturnType<typeof createIncidentPublisher> | undefined;
  const userService = createUserService({ users, topology, revocations });

  const queueRedis = createRedis(deps.redisUrl, 'queue');
  queueRedis.on('error', (err) => logger.warn({ err, role: 'queue' }, 'redis connection error'));
  const incidentRepo = createIncidentRepository(redis, keys, {
    redeliverAfterMs: config.incidents.redeliverAfterMs,
    onUnreadable: (incidentId, err) =>
      logger.error({ err, incidentId }, 'an incident’s stored document does not parse; left out of lists'),
  });
  const undelivered = createUndelivered(redis, keys, {
    id: randomBytes(6).toString('base64url'),
    aliveMs: config.incidents.redeliverAfterMs,
  });
  const escalationQueue = createEscalationQueue({
    connection: queueRedis,
    prefix: keys.bullPrefix,
    metrics,
    partitions: config.escalation.partitions,
    incidents: incidentRepo,
  });
  registerQueueDepth(metrics, escalationQueue.depth);
  const writer = createIncidentWriter({
    repo: incidentRepo,
    publisher: { changed: (change) => publisher?.changed(change) },
    timers: escalationQueue.timers,
    undelivered,
    broadcastReady: () => adapterRedis.status === 'ready',
    onTimerError: (err, change) =>
      logger.error(
        { err, incidentId: change.incident.id },
        'could not set escalation timers; the auditor will',
      ),
  });
  const gates = {
    raise: createRateGate(limitsRedis, keys, 'raise', config.incidents.raisePerMinute),
    note: createRateGate(limitsRedis, keys, 'note', config.incidents.notePerMinute),
  };
  const incidents = createIncidentService({
    repo: incidentRepo,
    openedIndex: createOpenedIndex(redis, keys),
    writer,
    topology,
    escalation: deps.escalation,
    gates,
    settings: { dedupWindowMs: config.incidents.dedupWindowMs },
  });
  const escalation = createEscalationService({
    repo: incidentRepo,
    writer,
    topology,
    clock: escalationQueue.clock,
    publisher: { reminded: (reminder) => publisher?.reminded(reminder) },
    noteGate: gates.note,
  });
  const workers = new Map<number, Worker>();
  const apiKeys = createApiKeyService({ repo: createApiKeyRepository(redis, keys), topology });

  // Socket commands and HTTP requests being answered: a shutdown waits for them before it closes anything.
  const inFlight = { count: 0, draining: false };
  const handlerContext: HandlerContext = { logger, metrics, recheck: (p) => auth.recheck(p), inFlight };

  const readiness: Readiness = {
    async check() {
      const failing: string[] = [];
      if (inFlight.draining) failing.push('shutting_down');
      const answers = (client: typeof redis) =>
        client.status === 'ready' &&
        client.ping().then(
          () => true,
          () => false,
        );
      if (!(await answers(redis))) failing.push('redis');
      // Without the adapter's Redis, alerts would be stored but reach no console.
      if (!(await answers(adapterRedis))) failing.push('socket_redis');
      return failing;
    },
  };

  const httpApp = createHttpApp({
    logger,
    metrics,
    readiness: deps.clusterReadiness ? { check: deps.clusterReadiness } : readiness,
    ...(deps.clusterMetrics && { metricsText: deps.clusterMetrics }),
    auth,
    users: userService,
    incidents,
    apiKeys,
    topology,
    inFlight,
    settings: {
      trustProxy: config.http.trustProxy,
      jsonLimit: config.http.jsonLimit,
      ...(config.http.metricsToken !== undefined && { metricsToken: config.http.metricsToken }),
    },
  });
  const httpServer = createServer(httpApp);
  const hub = createHub({
    httpServer,
    adapterRedis,
    keys,
    logger,
    metrics,
    auth,
    topology,
    settings: { ...config.socket, publicOrigins: config.http.publicOrigins },
    handlers: [
      ...sessionHandlers(handlerContext),
      ...incidentHandlers(handlerContext, incidents, escalation),
    ],
  });
  const subscriber = createRedis(deps.redisUrl, 'subscriber');
  subscriber.on('error', (err) => logger.warn({ err, role: 'subscriber' }, 'redis connection error'));
  publisher = createIncidentPublisher(hub.io, topology);

  async function startEscalationWorkers(partitions: number[]) {
    const started: Worker[] = [];
    for (const partition of partitions) {
      if (workers.has(partition) || closing) continue;
      const worker = startEscalationWorker({
        connection: createRedis(deps.redisUrl, 'worker'),
        prefix: keys.bullPrefix,
        partition,
        service: escalation,
        arm: escalationQueue.arm,
        logger,
        metrics,
        settings: config.escalation,
      });
      workers.set(partition, worker);
      started.push(worker);
    }
    await Promise.all(started.map((w) => w.waitUntilReady()));
  }

  let redelivery: ReturnType<typeof startRedelivery> | undefined;
  let closing: Promise<void> | undefined;
  async function runClose() {
    // Each step is bounded, so a shutdown while Redis is unreachable still completes.
    const step = async (name: string, fn: () => Promise<unknown> | unknown) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), config.shutdownGraceMs);
      });
      try {
        if ((await Promise.race([Promise.resolve().then(fn), timeout])) === 'timeout') {
          logger.warn({ step: name }, 'shutdown step timed out');
        }
      } catch (err) {
        logger.warn({ err, step: name }, 'shutdown step failed');
      } finally {
        clearTimeout(timer);
      }
    };
    inFlight.draining = true;
    // Stop accepting connections; the promise settles once the open ones have ended, or at once under a
    // primary, where this server never listens.
    const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
    await step('finish in-flight commands and requests', () =>
      waitFor(() => inFlight.count === 0, config.shutdownGraceMs),
    );
    redelivery?.stop();
    // Workers finish their running jobs before the sockets close: those jobs publish through Socket.IO.
    await step('close workers', () => Promise.all([...workers.values()].map((w) => w.close())));
    // What this process delivered is forgotten now, not delivered again by another after the grace.
    await step('confirm deliveries', () => undelivered.flush());
    // What it could not deliver (a commit whose reply never came) is the other processes' once overdue, without
    // waiting for this process's heartbeat to lapse.
    await step('leave undelivered changes to the others', () => redelivery?.retire() ?? undelivered.retire());
    // Closing the engine drops each transport without a "server disconnect" packet, so consoles
    // reconnect by themselves, to another process behind the proxy.
    await step('close sockets', () => hub.io.close());
    await step('finish HTTP requests', () => httpClosed);
    httpServer.closeAllConnections();
    await step('close queues', () => escalationQueue.close());
    const clients = [redis, adapterRedis, limitsRedis, queueRedis, subscriber];
    await step('quit redis', () => Promise.allSettled(clients.map((c) => c.quit())));
    // Whatever could not quit cleanly (Redis gone) is dropped, so no socket keeps the process alive.
    for (const client of clients) client.disconnect();
  }

  return {
    httpServer,
    io: hub.io,
    metrics,
    topology,
    redis,
    readiness,
    services: { auth, users: userService, incidents, apiKeys, escalation },
    async start() {
      await Promise.all([waitReady(redis), waitReady(adapterRedis), waitReady(subscriber)]);
      await subscribeRevocations(subscriber, keys, hub.dropSessions);
      const recorded = await recordTopology(redis, keys, deps.topology);
      if (recorded.previous) logger.warn(recorded, 'topology changed since the last start');
      await escalationQueue.scheduleAudit(config.escalation.auditIntervalMs);
      await startEscalationWorkers(deps.partitions ?? inlinePartitions(config.escalation));
      redelivery ??= startRedelivery({
        undelivered,
        writer,
        afterMs: config.incidents.redeliverAfterMs,
        logger,
        metrics,
      });
    },
    startEscalationWorkers,
    close() {
      closing ??= runClose();
      return closing;
    },
  };
}

async function waitFor(predicate: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}
