import { createHash } from 'node:crypto';
import { canonicalJson } from '../../shared/canonical-json.ts';
import type { IncidentEvent } from '../../shared/incident.ts';
import type { TimelineEntry } from '../../shared/incident-reducer.ts';

/** The prevHash of an incident's first event. */
export const GENESIS_HASH = '0'.repeat(64);

/** hash = sha256(prevHash + canonical JSON of the event without its hash): changing any past event breaks every later link. */
export function eventHash(event: Omit<IncidentEvent, 'hash'>): string {
  return createHash('sha256').update(event.prevHash).update(canonicalJson(event)).digest('hex');
}

export function sealEvent(entry: TimelineEntry, prevHash: string): IncidentEvent {
  const unsealed = { ...entry, prevHash } as Omit<IncidentEvent, 'hash'>;
  return { ...unsealed, hash: eventHash(unsealed) } as IncidentEvent;
}
