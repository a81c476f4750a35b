import type { Socket } from 'node:net';
import type { Redis } from 'ioredis';

/**
 * Makes every command a connection writes within one turn of the event loop go to Redis in one system call.
 *
 * ioredis writes each command to its socket as it is issued, and a raise issues a dozen (session check,
 * idempotency and dedup reads, rate point, commit, four timers, the broadcast): on loopback each write is a
 * trip through the kernel's TCP stack that cost more server CPU than the commands' own JavaScript. Corking
 * the socket until the loop's check phase turns a burst into one `writev`, without ioredis's auto-pipelining,
 * which holds each batch until the previous one is answered and copies the connection's scripts onto a
 * pipeline object per batch. Replies still arrive one by one, in order, as before.
 */
export function coalesceWrites(redis: Redis): void {
  redis.on('connect', () => {
    const socket = (redis as unknown as { stream?: Socket }).stream;
    if (socket) cork(socket);
  });
}

function cork(socket: Socket) {
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  const write = socket.write;
  socket.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
    if (!corked) {
      corked = true;
      socket.cork();
      setImmediate(uncork);
    }
    return write.apply(this, args);
  } as Socket['write'];
}
