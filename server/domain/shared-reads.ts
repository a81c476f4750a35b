/**
 * One read for everyone who asks for the same thing at once: after a restart every console of a unit syncs
 * in the same second, and each would otherwise read and parse the same open incidents. A caller only ever
 * shares a read that starts after it asked, never one already under way, so no answer is older than its
 * question; asking while a read runs queues for the next one, which everyone who queued meanwhile shares.
 */
export function sharedReads<K, V>(read: (key: K) => Promise<V>): (key: K) => Promise<V> {
  const lanes = new Map<K, { running: Promise<V>; queued?: Promise<V> }>();

  const start = (key: K): Promise<V> => {
    const running: Promise<V> = read(key).finally(() => {
      const lane = lanes.get(key);
      if (lane?.running === running && lane.queued === undefined) lanes.delete(key);
    });
    lanes.set(key, { running });
    return running;
  };

  return (key) => {
    const lane = lanes.get(key);
    if (!lane) return start(key);
    lane.queued ??= lane.running.then(
      () => start(key),
      () => start(key),
    );
    return lane.queued;
  };
}
