import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { serverProcessCount } from '../../server/cluster/primary.ts';
import { loadConfig } from '../../server/config.ts';
import { loadTopologyFile } from '../../server/config-files.ts';
import type { LoginResponse } from '../../shared/auth.ts';
import type { Role } from '../../shared/roles.ts';
import { indexTopology, type TopologyIndex, type Unit } from '../../shared/topology.ts';
import { type BenchRedis, startBenchRedis } from './bench-redis.ts';
import { overTree } from './cpu.ts';
import { type ServerProcess, startServerProcess } from './processes.ts';
import type { BenchContext } from './results.ts';

/** The one account a unit's workstations share, logged in once; every console of the unit reuses the token. */
export interface UnitAccount {
  unitId: string;
  unitType: Unit['type'];
  username: string;
  role: Role;
  accessToken: string;
}

export interface SinergiStack {
  readonly redis: BenchRedis;
  readonly appendfsync: 'always';
  readonly servers: ServerProcess[];
  /** How many server processes each of `servers` runs on its port (SERVER_PROCESSES). */
  readonly processesPerServer: number;
  readonly topology: TopologyIndex;
  /** By unit id: one account for every unit of the topology. */
  readonly accounts: Map<string, UnitAccount>;
  /** Idempotent: servers first, Redis last, every step even if one fails. */
  stop(): Promise<void>;
}

export interface SinergiOptions {
  /** Names the data directory under the run's tmpDir; unique per stack. */
  name: string;
  /** Server processes on the one Redis (default 1). */
  processes?: number;
  /** Extra settings for every server process, on top of the production-like defaults. */
  env?: Record<string, string>;
  extraNodeArgs?: string[];
}

export const TOPOLOGY_FILE = 'config/topology.json';

export async function loadBenchTopology(): Promise<TopologyIndex> {
  return indexTopology(await loadTopologyFile(TOPOLOGY_FILE));
}

/** The role a unit's shared control-room account has: the one that may work alerts there. */
export function consoleRole(unit: Unit): Role {
  if (unit.type === 'facility') return 'operator';
  if (unit.type === 'precinct') return 'dispatcher';
  return unit.agency === 'police' ? 'commander' : 'supervisor';
}

/**
 * A production-like Sinergi under test: its own embedded Redis with `appendfsync always` (the production
 * default), the real server as separate process(es) with NODE_ENV=production and no demo accounts, and one
 * account per unit created through the admin REST API with the first-start admin password the server
 * prints once — exactly as an operator would set it up.
 */
export async function startSinergi(ctx: BenchContext, options: SinergiOptions): Promise<SinergiStack> {
  const started = Date.now();
  const dataDir = path.join(ctx.tmpDir, options.name);
  const topology = await loadBenchTopology();
  const redis = await startBenchRedis(dataDir);
  const servers: ServerProcess[] = [];
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await Promise.allSettled(servers.map((s) => s.stop()));
      await redis.stop();
    })();
    return stopping;
  };
  try {
    const env = {
      NODE_ENV: 'production',
      SEED_DEMO: '0',
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      REDIS_URL: redis.url,
      SOCKET_REDIS_URL: redis.socketUrl,
      REDIS_KEY_PREFIX: 'bench:',
      JWT_SECRET: randomBytes(32).toString('base64url'),
      TOPOLOGY_FILE,
      ...options.env,
    };
    // They start together; whichever process finds the store empty first creates `admin` and prints its
    // password, the others find it there.
    const launches = await Promise.allSettled(
      Array.from({ length: options.processes ?? 1 }, () => startServerProcess(env, options.extraNodeArgs)),
    );
    for (const s of launches) if (s.status === 'fulfilled') servers.push(s.value);
    const failed = launches.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    const serversUp = Date.now();
    const printed = servers.map((s) => /with password (\S+) — shown only this once/.exec(s.stdout())?.[1]);
    const adminPassword = printed.find((p) => p !== undefined);
    const first = servers[0];
    if (!adminPassword || !first) {
      throw new Error(
        `no server printed the first-start admin password:\n${servers.map((s) => s.stdout()).join('\n')}`,
      );
    }
    const admin = await login(first.url, 'admin', adminPassword);
    const accounts = new Map<string, UnitAccount>();
    // Hashing and verifying passwords is the server's slowest path; a few at a time keeps set-up short.
    await inBatches(topology.topology.units, 4, async (unit) => {
      const username = `bench.${unit.id}`;
      const password = randomBytes(18).toString('base64url');
      const role = consoleRole(unit);
      await postJson(
        first.url,
        '/api/users',
        { username, displayName: `Bench ${unit.shortName}`, password, role, unitId: unit.id },
        admin.accessToken,
      );
      const session = await login(first.url, username, password);
      accounts.set(unit.id, {
        unitId: unit.id,
        unitType: unit.type,
        username,
        role,
        accessToken: session.accessToken,
      });
    });
    ctx.log(
      `${options.name}: ${servers.length} server(s) up in ${serversUp - started} ms, ` +
        `${accounts.size} unit accounts made and logged in in ${Date.now() - serversUp} ms`,
    );
    const processesPerServer = serverProcessCount(loadConfig({ ...process.env, ...env }));
    return { redis, appendfsync: 'always', servers, processesPerServer, topology, accounts, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export async function login(baseUrl: string, username: string, password: string): Promise<LoginResponse> {
  return (await postJson(baseUrl, '/api/auth/login', { username, password })) as LoginResponse;
}

export async function postJson(
  baseUrl: string,
  route: string,
  body: unknown,
  token?: string,
): Promise<unknown> {
  const res = await fetch(`${baseUrl}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${route} answered ${res.status}: ${text}`);
  return text ? JSON.parse(text) : undefined;
}

export async function inBatches<T>(items: readonly T[], size: number, fn: (item: T) => Promise<void>) {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

/** Resident set size in bytes of a server: its process and every server process it forked (Linux /proc). */
export async function residentBytes(pid: number): Promise<number> {
  const total = await overTree(
    pid,
    async (member) => {
      const status = await readFile(`/proc/${member}/status`, 'utf8').catch(() => '');
      const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
      return kib === undefined ? undefined : Number(kib) * 1024;
    },
    'tree',
  );
  if (total === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return total;
}
