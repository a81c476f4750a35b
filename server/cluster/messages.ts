import { z } from 'zod';
import { RedisAddress } from '../redis/redis-connection.ts';

/**
 * What the primary hands each server process it forks: the Redis servers it opened (embedded ones are the
 * primary's to start, supervise and stop), whether this process does the one-time start-up work (demo
 * accounts, the first admin), which must not run twice at once, and the partitions whose escalation workers
 * it runs (each partition's in one process at a time).
 */
export const Handoff = z.object({
  storeUrl: RedisAddress,
  socketUrl: RedisAddress,
  setUp: z.boolean(),
  escalation: z.array(z.number().int().min(0)),
});
export type Handoff = z.infer<typeof Handoff>;

/** The environment variable that carries the hand-off; set only on forked server processes. */
export const HANDOFF_ENV = 'SINERGI_HANDOFF';

/** Server process → primary. Other traffic on the channel (sticky sessions, prom-client) is not ours. */
export const ToPrimary = z.discriminatedUnion('type', [
  /** Started and serving; `banner`: the lines of its one-time start-up work, for the primary to print. */
  z.object({ type: z.literal('sinergi:ready'), banner: z.array(z.string()) }),
  /** Has begun to stop (a signal to it alone, an error): no more connections, and its partitions to another. */
  z.object({ type: z.literal('sinergi:stopping') }),
  z.object({ type: z.literal('sinergi:metrics-request'), id: z.number().int() }),
  /** Asked by `/readyz`: is every process behind the port ready? */
  z.object({ type: z.literal('sinergi:readiness-request'), id: z.number().int() }),
  /** This process's own answer to a `sinergi:readiness-check`: what it cannot reach, empty when ready. */
  z.object({
    type: z.literal('sinergi:readiness-answer'),
    id: z.number().int(),
    failing: z.array(z.string()),
  }),
]);
export type ToPrimary = z.infer<typeof ToPrimary>;

/** Primary → server process. */
export const ToServer = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('sinergi:metrics'),
    id: z.number().int(),
    text: z.string().optional(),
    error: z.string().optional(),
  }),
  /** Every serving process's failing dependencies, each named with its process; empty when all are ready. */
  z.object({ type: z.literal('sinergi:readiness'), id: z.number().int(), failing: z.array(z.string()) }),
  /** Check this process's own readiness and answer with a `sinergi:readiness-answer`. */
  z.object({ type: z.literal('sinergi:readiness-check'), id: z.number().int() }),
  z.object({ type: z.literal('sinergi:shutdown') }),
  /** Run the escalation workers of these partitions from now on: the process that ran them is gone. */
  z.object({ type: z.literal('sinergi:escalate'), partitions: z.array(z.number().int().min(0)) }),
]);
export type ToServer = z.infer<typeof ToServer>;
