/**
 * The baseline: a bare Socket.IO server in its own process, with no authentication, storage or routing. A
 * console joins the rooms it names in its handshake; a raise carries its target rooms and payload, and the
 * server broadcasts the payload to those rooms and acknowledges. Sinergi's overhead is what it adds to this.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { serveGenerator } from '../lib/processes.ts';

const httpServer = createServer();
// The same engine settings Sinergi runs with, so only what Sinergi adds differs.
const io = new Server(httpServer, {
  serveClient: false,
  perMessageDeflate: false,
  pingInterval: 10_000,
  pingTimeout: 20_000,
});

io.on('connection', (socket) => {
  const rooms = (socket.handshake.auth as { rooms?: unknown }).rooms;
  if (Array.isArray(rooms)) void socket.join(rooms.filter((r): r is string => typeof r === 'string'));
  socket.on('raise', (message: { rooms: string[]; payload: unknown }, ack: (res: unknown) => void) => {
    io.to(message.rooms).emit('alert:new', message.payload);
    ack({ ok: true });
  });
});

serveGenerator({
  async listen() {
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = httpServer.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}`, pid: process.pid };
  },
  async close() {
    await io.close();
    return {};
  },
});
