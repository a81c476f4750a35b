import { eventHash, GENESIS_HASH } from '../../server/domain/timeline-seal.ts';
import type { IncidentEvent } from '../../shared/incident.ts';

/**
 * How fast this machine runs Sinergi's own kind of work right now: hashing a chain of timeline events
 * (canonical JSON and SHA-256, then a JSON round trip), one thread, median of five passes. The machines
 * are shared virtual machines whose speed changes from hour to hour; a run's figures compare with another
 * day's only beside this number, and the share of CPU the hypervisor took (steal) over the run.
 */
export function sealingSpeed(): number {
  const event = {
    incidentId: '6f1c2d2e-8a4b-4c59-9d0e-2b7a3f5c1e90',
    seq: 1,
    type: 'opened',
    at: '2026-11-28T03:00:00.000Z',
    actor: { userId: 'a1b2c3d4-0000-4000-8000-000000000001', unitId: 'lapas-batu', role: 'operator' },
    data: {
      category: 'riot',
      severity: 4,
      location: { block: 'b1', detail: 'Blok A, lorong 2' },
      description: 'Keributan antar warga binaan di blok hunian',
      parties: ['lapas-batu', 'polsek-nusakambangan', 'polresta-cilacap', 'kanwil-ditjenpas-jateng'],
    },
    prevHash: GENESIS_HASH,
  } as unknown as Omit<IncidentEvent, 'hash'>;
  const passes: number[] = [];
  for (let pass = 0; pass < 5; pass++) {
    const started = performance.now();
    let prevHash = GENESIS_HASH;
    for (let seq = 1; seq <= 2000; seq++) {
      prevHash = eventHash({ ...event, seq, prevHash });
      JSON.parse(JSON.stringify({ ...event, seq, prevHash }));
    }
    passes.push(performance.now() - started);
  }
  passes.sort((a, b) => a - b);
  return passes[2] ?? Number.NaN;
}
