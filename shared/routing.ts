import { rooms } from './rooms.ts';
import type { Severity } from './severity.ts';
import type { TopologyIndex, Unit } from './topology.ts';

export interface Route {
  facilityId: string;
  precincts: string[];
  commands: string[];
  /** Every unit above, facility first: the incident's parties at raise. */
  parties: string[];
}

/**
 * Who hears of an incident at raise: the Lapas's control room, its primary precinct (and backups from their
 * severity), and the commands above both whose threshold the severity reaches — never anyone else.
 */
export function routeIncident(topology: TopologyIndex, facilityId: string, severity: Severity): Route {
  const facility = topology.facility(facilityId);
  if (!facility) throw new Error(`routeIncident: "${facilityId}" is not a facility`);
  const precincts = [
    facility.primaryPrecinct,
    ...facility.backupPrecincts
      .filter((b) => b.atRaiseFromSeverity !== null && severity >= b.atRaiseFromSeverity)
      .map((b) => b.unitId),
  ];
  const commands = new Set<string>();
  for (const unitId of [facilityId, ...precincts]) {
    for (const command of topology.commandChain(unitId)) {
      if (command.atRaiseFromSeverity !== null && severity >= command.atRaiseFromSeverity)
        commands.add(command.id);
    }
  }
  return { facilityId, precincts, commands: [...commands], parties: [facilityId, ...precincts, ...commands] };
}

/** The socket rooms of a set of party units. */
export function partyRooms(topology: TopologyIndex, parties: readonly string[]): string[] {
  return parties.flatMap((id) => {
    const unit: Unit | undefined = topology.unit(id);
    return unit ? [rooms.unit(unit)] : [];
  });
}

/** Whether a user may see an incident: their unit is a party, or they administer the system. */
export function isParty(
  user: { role: string; unitId: string },
  incident: { parties: readonly string[] },
): boolean {
  return user.role === 'admin' || incident.parties.includes(user.unitId);
}

/** Parties in a stable order without repeats; routing is monotonic in severity, so a union is a re-route. */
export function mergeParties(current: readonly string[], added: readonly string[]): string[] {
  return [...new Set([...current, ...added])];
}
