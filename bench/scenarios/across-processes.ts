/**
 * Across processes: two Sinergi server processes on one Redis, consoles split between them in turn, every
 * alert raised on the first, so half the deliveries cross through the Redis adapter's stream. Measured
 * against one process holding every console, in the same run with the same alerts, the two set-ups taking
 * turns round by round. The workload and the run-only settings are the fan-out scenario's (see fan-out.ts).
 * Each server runs one process (SERVER_PROCESSES=1), as two hosts would: what this measures is the Redis
 * adapter carrying broadcasts between processes, not `npm start`'s own processes sharing one port.
 */
import {
  attach,
  compareInRounds,
  cpuFigures,
  deliveryChecks,
  describeRun,
  detachAll,
  startFleet,
} from '../lib/delivery.ts';
import { assignConsoles, fanOutLoad, fanOutSettings, planAlerts } from '../lib/fan-out-load.ts';
import { serverNodeArgs } from '../lib/processes.ts';
import type { BenchContext, ScenarioResult } from '../lib/results.ts';
import { loadBenchTopology, type SinergiStack, startSinergi } from '../lib/sinergi.ts';
import { round } from '../lib/stats.ts';
import { sinergiSystem } from '../lib/systems.ts';

const TARGET_RATIO = 2;

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const load = fanOutLoad(ctx, { consoles: 300, durationMs: 3000, rounds: 1 });
  const topology = await loadBenchTopology();
  const alerts = planAlerts(topology, load);
  const settings = fanOutSettings(topology, load);
  ctx.log(
    `${load.consoles} consoles, ${alerts.length} alerts at ${load.rate}/s in ${load.rounds} round(s) each`,
  );

  const fleet = startFleet(load.generators);
  const stacks: SinergiStack[] = [];
  try {
    const options = { env: { ...settings, SERVER_PROCESSES: '1' }, extraNodeArgs: serverNodeArgs() };
    // Both start at once; whichever started is stopped below even if the other failed.
    const started = await Promise.allSettled([
      startSinergi(ctx, { ...options, name: 'one-process' }),
      startSinergi(ctx, { ...options, name: 'two-processes', processes: 2 }),
    ]);
    for (const s of started) if (s.status === 'fulfilled') stacks.push(s.value);
    const failure = started.find((s) => s.status === 'rejected');
    if (failure) throw failure.reason;
    const [single, pair] = stacks;
    if (!single || !pair) throw new Error('a set-up did not start');
    const one = sinergiSystem('one process', single, {
      alerts,
      consoles: assignConsoles(topology, load.consoles),
      urlOf: () => single.servers[0]?.url ?? '',
      client: load.client,
    });
    const two = sinergiSystem('two processes', pair, {
      alerts,
      consoles: assignConsoles(topology, load.consoles, load.consoles),
      urlOf: (key) => pair.servers[key % pair.servers.length]?.url ?? '',
      client: load.client,
    });
    await attach(ctx, fleet, one);
    await attach(ctx, fleet, two);
    const runs = await compareInRounds(ctx, fleet, [one, two], alerts);
    const s = runs.get(one.name);
    const p = runs.get(two.name);
    if (!s || !p) throw new Error('a set-up did not run');
    ctx.log(describeRun(one.name, s));
    ctx.log(describeRun(two.name, p));

    const ratio = p.latency.p99 / s.latency.p99;
    return {
      scenario: 'across-processes',
      summary:
        `${load.consoles} consoles, ${load.rate} alerts/s for ${load.durationMs / 1000} s: two processes ` +
        `p50 ${round(p.latency.p50)} ms p99 ${round(p.latency.p99)} ms; one process p50 ${round(s.latency.p50)} ms ` +
        `p99 ${round(s.latency.p99)} ms; ratio ${round(ratio)}×`,
      figures: {
        consoles: load.consoles,
        ratePerSecond: load.rate,
        durationSeconds: load.durationMs / 1000,
        rounds: load.rounds,
        consoleClient: load.client,
        redisAppendfsync: single.appendfsync,
        ...settings,
        deliveries: p.delivered,
        twoP50Ms: round(p.latency.p50),
        twoP95Ms: round(p.latency.p95),
        twoP99Ms: round(p.latency.p99),
        twoMaxMs: round(p.latency.max),
        twoRoundP99sMs: p.roundP99s.map((v) => round(v)).join(' / '),
        oneP50Ms: round(s.latency.p50),
        oneP95Ms: round(s.latency.p95),
        oneP99Ms: round(s.latency.p99),
        oneMaxMs: round(s.latency.max),
        oneRoundP99sMs: s.roundP99s.map((v) => round(v)).join(' / '),
        p99RatioTwoToOne: round(ratio),
        ...cpuFigures('one', s),
        ...cpuFigures('two', p),
      },
      targets: [
        {
          name: 'two processes p99 against one process',
          target: `≤ ${TARGET_RATIO}×`,
          measured: `${round(ratio)}× (${round(p.latency.p99)} / ${round(s.latency.p99)} ms)`,
          met: ratio <= TARGET_RATIO,
        },
      ],
      checks: [...deliveryChecks('one process', s), ...deliveryChecks('two processes', p)],
    };
  } finally {
    await detachAll(fleet);
    await Promise.allSettled([fleet.stop(), ...stacks.map((s) => s.stop())]);
  }
}
