import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { inject } from 'vitest';
import type { z } from 'zod';
import { type App, createApp } from '../../server/app.ts';
import { type Config, loadConfig } from '../../server/config.ts';
import { loadEscalationFile, loadTopologyFile } from '../../server/config-files.ts';
import { seedDemoAccounts } from '../../server/domain/seed.ts';
import { createLogger, type Logger } from '../../server/logger.ts';
import { EscalationConfig } from '../../shared/escalation.ts';
import type { Role } from '../../shared/roles.ts';
import { Topology, type TopologyInput } from '../../shared/topology.ts';

export const TEST_JWT_SECRET = 'test-secret-that-is-at-least-32-characters-long';

export interface TestServer {
  readonly url: string;
  readonly app: App;
  readonly config: Config;
  readonly prefix: string;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** Share a key prefix (and so users, sessions and socket rooms) with another test server. */
  prefix?: string;
  env?: Record<string, string>;
  topology?: TopologyInput;
  escalation?: z.input<typeof EscalationConfig>;
  seedDemo?: boolean;
  redisUrl?: string;
  /** Where the server logs, for a test that checks what an operator would read. */
  logger?: Logger;
}

/** A fresh, unique key prefix: one per test file (or per test) keeps parallel tests apart on one Redis. */
export function uniquePrefix(): string {
  return `t${randomUUID().slice(0, 8)}:`;
}

/** Builds the real app, on the suite's real Redis, listening on 127.0.0.1 on a free port. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const prefix = options.prefix ?? uniquePrefix();
  const redisUrl = options.redisUrl ?? inject('redisUrl');
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: '0',
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: prefix,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SHUTDOWN_GRACE_MS: '2000',
    ...options.env,
  });
  const topology = options.topology
    ? Topology.parse(options.topology)
    : await loadTopologyFile(config.topologyFile);
  const escalation = options.escalation
    ? EscalationConfig.parse(options.escalation)
    : await loadEscalationFile(config.escalation.file);
  const app = createApp({
    config,
    logger: options.logger ?? createLogger(config.logLevel),
    redisUrl,
    ...(config.redis.socketUrl && { socketRedisUrl: config.redis.socketUrl }),
    topology,
    escalation,
    jwtSecret: new TextEncoder().encode(TEST_JWT_SECRET),
  });
  await app.start();
  if (options.seedDemo ?? true) await seedDemoAccounts(app.services.users);
  await new Promise<void>((resolve) => app.httpServer.listen(0, '127.0.0.1', resolve));
  const { port } = app.httpServer.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, app, config, prefix, close: () => app.close() };
}

/**
 * An account made the way an administrator makes one, beyond the demo accounts, for a test that will
 * disable it or spend its limits. Returns it with its (random) password.
 */
export async function addAccount(
  server: TestServer,
  account: { username: string; role: Role; unitId: string },
) {
  const password = randomUUID();
  const user = await server.app.services.users.create({
    ...account,
    displayName: account.username,
    password,
  });
  return { user, password };
}
