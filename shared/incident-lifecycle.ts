import type { Status } from './incident.ts';
import type { Role } from './roles.ts';

const FACILITY: readonly Role[] = ['operator', 'security_chief'];
const RESPONDERS: readonly Role[] = ['operator', 'security_chief', 'dispatcher', 'commander'];
const CASE_OWNERS: readonly Role[] = ['security_chief', 'commander'];

/**
 * The incident lifecycle: which status may follow which, and which roles may make that move. `acknowledged`
 * is reached only through an acknowledgement, never by a transition. Only the facility that raised an alarm
 * may call it false or cancel it; closing a resolved case is for the security chief or a police commander.
 */
export const transitions: Readonly<Record<Status, Partial<Record<Status, readonly Role[]>>>> = {
  open: { responding: RESPONDERS, contained: RESPONDERS, false_alarm: FACILITY, cancelled: FACILITY },
  acknowledged: {
    responding: RESPONDERS,
    contained: RESPONDERS,
    resolved: RESPONDERS,
    false_alarm: FACILITY,
    cancelled: FACILITY,
  },
  responding: { contained: RESPONDERS, resolved: RESPONDERS },
  contained: { responding: RESPONDERS, resolved: RESPONDERS },
  // Back to responding is the reopening of a resolved case that flares up again.
  resolved: { closed: CASE_OWNERS, responding: RESPONDERS },
  closed: {},
  false_alarm: {},
  cancelled: {},
};

/** Roles that may acknowledge for their agency; administrators and devices may not. */
export const ACK_ROLES: readonly Role[] = [
  'operator',
  'security_chief',
  'dispatcher',
  'commander',
  'supervisor',
];
/** Roles that may add notes to a case they are a party to. */
export const NOTE_ROLES: readonly Role[] = [
  'operator',
  'security_chief',
  'dispatcher',
  'commander',
  'supervisor',
];

const TERMINAL: ReadonlySet<Status> = new Set(['closed', 'false_alarm', 'cancelled']);
const ACTIVE: ReadonlySet<Status> = new Set(['open', 'acknowledged', 'responding', 'contained']);

/** No further change is possible: the case is over. */
export const isTerminal = (status: Status) => TERMINAL.has(status);
/** Still unfolding: new alerts for the same place and kind join it. */
export const isActive = (status: Status) => ACTIVE.has(status);

export type TransitionCheck =
  | { ok: true }
  | { ok: false; code: 'invalid_transition' | 'forbidden'; message: string };

export function checkTransition(from: Status, to: Status, role: Role): TransitionCheck {
  const allowed = transitions[from][to];
  if (!allowed)
    return { ok: false, code: 'invalid_transition', message: `An incident cannot go from ${from} to ${to}` };
  if (!allowed.includes(role))
    return { ok: false, code: 'forbidden', message: `A ${role} may not move an incident to ${to}` };
  return { ok: true };
}

/** The statuses a role may move an incident to from where it is now (for consoles' buttons). */
export function nextStatuses(from: Status, role: Role): Status[] {
  return (Object.entries(transitions[from]) as [Status, readonly Role[]][])
    .filter(([, roles]) => roles.includes(role))
    .map(([to]) => to);
}
