import { categoryLabels } from '../../shared/categories.ts';
import type { ErrorBody } from '../../shared/errors.ts';
import {
  type AckRecord,
  type Alert,
  type Incident,
  type IncidentEvent,
  type Status,
  statusLabels,
} from '../../shared/incident.ts';
import { severityLabels } from '../../shared/severity.ts';
import type { Agency } from '../../shared/topology.ts';

/** The first 8 hex digits: enough to tell a shift's incidents apart, and what the commands accept. */
export const shortId = (id: string) => id.slice(0, 8);

export const clock = (iso: string) => new Date(iso).toLocaleTimeString('en-GB', { hour12: false });

export const statusText = (status: Status) => `${status} (${statusLabels[status].id})`;

/** One line a console prints for something that happened: `time TAG incident — detail`. */
export function line(tag: string, at: string, incident: Incident, detail = ''): string {
  return `${clock(at)} ${tag.padEnd(6)} ${summary(incident)}${detail && ` — ${detail}`}`;
}

export function summary(incident: Incident, { fullId = false } = {}): string {
  const category = categoryLabels[incident.category];
  return [
    fullId ? incident.id : shortId(incident.id),
    ...(incident.drill ? ['DRILL'] : []),
    ...(incident.silent ? ['DURESS'] : []),
    `S${incident.severity} ${severityLabels[incident.severity]?.id ?? ''}`,
    `${category.id} / ${category.en}`,
    `${incident.facilityId} blok ${incident.location.block}`,
    statusText(incident.status),
  ].join(' · ');
}

export function alertDetail(alert: Alert, incident: Incident): string {
  const which = incident.alertCount > 1 ? `alert ${incident.alertCount}` : 'alert';
  return `${which} by ${alert.raisedBy.username}${alert.description && `: ${alert.description}`}`;
}

function ackText(agency: Agency, ack: AckRecord): string {
  const relayed = ack.onBehalfOf ? ` for ${ack.onBehalfOf} by ${ack.channel}` : '';
  return `${agency} acknowledged by ${ack.by.username}${relayed}${ack.note ? `: ${ack.note}` : ''}`;
}

/** What an `incident:updated` changed compared with the state the console knew before. */
export function changeDetail(before: Incident | undefined, after: Incident): string {
  const changes: string[] = [];
  if (before && before.status !== after.status) changes.push(`${before.status} → ${after.status}`);
  for (const agency of ['corrections', 'police'] as const) {
    const ack = after.acks[agency];
    if (ack && !before?.acks[agency]) changes.push(ackText(agency, ack));
  }
  if (before && after.severity !== before.severity) changes.push(`S${before.severity} → S${after.severity}`);
  const joined = after.parties.filter((p) => before && !before.parties.includes(p));
  if (joined.length > 0) changes.push(`now also ${joined.join(', ')}`);
  return changes.join('; ') || `timeline #${after.seq}`;
}

export function eventDetail(event: IncidentEvent): string {
  const by = `by ${event.actor.username}`;
  switch (event.type) {
    case 'opened':
    case 'alert_attached': {
      const { alert } = event.data;
      const what = event.type === 'opened' ? 'opened' : 'alert attached';
      return `${what} ${by}, S${alert.reportedSeverity}${alert.description && `: ${alert.description}`}`;
    }
    case 'acknowledged':
      return ackText(event.data.agency, event.data.ack);
    case 'status_changed':
      return `${event.data.from} → ${event.data.to} ${by}${event.data.note ? `: ${event.data.note}` : ''}`;
    case 'note_added':
      return `note ${by}: ${event.data.text}`;
    case 'escalated': {
      const { chain, level, label, addedUnits } = event.data;
      const added = addedUnits.length > 0 ? `, now also ${addedUnits.join(', ')}` : '';
      return `${chain} escalated to level ${level} (${label})${added}`;
    }
    case 'escalation_held':
      return `${event.data.chain} escalation held until ${clock(event.data.until)} ${by}: ${event.data.reason}`;
    case 'escalation_resumed':
      return `${event.data.chain} escalation resumed`;
    case 'escalation_repaired':
      return `${event.data.chain} escalation timer restored`;
  }
}

export function errorLines(error: ErrorBody): string[] {
  return [
    `error ${error.code}: ${error.message}`,
    ...(error.issues ?? []).map((issue) => `  ${issue.path}: ${issue.message}`),
    ...(error.retryAfterMs === undefined ? [] : [`  retry in ${Math.ceil(error.retryAfterMs / 1000)} s`]),
  ];
}
