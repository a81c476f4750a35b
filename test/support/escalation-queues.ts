import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { allPartitions, escalationQueueName, partitionOf } from '../../server/jobs/escalation-partitions.ts';
import type { TestServer } from './test-server.ts';

/** A second view of a test server's escalation queues (one per partition), to look at and tamper with jobs. */
export function escalationQueues(connection: Redis, server: Pick<TestServer, 'prefix' | 'config'>) {
  const queues = allPartitions(server.config.escalation.partitions).map(
    (p) => new Queue(escalationQueueName(p), { connection, prefix: `${server.prefix}bull` }),
  );
  const find = async (jobId: string): Promise<Job | undefined> => {
    for (const queue of queues) {
      const job = await queue.getJob(jobId);
      if (job) return job;
    }
    return undefined;
  };
  return {
    /** The queue that holds an incident's timers. */
    of: (incidentId: string) => queues[partitionOf(incidentId, queues.length)] as Queue,
    getJob: find,
    async getJobState(jobId: string) {
      return (await find(jobId))?.getState();
    },
    close: () => Promise.all(queues.map((q) => q.close())),
  };
}
