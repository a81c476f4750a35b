import { expect } from 'vitest';
import { eventHash, GENESIS_HASH } from '../../server/domain/timeline-seal.ts';
import type { IncidentEvent } from '../../shared/incident.ts';

/** A whole timeline, in order: every seq in turn, each event sealed and chained to the one before. */
export function expectValidChain(events: IncidentEvent[]) {
  let prev = GENESIS_HASH;
  events.forEach((event, i) => {
    expect(event.seq).toBe(i + 1);
    expect(event.prevHash).toBe(prev);
    const { hash, ...rest } = event;
    expect(eventHash(rest)).toBe(hash);
    prev = hash;
  });
}
