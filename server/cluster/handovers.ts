import type { Worker } from 'node:cluster';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

type Send = (...args: unknown[]) => boolean;

/**
 * What the balancer (@socket.io/sticky) hands each server process, followed so that none of it is lost:
 *
 * - The primary reads a connection's first chunk to choose a process, then sends it the socket. Node
 *   detaches a sent socket without stopping its reads and drops whatever the primary reads after that:
 *   bytes a client sends right behind its first chunk (a console's "connect" packet after the WebSocket
 *   upgrade) could be lost and leave it half-connected. So the primary stops reading a socket it hands over.
 * - A request with a body stays with the primary, which forwards its chunks and the answer: when the process
 *   answering it dies, its client would wait out its own timeout. Such requests are ended as the process
 *   exits, so their clients retry at once.
 * - A process still starting has no listener for handovers yet, and one handed to it then is dropped and
 *   hangs until the client gives up (every console reconnecting while all processes are being replaced).
 *   The balancer picks such a process only when none is serving; what it hands it waits in the primary,
 *   in order, until the process is ready, and is ended should the process exit first. So does what it
 *   hands a process that has begun to stop, when no other serves.
 */
export function followHandovers(httpServer: Server) {
  // The body request whose first chunk the balancer is handling at this moment: its listener runs right after
  // the one below, in the same turn, and hands the request over before anything else happens.
  let arriving: Socket | undefined;

  httpServer.on('connection', (socket: Socket) => {
    // Runs before the balancer's own listener, which it added when the connection arrived.
    socket.prependOnceListener('data', (chunk: Buffer) => {
      if (carriesBody(chunk)) {
        arriving = socket;
        return;
      }
      // Node's own handle, as its child_process code uses it: no public call stops a socket's reads.
      const handle = (socket as Socket & { _handle?: { readStop?: () => number } | null })._handle;
      if (typeof handle?.readStop === 'function') handle.readStop();
    });
  });

  return {
    /** Follows what is handed to `worker`, holding it while `isReady` says the process cannot take it. */
    follow(worker: Worker, isReady: () => boolean): { release(): void } {
      const send = worker.send.bind(worker) as Send;
      const held: unknown[][] = [];
      const heldRequests = new Set<string>();
      // The sockets of requests with a body forwarded to this process: the primary answers them for it.
      const forwarded = new Set<Socket>();

      worker.send = ((...args: unknown[]) => {
        const [message] = args;
        const type = stickyType(message);
        if (type === undefined) return send(...args);
        if (type === 'sticky:http-chunk-start' && arriving) {
          const socket = arriving;
          arriving = undefined;
          forwarded.add(socket);
          socket.once('close', () => forwarded.delete(socket));
        }
        // A request already forwarded goes on (a process that has begun to stop drains it); the later chunks
        // of one whose start is held wait behind it.
        const opens = type === 'sticky:connection' || type === 'sticky:http-chunk-start';
        if (opens ? isReady() : !heldRequests.has(connectionIdOf(message))) return send(...args);
        if (type === 'sticky:http-chunk-start') heldRequests.add(connectionIdOf(message));
        held.push(args);
        return true;
      }) as Worker['send'];

      worker.once('exit', () => {
        for (const [message, handle] of held.splice(0))
          if (stickyType(message) === 'sticky:connection' && isSocket(handle)) handle.destroy();
        for (const socket of forwarded) socket.destroy();
      });

      return {
        release() {
          heldRequests.clear();
          for (const args of held.splice(0)) send(...args);
        },
      };
    },
  };
}

function carriesBody(chunk: Buffer): boolean {
  const header = headerOf(chunk);
  return header.includes('content-length:') || header.includes('transfer-encoding:');
}

/** A request's head (request line and headers), lower-cased, from the first chunk read from its socket. */
export function headerOf(chunk: Buffer): string {
  const end = chunk.indexOf('\r\n\r\n');
  return chunk
    .subarray(0, end < 0 ? chunk.length : end)
    .toString('latin1')
    .toLowerCase();
}

function stickyType(message: unknown): string | undefined {
  const type = (message as { type?: unknown } | null)?.type;
  return typeof type === 'string' && type.startsWith('sticky:') ? type : undefined;
}

/** Sticky's id for a request with a body, on its start, its chunks and its abort. */
function connectionIdOf(message: unknown): string {
  return String((message as { connectionId?: unknown }).connectionId);
}

function isSocket(handle: unknown): handle is Socket {
  return typeof (handle as Socket | undefined)?.destroy === 'function';
}
