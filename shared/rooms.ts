import type { Role } from './roles.ts';
import type { Unit } from './topology.ts';

/** Socket.IO room names; every fan-out in Sinergi targets one of these. */
export const rooms = {
  unit: (unit: Pick<Unit, 'type' | 'id'>) => `${unit.type}:${unit.id}`,
  /** Members of one role in one unit, e.g. the security chiefs of a Lapas paged by escalation. */
  role: (unitId: string, role: Role) => `role:${unitId}:${role}`,
  /** Every socket of one user, so a disabled account can be disconnected on every process. */
  user: (userId: string) => `user:${userId}`,
  /**
   * Every socket of one login (a session): what a logout or a replayed refresh token ends, and the consoles a
   * silent raise must not alarm, whichever socket that login reconnects on.
   */
  session: (sessionId: string) => `session:${sessionId}`,
  incident: (incidentId: string) => `incident:${incidentId}`,
} as const;

/** The rooms a console joins on connect. */
export function roomsForMember(
  unit: Pick<Unit, 'type' | 'id'>,
  role: Role,
  userId: string,
  sessionId: string,
): string[] {
  return [rooms.unit(unit), rooms.role(unit.id, role), rooms.user(userId), rooms.session(sessionId)];
}
