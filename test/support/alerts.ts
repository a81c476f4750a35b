import { randomUUID } from 'node:crypto';
import { categories } from '../../shared/categories.ts';
import type { RaiseAlertInput } from '../../shared/incident.ts';

const blocks = ['a', 'b', 'c', 'isolasi'];
let counter = 0;

/**
 * A valid raise for Permisan. Each call takes the next category/block pair, so the 15-minute
 * deduplication never joins two tests' alerts unless a test asks for the same pair on purpose.
 */
export function uniqueAlert(overrides: Partial<RaiseAlertInput> = {}): RaiseAlertInput {
  const n = counter++;
  return {
    clientRef: randomUUID(),
    facilityId: 'lapas-permisan',
    category: categories[n % categories.length] ?? 'other',
    severity: 3,
    location: { block: blocks[Math.floor(n / categories.length) % blocks.length] ?? 'a' },
    description: 'Laporan dari blok',
    ...overrides,
  };
}
