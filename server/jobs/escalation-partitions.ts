// Kept apart from the queues themselves: the primary process decides partitions without loading BullMQ.

/**
 * Timers are spread over BullMQ queues by incident, so that several processes can each run the workers of
 * their own queues without competing for the same jobs: on one queue every job woke every worker.
 */
export function escalationQueueName(partition: number): string {
  // The first keeps the name of the single queue earlier versions used, so timers stored by them still run.
  return partition === 0 ? 'escalation' : `escalation.${partition}`;
}

/** Which partition's queue holds an incident's timers: a stable hash of its id (FNV-1a). */
export function partitionOf(incidentId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < incidentId.length; i++) {
    hash ^= incidentId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

/** Every partition, 0 to `partitions` - 1. */
export function allPartitions(partitions: number): number[] {
  return Array.from({ length: partitions }, (_, p) => p);
}

/** The partitions whose workers a server runs, by ESCALATION_WORKER: all of them, or none when it only schedules. */
export function inlinePartitions(settings: { worker: 'inline' | 'off'; partitions: number }): number[] {
  return settings.worker === 'inline' ? allPartitions(settings.partitions) : [];
}
