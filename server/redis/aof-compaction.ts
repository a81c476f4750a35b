import { createRedis } from './redis-connection.ts';

/**
 * When the store's append-only file is rewritten. Redis rewrites it by itself once it has doubled (and is
 * over 64 MB), whatever is happening: the rewrite forks, writes the whole dataset again and fsyncs it beside
 * every synced write, and on two cores a burst of escalations that met one fired 0.4-1 s late instead of
 * 20-30 ms. The embedded store runs with Redis's own rule off (an external one may), and Sinergi applies the
 * same rule at a quiet moment instead, or at once should the file grow far past it.
 */
export interface CompactionPolicy {
  /** No rewrite below this size (Redis's `auto-aof-rewrite-min-size`). */
  minBytes: number;
  /** Growth over the size after the last rewrite that makes one due (Redis's `auto-aof-rewrite-percentage`). */
  growthPercent: number;
  /** The store counts as quiet below this many commands a second (Redis's own ~1.6 s average). */
  quietOpsPerSecond: number;
  /** How far past due a busy store's file may grow before it is rewritten anyway. */
  overdueFactor: number;
}

export const DEFAULT_COMPACTION: CompactionPolicy = {
  minBytes: 64 * 1024 * 1024,
  growthPercent: 100,
  // An idle server keeps the store at a few dozen commands a second (workers' waits, heartbeats); a riot's
  // alerts and escalations at hundreds to thousands.
  quietOpsPerSecond: 200,
  overdueFactor: 4,
};

export interface AofState {
  currentBytes: number;
  /** The file's size after its last rewrite (or when Redis started). */
  baseBytes: number;
  rewriting: boolean;
  opsPerSecond: number;
}

export type CompactionDecision = 'not_due' | 'deferred' | 'quiet' | 'overdue';

export function compactionDecision(state: AofState, policy: CompactionPolicy): CompactionDecision {
  if (state.rewriting) return 'not_due';
  const dueAt = Math.max(policy.minBytes, state.baseBytes * (1 + policy.growthPercent / 100));
  if (state.currentBytes < dueAt) return 'not_due';
  if (state.currentBytes >= dueAt * policy.overdueFactor) return 'overdue';
  return state.opsPerSecond < policy.quietOpsPerSecond ? 'quiet' : 'deferred';
}

export type CompactionEvent =
  | { type: 'compacting'; reason: 'quiet' | 'overdue'; currentBytes: number; baseBytes: number }
  | { type: 'compaction_failed'; error: unknown };

/** Reads the figures the decision needs from one `INFO persistence stats` reply. */
export function parseAofState(info: string): AofState {
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return {
    currentBytes: field('aof_current_size'),
    baseBytes: field('aof_base_size'),
    rewriting: field('aof_rewrite_in_progress') === 1 || field('aof_rewrite_scheduled') === 1,
    opsPerSecond: field('instantaneous_ops_per_sec'),
  };
}

/** Checks the store every `everyMs` and rewrites its append-only file when the policy says so. */
export function compactWhenQuiet(
  url: string,
  options: { policy?: CompactionPolicy; everyMs?: number; report: (event: CompactionEvent) => void },
): { stop(): void } {
  const policy = options.policy ?? DEFAULT_COMPACTION;
  const redis = createRedis(url, 'tool');
  // A store that is down is the supervisor's to report; the next check tries again.
  redis.on('error', () => undefined);
  let checking = false;
  const check = async () => {
    if (checking) return;
    checking = true;
    try {
      const state = parseAofState(await redis.info('persistence', 'stats'));
      const decision = compactionDecision(state, policy);
      if (decision !== 'quiet' && decision !== 'overdue') return;
      const { currentBytes, baseBytes } = state;
      options.report({ type: 'compacting', reason: decision, currentBytes, baseBytes });
      await redis.bgrewriteaof();
    } catch (error) {
      // Another process sharing the store started one first: that rewrite is as good as ours.
      const raced = error instanceof Error && error.message.includes('already in progress');
      if (redis.status === 'ready' && !raced) options.report({ type: 'compaction_failed', error });
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), options.everyMs ?? 5000);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      redis.disconnect();
    },
  };
}
