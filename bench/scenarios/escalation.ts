import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { EscalationConfig } from '../../shared/escalation.ts';
import type { IncidentEvent } from '../../shared/incident.ts';
import { type BenchRedis, startBenchRedis } from '../lib/bench-redis.ts';
import { cpuSecondsOf } from '../lib/cpu.ts';
import { serverNodeArgs, startGenerator, startServerProcess } from '../lib/processes.ts';
import type { BenchContext, ScenarioResult } from '../lib/results.ts';
import {
  type BenchAccount,
  connectRaisers,
  facilitiesOf,
  loginAll,
  seedAccounts,
  serverEnv,
  startWorkerProcess,
  writeBenchTopology,
} from '../lib/sinergi-setup.ts';
import { type Distribution, distribution, round } from '../lib/stats.ts';
import type { StepReport } from '../load/raise-generator.ts';
import type { StockRunReport, StockRunRequest } from '../load/stock-bullmq.ts';

/**
 * Escalation lateness: incidents raised through the real path (operator consoles over Socket.IO) so that the
 * first level of both chains of every one falls due inside one window; how late each level fires (the
 * `escalated` event's lateMs: decided − due), and that each fires exactly once. Baseline in the same run, on
 * the same Redis: a bare BullMQ Queue + Worker with default settings and one delayed job per level due over
 * the same window (Sinergi fires both levels of an incident from one timer; the baseline is not given that
 * help); then variants of it that show what costs lateness.
 */

const TARGETS = { p50: 20, p99: 100 };
const QUIET_MS = 1000;
const GENERATORS = 2;
const BLOCKS_PER_LAPAS = 100;

/** The production policy for critical incidents, its first wait shortened so the bench need not wait 30 s. */
async function writeBenchEscalation(dir: string, firstWaitSeconds: number): Promise<string> {
  const config = EscalationConfig.parse(JSON.parse(await readFile('config/escalation.json', 'utf8')));
  const critical = config.policies.find((p) => p.id === 'critical');
  if (!critical) throw new Error('config/escalation.json has no "critical" policy');
  for (const chain of [critical.chains.corrections, critical.chains.police]) {
    const first = chain.levels[0];
    if (!first) continue;
    // Reminders keep the production ratio (every 15 s of a 30 s wait): they are part of the engine's load.
    first.waitSeconds = firstWaitSeconds;
    first.repeatSeconds = firstWaitSeconds / 2;
  }
  const file = path.join(dir, `escalation-first-${firstWaitSeconds}s.json`);
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`);
  return file;
}

const fmt = (d: Distribution) => `p50 ${round(d.p50)} ms p99 ${round(d.p99)} ms max ${round(d.max)} ms`;

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const incidents = ctx.quick ? 1000 : 5000;
  const windowMs = ctx.quick ? 3000 : 10_000;
  // The level falls due this long after its raise: raising ends before the first one is due.
  const firstWaitSeconds = windowMs / 1000 + 2;
  const jobs = incidents * 2;

  const redis = await startBenchRedis(path.join(ctx.tmpDir, 'escalation'));
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  let stock: ReturnType<typeof startGenerator> | undefined;
  try {
    // --- Baseline and its variants first, on the same Redis, before any Sinergi process runs.
    stock = startGenerator('bench/load/stock-bullmq.ts', {});
    const stockRun = async (name: string, extra: Partial<StockRunRequest> = {}) => {
      const report = await (stock as NonNullable<typeof stock>).request<StockRunReport>(
        'run',
        {
          redisUrl: redis.url,
          queueName: `stock-${randomUUID()}`,
          count: jobs,
          windowMs,
          leadMs: 1500,
          ...extra,
        },
        windowMs + 60_000,
      );
      const d = distribution(report.latenessMs);
      ctx.log(
        `stock BullMQ ${name}: ${jobs} jobs due over ${windowMs / 1000} s: lateness ${fmt(d)}; processed ${report.processed}, repeated ${report.repeated}`,
      );
      return { report, d };
    };
    const blockProbe = await probeBlockingTimeout(client);
    ctx.log(
      `BZPOPMIN 50 ms timeouts on this Redis (hz ${blockProbe.hz}) return ${round(blockProbe.overshoot.p50)} ms late at p50, ${round(blockProbe.overshoot.max)} ms at worst`,
    );
    const baseline = await stockRun('defaults (concurrency 1)');
    // What more concurrency, a job's own work and more workers do to stock BullMQ's lateness: explanation, not
    // the baseline the targets use, so the smoke run (which must finish within two minutes) leaves them out.
    const concurrent = ctx.quick
      ? undefined
      : await stockRun('concurrency 50', { worker: { concurrency: 50 } });
    const working = ctx.quick
      ? undefined
      : await stockRun('concurrency 50, 5 Redis round trips per job', {
          worker: { concurrency: 50 },
          roundTripsPerJob: 5,
        });
    const spread = ctx.quick
      ? undefined
      : await stockRun('4 workers × concurrency 50, 5 Redis round trips per job', {
          worker: { concurrency: 50 },
          roundTripsPerJob: 5,
          workers: 4,
        });
    // Redis checks blocked clients' timeouts on its `hz` clock; Sinergi's embedded Redis runs at 100, and
    // Redis's own default of 10 shows what the marker wait costs on a Redis nobody tuned.
    let slowClock: Awaited<ReturnType<typeof stockRun>> | undefined;
    if (!ctx.quick) {
      const hz = await client.config('GET', 'hz');
      await client.config('SET', 'hz', '10');
      try {
        slowClock = await stockRun('defaults, Redis hz 10');
      } finally {
        await client.config('SET', 'hz', String(hz[1] ?? '100'));
      }
    }
    await stock.stop();
    stock = undefined;

    // --- Sinergi: raise the incidents through the real path, then let their first levels fall due.
    const topologyFile = await writeBenchTopology(ctx.tmpDir, BLOCKS_PER_LAPAS);
    const escalationFile = await writeBenchEscalation(ctx.tmpDir, firstWaitSeconds);
    const setup = {
      ctx,
      redis,
      client,
      topologyFile,
      escalationFile,
      incidents,
      windowMs,
      firstWaitSeconds,
    };
    const inline = await runSinergi({ ...setup, prefix: 'sng:', workerProcess: false });
    // The documented alternative placement: the server only schedules, a worker process fires (npm run worker).
    const apart = ctx.quick
      ? undefined
      : await runSinergi({ ...setup, prefix: 'apart:', workerProcess: true });
    const { d, expected, once, twice, fired, other, ids, opened, raiseAck, serverCores } = inline;

    const met = { p50: d.p50 <= TARGETS.p50, p99: d.p99 <= TARGETS.p99 };
    return {
      scenario: 'escalation',
      summary:
        `${incidents} incidents (${expected} first levels) due over ${windowMs / 1000} s: lateness ${fmt(d)}; ` +
        (apart ? `(worker in its own process: ${fmt(apart.d)}); ` : '') +
        `stock BullMQ defaults ${fmt(baseline.d)}` +
        (concurrent ? `, concurrency 50 ${fmt(concurrent.d)}` : '') +
        (slowClock ? `, Redis hz 10 ${fmt(slowClock.d)}` : ''),
      figures: {
        incidents: ids.length,
        windowSeconds: windowMs / 1000,
        created: 'alert:raise over Socket.IO',
        'sinergi.p50': round(d.p50),
        'sinergi.p99': round(d.p99),
        'sinergi.max': round(d.max),
        'sinergi.serverCores': round(serverCores),
        'sinergi.cpuMsPerLevel': round(inline.cpuMsPerLevel),
        ...(apart && {
          'sinergiWorkerProcess.p50': round(apart.d.p50),
          'sinergiWorkerProcess.p99': round(apart.d.p99),
          'sinergiWorkerProcess.max': round(apart.d.max),
        }),
        'raiseAck.p99': round(raiseAck.p99),
        'stock.p50': round(baseline.d.p50),
        'stock.p99': round(baseline.d.p99),
        'stock.max': round(baseline.d.max),
        ...(concurrent && {
          'stockConcurrency50.p50': round(concurrent.d.p50),
          'stockConcurrency50.p99': round(concurrent.d.p99),
        }),
        ...(working && {
          'stockConcurrency50RoundTrips5.p50': round(working.d.p50),
          'stockConcurrency50RoundTrips5.p99': round(working.d.p99),
        }),
        ...(spread && {
          'stock4WorkersRoundTrips5.p50': round(spread.d.p50),
          'stock4WorkersRoundTrips5.p99': round(spread.d.p99),
        }),
        ...(slowClock && {
          'stockHz10.p50': round(slowClock.d.p50),
          'stockHz10.p99': round(slowClock.d.p99),
        }),
        'bzpopminOvershoot.p50': round(blockProbe.overshoot.p50),
        redisHz: blockProbe.hz,
      },
      targets: [
        {
          name: 'lateness p50',
          target: `≤ ${TARGETS.p50} ms`,
          measured: `${round(d.p50)} ms (stock ${round(baseline.d.p50)} ms)`,
          met: met.p50,
        },
        {
          name: 'lateness p99',
          target: `≤ ${TARGETS.p99} ms`,
          measured: `${round(d.p99)} ms (stock ${round(baseline.d.p99)} ms)`,
          met: met.p99,
        },
        {
          name: 'better than stock BullMQ (p50 and p99)',
          target: `< ${round(baseline.d.p50)} / ${round(baseline.d.p99)} ms`,
          measured: `${round(d.p50)} / ${round(d.p99)} ms`,
          met: d.p50 < baseline.d.p50 && d.p99 < baseline.d.p99,
        },
      ],
      checks: [
        {
          name: 'every raise opened its own incident',
          passed: ids.length === incidents && opened === incidents,
          detail: `${ids.length} stored, ${opened} acknowledged as opened`,
        },
        {
          name: 'each (incident, chain, level 1) fired exactly once, and nothing else fired',
          passed: once === expected && twice === 0 && other === 0,
          detail: `${once} once, ${twice} more than once, ${expected - fired} never, ${other} other levels`,
        },
        ...(apart
          ? [
              {
                name: 'with the worker in its own process too, each first level fired exactly once',
                passed: apart.once === apart.expected && apart.twice === 0 && apart.other === 0,
                detail: `${apart.once} once of ${apart.expected}, ${apart.twice} more than once, ${apart.other} other levels`,
              },
            ]
          : []),
        {
          name: 'stock BullMQ ran each job exactly once',
          passed: [baseline, concurrent, working, spread, slowClock].every(
            (r) => r === undefined || (r.report.processed === jobs && r.report.repeated === 0),
          ),
        },
      ],
    };
  } finally {
    await stock?.stop();
    client.disconnect();
    await redis.stop();
  }
}

interface SinergiRun {
  ctx: BenchContext;
  redis: BenchRedis;
  client: Redis;
  topologyFile: string;
  escalationFile: string;
  incidents: number;
  windowMs: number;
  firstWaitSeconds: number;
  /** Each run on the shared Redis has its own key prefix: its own accounts, incidents and queue. */
  prefix: string;
  /** Run the escalation worker in a process of its own (ESCALATION_WORKER=off on the server). */
  workerProcess: boolean;
}

async function runSinergi(run: SinergiRun) {
  const { ctx, client, prefix, incidents, windowMs, firstWaitSeconds } = run;
  const label = run.workerProcess ? 'Sinergi, worker in its own process' : 'Sinergi';
  const generators: ReturnType<typeof startGenerator>[] = [];
  const processes: { stop(): Promise<void> }[] = [];
  try {
    const facilities = await facilitiesOf(run.topologyFile);
    const accounts: BenchAccount[] = facilities.map((f) => ({
      username: `op.${f.id}`,
      role: 'operator',
      unitId: f.id,
    }));
    const password = await seedAccounts(run.redis.url, run.topologyFile, accounts, prefix);
    const env = serverEnv(run.redis, {
      REDIS_KEY_PREFIX: prefix,
      TOPOLOGY_FILE: run.topologyFile,
      ESCALATION_FILE: run.escalationFile,
      // Distinct incidents: a place (Lapas, category, block) is raised again only after its dedup window.
      DEDUP_WINDOW_SECONDS: '1',
      RAISE_RATE_PER_MINUTE: '10000000',
      ...(run.workerProcess && { ESCALATION_WORKER: 'off' }),
    });
    // The baselines (and an earlier run) have filled the append-only file with data since deleted; left so,
    // Redis would rewrite it, forking and copying, at some point of this run and not of another.
    await compactAppendOnlyFile(client);
    const server = await startServerProcess(env, serverNodeArgs());
    processes.push(server);
    const worker = run.workerProcess ? await startWorkerProcess(env) : undefined;
    if (worker) processes.push(worker);
    const firing = worker?.child ?? server.child;
    const tokens = await loginAll(server.url, accounts, password);
    await connectRaisers(generators, server.url, facilities, tokens, 1, GENERATORS);
    // What else shares the two cores while levels fire.
    const others = [
      { name: 'socket Redis', pid: run.redis.socketPid },
      ...(worker ? [{ name: 'server', pid: server.child.pid }] : []),
      ...generators.map((g, i) => ({ name: `raise generator ${i + 1}`, pid: g.child.pid })),
    ];
    const cpuOfOthers = () => Promise.all(others.map(async (o) => (await cpuSecondsOf(o.pid)) ?? Number.NaN));
    const raisedFrom = Date.now();
    const reports = await Promise.all(
      generators.map((g) =>
        g.request<StepReport>(
          'step',
          {
            rate: incidents / (windowMs / 1000) / GENERATORS,
            durationMs: windowMs,
            settleMs: 10_000,
            attachShare: 0,
            retryShare: 0,
            severity: 4,
          },
          windowMs + 60_000,
        ),
      ),
    );
    const opened = reports.reduce((n, r) => n + r.opened, 0);
    const raiseAck = distribution(reports.flatMap((r) => r.latencies));
    ctx.log(
      `${label}: raised ${opened} incidents over ${windowMs / 1000} s (raise-ack ${fmt(raiseAck)}); first levels fall due ${firstWaitSeconds} s after each`,
    );

    const dueStart = raisedFrom + firstWaitSeconds * 1000;
    const dueEnd = dueStart + windowMs;
    await new Promise((r) => setTimeout(r, Math.max(0, dueStart - Date.now())));
    const cpuFrom = await cpuSecondsOf(firing.pid);
    const redisCpuFrom = await cpuSecondsOf(run.redis.pid);
    const othersFrom = await cpuOfOthers();
    // The levels have fired once the change counter, past the window, has stood still for QUIET_MS. (It counts
    // commits, and one commit may carry both chains' levels, so its final value is not known beforehand.)
    // The CPU is read at its last move; the check below reads every timeline for levels missing or repeated.
    const settleBy = dueEnd + 30_000;
    let seen = -1;
    let movedAt = Date.now();
    let cpuTo: number | undefined;
    let redisCpuTo: number | undefined;
    let othersTo: number[] = [];
    while (Date.now() < settleBy) {
      const seq = Number(await client.get(`${prefix}incidents:change-seq`));
      if (seq !== seen) {
        seen = seq;
        movedAt = Date.now();
        [cpuTo, redisCpuTo, othersTo] = await Promise.all([
          cpuSecondsOf(firing.pid),
          cpuSecondsOf(run.redis.pid),
          cpuOfOthers(),
        ]);
      } else if (Date.now() > dueEnd && Date.now() - movedAt >= QUIET_MS) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const firingSeconds = (movedAt - dueStart) / 1000;
    // A second firing of any level would show up in this extra second.
    await new Promise((r) => setTimeout(r, 1000));

    const ids = await client.zrange(`${prefix}incidents:all`, '0', '-1');
    const pipeline = client.pipeline();
    for (const id of ids) pipeline.xrange(`${prefix}{inc:${id}}:events`, '-', '+');
    const firedCount = new Map<string, number>();
    const lateness: number[] = [];
    const byDue: { dueMs: number; lateMs: number }[] = [];
    let other = 0;
    for (const [, rows] of (await pipeline.exec()) ?? []) {
      for (const [, fields] of rows as [string, string[]][]) {
        const event = JSON.parse(fields[1] ?? 'null') as IncidentEvent;
        if (event.type !== 'escalated') continue;
        if (event.data.level !== 1) other++;
        const key = `${event.incidentId}/${event.data.chain}/${event.data.level}`;
        firedCount.set(key, (firedCount.get(key) ?? 0) + 1);
        lateness.push(event.data.lateMs);
        byDue.push({ dueMs: Date.parse(event.data.dueAt), lateMs: event.data.lateMs });
      }
    }
    // Lateness that grows through the window means the engine fires slower than levels fall due.
    byDue.sort((a, b) => a.dueMs - b.dueMs);
    const tenths = Array.from({ length: 10 }, (_, i) =>
      round(
        distribution(
          byDue
            .slice(Math.floor((i * byDue.length) / 10), Math.floor(((i + 1) * byDue.length) / 10))
            .map((x) => x.lateMs),
        ).p50,
        0,
      ),
    );
    ctx.log(`${label}: lateness p50 by tenth of the due window: ${tenths.join(' ')} ms`);
    const d = distribution(lateness);
    const expected = ids.length * 2;
    const cpuSeconds = (cpuTo ?? Number.NaN) - (cpuFrom ?? Number.NaN);
    const serverCores = cpuSeconds / firingSeconds;
    const cpuMsPerLevel = (cpuSeconds * 1000) / Math.max(1, lateness.length);
    const redisCores = ((redisCpuTo ?? Number.NaN) - (redisCpuFrom ?? Number.NaN)) / firingSeconds;
    const othersCores = othersTo.map((to, i) => round((to - (othersFrom[i] ?? Number.NaN)) / firingSeconds));
    ctx.log(
      `${label}: ${firedCount.size} of ${expected} first levels fired: lateness ${fmt(d)}; ` +
        `${run.workerProcess ? 'worker' : 'server'} CPU ${round(serverCores)} cores over the ${round(firingSeconds, 1)} s ` +
        `from first due to last fired, ${round(cpuMsPerLevel)} ms per level fired; store Redis CPU ${round(redisCores)} cores; ` +
        `the rest (cores): ${others.map((o, i) => `${o.name} ${othersCores[i]}`).join(', ')}`,
    );
    return {
      d,
      expected,
      once: [...firedCount.values()].filter((n) => n === 1).length,
      twice: [...firedCount.values()].filter((n) => n > 1).length,
      fired: firedCount.size,
      other,
      ids,
      opened,
      raiseAck,
      serverCores,
      cpuMsPerLevel,
    };
  } finally {
    await Promise.allSettled(generators.map((g) => g.stop()));
    for (const p of processes.reverse()) await p.stop();
  }
}

/** Rewrites the append-only file now, as it would be on a freshly started store, and waits for it. */
async function compactAppendOnlyFile(client: Redis) {
  const rewriting = async () =>
    /aof_rewrite_(in_progress|scheduled):1/.test(await client.info('persistence'));
  while (await rewriting()) await new Promise((r) => setTimeout(r, 100));
  await client.bgrewriteaof();
  while (await rewriting()) await new Promise((r) => setTimeout(r, 100));
}

/** How late a BZPOPMIN on an empty key returns after its timeout, on an otherwise idle Redis. */
async function probeBlockingTimeout(client: Redis) {
  const blocking = client.duplicate();
  try {
    const overshoot: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      await blocking.bzpopmin(`bench:probe:${randomUUID()}`, '0.05');
      overshoot.push(performance.now() - started - 50);
    }
    const [, hz] = (await client.config('GET', 'hz')) as [string, string];
    return { overshoot: distribution(overshoot), hz: Number(hz) };
  } finally {
    blocking.disconnect();
  }
}
