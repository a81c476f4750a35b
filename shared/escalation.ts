import { z } from 'zod';
import { Category } from './categories.ts';
import { CommandRef } from './command-ref.ts';
import { Role } from './roles.ts';
import { rooms } from './rooms.ts';
import { Severity } from './severity.ts';
import { Agency, Slug, type TopologyIndex } from './topology.ts';

/** One chain of command per agency; each climbs on its own until that agency acknowledges. */
export const Chain = Agency;
export type Chain = Agency;
export const chains: readonly Chain[] = ['corrections', 'police'];

/**
 * Who a level notifies, relative to the incident's Lapas, so one policy serves every Lapas:
 * its facility, its primary or backup precincts, the Nth command above the facility or above the primary
 * precinct, or a fixed unit. With `role`, only that role's members of the unit are paged.
 */
export const EscalationTarget = z
  .object({
    scope: z.enum([
      'facility',
      'primary_precinct',
      'backup_precincts',
      'facility_command',
      'precinct_command',
      'unit',
    ]),
    depth: z.number().int().min(1).max(6).optional(),
    unitId: Slug.optional(),
    role: Role.optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    const needsDepth = t.scope === 'facility_command' || t.scope === 'precinct_command';
    if (needsDepth !== (t.depth !== undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['depth'],
        message: needsDepth ? 'required for a command scope' : 'only for command scopes',
      });
    if ((t.scope === 'unit') !== (t.unitId !== undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['unitId'],
        message: t.scope === 'unit' ? 'required for scope "unit"' : 'only for scope "unit"',
      });
  });
export type EscalationTarget = z.infer<typeof EscalationTarget>;

export const EscalationLevel = z
  .object({
    label: z.string().trim().min(1).max(120),
    notify: z.array(EscalationTarget).min(1),
    /** How long this level waits for an acknowledgement before the next level fires. */
    waitSeconds: z.number().min(0.05).max(86_400).optional(),
    /** Reminders to this level while it waits. */
    repeatSeconds: z.number().min(0.05).max(86_400).optional(),
  })
  .strict();
export type EscalationLevel = z.infer<typeof EscalationLevel>;

export const ChainPolicy = z
  .object({ levels: z.array(EscalationLevel).min(1).max(8) })
  .strict()
  .superRefine((chain, ctx) => {
    chain.levels.forEach((level, i) => {
      if (i < chain.levels.length - 1 && level.waitSeconds === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['levels', i, 'waitSeconds'],
          message: 'required: a later level follows',
        });
    });
  });
export type ChainPolicy = z.infer<typeof ChainPolicy>;

export const EscalationPolicy = z
  .object({
    id: Slug,
    description: z.string().max(500).optional(),
    match: z
      .object({ severities: z.array(Severity).min(1), categories: z.array(Category).min(1).optional() })
      .strict(),
    chains: z.object({ corrections: ChainPolicy, police: ChainPolicy }).strict(),
  })
  .strict();
export type EscalationPolicy = z.infer<typeof EscalationPolicy>;

export const EscalationConfig = z
  .object({ policies: z.array(EscalationPolicy).min(1) })
  .strict()
  .superRefine((config, ctx) => {
    for (const severity of [1, 2, 3, 4]) {
      if (!config.policies.some((p) => p.match.severities.includes(severity) && !p.match.categories)) {
        ctx.addIssue({
          code: 'custom',
          path: ['policies'],
          message: `no policy for severity ${severity} without a category`,
        });
      }
    }
    const ids = new Set<string>();
    config.policies.forEach((p, i) => {
      if (ids.has(p.id))
        ctx.addIssue({ code: 'custom', path: ['policies', i, 'id'], message: `duplicate policy "${p.id}"` });
      ids.add(p.id);
    });
  });
export type EscalationConfig = z.infer<typeof EscalationConfig>;

/** A category-specific policy wins over the general one for the same severity. */
export function selectPolicy(
  config: EscalationConfig,
  severity: Severity,
  category: Category,
): EscalationPolicy {
  const bySeverity = config.policies.filter((p) => p.match.severities.includes(severity));
  const policy =
    bySeverity.find((p) => p.match.categories?.includes(category)) ??
    bySeverity.find((p) => !p.match.categories);
  if (!policy) throw new Error(`no escalation policy for severity ${severity}`);
  return policy;
}

export const ChainStatus = z.enum(['running', 'acknowledged', 'held', 'stopped', 'exhausted']);
export type ChainStatus = z.infer<typeof ChainStatus>;

/**
 * One chain on one incident: where it stands and when it next climbs. Its levels are in the policy copied
 * when the incident opened (kept beside the incident, not in every copy of it sent to consoles).
 */
export const ChainState = z.object({
  level: z.number().int().nonnegative(),
  levelCount: z.number().int().positive(),
  /** Bumped by every ack, hold, resume, stop and reopen: the auditor repairs only a chain that did not move. */
  generation: z.number().int().positive(),
  status: ChainStatus,
  /** When the next level falls due, while running. */
  dueAt: z.iso.datetime().nullable(),
  /**
   * When the chain began waiting at its level, while running or exhausted: its reminder rounds count from
   * here. Absent from incidents stored before it was kept (see `waitStart`).
   */
  waitFrom: z.iso.datetime().optional(),
  heldUntil: z.iso.datetime().optional(),
});
export type ChainState = z.infer<typeof ChainState>;

export const EscalationState = z.object({
  policyId: Slug,
  chains: z.object({ corrections: ChainState, police: ChainState }),
});
export type EscalationState = z.infer<typeof EscalationState>;

/** The policy as copied onto an incident when it opens: later config edits never touch it. */
export const EscalationSnapshot = z.object({
  policyId: Slug,
  chains: z.object({ corrections: ChainPolicy, police: ChainPolicy }),
});
export type EscalationSnapshot = z.infer<typeof EscalationSnapshot>;

// The same policy always gives the same snapshot object, so whatever is derived from one (its stored text
// and hash) is derived once.
const snapshots = new WeakMap<EscalationPolicy, EscalationSnapshot>();

export function snapshotOf(policy: EscalationPolicy): EscalationSnapshot {
  let snapshot = snapshots.get(policy);
  if (!snapshot) {
    snapshot = { policyId: policy.id, chains: policy.chains };
    snapshots.set(policy, snapshot);
  }
  return snapshot;
}

const addSeconds = (at: string, seconds: number) => new Date(Date.parse(at) + seconds * 1000).toISOString();

/** A chain waiting at `level` from `at`: running towards the next level, or exhausted at the top. */
export function waitingAt(
  levels: readonly EscalationLevel[],
  level: number,
  at: string,
): Pick<ChainState, 'status' | 'dueAt' | 'waitFrom'> {
  const wait = levels[level]?.waitSeconds;
  return level + 1 < levels.length && wait !== undefined
    ? { status: 'running', dueAt: addSeconds(at, wait), waitFrom: at }
    : { status: 'exhausted', dueAt: null, waitFrom: at };
}

export function initialChains(snapshot: EscalationSnapshot, at: string): EscalationState {
  const start = (levels: EscalationLevel[]): ChainState => ({
    level: 0,
    levelCount: levels.length,
    generation: 1,
    ...waitingAt(levels, 0, at),
  });
  return {
    policyId: snapshot.policyId,
    chains: {
      corrections: start(snapshot.chains.corrections.levels),
      police: start(snapshot.chains.police.levels),
    },
  };
}

const repeatMs = (levels: readonly EscalationLevel[], level: number) => {
  const seconds = levels[level]?.repeatSeconds;
  return seconds ? Math.round(seconds * 1000) : undefined;
};

/**
 * When a chain began waiting at its level. An incident stored before `waitFrom` was kept counts from the
 * climb's due time less the wait, or, at the top level, from `fallbackMs` (its last change).
 */
export function waitStart(chain: ChainState, levels: readonly EscalationLevel[], fallbackMs: number): number {
  if (chain.waitFrom) return Date.parse(chain.waitFrom);
  const wait = levels[chain.level]?.waitSeconds;
  return chain.dueAt !== null && wait !== undefined ? Date.parse(chain.dueAt) - wait * 1000 : fallbackMs;
}

/**
 * When a chain waiting at its level since `waitFromMs` is next paged again after `afterMs`; undefined when it
 * is not. Rounds fall every `repeatSeconds` counted from the start of the wait, so a late round never pushes
 * the later ones back, and rounds missed while no worker ran are not all sent at once. A level is never
 * reminded at or after the moment the chain climbs past it, since the next level's page supersedes it (with
 * the default waits and repeats, 30 s and 15 s, the second reminder would land on the escalation itself).
 */
export function nextReminderAt(
  chain: ChainState,
  levels: readonly EscalationLevel[],
  waitFromMs: number,
  afterMs: number,
): number | undefined {
  const every = repeatMs(levels, chain.level);
  if (!every) return undefined;
  const at = waitFromMs + (Math.max(0, Math.floor((afterMs - waitFromMs) / every)) + 1) * every;
  if (chain.status === 'running' && chain.dueAt !== null && at >= Date.parse(chain.dueAt)) return undefined;
  return at;
}

/** When a chain next needs its incident's timer; `climb` when the chain moves then (a climb, a hold's end). */
export interface ChainWake {
  at: number;
  climb: boolean;
}

/**
 * When a chain next needs its incident's timer after `afterMs`: the level's next reminder round, else the
 * climb, or the end of a hold; undefined for a chain that waits for nothing.
 */
export function nextWake(
  chain: ChainState,
  levels: readonly EscalationLevel[],
  waitFromMs: number,
  afterMs: number,
): ChainWake | undefined {
  if (chain.status === 'held')
    return chain.heldUntil ? { at: Date.parse(chain.heldUntil), climb: true } : undefined;
  if (chain.status !== 'running' && chain.status !== 'exhausted') return undefined;
  const reminder = nextReminderAt(chain, levels, waitFromMs, afterMs);
  if (reminder !== undefined) return { at: reminder, climb: false };
  return chain.status === 'running' && chain.dueAt !== null
    ? { at: Date.parse(chain.dueAt), climb: true }
    : undefined;
}

/** What the escalation timer reads of an incident. */
export interface Escalating {
  escalation: EscalationState;
  updatedAt: string;
}

/** When one chain of an incident next needs the incident's timer. */
export interface ChainNeed extends ChainWake {
  chain: Chain;
}

/**
 * When each chain of an incident next needs its timer after `afterMs` (see nextWake), leaving out the chains
 * that wait for nothing: what the timer must wake for, and what the auditor checks it against.
 */
export function chainNeeds(incident: Escalating, policy: EscalationSnapshot, afterMs: number): ChainNeed[] {
  return chains.flatMap((chain) => {
    const c = incident.escalation.chains[chain];
    const levels = policy.chains[chain].levels;
    const wake = nextWake(c, levels, waitStart(c, levels, Date.parse(incident.updatedAt)), afterMs);
    return wake ? [{ chain, ...wake }] : [];
  });
}

/**
 * An incident's one timer (see IncidentTimerJob): when it next wakes after `afterMs`, at the earliest of its
 * chains' climbs, hold ends and reminder rounds; undefined when no chain waits for anything.
 */
export function incidentWake(
  incident: Escalating,
  policy: EscalationSnapshot,
  afterMs: number,
): ChainWake | undefined {
  let next: ChainWake | undefined;
  for (const { at, climb } of chainNeeds(incident, policy, afterMs))
    if (!next || at < next.at || (at === next.at && climb)) next = { at, climb };
  return next;
}

/** What an incident's timer has to do when it wakes. */
export interface DueOnWake {
  /** Running chains whose climb has come. */
  climbs: Chain[];
  /** Held chains whose hold has run out. */
  resumes: Chain[];
  /** Waiting levels to page again, each with the latest round that fell due since the timer was set. */
  rounds: { chain: Chain; level: number; round: number }[];
}

/**
 * What an incident's timer, set to wake at `plannedMs`, has to do on waking at `nowMs`, decided on the
 * incident as it is then, so a timer that wakes late, early, twice, or after the chains moved on does only
 * what is due: climb the chains whose climb has come, resume those whose hold has run out, and page each
 * other waiting level once for the rounds that fell due since the timer was set (one page, not a burst, for
 * rounds missed while no worker ran). A level that climbs now is not paged: the next level's page supersedes
 * it.
 */
export function dueOnWake(
  incident: Escalating,
  policy: EscalationSnapshot,
  plannedMs: number,
  nowMs: number,
): DueOnWake {
  const due: DueOnWake = { climbs: [], resumes: [], rounds: [] };
  for (const chain of chains) {
    const c = incident.escalation.chains[chain];
    if (c.status === 'held') {
      if (c.heldUntil && Date.parse(c.heldUntil) <= nowMs) due.resumes.push(chain);
      continue;
    }
    if (c.status === 'running' && c.dueAt !== null && Date.parse(c.dueAt) <= nowMs) {
      due.climbs.push(chain);
      continue;
    }
    if (c.status !== 'running' && c.status !== 'exhausted') continue;
    const levels = policy.chains[chain].levels;
    const every = repeatMs(levels, c.level);
    if (!every) continue;
    const from = waitStart(c, levels, Date.parse(incident.updatedAt));
    const round = Math.floor((nowMs - from) / every);
    if (round >= 1 && from + round * every >= plannedMs) due.rounds.push({ chain, level: c.level, round });
  }
  return due;
}

/** The units a level makes parties to the incident, and the rooms it pages. */
export function resolveTargets(
  topology: TopologyIndex,
  facilityId: string,
  targets: readonly EscalationTarget[],
): { units: string[]; rooms: string[] } {
  const facility = topology.facility(facilityId);
  if (!facility) return { units: [], rooms: [] };
  const units = new Set<string>();
  const paged = new Set<string>();
  for (const target of targets) {
    const found: string[] = (() => {
      switch (target.scope) {
        case 'facility':
          return [facility.id];
        case 'primary_precinct':
          return [facility.primaryPrecinct];
        case 'backup_precincts':
          return facility.backupPrecincts.map((b) => b.unitId);
        case 'facility_command':
          return topology
            .commandChain(facility.id)
            .slice((target.depth ?? 1) - 1, target.depth)
            .map((c) => c.id);
        case 'precinct_command':
          return topology
            .commandChain(facility.primaryPrecinct)
            .slice((target.depth ?? 1) - 1, target.depth)
            .map((c) => c.id);
        case 'unit':
          return target.unitId && topology.unit(target.unitId) ? [target.unitId] : [];
      }
    })();
    for (const id of found) {
      const unit = topology.unit(id);
      if (!unit) continue;
      units.add(id);
      paged.add(target.role ? rooms.role(id, target.role) : rooms.unit(unit));
    }
  }
  return { units: [...units], rooms: [...paged] };
}

/**
 * The BullMQ job of an incident's one escalation timer: it wakes at the earliest of its chains' climbs, hold
 * ends and reminder rounds, does what is then due on the incident as it is, and sets itself for the next.
 * Parsed on arrival, so a poisoned job fails for good.
 */
export const IncidentTimerJob = z.object({
  incidentId: z.uuid(),
  /** When it was set to wake: the reminder rounds due from then on are paged when it does. */
  at: z.iso.datetime(),
});
export type IncidentTimerJob = z.infer<typeof IncidentTimerJob>;

/**
 * A chain's timer as versions before the incident timer stored it: when one runs, it sets its incident's
 * timer for the moment the chain began waiting (so a reminder round it woke for is not lost), and ends.
 */
export const ChainTimerJob = z.object({
  incidentId: z.uuid(),
  chain: Chain,
  level: z.number().int().positive(),
  generation: z.number().int().positive(),
  dueAt: z.iso.datetime().nullable(),
  waitFrom: z.iso.datetime(),
});

/** The end of a hold as versions before the incident timer stored it; run like ChainTimerJob. */
export const ResumeJob = z.object({
  incidentId: z.uuid(),
  chain: Chain,
  generation: z.number().int().positive(),
  dueAt: z.iso.datetime(),
});

export const HoldEscalation = z
  .object({
    incidentId: z.uuid(),
    chain: Chain,
    /** Up to four hours; the chain resumes by itself at the end. */
    durationSeconds: z
      .number()
      .int()
      .min(1)
      .max(4 * 3600),
    reason: z.string().trim().min(1).max(500),
    clientRef: CommandRef.optional(),
  })
  .strict();

export const EscalationFired = z.object({
  incidentId: z.string(),
  seq: z.number().int(),
  chain: Chain,
  level: z.number().int(),
  label: z.string(),
  targets: z.object({ units: z.array(Slug), rooms: z.array(z.string()) }),
  dueAt: z.iso.datetime(),
  firedAt: z.iso.datetime(),
});

export const EscalationReminder = z.object({
  incidentId: z.string(),
  seq: z.number().int(),
  chain: Chain,
  level: z.number().int(),
  round: z.number().int(),
});
