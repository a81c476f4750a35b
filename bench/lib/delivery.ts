import type { ConsoleClient, ConsoleReceipts, ConsoleSpec } from '../load/consoles.ts';
import type { RaiseOutcome, RaiserSpec, ScheduledRaise } from '../load/raiser.ts';
import { type CpuWindow, cpuShares, cpuSnapshot, cpuWindow } from './cpu.ts';
import type { PlannedAlert } from './fan-out-load.ts';
import { startGenerator } from './processes.ts';
import type { BenchContext } from './results.ts';
import { type Distribution, distribution, round, wallNow } from './stats.ts';

type Generator = ReturnType<typeof startGenerator>;

/** The load generator processes of a scenario: console holders and one raiser, reused by every round. */
export interface Fleet {
  consoles: Generator[];
  raiser: Generator;
  stop(): Promise<void>;
}

export function startFleet(generators: number): Fleet {
  const consoles = Array.from({ length: generators }, () => startGenerator('bench/load/consoles.ts', {}));
  const raiser = startGenerator('bench/load/raiser.ts', {});
  return {
    consoles,
    raiser,
    stop: async () => {
      await Promise.allSettled([...consoles, raiser].map((g) => g.stop()));
    },
  };
}

/** One system under test, as the fleet drives it: Sinergi in some set-up, or the bare baseline. */
export interface DeliverySystem {
  name: string;
  client: ConsoleClient;
  /** Keys unique across every system attached to the same fleet. */
  consoles: (ConsoleSpec & { unitId: string })[];
  raisers: RaiserSpec[];
  event: string;
  /** The processes under test by role (`server`, `redis`), for the CPU account. */
  pids: Record<string, (number | undefined)[]>;
  /** What the raiser sends for one round's alerts. */
  schedule(alerts: PlannedAlert[]): ScheduledRaise[];
  /** After a round: the units owed each of its committed alerts. */
  entitlement(outcomes: RaiseOutcome[]): Map<number, ReadonlySet<string>>;
  ackOk(ack: unknown): boolean;
  ackError(ack: unknown): string;
  /**
   * Where the time of each alert went, when the server says: durations in milliseconds, from the outcomes,
   * the round's origin (`wallNow()` clock) and each alert's first arrival at a console (after the origin).
   */
  phases?(
    outcomes: RaiseOutcome[],
    origin: number,
    firstArrival: Map<number, number>,
  ): Record<string, number[]>;
}

/** Opens a system's consoles (spread over the generators) and raisers; throws if any could not connect. */
export async function attach(ctx: BenchContext, fleet: Fleet, system: DeliverySystem): Promise<void> {
  const started = Date.now();
  const gens = fleet.consoles;
  const replies = await Promise.all(
    gens.map((gen, g) =>
      gen.request<{ connected: number; failed: number; errors: Record<string, number> }>('connect', {
        consoles: system.consoles.filter((_, i) => i % gens.length === g),
        client: system.client,
      }),
    ),
  );
  const failed = replies.reduce((sum, r) => sum + r.failed, 0);
  if (failed > 0) {
    const errors = replies.map((r) => JSON.stringify(r.errors)).join(' ');
    throw new Error(
      `${system.name}: ${failed} of ${system.consoles.length} consoles could not connect: ${errors}`,
    );
  }
  await fleet.raiser.request('connect', { raisers: system.raisers });
  ctx.log(
    `${system.name}: ${system.consoles.length} consoles and ${system.raisers.length} raisers connected in ${Date.now() - started} ms`,
  );
}

/** Closes every console and raiser of every system. */
export async function detachAll(fleet: Fleet): Promise<void> {
  await Promise.allSettled([...fleet.consoles, fleet.raiser].map((g) => g.request('close')));
}

/** What one round of one system measured, kept raw so rounds can be pooled. */
export interface RoundResult {
  latencies: number[];
  lastConsole: number[];
  raiseAck: number[];
  phases: Record<string, number[]>;
  raised: number;
  committed: number;
  failedRaises: Record<string, number>;
  expected: number;
  delivered: number;
  missing: number;
  misdelivered: number;
  duplicates: number;
  unreadable: number;
  dropped: { key: number; reason: string }[];
  sentSpanMs: number;
  cpu: CpuWindow;
  outcomes: RaiseOutcome[];
  /** What consoles of other systems received during this turn: late, in their own system. */
  strays: Late[];
  /** What consoles received after the previous turn's report, found as this turn began. */
  lateBefore: Late[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One measured round: raise the round's alerts on schedule, wait until every expected delivery arrived (or
 * arrivals stop), then check every receipt of every console the fleet holds against the entitlement.
 */
export async function measureRound(
  fleet: Fleet,
  system: DeliverySystem,
  alerts: PlannedAlert[],
): Promise<RoundResult> {
  const origin = wallNow();
  const lateBefore = await collectLate(fleet, origin);
  const roles = {
    ...system.pids,
    consoles: fleet.consoles.map((g) => g.child.pid),
    raiser: [fleet.raiser.child.pid],
  };
  const before = await cpuSnapshot(roles);
  const { outcomes } = await fleet.raiser.request<{ outcomes: RaiseOutcome[] }>('run', {
    set: system.name,
    event: system.event,
    origin,
    schedule: system.schedule(alerts),
    ackTimeoutMs: 10_000,
  });
  const entitlement = system.entitlement(outcomes);
  const consolesOfUnit = new Map<string, number>();
  for (const c of system.consoles) consolesOfUnit.set(c.unitId, (consolesOfUnit.get(c.unitId) ?? 0) + 1);
  let expected = 0;
  for (const units of entitlement.values()) for (const u of units) expected += consolesOfUnit.get(u) ?? 0;

  // Bounded: until everything expected arrived, or nothing arrived for 3 s, or 30 s passed.
  const drainStarted = Date.now();
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const counts = await Promise.all(fleet.consoles.map((g) => g.request<{ received: number }>('counts')));
    const total = counts.reduce((s, c) => s + c.received, 0);
    if (total !== last) {
      last = total;
      lastChange = Date.now();
    }
    if (total >= expected || Date.now() - lastChange > 3000 || Date.now() - drainStarted > 30_000) break;
    await sleep(50);
  }
  const cpu = cpuWindow(before, await cpuSnapshot(roles));
  // Anything sent where it should not go has had time to arrive too.
  await sleep(250);
  const reports = await Promise.all(
    fleet.consoles.map((g) =>
      g.request<{
        consoles: ConsoleReceipts[];
        unreadable: number;
        dropped: { key: number; reason: string }[];
      }>('report'),
    ),
  );
  return { ...analyse(system, outcomes, entitlement, reports, expected, origin), cpu, lateBefore };
}

/** Receipts that came after the last report, by console, as every console starts counting afresh. */
async function collectLate(fleet: Fleet, origin: number): Promise<Late[]> {
  const resets = await Promise.all(
    fleet.consoles.map((g) => g.request<{ late: Late[] }>('reset', { origin })),
  );
  return resets.flatMap((r) => r.late);
}

/** Alerts a console received after its round was reported: delivered late, or again. */
interface Late {
  key: number;
  count: number;
}

// How long after the last round receipts are still watched for: past a redelivery of a change whose delivery
// note fell overdue (REDELIVER_AFTER_MS, 5 s by default), the way an overloaded server once sent alerts twice.
const LATE_WATCH_MS = 6000;

function analyse(
  system: DeliverySystem,
  outcomes: RaiseOutcome[],
  entitlement: Map<number, ReadonlySet<string>>,
  reports: { consoles: ConsoleReceipts[]; unreadable: number; dropped: { key: number; reason: string }[] }[],
  expected: number,
  origin: number,
): Omit<RoundResult, 'cpu' | 'lateBefore'> {
  const sentAt = new Map(outcomes.map((o) => [o.index, o.sentAt]));
  const unitOf = new Map(system.consoles.map((c) => [c.key, c.unitId]));
  const owed = new Map<string, number>();
  for (const units of entitlement.values()) for (const u of units) owed.set(u, (owed.get(u) ?? 0) + 1);

  const latencies: number[] = [];
  const lastArrival = new Map<number, number>();
  const firstArrival = new Map<number, number>();
  let misdelivered = 0;
  let duplicates = 0;
  let missing = 0;
  let delivered = 0;
  const strays: Late[] = [];
  const reported = new Set<number>();
  for (const report of reports) {
    for (const receipts of report.consoles) {
      const unit = unitOf.get(receipts.key);
      // A console of another system hears nothing in this one's turn: what it gets is late, in its own system.
      if (unit === undefined) {
        if (receipts.alerts.length > 0) strays.push({ key: receipts.key, count: receipts.alerts.length });
        continue;
      }
      reported.add(receipts.key);
      const seen = new Set<number>();
      receipts.alerts.forEach((index, j) => {
        if (!entitlement.get(index)?.has(unit)) misdelivered++;
        else if (seen.has(index)) duplicates++;
        else {
          seen.add(index);
          const at = receipts.at[j] ?? Number.NaN;
          const latency = at - (sentAt.get(index) ?? Number.NaN);
          latencies.push(latency);
          lastArrival.set(index, Math.max(lastArrival.get(index) ?? Number.NEGATIVE_INFINITY, latency));
          firstArrival.set(index, Math.min(firstArrival.get(index) ?? Number.POSITIVE_INFINITY, at));
        }
      });
      delivered += seen.size;
      missing += (owed.get(unit) ?? 0) - seen.size;
    }
  }
  // A console no generator reported any more missed everything it was owed.
  for (const c of system.consoles) if (!reported.has(c.key)) missing += owed.get(c.unitId) ?? 0;

  const failedRaises: Record<string, number> = {};
  for (const o of outcomes) {
    if (system.ackOk(o.ack)) continue;
    const reason = system.ackError(o.ack);
    failedRaises[reason] = (failedRaises[reason] ?? 0) + 1;
  }
  const sent = outcomes.map((o) => o.sentAt + o.lagMs);
  const keys = new Set(system.consoles.map((c) => c.key));
  return {
    latencies,
    lastConsole: [...lastArrival.values()],
    raiseAck: outcomes.map((o) => o.ackAt - o.sentAt),
    phases: system.phases?.(outcomes, origin, firstArrival) ?? {},
    raised: outcomes.length,
    committed: entitlement.size,
    failedRaises,
    expected,
    delivered,
    missing,
    misdelivered,
    duplicates,
    unreadable: reports.reduce((s, r) => s + r.unreadable, 0),
    dropped: reports.flatMap((r) => r.dropped.filter((d) => keys.has(d.key))),
    sentSpanMs: sent.length > 1 ? Math.max(...sent) - Math.min(...sent) : 0,
    outcomes,
    strays,
  };
}

/** A system's rounds pooled: every latency of every round in one distribution. */
export interface DeliveryRun {
  latency: Distribution;
  /** Raise → `alert:new` at the last entitled console of each alert. */
  lastConsole: Distribution;
  raiseAck: Distribution;
  phases: Record<string, Distribution>;
  raised: number;
  committed: number;
  failedRaises: Record<string, number>;
  expected: number;
  delivered: number;
  missing: number;
  misdelivered: number;
  duplicates: number;
  unreadable: number;
  dropped: number;
  dropReasons: Record<string, number>;
  /** Raises actually sent per second while raising. */
  sentRate: number;
  /** Share of one core each role used while raising and delivering (100 = one core); `other` the rest. */
  cpu: Record<string, number>;
  /** The p99 of each round on its own, to show how steady the figure is. */
  roundP99s: number[];
  /** Alerts received after their round was reported, up to LATE_WATCH_MS after the last: late or again. */
  late: number;
  /** The raiser's worst lag behind its schedule (latency counts from when each raise was due). */
  raiserLagMaxMs: number;
}

export function pool(rounds: RoundResult[]): DeliveryRun {
  const sum = (f: (r: RoundResult) => number) => rounds.reduce((s, r) => s + f(r), 0);
  const failedRaises: Record<string, number> = {};
  for (const r of rounds) {
    for (const [reason, n] of Object.entries(r.failedRaises))
      failedRaises[reason] = (failedRaises[reason] ?? 0) + n;
  }
  const phaseNames = new Set(rounds.flatMap((r) => Object.keys(r.phases)));
  const dropped = new Map<number, string>();
  for (const r of rounds) for (const d of r.dropped) if (!dropped.has(d.key)) dropped.set(d.key, d.reason);
  const dropReasons: Record<string, number> = {};
  for (const reason of dropped.values()) dropReasons[reason] = (dropReasons[reason] ?? 0) + 1;
  const spanSeconds = sum((r) => r.sentSpanMs) / 1000;
  return {
    latency: distribution(rounds.flatMap((r) => r.latencies)),
    lastConsole: distribution(rounds.flatMap((r) => r.lastConsole)),
    raiseAck: distribution(rounds.flatMap((r) => r.raiseAck)),
    phases: Object.fromEntries(
      [...phaseNames].map((name) => [name, distribution(rounds.flatMap((r) => r.phases[name] ?? []))]),
    ),
    raised: sum((r) => r.raised),
    committed: sum((r) => r.committed),
    failedRaises,
    expected: sum((r) => r.expected),
    delivered: sum((r) => r.delivered),
    missing: sum((r) => r.missing),
    misdelivered: sum((r) => r.misdelivered),
    duplicates: sum((r) => r.duplicates),
    unreadable: sum((r) => r.unreadable),
    dropped: dropped.size,
    dropReasons,
    sentRate: spanSeconds > 0 ? (sum((r) => r.raised) - rounds.length) / spanSeconds : 0,
    cpu: cpuShares(rounds.map((r) => r.cpu)),
    roundP99s: rounds.map((r) => distribution(r.latencies).p99),
    late: 0,
    raiserLagMaxMs: rounds.reduce((m, r) => r.outcomes.reduce((n, o) => Math.max(n, o.lagMs), m), 0),
  };
}

/**
 * Runs the systems in turn, one round each, for every round of the plan; returns each system's pooled
 * figures. Every system stays connected throughout, so turns switch without reconnecting. With `rotate`, the
 * order turns by one system each round, so that none always runs in what the one before it leaves behind
 * (its timers, a redelivery sweep, a rewrite of its store once quiet); without, a system that replays what
 * another delivered in the same round (the bare baseline) can follow it.
 */
export async function compareInRounds(
  ctx: BenchContext,
  fleet: Fleet,
  systems: DeliverySystem[],
  alerts: PlannedAlert[],
  options: { rotate?: boolean } = {},
): Promise<Map<string, DeliveryRun>> {
  const rounds = Math.max(...alerts.map((a) => a.round)) + 1;
  const results = new Map<string, RoundResult[]>(systems.map((s) => [s.name, []]));
  // Every receipt after its round's report is charged to the system of the console that got it, whatever
  // turn it came in: a copy sent twice, or sent late, seconds behind.
  const ownerOf = new Map(systems.flatMap((s) => s.consoles.map((c) => [c.key, s.name] as const)));
  const late = new Map(systems.map((s) => [s.name, 0]));
  const charge = (entries: Late[], turn: RoundResult | undefined) => {
    for (const { key, count } of entries) {
      const owner = ownerOf.get(key);
      if (owner !== undefined) late.set(owner, (late.get(owner) ?? 0) + count);
      else if (turn) turn.misdelivered += count;
    }
  };
  // Whatever consoles heard before the first round (connecting, warming up) is not a round's.
  await collectLate(fleet, wallNow());
  for (let round = 0; round < rounds; round++) {
    const slice = alerts.filter((a) => a.round === round);
    const shift = options.rotate ? round : 0;
    const turns = systems.map((_, i) => systems[(i + shift) % systems.length] as DeliverySystem);
    for (const system of turns) {
      const result = await measureRound(fleet, system, slice);
      charge([...result.lateBefore, ...result.strays], result);
      results.get(system.name)?.push(result);
      const d = distribution(result.latencies);
      ctx.log(
        `round ${round + 1}/${rounds} ${system.name}: p50 ${d.p50.toFixed(1)} ms p99 ${d.p99.toFixed(1)} ms, ` +
          `${result.delivered}/${result.expected} delivered, CPU outside the bench ${Math.round(((result.cpu.seconds.other ?? 0) / result.cpu.wallSeconds) * 100)}%`,
      );
      // Let the last round's garbage and timers settle before the next system's turn.
      await sleep(500);
    }
  }
  await sleep(LATE_WATCH_MS);
  charge(await collectLate(fleet, wallNow()), undefined);
  return new Map([...results].map(([name, rs]) => [name, { ...pool(rs), late: late.get(name) ?? 0 }]));
}

/** The correctness checks of a system's run; a failure fails the bench run. */
export function deliveryChecks(label: string, run: DeliveryRun) {
  const failures = Object.keys(run.failedRaises).length;
  return [
    {
      name: `${label}: every raise acknowledged ok`,
      passed: failures === 0 && run.committed === run.raised,
      detail: `${run.committed}/${run.raised}${failures ? ` ${JSON.stringify(run.failedRaises)}` : ''}`,
    },
    {
      name: `${label}: every entitled console got every alert`,
      passed: run.missing === 0 && run.delivered === run.expected,
      detail: `${run.delivered}/${run.expected} delivered, ${run.missing} missing`,
    },
    {
      name: `${label}: no console got an alert it is not entitled to`,
      passed: run.misdelivered === 0 && run.unreadable === 0,
      detail: `${run.misdelivered} misdelivered, ${run.unreadable} unreadable`,
    },
    {
      name: `${label}: each delivery exactly once`,
      passed: run.duplicates === 0,
      detail: `${run.duplicates} duplicates`,
    },
    {
      name: `${label}: nothing arrives after its round (a late delivery, or a copy)`,
      passed: run.late === 0,
      detail: `${run.late} late`,
    },
    {
      name: `${label}: no console dropped`,
      passed: run.dropped === 0,
      detail: run.dropped ? JSON.stringify(run.dropReasons) : '0 dropped',
    },
  ];
}

/** `{ <prefix>CpuServerPct: 93, … }`: each role's share of one core during the run, for the figures. */
export function cpuFigures(prefix: string, run: DeliveryRun): Record<string, number> {
  return Object.fromEntries(
    Object.entries(run.cpu).map(([role, use]) => [
      `${prefix}${prefix ? 'Cpu' : 'cpu'}${role[0]?.toUpperCase()}${role.slice(1)}Pct`,
      use,
    ]),
  );
}

/**
 * One system's p99 against another's, round by round. The two take turns within each round, so a round's
 * ratio compares like with like; the p99 of the pooled rounds is decided by the worst round of either, and
 * a host whose loopback networking stalls for one round (seen: a baseline round at 0.75 s between two at
 * 60-80 ms) swings it either way. The median of the rounds' ratios is the steadier figure.
 */
export function roundRatios(run: DeliveryRun, against: DeliveryRun): { each: number[]; median: number } {
  const each = run.roundP99s.map((p, i) => p / (against.roundP99s[i] ?? Number.NaN));
  return { each, median: distribution(each).p50 };
}

/** How `roundRatios` reads in a summary line. */
export const describeRatios = (r: { each: number[]; median: number }) =>
  `by round ${r.each.map((x) => round(x)).join(' / ')}, median ${round(r.median)}×`;

export function describeRun(label: string, run: DeliveryRun): string {
  const cpu = Object.entries(run.cpu)
    .map(([role, use]) => `${role} ${use}%`)
    .join(', ');
  const phases = Object.entries(run.phases)
    .map(([name, d]) => `${name} p50 ${d.p50.toFixed(1)} p99 ${d.p99.toFixed(1)} ms`)
    .join(', ');
  return (
    `${label}: p50 ${run.latency.p50.toFixed(1)} ms p99 ${run.latency.p99.toFixed(1)} ms max ${run.latency.max.toFixed(1)} ms ` +
    `(rounds' p99 ${run.roundP99s.map((p) => p.toFixed(1)).join(' / ')}), raise ack p50 ${run.raiseAck.p50.toFixed(1)} ms; ` +
    `${run.delivered}/${run.expected} delivered; raiser lag at most ${run.raiserLagMaxMs.toFixed(1)} ms; ` +
    `CPU ${cpu}${phases ? `; ${phases}` : ''}`
  );
}
