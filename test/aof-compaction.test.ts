import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AofState,
  type CompactionEvent,
  type CompactionPolicy,
  compactionDecision,
  parseAofState,
} from '../server/redis/aof-compaction.ts';
import {
  type EmbeddedRedis,
  type SupervisionEvent,
  startEmbeddedRedis,
} from '../server/redis/embedded-redis.ts';
import { openRedisStore, type RedisStore } from '../server/redis/redis-store.ts';
import { waitFor } from './support/wait-for.ts';

const MiB = 1024 * 1024;
const policy: CompactionPolicy = {
  minBytes: 64 * MiB,
  growthPercent: 100,
  quietOpsPerSecond: 200,
  overdueFactor: 4,
};
const state = (s: Partial<AofState>): AofState => ({
  currentBytes: 0,
  baseBytes: 0,
  rewriting: false,
  opsPerSecond: 0,
  ...s,
});

describe('when the store’s append-only file is rewritten', () => {
  it('waits until the file has doubled and passed the minimum size, as Redis’s own rule does', () => {
    expect(compactionDecision(state({ currentBytes: 60 * MiB, baseBytes: 1 * MiB }), policy)).toBe('not_due');
    expect(compactionDecision(state({ currentBytes: 150 * MiB, baseBytes: 100 * MiB }), policy)).toBe(
      'not_due',
    );
    expect(compactionDecision(state({ currentBytes: 200 * MiB, baseBytes: 100 * MiB }), policy)).toBe(
      'quiet',
    );
  });

  it('puts a due rewrite off while the store is busy, but not once the file is four times past due', () => {
    const busy = { baseBytes: 100 * MiB, opsPerSecond: 5000 };
    expect(compactionDecision(state({ ...busy, currentBytes: 300 * MiB }), policy)).toBe('deferred');
    expect(compactionDecision(state({ ...busy, currentBytes: 800 * MiB }), policy)).toBe('overdue');
  });

  it('never starts a second rewrite while one runs', () => {
    expect(compactionDecision(state({ currentBytes: 900 * MiB, rewriting: true }), policy)).toBe('not_due');
  });

  it('reads its figures from INFO persistence and stats', () => {
    const info = [
      '# Persistence',
      'aof_enabled:1',
      'aof_rewrite_in_progress:0',
      'aof_rewrite_scheduled:1',
      'aof_current_size:4096',
      'aof_base_size:1024',
      '# Stats',
      'instantaneous_ops_per_sec:37',
    ].join('\r\n');
    expect(parseAofState(info)).toEqual({
      currentBytes: 4096,
      baseBytes: 1024,
      rewriting: true,
      opsPerSecond: 37,
    });
  });
});

describe('the embedded store’s owner', () => {
  let store: RedisStore | undefined;
  let client: Redis | undefined;
  let dataDir = '';
  afterEach(async () => {
    client?.disconnect();
    await store?.release();
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5 });
  });

  it('When the file is due while the store is busy, Then rewrites it once the store is quiet, and at once should it grow four times past due', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'sinergi-aof-'));
    const events: (SupervisionEvent | CompactionEvent)[] = [];
    const small: CompactionPolicy = {
      minBytes: MiB,
      growthPercent: 100,
      quietOpsPerSecond: 100,
      overdueFactor: 4,
    };
    store = await openRedisStore(
      { dataDir, redis: { appendfsync: 'always' } },
      { serving: true, supervise: (e) => events.push(e), compaction: { policy: small, everyMs: 100 } },
    );
    const redis = new Redis(store.url);
    client = redis;
    // Redis's own rule is off: only the owner decides.
    expect(await redis.config('GET', 'auto-aof-rewrite-percentage')).toEqual([
      'auto-aof-rewrite-percentage',
      '0',
    ]);
    const aof = async () => parseAofState(await redis.info('persistence', 'stats'));

    const busyStore = async () => {
      let busy = true;
      const pinging = (async () => {
        while (busy) await Promise.all(Array.from({ length: 50 }, () => redis.ping())).catch(() => undefined);
      })();
      await waitFor(async () => (await aof()).opsPerSecond > small.quietOpsPerSecond, {
        what: 'a busy store',
      });
      return async () => {
        busy = false;
        await pinging;
      };
    };
    // Random, so that the rewritten file (an RDB image, compressed) keeps its size.
    const value = randomBytes(7500).toString('base64');

    let quieten = await busyStore();
    for (let i = 0; i < 150; i++) await redis.set(`incident:${i}`, value); // 1.5 MB: due, not overdue
    await new Promise((r) => setTimeout(r, 1000));
    expect(events).toEqual([]);

    await quieten();
    await waitFor(() => events.length > 0, { what: 'a rewrite', timeoutMs: 10_000 });
    expect(events).toEqual([expect.objectContaining({ type: 'compacting', reason: 'quiet' })]);
    await waitFor(async () => !(await aof()).rewriting, { what: 'the rewrite to finish' });
    const rewritten = await aof();
    expect(rewritten.baseBytes).toBeGreaterThan(MiB);

    // Busy again, and the file grows past four times its due size: rewritten without waiting for quiet.
    quieten = await busyStore();
    const dueAt = Math.max(small.minBytes, rewritten.baseBytes * 2);
    for (let i = 0; (await aof()).currentBytes < dueAt * small.overdueFactor + MiB; i++)
      await Promise.all(Array.from({ length: 20 }, (_, j) => redis.set(`note:${i}:${j}`, value)));
    await waitFor(() => events.length === 2, { what: 'the overdue rewrite', timeoutMs: 10_000 });
    expect(events[1]).toMatchObject({ type: 'compacting', reason: 'overdue' });
    await quieten();
  }, 60_000);
});

describe('a process on an external store (REDIS_URL)', () => {
  const small: CompactionPolicy = {
    minBytes: MiB,
    growthPercent: 100,
    quietOpsPerSecond: 100,
    overdueFactor: 4,
  };
  let external: EmbeddedRedis | undefined;
  const stores: RedisStore[] = [];
  let dataDir = '';
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.release();
    await external?.stop();
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5 });
  });

  /** Fills the store past due, quietly, and reports what each process on it did within a few checks. */
  async function fillAndWatch(ownRule: '0' | '100', compactExternal: boolean) {
    dataDir = await mkdtemp(path.join(tmpdir(), 'sinergi-aof-external-'));
    external = await startEmbeddedRedis({ dataDir, appendfsync: 'everysec' });
    const redis = new Redis(external.url);
    try {
      await redis.config('SET', 'auto-aof-rewrite-percentage', ownRule);
      const events: (SupervisionEvent | CompactionEvent)[] = [];
      const store = await openRedisStore(
        { dataDir, redis: { url: external.url, appendfsync: 'always' } },
        {
          serving: true,
          supervise: (e) => events.push(e),
          compaction: { policy: small, everyMs: 100 },
          compactExternal,
        },
      );
      stores.push(store);
      const value = randomBytes(7500).toString('base64');
      for (let i = 0; i < 150; i++) await redis.set(`incident:${i}`, value);
      await new Promise((r) => setTimeout(r, 3000));
      return events;
    } finally {
      redis.disconnect();
    }
  }

  it('When its operator turned Redis’s own rewrite rule off, Then rewrites the file at a quiet moment', async () => {
    expect(await fillAndWatch('0', true)).toEqual([
      expect.objectContaining({ type: 'compacting', reason: 'quiet' }),
    ]);
  }, 30_000);

  it('When Redis’s own rule is on, or the process is one its primary forked, Then leaves the file alone', async () => {
    expect(await fillAndWatch('100', true)).toEqual([]);
    for (const store of stores.splice(0)) await store.release();
    await external?.stop();
    expect(await fillAndWatch('0', false)).toEqual([]);
  }, 30_000);
});
