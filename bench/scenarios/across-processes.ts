/**
 * Across processes: two Sinergi server processes on one Redis, consoles split between them in turn, every
 * alert raised on the first, so half the deliveries cross through the Redis adapter's stream. Measured
 * against one process holding every console, in the same run with the same alerts, the two set-ups taking
 * turns round by round. The workload and the run-only settings are the fan-out scenario's (see fan-out.ts).
 * Each of those servers runs one process (SERVER_PROCESSES=1), as two hosts would: what the target measures
 * is the Redis adapter carrying broadcasts between processes. A third set-up, taking its turn in the same
 * rounds, is `npm start` with SERVER_PROCESSES=2: two server processes behind one port, every console
 * connecting to it — the figure that decides how many processes `auto` runs.
 */
import {
  attach,
  compareInRounds,
  cpuFigures,
  deliveryChecks,
  describeRatios,
  describeRun,
  detachAll,
  roundRatios,
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
    // They start at once; whichever started is stopped below even if another failed.
    const started = await Promise.allSettled([
      startSinergi(ctx, { ...options, name: 'one-process' }),
      startSinergi(ctx, { ...options, name: 'two-processes', processes: 2 }),
      startSinergi(ctx, { ...options, env: { ...settings, SERVER_PROCESSES: '2' }, name: 'one-port' }),
    ]);
    for (const s of started) if (s.status === 'fulfilled') stacks.push(s.value);
    const failure = started.find((s) => s.status === 'rejected');
    if (failure) throw failure.reason;
    const [single, pair, port] = stacks;
    if (!single || !pair || !port) throw new Error('a set-up did not start');
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
    const shared = sinergiSystem('two processes on one port', port, {
      alerts,
      consoles: assignConsoles(topology, load.consoles, 2 * load.consoles),
      urlOf: () => port.servers[0]?.url ?? '',
      client: load.client,
    });
    await attach(ctx, fleet, one);
    await attach(ctx, fleet, two);
    await attach(ctx, fleet, shared);
    const runs = await compareInRounds(ctx, fleet, [one, two, shared], alerts, { rotate: true });
    const s = runs.get(one.name);
    const p = runs.get(two.name);
    const o = runs.get(shared.name);
    if (!s || !p || !o) throw new Error('a set-up did not run');
    ctx.log(describeRun(one.name, s));
    ctx.log(describeRun(two.name, p));
    ctx.log(describeRun(shared.name, o));

    const ratio = p.latency.p99 / s.latency.p99;
    const sharedRatio = o.latency.p99 / s.latency.p99;
    const [byRound, sharedByRound] = [roundRatios(p, s), roundRatios(o, s)];
    return {
      scenario: 'across-processes',
      summary:
        `${load.consoles} consoles, ${load.rate} alerts/s for ${load.durationMs / 1000} s: two processes ` +
        `p50 ${round(p.latency.p50)} ms p99 ${round(p.latency.p99)} ms; one process p50 ${round(s.latency.p50)} ms ` +
        `p99 ${round(s.latency.p99)} ms; ratio ${round(ratio)}× (${describeRatios(byRound)}); two on one port ` +
        `(SERVER_PROCESSES=2) p50 ${round(o.latency.p50)} ms p99 ${round(o.latency.p99)} ms, ${round(sharedRatio)}× ` +
        `one process (${describeRatios(sharedByRound)})`,
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
        p99RatioTwoToOneRoundMedian: round(byRound.median),
        onePortP50Ms: round(o.latency.p50),
        onePortP99Ms: round(o.latency.p99),
        onePortRoundP99sMs: o.roundP99s.map((v) => round(v)).join(' / '),
        p99RatioOnePortToOne: round(sharedRatio),
        p99RatioOnePortToOneRoundMedian: round(sharedByRound.median),
        ...cpuFigures('one', s),
        ...cpuFigures('two', p),
        ...cpuFigures('onePort', o),
      },
      targets: [
        {
          name: 'two processes p99 against one process',
          target: `≤ ${TARGET_RATIO}×`,
          measured: `${round(ratio)}× (${round(p.latency.p99)} / ${round(s.latency.p99)} ms)`,
          met: ratio <= TARGET_RATIO,
        },
      ],
      checks: [
        ...deliveryChecks('one process', s),
        ...deliveryChecks('two processes', p),
        ...deliveryChecks('two processes on one port', o),
      ],
    };
  } finally {
    await detachAll(fleet);
    await Promise.allSettled([fleet.stop(), ...stacks.map((s) => s.stop())]);
  }
}
