import { z } from 'zod';
import { agencyOf, type Unit } from './topology.ts';

export const roles = [
  'operator',
  'security_chief',
  'dispatcher',
  'commander',
  'supervisor',
  'admin',
] as const;
export const Role = z.enum(roles);
export type Role = z.infer<typeof Role>;

export const roleLabels: Record<Role, { id: string; en: string }> = {
  operator: {
    id: 'Petugas ruang kendali (Karupam, Komandan Jaga, Perwira Piket)',
    en: 'Control-room operator',
  },
  security_chief: { id: 'Ka. KPLP / Kasi Adm Kamtib', en: 'Security chief' },
  dispatcher: { id: 'Petugas piket Polsek', en: 'Precinct dispatcher' },
  commander: { id: 'Kapolsek / Kapolresta / Kapolda', en: 'Police commander' },
  supervisor: { id: 'Kalapas / Korwil / Kakanwil', en: 'Corrections supervisor' },
  admin: { id: 'Administrator', en: 'Administrator' },
};

/**
 * Which units a role can belong to. Operators and security chiefs work inside a Lapas, dispatchers in a
 * Polsek, commanders lead police units, supervisors lead corrections units (a Kalapas sits in the Lapas).
 */
export function roleFitsUnit(role: Role, unit: Unit): boolean {
  switch (role) {
    case 'operator':
    case 'security_chief':
      return unit.type === 'facility';
    case 'dispatcher':
      return unit.type === 'precinct';
    case 'commander':
      return agencyOf(unit) === 'police';
    case 'supervisor':
      return agencyOf(unit) === 'corrections';
    case 'admin':
      return true;
  }
}
