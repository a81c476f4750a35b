import { createServer, type Server as HttpServer } from 'node:http';
import type { Redis } from 'ioredis';
import { indexTopology, type Topology, type TopologyIndex } from '../shared/topology.ts';
import type { Config } from './config.ts';
import { type AuthService, createAuthService } from './domain/auth-service.ts';
import { createUserService, type SessionRevocations, type UserService } from './domain/user-service.ts';
import type { Logger } from './logger.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { createRedis, waitReady } from './redis/redis-connection.ts';
import { redisKeys } from './storage/keys.ts';
import { createLoginLimiter } from './storage/login-limiter.ts';
import { createSessionRepository } from './storage/sessions.repository.ts';
import { recordTopology } from './storage/topology.repository.ts';
import { createUserRepository } from './storage/users.repository.ts';
import { createHttpApp } from './transport/http/http-app.ts';
import type { HandlerContext } from './transport/socket/define-handler.ts';
import { createHub } from './transport/socket/hub.ts';
import { sessionHandlers } from './transport/socket/session.handlers.ts';
import type { Hub } from './transport/socket/socket-types.ts';

export interface AppDeps {
  config: Config;
  logger: Logger;
  redisUrl: string;
  topology: Topology;
  jwtSecret: Uint8Array;
}

export interface App {
  readonly httpServer: HttpServer;
  readonly io: Hub;
  readonly metrics: Metrics;
  readonly topology: TopologyIndex;
  readonly redis: Redis;
  readonly services: { auth: AuthService; users: UserService };
  /** Connects to Redis and records the topology; call before listening. */
  start(): Promise<void>;
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
  const adapterRedis = createRedis(deps.redisUrl, 'adapter');
  for (const [role, client] of [
    ['commands', redis],
    ['adapter', adapterRedis],
  ] as const) {
    client.on('error', (err) => logger.warn({ err, role }, 'redis connection error'));
  }

  const users = createUserRepository(redis, keys);
  const sessions = createSessionRepository(redis, keys);
  const limiter = createLoginLimiter(redis, keys, {
    maxFailuresPerUser: config.auth.loginMaxFailuresPerUser,
    maxAttemptsPerIp: config.auth.loginMaxAttemptsPerIp,
    windowSeconds: config.auth.loginWindowSeconds,
  });
  const auth = createAuthService({
    users,
    sessions,
    limiter,
    topology,
    settings: {
      secret: deps.jwtSecret,
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      accessTtlSeconds: config.auth.accessTtlSeconds,
      refreshTtlSeconds: config.auth.refreshTtlSeconds,
    },
  });
  // The hub is built after the services that report revocations to it.
  let revocations: SessionRevocations | undefined;
  const userService = createUserService({
    users,
    sessions,
    topology,
    revocations: { userRevoked: (userId) => revocations?.userRevoked(userId) },
  });

  const inFlight = { count: 0, draining: false };
  const handlerContext: HandlerContext = { logger, metrics, recheck: (p) => auth.recheck(p), inFlight };

  const readiness = {
    async check() {
      const failing: string[] = [];
      if (inFlight.draining) failing.push('shutting_down');
      if (
        redis.status !== 'ready' ||
        !(await redis.ping().then(
          () => true,
          () => false,
        ))
      )
        failing.push('redis');
      return failing;
    },
  };

  const httpApp = createHttpApp({
    logger,
    metrics,
    readiness,
    auth,
    users: userService,
    topology,
    settings: { trustProxy: config.http.trustProxy, jsonLimit: config.http.jsonLimit },
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
    handlers: [...sessionHandlers(handlerContext)],
  });
  revocations = hub.revocations;

  let closing: Promise<void> | undefined;
  async function runClose() {
    const step = async (name: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (err) {
        logger.warn({ err, step: name }, 'shutdown step failed');
      }
    };
    inFlight.draining = true;
    // Stop accepting connections; the promise settles once the open ones have ended.
    const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
    await step('finish in-flight commands', () =>
      waitFor(() => inFlight.count === 0, config.shutdownGraceMs),
    );
    // Closing the engine drops each transport without a "server disconnect" packet, so consoles
    // reconnect by themselves, to another process behind the proxy.
    await step('close sockets', () => hub.io.close());
    await step('finish HTTP requests', async () => {
      await Promise.race([httpClosed, new Promise((r) => setTimeout(r, config.shutdownGraceMs).unref())]);
      httpServer.closeAllConnections();
    });
    await step('quit redis', () => Promise.allSettled([redis.quit(), adapterRedis.quit()]));
  }

  return {
    httpServer,
    io: hub.io,
    metrics,
    topology,
    redis,
    services: { auth, users: userService },
    async start() {
      await Promise.all([waitReady(redis), waitReady(adapterRedis)]);
      const recorded = await recordTopology(redis, keys, deps.topology);
      if (recorded.previous) logger.warn(recorded, 'topology changed since the last start');
    },
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
