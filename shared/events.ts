import { z } from 'zod';
import { PublicUser } from './auth.ts';
import type { Ack } from './envelope.ts';
import { EscalationFired, EscalationReminder, HoldEscalation } from './escalation.ts';
import {
  AckAlert,
  AddNote,
  AlertNew,
  ChangeResult,
  IncidentEventMessage,
  IncidentRef,
  IncidentUpdated,
  JoinResult,
  RaiseAlert,
  RaiseResult,
  SyncRequest,
  SyncResult,
  TransitionIncident,
} from './incident.ts';

/**
 * Client → server commands. Each is validated with `payload` at the socket boundary and answered through
 * its acknowledgement with `{ ok: true, data: result } | { ok: false, error }`.
 */
export const commands = {
  'session:whoami': {
    payload: z.object({}).strict(),
    result: z.object({ user: PublicUser, rooms: z.array(z.string()), expiresAt: z.iso.datetime() }),
  },
  'alert:raise': { payload: RaiseAlert, result: RaiseResult },
  'alert:ack': { payload: AckAlert, result: ChangeResult },
  'incident:join': { payload: IncidentRef, result: JoinResult },
  'incident:leave': { payload: IncidentRef, result: z.object({ left: z.boolean() }) },
  'incident:transition': { payload: TransitionIncident, result: ChangeResult },
  'incident:note': { payload: AddNote, result: ChangeResult },
  sync: { payload: SyncRequest, result: SyncResult },
  'escalation:hold': { payload: HoldEscalation, result: ChangeResult },
} as const satisfies Record<string, { payload: z.ZodType; result: z.ZodType }>;

export type Commands = typeof commands;
export type CommandName = keyof Commands;
export type CommandPayload<K extends CommandName> = z.output<Commands[K]['payload']>;
export type CommandResult<K extends CommandName> = z.output<Commands[K]['result']>;

/** Server → client messages. */
export const serverEvents = {
  /** Sent just before the server disconnects a socket whose access token expired or was revoked. */
  'session:ended': z.object({ reason: z.enum(['expired', 'revoked']) }),
  /** A new alert, to every party's rooms: a new incident, or one more alert on an active incident. */
  'alert:new': AlertNew,
  /** An incident's state changed, to every party's rooms. */
  'incident:updated': IncidentUpdated,
  /** One timeline event, to consoles that joined the incident's room. */
  'incident:event': IncidentEventMessage,
  /** A chain of command climbed a level: to the rooms it pages and to the incident's room. */
  'escalation:fired': EscalationFired,
  /** A level still waiting for an acknowledgement is paged again. */
  'escalation:reminder': EscalationReminder,
} as const satisfies Record<string, z.ZodType>;

export type ServerEvents = typeof serverEvents;

export type ClientToServerEvents = {
  [K in CommandName]: (
    payload: z.input<Commands[K]['payload']>,
    ack: (res: Ack<CommandResult<K>>) => void,
  ) => void;
};

export type ServerToClientEvents = {
  [K in keyof ServerEvents]: (payload: z.output<ServerEvents[K]>) => void;
};

// Cross-process messages go through the adapter's rooms; no server-to-server events yet.
export type InterServerEvents = Record<never, never>;

export interface SocketData {
  user: PublicUser;
  sessionId: string;
  /** Access-token expiry, epoch milliseconds. */
  expiresAt: number;
}
