/**
 * Fan-out: N consoles spread over the default topology's units, alerts raised at R per second from each
 * Lapas's operator console; raise → `alert:new` latency at every entitled console, every delivery checked
 * against `routeIncident`. The bare Socket.IO baseline runs the same consoles, alerts, payloads and rooms on
 * the same machine in the same run, the two taking turns round by round.
 *
 * Decisions, so the figures can be read:
 * - Alerts go to random Lapas, blocks, categories and severities, so some join an active incident
 *   (deduplication). Those are delivered as `alert:new` too, to the incident's parties, and are measured
 *   and checked like the rest; their entitlement is the route of the highest severity committed to the
 *   incident so far, in the order the server reports (each raise's acknowledgement carries `seq`).
 * - Settings changed from production defaults, for the run only: RAISE_RATE_PER_MINUTE, because one account
 *   per Lapas raises R/12 per second, far above a person's pace (the login rate limit stays on: each unit's
 *   account logs in once and its consoles share the token); ESCALATION_WORKER=off, because a chain that
 *   climbs widens who is owed an alert — timers are still scheduled for every alert as in production, and
 *   the escalation scenario measures them firing.
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
import { loadBenchTopology, startSinergi } from '../lib/sinergi.ts';
import { round } from '../lib/stats.ts';
import { bareSystem, payloadBytesMedian, sinergiSystem, startBareServer } from '../lib/systems.ts';

const TARGET_P99_MS = 50;
const TARGET_RATIO = 1.5;

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const load = fanOutLoad(ctx);
  const topology = await loadBenchTopology();
  const alerts = planAlerts(topology, load);
  const settings = fanOutSettings(topology, load);
  ctx.log(
    `${load.consoles} consoles, ${alerts.length} alerts at ${load.rate}/s in ${load.rounds} round(s) each`,
  );

  // Everything under test and every generator starts at once; whatever started is stopped below.
  const fleet = startFleet(load.generators);
  const [stacked, bared] = await Promise.allSettled([
    startSinergi(ctx, { name: 'fan-out', env: settings, extraNodeArgs: serverNodeArgs() }),
    startBareServer(),
  ]);
  const stack = stacked.status === 'fulfilled' ? stacked.value : undefined;
  const bareServer = bared.status === 'fulfilled' ? bared.value : undefined;
  try {
    const failure = [stacked, bared].find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
    if (!stack || !bareServer) throw new Error('Sinergi or the baseline did not start');
    const sinergi = sinergiSystem('Sinergi', stack, {
      alerts,
      consoles: assignConsoles(topology, load.consoles),
      urlOf: () => stack.servers[0]?.url ?? '',
      client: load.client,
    });
    const bare = bareSystem('bare', topology, {
      url: bareServer.url,
      pid: bareServer.pid,
      consoles: assignConsoles(topology, load.consoles, load.consoles),
      client: load.client,
      replay: sinergi.delivered,
    });
    await attach(ctx, fleet, sinergi);
    await attach(ctx, fleet, bare);
    const runs = await compareInRounds(ctx, fleet, [sinergi, bare], alerts);
    const s = runs.get('Sinergi');
    const b = runs.get('bare');
    if (!s || !b) throw new Error('a system did not run');
    ctx.log(describeRun('Sinergi', s));
    ctx.log(describeRun('bare', b));

    const ratio = s.latency.p99 / b.latency.p99;
    const byRound = roundRatios(s, b);
    return {
      scenario: 'fan-out',
      summary:
        `${load.consoles} consoles, ${load.rate} alerts/s for ${load.durationMs / 1000} s, ` +
        `${stack.processesPerServer} server processes: p50 ${round(s.latency.p50)} ms p95 ${round(s.latency.p95)} ms p99 ${round(s.latency.p99)} ms ` +
        `max ${round(s.latency.max)} ms over ${s.delivered} deliveries; ` +
        `bare p99 ${round(b.latency.p99)} ms; ratio ${round(ratio)}× (${describeRatios(byRound)})`,
      figures: {
        consoles: load.consoles,
        serverProcesses: stack.processesPerServer,
        ratePerSecond: load.rate,
        durationSeconds: load.durationMs / 1000,
        rounds: load.rounds,
        consoleGenerators: load.generators,
        consoleClient: load.client,
        redisAppendfsync: stack.appendfsync,
        ...settings,
        payloadBytesMedian: payloadBytesMedian(sinergi.delivered),
        alertsRaised: s.raised,
        alertsCommitted: s.committed,
        sentRatePerSecond: round(s.sentRate, 1),
        deliveries: s.delivered,
        deliveriesPerAlert: round(s.delivered / Math.max(1, s.committed), 1),
        p50Ms: round(s.latency.p50),
        p95Ms: round(s.latency.p95),
        p99Ms: round(s.latency.p99),
        maxMs: round(s.latency.max),
        roundP99sMs: s.roundP99s.map((p) => round(p)).join(' / '),
        lastConsoleP50Ms: round(s.lastConsole.p50),
        lastConsoleP99Ms: round(s.lastConsole.p99),
        raiseAckP50Ms: round(s.raiseAck.p50),
        raiseAckP99Ms: round(s.raiseAck.p99),
        ...Object.fromEntries(
          Object.entries(s.phases).flatMap(([name, d]) => [
            [`${name}P50Ms`, round(d.p50)],
            [`${name}P99Ms`, round(d.p99)],
          ]),
        ),
        bareP50Ms: round(b.latency.p50),
        bareP95Ms: round(b.latency.p95),
        bareP99Ms: round(b.latency.p99),
        bareMaxMs: round(b.latency.max),
        bareRoundP99sMs: b.roundP99s.map((p) => round(p)).join(' / '),
        bareDeliveries: b.delivered,
        p99RatioToBare: round(ratio),
        p99RatioToBareByRound: byRound.each.map((x) => round(x)).join(' / '),
        p99RatioToBareRoundMedian: round(byRound.median),
        ...cpuFigures('', s),
        ...cpuFigures('bare', b),
      },
      targets: [
        {
          name: 'fan-out p99',
          target: `≤ ${TARGET_P99_MS} ms`,
          measured: `${round(s.latency.p99)} ms`,
          met: s.latency.p99 <= TARGET_P99_MS,
        },
        {
          name: 'p99 against the bare Socket.IO baseline',
          target: `≤ ${TARGET_RATIO}×`,
          measured: `${round(ratio)}× (${round(s.latency.p99)} / ${round(b.latency.p99)} ms)`,
          met: ratio <= TARGET_RATIO,
        },
      ],
      checks: [...deliveryChecks('Sinergi', s), ...deliveryChecks('bare baseline', b)],
    };
  } finally {
    await detachAll(fleet);
    await Promise.allSettled([fleet.stop(), stack?.stop(), bareServer?.stop()]);
  }
}
