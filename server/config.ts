import { z } from 'zod';
import { RedisAddress } from './redis/redis-connection.ts';
import { REDELIVER_AFTER_MS } from './storage/incidents.repository.ts';

const Flag = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'])
  .transform((v) => ['1', 'true', 'yes', 'on'].includes(v));

const Origins = z
  .string()
  .transform((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.url({ protocol: /^https?$/ })).min(1, 'list at least one origin'))
  // A browser sends its page's origin alone: `https://sinergi.example.id/` would match no browser at all.
  .transform((urls) => urls.map((u) => new URL(u).origin));

// Node runs a timer of more than 2^31 - 1 ms after 1 ms instead: a longer value would turn a token's expiry,
// a ping or a grace into a loop.
const MAX_TIMER_MS = 2 ** 31 - 1;

const Seconds = (def: number, min = 1) => z.coerce.number().int().min(min).default(def);
const Millis = (def: number, min: number) => z.coerce.number().int().min(min).max(MAX_TIMER_MS).default(def);

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|\[::1\])$/;

// The keys the cross-field checks below read.
const crossChecked = new Set(['NODE_ENV', 'SEED_DEMO', 'REDIS_URL', 'JWT_SECRET', 'HOST']);

/** Every setting Sinergi reads, with its default; the README's settings table follows this schema. */
export const EnvSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    HOST: z
      .string()
      .trim()
      .regex(/^[A-Za-z0-9.:[\]-]+$/, 'an IP address or host name')
      .default('127.0.0.1'),
    PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    SERVER_PROCESSES: z.union([z.literal('auto'), z.coerce.number().int().min(1).max(64)]).default('auto'),
    DATA_DIR: z.string().min(1).default('./data'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    PUBLIC_ORIGINS: Origins.default([
      'http://localhost:8080',
      'http://127.0.0.1:8080',
      'http://localhost:5173',
    ]),
    TRUST_PROXY: z.coerce.number().int().min(0).max(10).default(0),
    METRICS_TOKEN: z
      .string()
      .min(16, 'at least 16 characters')
      .regex(/^\S+$/, 'no spaces: it is sent as "Authorization: Bearer <token>"')
      .optional(),
    REDIS_URL: RedisAddress.optional(),
    REDIS_KEY_PREFIX: z
      .string()
      .regex(/^[a-z0-9_-]{1,24}:$/, 'a short lowercase prefix ending in ":"')
      .default('sng:'),
    SOCKET_REDIS_URL: RedisAddress.optional(),
    REDIS_APPENDFSYNC: z.enum(['always', 'everysec']).default('always'),
    JWT_SECRET: z.string().min(32, 'at least 32 characters').optional(),
    JWT_ISSUER: z.string().min(1).default('sinergi'),
    JWT_AUDIENCE: z.string().min(1).default('sinergi-console'),
    ACCESS_TOKEN_TTL_SECONDS: Seconds(900, 5).refine((s) => s * 1000 <= MAX_TIMER_MS, 'at most 2147483'),
    REFRESH_TOKEN_TTL_SECONDS: Seconds(24 * 3600, 60),
    LOGIN_MAX_FAILURES_PER_USER: z.coerce.number().int().min(1).default(20),
    LOGIN_MAX_FAILURES_PER_USER_AND_IP: z.coerce.number().int().min(1).default(5),
    LOGIN_MAX_ATTEMPTS_PER_IP: z.coerce.number().int().min(1).default(300),
    LOGIN_WINDOW_SECONDS: Seconds(900),
    TOPOLOGY_FILE: z.string().min(1).default('config/topology.json'),
    SEED_DEMO: Flag.optional(),
    ADMIN_PASSWORD_FILE: z.string().min(1).optional(),
    SOCKET_PING_INTERVAL_MS: Millis(10_000, 1000),
    SOCKET_PING_TIMEOUT_MS: Millis(20_000, 1000),
    SOCKET_RECOVERY_WINDOW_MS: Millis(120_000, 0),
    SHUTDOWN_GRACE_MS: Millis(10_000, 0),
    ESCALATION_FILE: z.string().min(1).default('config/escalation.json'),
    ESCALATION_WORKER: z.enum(['inline', 'off']).default('inline'),
    ESCALATION_AUDIT_INTERVAL_MS: Millis(60_000, 100),
    ESCALATION_PARTITIONS: z.coerce.number().int().min(1).max(64).default(1),
    WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(50),
    WORKER_LOCK_MS: Millis(10_000, 100),
    WORKER_STALLED_INTERVAL_MS: Millis(5_000, 100),
    DEDUP_WINDOW_SECONDS: Seconds(15 * 60),
    RAISE_RATE_PER_MINUTE: z.coerce.number().int().min(1).default(120),
    REDELIVER_AFTER_MS: Millis(REDELIVER_AFTER_MS, 500),
    NOTE_RATE_PER_MINUTE: z.coerce.number().int().min(1).default(120),
  })
  .superRefine(
    (env, ctx) => {
      if (env.NODE_ENV === 'production' && env.SEED_DEMO === true)
        ctx.addIssue({
          code: 'custom',
          path: ['SEED_DEMO'],
          message: 'demo accounts are refused when NODE_ENV=production',
        });
      // Demo mode's passwords are published: on the network it is served only when asked for by name.
      if (env.NODE_ENV === 'development' && env.SEED_DEMO === undefined && !LOOPBACK.test(env.HOST))
        ctx.addIssue({
          code: 'custom',
          path: ['HOST'],
          message: `demo mode (every demo account's password is published) is served on ${env.HOST} only with SEED_DEMO=1; set NODE_ENV=production for real use`,
        });
      // Several processes on a shared Redis must sign with one key; the generated file only serves one data dir.
      if (env.REDIS_URL !== undefined && env.JWT_SECRET === undefined)
        ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'required when REDIS_URL is set' });
    },
    {
      // zod skips a refinement once any field failed; these checks must still run so every problem is listed
      // at once, and they are sound as long as the keys they read parsed.
      when: ({ issues }) => !issues.some((i) => crossChecked.has(String(i.path?.[0]))),
    },
  );

export type Env = z.input<typeof EnvSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

export function loadConfig(env: Record<string, string | undefined> = process.env) {
  // An empty variable means "not set", as in most shells' `VAR= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`));
  }
  const e = parsed.data;
  return deepFreeze({
    env: e.NODE_ENV,
    dataDir: e.DATA_DIR,
    logLevel: e.LOG_LEVEL,
    topologyFile: e.TOPOLOGY_FILE,
    seedDemo: e.SEED_DEMO ?? e.NODE_ENV === 'development',
    adminPasswordFile: e.ADMIN_PASSWORD_FILE,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    http: {
      host: e.HOST,
      port: e.PORT,
      processes: e.SERVER_PROCESSES,
      trustProxy: e.TRUST_PROXY,
      publicOrigins: e.PUBLIC_ORIGINS,
      jsonLimit: '64kb',
      metricsToken: e.METRICS_TOKEN,
    },
    redis: {
      url: e.REDIS_URL,
      socketUrl: e.SOCKET_REDIS_URL,
      keyPrefix: e.REDIS_KEY_PREFIX,
      appendfsync: e.REDIS_APPENDFSYNC,
    },
    auth: {
      jwtSecret: e.JWT_SECRET,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      accessTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
      refreshTtlSeconds: e.REFRESH_TOKEN_TTL_SECONDS,
      loginMaxFailuresPerUser: e.LOGIN_MAX_FAILURES_PER_USER,
      loginMaxFailuresPerUserAndIp: e.LOGIN_MAX_FAILURES_PER_USER_AND_IP,
      loginMaxAttemptsPerIp: e.LOGIN_MAX_ATTEMPTS_PER_IP,
      loginWindowSeconds: e.LOGIN_WINDOW_SECONDS,
    },
    escalation: {
      file: e.ESCALATION_FILE,
      worker: e.ESCALATION_WORKER,
      auditIntervalMs: e.ESCALATION_AUDIT_INTERVAL_MS,
      partitions: e.ESCALATION_PARTITIONS,
      concurrency: e.WORKER_CONCURRENCY,
      lockDurationMs: e.WORKER_LOCK_MS,
      stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
    },
    incidents: {
      dedupWindowMs: e.DEDUP_WINDOW_SECONDS * 1000,
      raisePerMinute: e.RAISE_RATE_PER_MINUTE,
      redeliverAfterMs: e.REDELIVER_AFTER_MS,
      notePerMinute: e.NOTE_RATE_PER_MINUTE,
    },
    socket: {
      pingIntervalMs: e.SOCKET_PING_INTERVAL_MS,
      pingTimeoutMs: e.SOCKET_PING_TIMEOUT_MS,
      recoveryWindowMs: e.SOCKET_RECOVERY_WINDOW_MS,
      // The largest legal payload (a 4,000-character description or note in UTF-8) with ample headroom.
      maxHttpBufferSize: 64 * 1024,
    },
  });
}

export type Config = ReturnType<typeof loadConfig>;

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
