import net from 'node:net';

/**
 * A loopback TCP proxy in front of a Redis that can lose one reply the way a dropped connection does: once
 * armed with a marker, the first command carrying it reaches Redis, and the connection is cut as Redis
 * answers, before the answer reaches the client. Redis has applied the command; the client never hears so.
 * Armed to stall instead, it passes the command on and then holds up this whole process (where the server
 * under test runs) for a while, as a burst of work would: Redis answers meanwhile, unread. Armed to delay, it
 * holds back every reply on that connection for a while, as a server whose replies wait behind a backlog of
 * work would see them, its timers still running.
 */
export async function startReplyDropper(redisAddress: string) {
  let marker: string | undefined;
  let stallMs: number | undefined;
  let delayMs: number | undefined;
  let dropped = 0;
  const pairs = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = redisAddress.startsWith('/')
      ? net.connect(redisAddress)
      : net.connect(Number(new URL(redisAddress).port), new URL(redisAddress).hostname);
    pairs.add(client).add(upstream);
    let cutAtReply = false;
    let heldUntil = 0;
    let held: Buffer[] = [];
    client.on('data', (chunk) => {
      const armed = marker !== undefined && chunk.toString('latin1').includes(marker);
      if (armed) marker = undefined;
      if (armed && delayMs !== undefined) {
        heldUntil = Date.now() + delayMs;
        delayMs = undefined;
        setTimeout(() => {
          for (const reply of held) client.write(reply);
          held = [];
        }, heldUntil - Date.now());
      } else if (armed && stallMs === undefined) cutAtReply = true;
      upstream.write(chunk);
      if (armed && stallMs !== undefined) {
        const until = Date.now() + stallMs;
        stallMs = undefined;
        while (Date.now() < until);
      }
    });
    upstream.on('data', (chunk) => {
      if (Date.now() < heldUntil) {
        held.push(chunk);
        return;
      }
      if (!cutAtReply) {
        client.write(chunk);
        return;
      }
      dropped++;
      client.destroy();
      upstream.destroy();
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(client);
      pairs.delete(upstream);
    };
    for (const side of [client, upstream]) side.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    /** Loses the reply to the next command whose bytes carry `text`. */
    loseReplyTo(text: string) {
      marker = text;
      stallMs = undefined;
      delayMs = undefined;
    },
    /** Holds up this process for `ms` once the next command whose bytes carry `text` is on its way to Redis. */
    stallAfter(text: string, ms: number) {
      marker = text;
      stallMs = ms;
      delayMs = undefined;
    },
    /** Holds back, for `ms`, every reply on the connection of the next command whose bytes carry `text`. */
    delayRepliesAfter(text: string, ms: number) {
      marker = text;
      stallMs = undefined;
      delayMs = ms;
    },
    get dropped() {
      return dropped;
    },
    close() {
      for (const socket of pairs) socket.destroy();
      return new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}
