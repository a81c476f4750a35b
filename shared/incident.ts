import { z } from 'zod';
import { Category } from './categories.ts';
import { CommandRef } from './command-ref.ts';
import { Chain, EscalationSnapshot, EscalationState } from './escalation.ts';
import { Severity } from './severity.ts';
import { Agency, Slug } from './topology.ts';

export const statuses = [
  'open',
  'acknowledged',
  'responding',
  'contained',
  'resolved',
  'closed',
  'false_alarm',
  'cancelled',
] as const;
export const Status = z.enum(statuses);
export type Status = z.infer<typeof Status>;

export const statusLabels: Record<Status, { id: string; en: string }> = {
  open: { id: 'Baru', en: 'Open' },
  acknowledged: { id: 'Diterima', en: 'Acknowledged' },
  responding: { id: 'Penanganan', en: 'Responding' },
  contained: { id: 'Terkendali', en: 'Contained' },
  resolved: { id: 'Selesai', en: 'Resolved' },
  closed: { id: 'Ditutup', en: 'Closed' },
  false_alarm: { id: 'Alarm palsu', en: 'False alarm' },
  cancelled: { id: 'Dibatalkan', en: 'Cancelled' },
};

/** Length limits: generous for a report typed under stress, small enough to keep every payload under 64 KiB. */
export const LIMITS = { description: 4000, note: 4000, cell: 40, locationNote: 500 } as const;

const PlainText = (max: number) => z.string().trim().max(max);

export const Location = z
  .object({
    block: Slug,
    cell: PlainText(LIMITS.cell).min(1).optional(),
    note: PlainText(LIMITS.locationNote).min(1).optional(),
    lat: z.number().min(-90).max(90).optional(),
    lon: z.number().min(-180).max(180).optional(),
  })
  .strict();
export type Location = z.infer<typeof Location>;

export const RaiseAlert = z
  .object({
    /** Generated once by the console per report; retries reuse it so a report is never stored twice. */
    clientRef: z.uuid(),
    facilityId: Slug,
    category: Category,
    severity: Severity,
    location: Location,
    description: PlainText(LIMITS.description).default(''),
    drill: z.boolean().default(false),
    /** Duress: routed as critical, and the raising console is not shown the alarm. */
    silent: z.boolean().default(false),
  })
  .strict();
export type RaiseAlert = z.infer<typeof RaiseAlert>;
export type RaiseAlertInput = z.input<typeof RaiseAlert>;

export const Actor = z.object({
  userId: z.string(),
  username: z.string(),
  unitId: Slug,
});
export type Actor = z.infer<typeof Actor>;

export const Alert = z.object({
  id: z.string(),
  incidentId: z.string(),
  clientRef: z.string(),
  facilityId: Slug,
  category: Category,
  /** As reported; a silent alert is handled as critical whatever was chosen. */
  reportedSeverity: Severity,
  severity: Severity,
  location: Location,
  description: z.string(),
  drill: z.boolean(),
  silent: z.boolean(),
  raisedBy: Actor,
  raisedAt: z.iso.datetime(),
});
export type Alert = z.infer<typeof Alert>;

export const AckChannel = z.enum(['console', 'radio', 'phone', 'in_person']);

export const AckRecord = z.object({
  by: Actor,
  at: z.iso.datetime(),
  timeToAckMs: z.number().int().nonnegative(),
  channel: AckChannel,
  /** For radio/phone/in-person acks: the party unit that acknowledged, recorded by `by`. */
  onBehalfOf: Slug.optional(),
  note: z.string().optional(),
});
export type AckRecord = z.infer<typeof AckRecord>;

export const Incident = z.object({
  id: z.string(),
  facilityId: Slug,
  category: Category,
  severity: Severity,
  status: Status,
  drill: z.boolean(),
  silent: z.boolean(),
  location: Location,
  description: z.string(),
  openedAt: z.iso.datetime(),
  openedBy: Actor,
  updatedAt: z.iso.datetime(),
  closedAt: z.iso.datetime().optional(),
  alertCount: z.number().int().positive(),
  acks: z.object({ corrections: AckRecord.optional(), police: AckRecord.optional() }),
  /** Units entitled to see and work this incident: routed at raise, widened by escalation. */
  parties: z.array(Slug),
  /** Each agency's chain of command: where it stands and when it next climbs. */
  escalation: EscalationState,
  /** The last timeline event's seq: a console seeing a gap knows it missed something. */
  seq: z.number().int().nonnegative(),
});
export type Incident = z.infer<typeof Incident>;

export const eventTypes = [
  'opened',
  'alert_attached',
  'acknowledged',
  'status_changed',
  'note_added',
  'escalated',
  'escalation_held',
  'escalation_resumed',
  'escalation_repaired',
] as const;
export const EventType = z.enum(eventTypes);
export type EventType = z.infer<typeof EventType>;

export const AckBehalf = z
  .object({
    unitId: Slug,
    channel: z.enum(['radio', 'phone', 'in_person']),
    note: PlainText(LIMITS.note).min(1),
  })
  .strict();

/** What each event type carries; the timeline reducer rebuilds an incident from these alone. */
export const EventData = {
  opened: z.object({ alert: Alert, parties: z.array(Slug), escalation: EscalationSnapshot }),
  alert_attached: z.object({
    alert: Alert,
    parties: z.array(Slug),
    /** When the alert raised the severity to one with another escalation policy: that policy, from now on. */
    escalation: EscalationSnapshot.optional(),
  }),
  acknowledged: z.object({ agency: Agency, ack: AckRecord }),
  status_changed: z.object({ from: Status, to: Status, note: z.string().optional() }),
  note_added: z.object({ text: z.string() }),
  escalated: z.object({
    chain: Chain,
    level: z.number().int().positive(),
    label: z.string(),
    /** Units that became parties by this level (they had not heard of the incident before). */
    addedUnits: z.array(Slug),
    targets: z.object({ units: z.array(Slug), rooms: z.array(z.string()) }),
    dueAt: z.iso.datetime(),
    firedAt: z.iso.datetime(),
    lateMs: z.number().int(),
  }),
  escalation_held: z.object({ chain: Chain, until: z.iso.datetime(), reason: z.string() }),
  escalation_resumed: z.object({ chain: Chain }),
  /**
   * The auditor found a waiting chain's timer missing or set too late, and set it again: for the climb to
   * `level`, the end of the hold at `level`, or a reminder round of `level` (a chain at its top level too).
   */
  escalation_repaired: z.object({
    chain: Chain,
    timer: z.enum(['escalate', 'resume', 'remind']),
    level: z.number().int().nonnegative(),
    dueAt: z.iso.datetime(),
  }),
} as const satisfies Record<EventType, z.ZodType>;

export type EventDataOf<T extends EventType> = z.infer<(typeof EventData)[T]>;

const eventOf = <T extends EventType>(type: T) =>
  z.object({
    incidentId: z.string(),
    seq: z.number().int().positive(),
    type: z.literal(type),
    at: z.iso.datetime(),
    actor: Actor,
    data: EventData[type],
    prevHash: z.string(),
    hash: z.string(),
  });

export const IncidentEvent = z.discriminatedUnion('type', [
  eventOf('opened'),
  eventOf('alert_attached'),
  eventOf('acknowledged'),
  eventOf('status_changed'),
  eventOf('note_added'),
  eventOf('escalated'),
  eventOf('escalation_held'),
  eventOf('escalation_resumed'),
  eventOf('escalation_repaired'),
]);
export type IncidentEvent = z.infer<typeof IncidentEvent>;

/** An event before it is sealed into the chain (seq, prevHash and hash are set when it is appended). */
export type PendingEvent = {
  [T in EventType]: { type: T; at: string; actor: Actor; data: EventDataOf<T> };
}[EventType];

// Commands and queries about incidents (socket payloads and REST bodies/queries).

export const IncidentId = z.uuid();

export const AckAlert = z
  .object({ incidentId: IncidentId, onBehalfOf: AckBehalf.optional(), clientRef: CommandRef.optional() })
  .strict();
export const IncidentRef = z.object({ incidentId: IncidentId }).strict();
export const TransitionIncident = z
  .object({
    incidentId: IncidentId,
    to: Status,
    note: PlainText(LIMITS.note).min(1).optional(),
    clientRef: CommandRef.optional(),
  })
  .strict();
export const AddNote = z
  .object({ incidentId: IncidentId, text: PlainText(LIMITS.note).min(1), clientRef: CommandRef.optional() })
  .strict();

/** An opaque position in the stream of incident changes, given by the server. */
export const SyncCursor = z.string().regex(/^\d{1,16}$/, 'a cursor returned by the server');
export const SyncRequest = z.object({ since: SyncCursor.optional() }).strict();

export const RaiseResult = z.object({ incident: Incident, alert: Alert, duplicate: z.boolean() });
export const IncidentResult = z.object({ incident: Incident });
/** The answer to a command that changes an incident: `duplicate` when its `clientRef` had been applied before. */
export const ChangeResult = z.object({ incident: Incident, duplicate: z.boolean() });
export type ChangeResult = z.infer<typeof ChangeResult>;
export const JoinResult = z.object({ incident: Incident, events: z.array(IncidentEvent) });
export const SyncResult = z.object({
  cursor: SyncCursor,
  /** Every incident in the caller's scope that is not over. */
  open: z.array(Incident),
  /** Incidents in scope changed after `since` (including those that closed); empty without `since`. */
  changed: z.array(Incident),
  /** True when more changes exist than one answer carries: call again with the new cursor. */
  more: z.boolean(),
});
export type SyncResult = z.infer<typeof SyncResult>;

const QueryInt = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const ListIncidentsQuery = z
  .object({
    status: Status.optional(),
    facilityId: Slug.optional(),
    category: Category.optional(),
    since: z.iso.datetime().optional(),
    cursor: z
      .string()
      .regex(/^\d{1,16}:[0-9a-f-]{36}$/, 'a cursor returned by the server')
      .optional(),
    limit: QueryInt(1, 100).default(50),
  })
  .strict();
export type ListIncidentsQuery = z.infer<typeof ListIncidentsQuery>;

/**
 * Index rows one list request reads at most, whether they match its filters or not: a page may hold fewer
 * than `limit` incidents, even none, and still carry a `nextCursor`.
 */
export const LIST_SCAN_LIMIT = 1000;

export const ListIncidentsResult = z.object({
  incidents: z.array(Incident),
  nextCursor: z.string().nullable(),
});

export const EventsQuery = z
  .object({
    afterSeq: QueryInt(0, Number.MAX_SAFE_INTEGER).default(0),
    limit: QueryInt(1, 1000).default(200),
  })
  .strict();
export const EventsResult = z.object({ events: z.array(IncidentEvent) });

/** Server → client payloads. Each names the incident and its seq so a console can detect a gap. */
export const AlertNew = z.object({
  incidentId: z.string(),
  seq: z.number().int(),
  incident: Incident,
  alert: Alert,
});
export const IncidentUpdated = z.object({
  incidentId: z.string(),
  seq: z.number().int(),
  incident: Incident,
});
export const IncidentEventMessage = z.object({
  incidentId: z.string(),
  seq: z.number().int(),
  event: IncidentEvent,
});
