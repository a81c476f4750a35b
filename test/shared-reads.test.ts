import { describe, expect, it } from 'vitest';
import { sharedReads } from '../server/domain/shared-reads.ts';

/** A read whose answers the test releases one by one, recording when each started. */
function controlledRead() {
  const started: { key: string; release: (value: string) => void; fail: (error: Error) => void }[] = [];
  const read = (key: string) => new Promise<string>((release, fail) => started.push({ key, release, fail }));
  return { read, started };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('shared reads', () => {
  it('gives everyone who asked while a read ran one next read, started after they asked', async () => {
    const { read, started } = controlledRead();
    const get = sharedReads(read);
    const first = get('unit-a');
    const later = [get('unit-a'), get('unit-a'), get('unit-a')];
    expect(started).toHaveLength(1);

    started[0]?.release('as of the first question');
    expect(await first).toBe('as of the first question');
    await tick();
    // The read under way when they asked might predate their question: they get one of their own.
    expect(started).toHaveLength(2);
    started[1]?.release('as of the later questions');
    expect(await Promise.all(later)).toEqual(Array(3).fill('as of the later questions'));
  });

  it('never shares between keys, and starts afresh once nobody waits', async () => {
    const { read, started } = controlledRead();
    const get = sharedReads(read);
    const a = get('unit-a');
    const b = get('unit-b');
    expect(started.map((s) => s.key)).toEqual(['unit-a', 'unit-b']);
    started[0]?.release('a');
    started[1]?.release('b');
    expect([await a, await b]).toEqual(['a', 'b']);

    const again = get('unit-a');
    expect(started).toHaveLength(3);
    started[2]?.release('a again');
    expect(await again).toBe('a again');
  });

  it('a failed read fails those who shared it; those queued behind it still get a read', async () => {
    const { read, started } = controlledRead();
    const get = sharedReads(read);
    const failing = get('unit-a');
    const queued = get('unit-a');
    started[0]?.fail(new Error('store unavailable'));
    await expect(failing).rejects.toThrow('store unavailable');
    await tick();
    started[1]?.release('recovered');
    expect(await queued).toBe('recovered');
  });
});
