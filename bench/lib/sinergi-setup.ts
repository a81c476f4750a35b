import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createUserService } from '../../server/domain/user-service.ts';
import { createRedis, waitReady } from '../../server/redis/redis-connection.ts';
import { redisKeys } from '../../server/storage/keys.ts';
import { createUserRepository } from '../../server/storage/users.repository.ts';
import type { LoginResponse } from '../../shared/auth.ts';
import type { Role } from '../../shared/roles.ts';
import { indexTopology, Topology } from '../../shared/topology.ts';
import type { ConsoleSpec } from '../load/raise-generator.ts';
import type { BenchRedis } from './bench-redis.ts';
import { startGenerator, stopChild } from './processes.ts';

export interface BenchAccount {
  username: string;
  role: Role;
  unitId: string;
}

/** The environment every bench scenario gives the server under test, besides its own settings. */
export function serverEnv(
  redis: Pick<BenchRedis, 'url' | 'socketUrl'>,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    SOCKET_REDIS_URL: redis.socketUrl,
    JWT_SECRET: randomBytes(32).toString('base64url'),
    // A console's token must outlive the longest scenario.
    ACCESS_TOKEN_TTL_SECONDS: '3600',
    ...extra,
  };
}

/**
 * The default topology with `blocksPerFacility` blocks in every Lapas, written into `dir`. Blocks are part
 * of an alert's dedup scope (Lapas, category, block, drill): more of them let a scenario open many distinct
 * incidents without deduplicating them into one another; routing and parties stay those of the real file.
 */
export async function writeBenchTopology(dir: string, blocksPerFacility: number): Promise<string> {
  const topology = Topology.parse(JSON.parse(await readFile('config/topology.json', 'utf8')));
  for (const unit of topology.units) {
    if (unit.type !== 'facility') continue;
    unit.blocks = Array.from({ length: blocksPerFacility }, (_, i) => ({
      id: `b${i + 1}`,
      name: `Blok ${i + 1}`,
    }));
  }
  const file = path.join(dir, `topology-${blocksPerFacility}-blocks.json`);
  await writeFile(file, `${JSON.stringify(topology, null, 2)}\n`);
  return file;
}

export async function facilitiesOf(topologyFile: string) {
  const topology = Topology.parse(JSON.parse(await readFile(topologyFile, 'utf8')));
  return topology.units.flatMap((u) =>
    u.type === 'facility' ? [{ id: u.id, blocks: u.blocks.map((b) => b.id) }] : [],
  );
}

/**
 * Creates accounts straight in the store before the server starts, as `npm run users -- add` would (the
 * server under test runs with NODE_ENV=production: no demo accounts). Returns the password they share.
 */
export async function seedAccounts(
  redisUrl: string,
  topologyFile: string,
  accounts: BenchAccount[],
  keyPrefix = 'sng:',
) {
  const topology = indexTopology(Topology.parse(JSON.parse(await readFile(topologyFile, 'utf8'))));
  const redis = createRedis(redisUrl, 'tool');
  const password = randomBytes(18).toString('base64url');
  try {
    // A tool connection refuses commands until it is ready rather than queue them.
    await waitReady(redis);
    const keys = redisKeys(keyPrefix);
    const users = createUserService({
      users: createUserRepository(redis, keys),
      topology,
      revocations: { ended: async () => {} },
    });
    await Promise.all(accounts.map((a) => users.create({ ...a, displayName: a.username, password })));
  } finally {
    redis.disconnect();
  }
  return password;
}

/** Logs each account in once, the real way (the login rate limit stays on); its consoles share the token. */
export async function loginAll(
  baseUrl: string,
  accounts: BenchAccount[],
  password: string,
): Promise<Map<string, string>> {
  const tokens = new Map<string, string>();
  for (const account of accounts) {
    const res = await fetch(`${baseUrl}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: account.username, password }),
    });
    if (res.status !== 200)
      throw new Error(`login ${account.username} failed: ${res.status} ${await res.text()}`);
    tokens.set(account.username, ((await res.json()) as LoginResponse).accessToken);
  }
  return tokens;
}

/**
 * A Sinergi escalation worker in its own process, exactly as `npm run worker` runs it, with the same settings
 * as the server (which then runs with ESCALATION_WORKER=off). Resolves once it says it is running.
 */
export async function startWorkerProcess(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/worker-main.ts'], {
    env: { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (d: Buffer) => {
    output += d.toString();
  };
  child.stderr?.on('data', collect);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker did not start in 60 s:\n${output}`)), 60_000);
      child.stdout?.on('data', (d: Buffer) => {
        collect(d);
        if (output.includes('escalation worker running')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`worker exited with ${code}:\n${output}`));
      });
    });
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return { child, stop: () => stopChild(child) };
}

/**
 * Operator consoles for every Lapas in `generatorCount` raise-generator processes. Each generator holds whole
 * Lapas (all consoles of a unit in one process), so two generators never raise for the same place. Each
 * generator is pushed onto `into` as soon as it starts, so the caller's cleanup stops it whatever happens.
 */
export async function connectRaisers(
  into: ReturnType<typeof startGenerator>[],
  url: string,
  facilities: { id: string; blocks: string[] }[],
  tokens: Map<string, string>,
  connectionsPerLapas: number,
  generatorCount: number,
): Promise<void> {
  for (let g = 0; g < generatorCount; g++) {
    const generator = startGenerator('bench/load/raise-generator.ts', {});
    into.push(generator);
    const specs: ConsoleSpec[] = facilities
      .filter((_, i) => i % generatorCount === g)
      .map((f) => ({
        facilityId: f.id,
        blocks: f.blocks,
        token: tokens.get(`op.${f.id}`) ?? '',
        connections: connectionsPerLapas,
      }));
    await generator.request('connect', { url, specs });
  }
}
