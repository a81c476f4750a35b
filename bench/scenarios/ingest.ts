import path from 'node:path';
import { Redis } from 'ioredis';
import { bringsAlert } from '../../server/storage/incidents.repository.ts';
import type { IncidentEvent } from '../../shared/incident.ts';
import { startBenchRedis } from '../lib/bench-redis.ts';
import { cpuSecondsOf, syscallsOf } from '../lib/cpu.ts';
import { serverNodeArgs, type startGenerator, startServerProcess } from '../lib/processes.ts';
import type { BenchContext, ScenarioResult } from '../lib/results.ts';
import {
  type BenchAccount,
  connectRaisers,
  facilitiesOf,
  loginAll,
  seedAccounts,
  serverEnv,
  writeBenchTopology,
} from '../lib/sinergi-setup.ts';
import { distribution, round } from '../lib/stats.ts';
import type { StepReport, StepRequest } from '../load/raise-generator.ts';

/**
 * Ingest: the highest alert rate Sinergi persists — idempotency record, dedup, sealed timeline event, indexes
 * and escalation timers, all through `alert:raise` over Socket.IO — while p99 raise-ack latency stays under
 * 100 ms. The rate is stepped up until a step misses; every answer is then checked against what Redis holds.
 */

const P99_LIMIT_MS = 100;
const TARGET_RATE = 3000;
const GENERATORS = 2;
const CONSOLES_PER_LAPAS = 2;
// Every (Lapas, category, block) place comes back only after all the others; with 100 blocks per Lapas and a
// 1 s dedup window a new raise opens a new incident up to well past 8,000 raises per second.
const BLOCKS_PER_LAPAS = 100;
const DEDUP_WINDOW_SECONDS = 1;
// Operators raise far faster here than the per-user production limit (120 a minute) allows.
const RAISE_RATE_PER_MINUTE = 10_000_000;
const MIX = { attachShare: 0.1, retryShare: 0.05 };
// A pace every machine of this kind keeps up with, for the cost of one raise.
const COST_RATE = 200;

interface StepFigures {
  rate: number;
  sent: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
  unanswered: number;
  passed: boolean;
  serverCpu: number;
  redisCpu: number;
  generatorCpu: number;
  generatorLagMs: number;
  /** Read and write system calls per raise sent. */
  serverSyscalls: number;
  redisSyscalls: number;
}

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const appendfsync = 'always' as const;
  // From well below the target, so the highest passing rate is found even far below it; the first step also
  // warms the server up.
  const rates = ctx.quick
    ? [100, 250, 500, 1000, 2000, 3000]
    : [100, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000];
  const stepMs = ctx.quick ? 2000 : 5000;

  const dataDir = path.join(ctx.tmpDir, 'ingest');
  const redis = await startBenchRedis(dataDir, appendfsync);
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  const generators: ReturnType<typeof startGenerator>[] = [];
  let server: Awaited<ReturnType<typeof startServerProcess>> | undefined;
  try {
    const topologyFile = await writeBenchTopology(ctx.tmpDir, BLOCKS_PER_LAPAS);
    const facilities = await facilitiesOf(topologyFile);
    const accounts: BenchAccount[] = facilities.map((f) => ({
      username: `op.${f.id}`,
      role: 'operator',
      unitId: f.id,
    }));
    const password = await seedAccounts(redis.url, topologyFile, accounts);
    server = await startServerProcess(
      serverEnv(redis, {
        TOPOLOGY_FILE: topologyFile,
        DEDUP_WINDOW_SECONDS: String(DEDUP_WINDOW_SECONDS),
        RAISE_RATE_PER_MINUTE: String(RAISE_RATE_PER_MINUTE),
      }),
      serverNodeArgs(),
    );
    const tokens = await loginAll(server.url, accounts, password);

    await connectRaisers(generators, server.url, facilities, tokens, CONSOLES_PER_LAPAS, GENERATORS);
    ctx.log(
      `${facilities.length} operator accounts, ${facilities.length * CONSOLES_PER_LAPAS} consoles in ${GENERATORS} generators; appendfsync ${appendfsync}`,
    );

    const steps: StepFigures[] = [];
    const totals = { stored: 0, opened: 0, duplicatesOk: 0, duplicatesWrong: 0, errors: 0, unanswered: 0 };
    // Every alert and new incident a raise was answered with, by id, to be found in the store.
    const acked = { alerts: new Set<string>(), incidents: new Set<string>() };
    const usage = () =>
      Promise.all([
        cpuSecondsOf(server?.child.pid),
        cpuSecondsOf(redis.pid),
        syscallsOf(server?.child.pid),
        syscallsOf(redis.pid),
      ]);
    const runStep = async (request: StepRequest) => {
      const reports = await Promise.all(
        generators.map((g) => g.request<StepReport>('step', request, request.durationMs + 30_000)),
      );
      for (const r of reports) {
        totals.stored += r.stored;
        totals.opened += r.opened;
        totals.duplicatesOk += r.duplicatesOk;
        totals.duplicatesWrong += r.duplicatesWrong;
        // Answered `unavailable` (the store's timeout) may have been stored all the same.
        totals.unanswered += r.unanswered + (r.errors.unavailable ?? 0);
        for (const id of r.storedAlertIds) acked.alerts.add(id);
        for (const id of r.openedIncidentIds) acked.incidents.add(id);
      }
      return reports;
    };

    // What one new critical incident costs, at a pace the server keeps up with: the figures to compare
    // before and after a change, steadier on a noisy host than any latency. Redis's own accounting
    // (INFO commandstats) gives its time in commands and how many it ran, scripts' inner calls included.
    const costRequest = (durationMs: number): StepRequest => ({
      rate: COST_RATE / GENERATORS,
      durationMs,
      settleMs: 10_000,
      attachShare: 0,
      retryShare: 0,
      severity: 4,
    });
    await runStep(costRequest(stepMs / 2));
    await client.config('RESETSTAT');
    const aofBefore = await aofBytes(client);
    const costBefore = await usage();
    const costReports = await runStep(costRequest(stepMs));
    const costAfter = await usage();
    const aofAfter = await aofBytes(client);
    const commandStats = parseCommandStats(await client.info('commandstats'));
    const raised = costReports.reduce((n, r) => n + r.stored, 0);
    const per = (value: number) => round(value / raised);
    const microsPer = (seconds: number) => Math.round((seconds * 1e6) / raised);
    const cost = {
      raises: raised,
      serverCpuUs: microsPer((costAfter[0] ?? 0) - (costBefore[0] ?? 0)),
      redisCpuUs: microsPer((costAfter[1] ?? 0) - (costBefore[1] ?? 0)),
      redisCommandUs: microsPer(commandStats.usec / 1e6),
      redisCalls: per(commandStats.calls),
      scripts: per(commandStats.byName.get('evalsha')?.calls ?? 0),
      timerJobs: per(commandStats.byName.get('hmset')?.calls ?? 0),
      serverSyscalls: per((costAfter[2] ?? 0) - (costBefore[2] ?? 0)),
      aofBytes: Math.round((aofAfter - aofBefore) / raised),
    };
    ctx.log(
      `a new critical incident at ${COST_RATE}/s (${raised} raises): server CPU ${cost.serverCpuUs} µs, Redis CPU ` +
        `${cost.redisCpuUs} µs of which ${cost.redisCommandUs} µs in commands; ${cost.redisCalls} Redis calls ` +
        `(${cost.scripts} scripts, ${cost.timerJobs} BullMQ jobs), ${cost.aofBytes} bytes appended to the store's ` +
        `append-only file; ${cost.serverSyscalls} server system calls`,
    );

    for (const rate of rates) {
      const request: StepRequest = { rate: rate / GENERATORS, durationMs: stepMs, settleMs: 10_000, ...MIX };
      const before = await usage();
      const reports = await runStep(request);
      const after = await usage();
      const d = distribution(reports.flatMap((r) => r.latencies));
      const errors = reports.reduce((n, r) => n + Object.values(r.errors).reduce((a, b) => a + b, 0), 0);
      const unanswered = reports.reduce((n, r) => n + r.unanswered, 0);
      totals.errors += errors;
      const seconds = stepMs / 1000;
      const used = (i: number) => (after[i] ?? Number.NaN) - (before[i] ?? Number.NaN);
      const cpu = (i: number) => used(i) / seconds;
      const sent = reports.reduce((n, r) => n + r.sent, 0);
      const figures: StepFigures = {
        rate,
        sent,
        p50: round(d.p50),
        p99: round(d.p99),
        max: round(d.max),
        errors,
        unanswered,
        passed: d.p99 < P99_LIMIT_MS && errors === 0 && unanswered === 0,
        serverCpu: round(cpu(0)),
        redisCpu: round(cpu(1)),
        generatorCpu: round(reports.reduce((n, r) => n + r.cpuSeconds, 0) / seconds),
        generatorLagMs: round(Math.max(...reports.map((r) => r.maxScheduleLagMs))),
        serverSyscalls: round(used(2) / sent),
        redisSyscalls: round(used(3) / sent),
      };
      steps.push(figures);
      const errorDetail = reports.map((r) => JSON.stringify(r.errors)).join(' ');
      ctx.log(
        `${rate}/s × ${seconds} s: ack p50 ${figures.p50} ms p99 ${figures.p99} ms max ${figures.max} ms; ` +
          `errors ${errors} ${errors ? errorDetail : ''}unanswered ${unanswered}; CPU cores: server ${figures.serverCpu}, ` +
          `redis ${figures.redisCpu}, generators ${figures.generatorCpu} (worst generator lag ${figures.generatorLagMs} ms); ` +
          `syscalls per raise: server ${figures.serverSyscalls}, redis ${figures.redisSyscalls} → ${figures.passed ? 'pass' : 'MISS'}`,
      );
      if (!figures.passed) break;
      // Let the timers and broadcasts of this step drain before the next one.
      await new Promise((r) => setTimeout(r, 500));
    }

    // What Redis holds must be exactly what was acknowledged: each alert is in the timeline event that brought it.
    const ids = await client.zrange('sng:incidents:all', '0', '-1');
    const pipeline = client.pipeline();
    for (const id of ids) pipeline.xrange(`sng:{inc:${id}}:events`, '-', '+');
    const timelines = ((await pipeline.exec()) ?? []).map(([, rows]) => rows as [string, string[]][]);
    const storedAlertIds = timelines.flat().flatMap(([, fields]) => {
      const event = JSON.parse(fields[1] ?? 'null') as IncidentEvent;
      return bringsAlert(event) ? [event.data.alert.id] : [];
    });
    const storedAlerts = storedAlertIds.length;
    const storedOnce = new Set(storedAlertIds);
    const lostAlerts = [...acked.alerts].filter((id) => !storedOnce.has(id)).length;
    // A raise left unanswered (its step over, or the store's timeout) may have been stored: never more of them
    // than there were.
    const unacknowledgedAlerts = [...storedOnce].filter((id) => !acked.alerts.has(id)).length;
    const storedIncidents = new Set(ids);
    const lostIncidents = [...acked.incidents].filter((id) => !storedIncidents.has(id)).length;
    const unacknowledgedIncidents = ids.filter((id) => !acked.incidents.has(id)).length;

    const best = steps.filter((s) => s.passed).at(-1);
    const bestRate = best?.rate ?? 0;
    const stepsText = steps.map((s) => `${s.rate}/s p99 ${s.p99} ms${s.passed ? '' : ' ✗'}`).join(', ');
    return {
      scenario: 'ingest',
      summary:
        `${bestRate} alerts/s persisted with raise-ack p99 < ${P99_LIMIT_MS} ms (appendfsync ${appendfsync}; ` +
        `steps ${stepsText}); a new incident costs the server ${cost.serverCpuUs} µs of CPU and Redis ${cost.redisCpuUs} µs ` +
        `(${cost.redisCalls} calls, ${cost.aofBytes} bytes of append-only file); Redis holds ${ids.length} incidents / ${storedAlerts} alerts = ${totals.opened} / ${totals.stored} acknowledged`,
      figures: {
        appendfsync,
        bestRate,
        stepSeconds: stepMs / 1000,
        raiseRatePerMinutePerUser: RAISE_RATE_PER_MINUTE,
        dedupWindowSeconds: DEDUP_WINDOW_SECONDS,
        attachShare: MIX.attachShare,
        retryShare: MIX.retryShare,
        consoles: facilities.length * CONSOLES_PER_LAPAS,
        ackedAlerts: totals.stored,
        ackedIncidents: totals.opened,
        storedAlerts,
        storedIncidents: ids.length,
        duplicatesAnswered: totals.duplicatesOk,
        ...Object.fromEntries(Object.entries(cost).map(([k, v]) => [`cost.${k}`, v])),
        ...Object.fromEntries(
          steps.flatMap((s) => [
            [`step${s.rate}.p50`, s.p50],
            [`step${s.rate}.p99`, s.p99],
            [`step${s.rate}.max`, s.max],
            [`step${s.rate}.serverCpu`, s.serverCpu],
            [`step${s.rate}.redisCpu`, s.redisCpu],
            [`step${s.rate}.generatorCpu`, s.generatorCpu],
            [`step${s.rate}.serverSyscalls`, s.serverSyscalls],
            [`step${s.rate}.redisSyscalls`, s.redisSyscalls],
          ]),
        ),
      },
      targets: [
        {
          name: 'alerts/s with raise-ack p99 < 100 ms',
          target: `≥ ${TARGET_RATE}`,
          measured: `${bestRate} (appendfsync ${appendfsync})`,
          met: bestRate >= TARGET_RATE,
        },
      ],
      checks: [
        {
          name: 'every acknowledged alert is stored, once, by its id',
          passed: lostAlerts === 0 && storedOnce.size === storedAlerts && acked.alerts.size === totals.stored,
          detail:
            `${acked.alerts.size} acknowledged, ${lostAlerts} of them not stored; ${storedAlerts} stored, ` +
            `${storedAlerts - storedOnce.size} twice`,
        },
        {
          name: 'every acknowledged new incident is stored, by its id',
          passed: lostIncidents === 0 && acked.incidents.size === totals.opened,
          detail: `${acked.incidents.size} acknowledged, ${lostIncidents} of them not stored`,
        },
        {
          name: 'nothing stored that was not acknowledged, beyond raises left unanswered',
          passed: unacknowledgedAlerts <= totals.unanswered && unacknowledgedIncidents <= totals.unanswered,
          detail: `${unacknowledgedAlerts} alerts and ${unacknowledgedIncidents} incidents stored unacknowledged, ${totals.unanswered} raises unanswered or answered unavailable`,
        },
        {
          name: 'a resent raise answers its original alert and stores nothing',
          passed: totals.duplicatesWrong === 0 && totals.duplicatesOk > 0,
          detail: `${totals.duplicatesOk} duplicates answered, ${totals.duplicatesWrong} wrong`,
        },
      ],
    };
  } finally {
    await Promise.allSettled(generators.map((g) => g.stop()));
    await server?.stop();
    client.disconnect();
    await redis.stop();
  }
}

/**
 * The store's append-only file size: what a change costs in fsync'd bytes and, in time, in rewrites. Every
 * rewrite runs while the store is quiet; none starts in the few seconds this is measured over.
 */
async function aofBytes(client: Redis) {
  return Number(/^aof_current_size:(\d+)/m.exec(await client.info('persistence'))?.[1] ?? Number.NaN);
}

/** Calls and microseconds per command from INFO commandstats, and their sums. */
function parseCommandStats(info: string) {
  const byName = new Map<string, { calls: number; usec: number }>();
  for (const [, name, calls, usec] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm))
    if (name) byName.set(name, { calls: Number(calls), usec: Number(usec) });
  const sum = (key: 'calls' | 'usec') => [...byName.values()].reduce((n, s) => n + s[key], 0);
  return { byName, calls: sum('calls'), usec: sum('usec') };
}
