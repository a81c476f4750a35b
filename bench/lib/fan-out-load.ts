import { randomUUID } from 'node:crypto';
import { categories } from '../../shared/categories.ts';
import type { RaiseAlertInput } from '../../shared/incident.ts';
import type { Severity } from '../../shared/severity.ts';
import type { TopologyIndex } from '../../shared/topology.ts';
import type { ConsoleClient } from '../load/consoles.ts';
import type { BenchContext } from './results.ts';

/** The fan-out workload: how many consoles, how many alerts per second, for how long. */
export interface FanOutLoad {
  consoles: number;
  rate: number;
  /** Raising time of each system under test, in total over all rounds. */
  durationMs: number;
  /**
   * The systems compared take turns, a round each, so a disturbance from outside the bench (the machine is
   * shared) falls on both alike.
   */
  rounds: number;
  /** Console generator processes (1–2: they share the machine's two cores with the server). */
  generators: number;
  /** How consoles speak Socket.IO (see bench/load/consoles.ts); BENCH_CLIENT=socket.io-client for the library. */
  client: ConsoleClient;
}

const positive = (name: string) => {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value > 0 ? value : undefined;
};

/**
 * Defaults from the benchmark issue (2,000 consoles, 100 alerts/s; 30 s, in three rounds); BENCH_CONSOLES,
 * BENCH_RATE, BENCH_DURATION_S and BENCH_ROUNDS override them.
 */
export function fanOutLoad(ctx: BenchContext, quick: Partial<FanOutLoad> = {}): FanOutLoad {
  const consoles = Math.round(positive('BENCH_CONSOLES') ?? (ctx.quick ? (quick.consoles ?? 300) : 2000));
  return {
    consoles,
    rate: positive('BENCH_RATE') ?? 100,
    durationMs: (positive('BENCH_DURATION_S') ?? (ctx.quick ? (quick.durationMs ?? 4000) / 1000 : 30)) * 1000,
    rounds: Math.round(positive('BENCH_ROUNDS') ?? (ctx.quick ? (quick.rounds ?? 1) : 3)),
    generators: consoles > 500 ? 2 : 1,
    client: process.env.BENCH_CLIENT === 'socket.io-client' ? 'socket.io-client' : 'wire',
  };
}

export interface PlannedAlert {
  index: number;
  facilityId: string;
  category: (typeof categories)[number];
  block: string;
  severity: Severity;
  /** When to raise it, from the start of its round. */
  offsetMs: number;
  round: number;
}

/** A small seeded generator, so every run (and every system compared) raises the same alerts. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(random: () => number, items: readonly T[]): T => {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
};

export function facilityIds(topology: TopologyIndex): string[] {
  return topology.topology.units.flatMap((u) => (u.type === 'facility' ? [u.id] : []));
}

/**
 * Alerts for random Lapas, blocks, categories and severities (1–4 alike), evenly spaced at `rate` per
 * second, split into the load's rounds.
 */
export function planAlerts(topology: TopologyIndex, load: FanOutLoad, seed = 20_240_601): PlannedAlert[] {
  const random = seededRandom(seed);
  const facilities = topology.topology.units.flatMap((u) => (u.type === 'facility' ? [u] : []));
  const count = Math.round((load.rate * load.durationMs) / 1000);
  const perRound = Math.ceil(count / load.rounds);
  return Array.from({ length: count }, (_, index) => {
    const facility = pick(random, facilities);
    return {
      index,
      facilityId: facility.id,
      category: pick(random, categories),
      block: pick(random, facility.blocks).id,
      severity: (1 + Math.floor(random() * 4)) as Severity,
      offsetMs: ((index % perRound) * 1000) / load.rate,
      round: Math.floor(index / perRound),
    };
  });
}

/** The `alert:raise` payload of a planned alert; its description carries the index the consoles report. */
export function raisePayload(alert: PlannedAlert): RaiseAlertInput {
  return {
    clientRef: randomUUID(),
    facilityId: alert.facilityId,
    category: alert.category,
    severity: alert.severity,
    location: { block: alert.block },
    description: `Bench #${alert.index}: laporan ${alert.category} di blok ${alert.block}, petugas meminta bantuan`,
  };
}

/** Consoles spread evenly over every unit of the topology, in turn; `firstKey` keeps systems' keys apart. */
export function assignConsoles(
  topology: TopologyIndex,
  count: number,
  firstKey = 0,
): { key: number; unitId: string }[] {
  const units = topology.topology.units;
  return Array.from({ length: count }, (_, i) => ({
    key: firstKey + i,
    unitId: units[i % units.length]?.id ?? '',
  }));
}

/**
 * Settings a fan-out run changes from production defaults, for the run only (see scenarios/fan-out.ts):
 * each Lapas's one account raises rate/12 alerts a second, far above a person's pace, so the per-user raise
 * budget is twice the even share; no chain of command may climb during the run.
 */
export function fanOutSettings(topology: TopologyIndex, load: FanOutLoad): Record<string, string> {
  const perMinute = Math.ceil(((load.rate * 60) / facilityIds(topology).length) * 2);
  return { RAISE_RATE_PER_MINUTE: String(perMinute), ESCALATION_WORKER: 'off' };
}
