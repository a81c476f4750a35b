import { z } from 'zod';
import { Severity } from './severity.ts';

export const Slug = z
  .string()
  .max(64)
  .regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'must be a lowercase slug such as lapas-permisan');

export const agencies = ['corrections', 'police'] as const;
export const Agency = z.enum(agencies);
export type Agency = z.infer<typeof Agency>;

/** Permenkumham 8/2024: sangat tinggi / tinggi / menengah / rendah. */
export const SecurityLevel = z.enum(['super_maximum', 'maximum', 'medium', 'minimum']);
export type SecurityLevel = z.infer<typeof SecurityLevel>;

const Names = {
  id: Slug,
  name: z.string().trim().min(1).max(200),
  shortName: z.string().trim().min(1).max(60),
};

export const Block = z.object({ id: Slug, name: z.string().trim().min(1).max(100) }).strict();

export const BackupPrecinct = z
  .object({
    unitId: Slug,
    /** Delivered at raise from this severity up; null: only when escalation reaches it. */
    atRaiseFromSeverity: Severity.nullable().default(null),
  })
  .strict();

export const FacilityUnit = z
  .object({
    ...Names,
    type: z.literal('facility'),
    securityLevel: SecurityLevel,
    capacity: z.number().int().positive().optional(),
    blocks: z.array(Block).min(1),
    /** The corrections command directly above the facility. */
    parent: Slug,
    primaryPrecinct: Slug,
    backupPrecincts: z.array(BackupPrecinct).default([]),
  })
  .strict();

export const PrecinctUnit = z
  .object({
    ...Names,
    type: z.literal('precinct'),
    /** The police command directly above the precinct. */
    parent: Slug,
  })
  .strict();

export const CommandUnit = z
  .object({
    ...Names,
    type: z.literal('command'),
    agency: Agency,
    parent: Slug.nullable().default(null),
    /** Incidents reach this command at raise from this severity up; null: only through escalation. */
    atRaiseFromSeverity: Severity.nullable().default(4),
  })
  .strict();

export const Unit = z.discriminatedUnion('type', [FacilityUnit, PrecinctUnit, CommandUnit]);
export type Unit = z.infer<typeof Unit>;
export type FacilityUnit = z.infer<typeof FacilityUnit>;
export type PrecinctUnit = z.infer<typeof PrecinctUnit>;
export type CommandUnit = z.infer<typeof CommandUnit>;
export type UnitType = Unit['type'];

export const Topology = z
  .object({
    name: z.string().trim().min(1).max(200),
    units: z.array(Unit).min(1),
  })
  .strict()
  .superRefine((topology, ctx) => {
    const byId = new Map<string, Unit>();
    topology.units.forEach((unit, i) => {
      if (byId.has(unit.id))
        ctx.addIssue({ code: 'custom', path: ['units', i, 'id'], message: `duplicate unit id "${unit.id}"` });
      byId.set(unit.id, unit);
    });
    const expect = (path: (string | number)[], id: string, ok: (u: Unit) => boolean, what: string) => {
      const target = byId.get(id);
      if (!target) ctx.addIssue({ code: 'custom', path, message: `unknown unit "${id}"` });
      else if (!ok(target)) ctx.addIssue({ code: 'custom', path, message: `"${id}" must be ${what}` });
    };
    const isCommandOf = (agency: Agency) => (u: Unit) => u.type === 'command' && u.agency === agency;

    topology.units.forEach((unit, i) => {
      if (unit.type === 'facility') {
        expect(['units', i, 'parent'], unit.parent, isCommandOf('corrections'), 'a corrections command');
        expect(
          ['units', i, 'primaryPrecinct'],
          unit.primaryPrecinct,
          (u) => u.type === 'precinct',
          'a precinct',
        );
        unit.backupPrecincts.forEach((b, j) => {
          const path = ['units', i, 'backupPrecincts', j, 'unitId'];
          expect(path, b.unitId, (u) => u.type === 'precinct', 'a precinct');
          if (b.unitId === unit.primaryPrecinct)
            ctx.addIssue({
              code: 'custom',
              path,
              message: 'a backup precinct cannot be the primary precinct',
            });
        });
        const blockIds = new Set<string>();
        unit.blocks.forEach((block, j) => {
          if (blockIds.has(block.id))
            ctx.addIssue({
              code: 'custom',
              path: ['units', i, 'blocks', j, 'id'],
              message: `duplicate block "${block.id}"`,
            });
          blockIds.add(block.id);
        });
      } else if (unit.type === 'precinct') {
        expect(['units', i, 'parent'], unit.parent, isCommandOf('police'), 'a police command');
      } else if (unit.parent !== null) {
        expect(['units', i, 'parent'], unit.parent, isCommandOf(unit.agency), `a ${unit.agency} command`);
      }
    });

    // A parent cycle would make every chain walk loop forever.
    topology.units.forEach((unit, i) => {
      const seen = new Set<string>([unit.id]);
      let next = byId.get(unit.id)?.parent ?? null;
      while (next !== null) {
        if (seen.has(next)) {
          ctx.addIssue({
            code: 'custom',
            path: ['units', i, 'parent'],
            message: `command chain of "${unit.id}" loops`,
          });
          return;
        }
        seen.add(next);
        next = byId.get(next)?.parent ?? null;
      }
    });
  });
export type Topology = z.infer<typeof Topology>;
export type TopologyInput = z.input<typeof Topology>;

export function agencyOf(unit: Unit): Agency {
  if (unit.type === 'facility') return 'corrections';
  if (unit.type === 'precinct') return 'police';
  return unit.agency;
}

/** A read-only view of a validated topology with O(1) look-ups. */
export interface TopologyIndex {
  readonly topology: Topology;
  unit(id: string): Unit | undefined;
  facility(id: string): FacilityUnit | undefined;
  /** The commands above a unit, nearest first. */
  commandChain(id: string): CommandUnit[];
}

export function indexTopology(topology: Topology): TopologyIndex {
  const byId = new Map(topology.units.map((u) => [u.id, u]));
  const chains = new Map<string, CommandUnit[]>();
  const commandChain = (id: string): CommandUnit[] => {
    const cached = chains.get(id);
    if (cached) return cached;
    const chain: CommandUnit[] = [];
    let next = byId.get(id)?.parent ?? null;
    while (next !== null) {
      const command = byId.get(next);
      if (command?.type !== 'command') break;
      chain.push(command);
      next = command.parent;
    }
    chains.set(id, chain);
    return chain;
  };
  return {
    topology,
    unit: (id) => byId.get(id),
    facility: (id) => {
      const unit = byId.get(id);
      return unit?.type === 'facility' ? unit : undefined;
    },
    commandChain,
  };
}
