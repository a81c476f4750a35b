import { type Server as HttpServer, type IncomingMessage, ServerResponse } from 'node:http';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import type { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { rooms, roomsForMember } from '../../../shared/rooms.ts';
import type { TopologyIndex } from '../../../shared/topology.ts';
import type { AuthService } from '../../domain/auth-service.ts';
import type { Logger } from '../../logger.ts';
import type { Metrics } from '../../metrics.ts';
import { toDomainError } from '../error-mapping.ts';
import type { ConsoleSocket, Hub } from './socket-types.ts';

export interface HubSettings {
  publicOrigins: readonly string[];
  pingIntervalMs: number;
  pingTimeoutMs: number;
  recoveryWindowMs: number;
  maxHttpBufferSize: number;
}

export interface HubDeps {
  httpServer: HttpServer;
  adapterRedis: Redis;
  keys: { socketStream: string; socketChannelPrefix: string; socketSessionPrefix: string };
  logger: Logger;
  metrics: Metrics;
  auth: AuthService;
  topology: TopologyIndex;
  settings: HubSettings;
  /** Installs each command's listener on a newly connected socket. */
  handlers: ((socket: ConsoleSocket) => void)[];
}

// The busiest broadcast rate the adapter stream must keep for recovering consoles: alerts, updates and
// timeline events of a major disturbance across the island.
const PEAK_BROADCASTS_PER_SECOND = 500;

export function createHub(deps: HubDeps): {
  io: Hub;
  dropSessions(userId: string, sessionId: string | undefined): void;
} {
  const { settings, logger, metrics } = deps;
  const origins = new Set(settings.publicOrigins);
  const missed = missedPacketsHeld();

  const io: Hub = new Server(deps.httpServer, {
    serveClient: false,
    perMessageDeflate: false,
    maxHttpBufferSize: settings.maxHttpBufferSize,
    pingInterval: settings.pingIntervalMs,
    pingTimeout: settings.pingTimeoutMs,
    cors: { origin: [...origins], credentials: false },
    // Browsers do not apply CORS to WebSocket upgrades, so the allow-list is enforced here for both
    // transports. Requests without an Origin come from non-browser clients (integrations, tools).
    allowRequest: (req: IncomingMessage, callback) => {
      const origin = req.headers.origin;
      callback(null, origin === undefined || origins.has(origin));
    },
    connectionStateRecovery: {
      maxDisconnectionDuration: settings.recoveryWindowMs,
      // A recovered socket must pass authentication again: a revoked user must not slip back in.
      skipMiddlewares: false,
    },
    connectTimeout: CONNECT_TIMEOUT_MS,
    adapter: patched(
      createAdapter(deps.adapterRedis, {
        streamName: deps.keys.socketStream,
        channelPrefix: deps.keys.socketChannelPrefix,
        sessionKeyPrefix: deps.keys.socketSessionPrefix,
        maxLen: Math.max(10_000, Math.ceil((PEAK_BROADCASTS_PER_SECOND * settings.recoveryWindowMs) / 1000)),
        onlyPlaintext: true,
      }),
      (adapter) => {
        skipOwnEntries(adapter);
        missed.holdFrom(adapter);
      },
    ),
  });

  // Nothing after the handshake reads the raw HTTP request; releasing it saves memory per console. Engine.IO
  // also keeps it through the stand-in response it builds for each WebSocket upgrade (which lives as long as
  // the connection, to forward its "close" to middlewares — Sinergi has none), so that lets go of it too.
  const upgradeResponses = new WeakMap<IncomingMessage, { req: IncomingMessage | null }>();
  io.engine.use((req: IncomingMessage, res: { req: IncomingMessage | null }, next: () => void) => {
    if (!(res instanceof ServerResponse)) upgradeResponses.set(req, res);
    next();
  });
  io.engine.on('connection', (rawSocket: { request: IncomingMessage | null }) => {
    const { request } = rawSocket;
    const response = request && upgradeResponses.get(request);
    if (response) response.req = null;
    rawSocket.request = null;
  });

  io.use(async (socket, next) => {
    const token = (socket.handshake.auth as { token?: unknown } | undefined)?.token;
    try {
      const principal = await deps.auth.authenticate(typeof token === 'string' ? token : undefined);
      // A recovered connection comes back in the rooms, and with the missed packets, of the login it had.
      // A client may reconnect under another login (a workstation's next shift, reusing its socket): that
      // login must not inherit them. Its own rooms are joined once it connects.
      const before = socket.recovered ? (socket.data as Partial<typeof principal> | undefined) : undefined;
      if (before && before.sessionId !== principal.sessionId) {
        for (const room of [...socket.rooms]) if (room !== socket.id) void socket.leave(room);
        missed.take(socket.id);
      }
      socket.data = principal;
      next();
    } catch (error) {
      const code = toDomainError(error)?.code;
      if (code !== 'unauthorized') logger.warn({ err: error }, 'socket authentication could not complete');
      next(new Error(code === 'unauthorized' || code === undefined ? 'unauthorized' : code));
    }
  });

  // With connection-state recovery a plain socket.emit travels through the Redis adapter and would arrive
  // after the disconnect; a local emit goes out at once, ahead of it.
  const end = (socket: ConsoleSocket, reason: 'expired' | 'revoked') => {
    io.local.to(socket.id).emit('session:ended', { reason });
    socket.disconnect();
  };
  // The client refreshes its token and reconnects; until then a console must not keep receiving.
  const expiries = createExpiries((socket) => end(socket, 'expired'));

  // Shared by every console (Socket.IO calls it with the socket as `this`): no closure per console.
  function onDisconnect(this: ConsoleSocket) {
    const { user, expiresAt } = this.data;
    expiries.remove(this, expiresAt);
    const unit = deps.topology.unit(user.unitId);
    if (unit) metrics.socketsConnected.dec({ unit_type: unit.type });
  }

  io.on('connection', (socket) => {
    const { user, sessionId, expiresAt } = socket.data;
    const unit = deps.topology.unit(user.unitId);
    if (!unit) {
      socket.disconnect(true);
      return;
    }
    void socket.join(roomsForMember(unit, user.role, user.id, sessionId));
    // Sent as the constructor would have: as they were broadcast, each ending with its stream offset, and
    // locally, not appended to the stream a second time.
    const send = io.local.to(socket.id) as unknown as { emit(...packet: unknown[]): boolean };
    for (const packet of missed.take(socket.id)) send.emit(...packet);
    // A session that ended between the middleware's check and these joins was revoked before this socket
    // could hear of it.
    deps.auth.recheck(socket.data).catch((error: unknown) => {
      if (toDomainError(error)?.code === 'unauthorized') end(socket, 'revoked');
    });
    metrics.socketsConnected.inc({ unit_type: unit.type });
    expiries.add(socket, expiresAt);
    socket.on('disconnect', onDisconnect);
    for (const install of deps.handlers) install(socket);
  });

  /** Ends a user's sockets on this process, or one session's (every process hears of each revocation). */
  const dropSessions = (userId: string, sessionId: string | undefined) => {
    const room = sessionId === undefined ? rooms.user(userId) : rooms.session(sessionId);
    io.local.to(room).emit('session:ended', { reason: 'revoked' });
    io.local.in(room).disconnectSockets();
  };

  return { io, dropSessions };
}

type AdapterMaker = ReturnType<typeof createAdapter>;
type StreamsAdapter = ReturnType<AdapterMaker>;

/** The adapter with `patch` applied to each namespace's instance. */
function patched(make: AdapterMaker, patch: (adapter: StreamsAdapter) => void): AdapterMaker {
  // Socket.IO calls it with `new`, which an arrow function refuses; a function returning an object gives that.
  // biome-ignore lint/complexity/useArrowFunction: constructed with `new`
  return function (nsp) {
    const adapter = make(nsp);
    patch(adapter);
    return adapter;
  };
}

/**
 * Every process reads the whole broadcast stream back, its own entries included, and the adapter parses
 * each entry's JSON (an incident and its alert) before noticing it came from itself and dropping it: on a
 * single process, one parse of every broadcast for nothing. The sender's id is a plain field of the entry.
 */
function skipOwnEntries(adapter: StreamsAdapter) {
  // The adapter's own id: `protected` in its types, the field the adapter compares itself.
  const { uid } = adapter as unknown as { uid: string };
  const read = adapter.onRawMessage.bind(adapter);
  adapter.onRawMessage = (raw, offset) => (raw.uid === uid ? undefined : read(raw, offset));
}

// How long a reconnecting console has to pass the middleware (Socket.IO's own default, stated here because
// held packets are kept that long).
const CONNECT_TIMEOUT_MS = 45_000;

/**
 * Socket.IO sends a recovered session's missed packets from the socket's constructor, before the middleware
 * has checked its token: a console whose session ended, or whose account was disabled, while it was away
 * would still be sent everything its rooms got meanwhile. The packets are held instead, and sent once the
 * socket has passed the middleware, or dropped.
 */
function missedPacketsHeld() {
  const held = new Map<string, unknown[][]>();
  return {
    holdFrom(adapter: StreamsAdapter) {
      const restore = adapter.restoreSession.bind(adapter);
      adapter.restoreSession = async (pid, offset) => {
        const session = await restore(pid, offset);
        if (!session) return session;
        const packets = session.missedPackets;
        held.set(session.sid, packets);
        // Unless a later recovery of the same session holds its own by then.
        setTimeout(
          () => held.get(session.sid) === packets && held.delete(session.sid),
          CONNECT_TIMEOUT_MS,
        ).unref();
        return { ...session, missedPackets: [] };
      };
    },
    /** The packets held for a socket that has now passed the middleware: each an event's name and arguments. */
    take(socketId: string): unknown[][] {
      const packets = held.get(socketId) ?? [];
      held.delete(socketId);
      return packets;
    },
  };
}

/**
 * One timer per access-token expiry instead of one per console: a unit's workstations share an account and
 * its token, so thousands of consoles need only as many timers as there are sessions.
 */
function createExpiries(onExpired: (socket: ConsoleSocket) => void) {
  const byExpiry = new Map<number, { timer: NodeJS.Timeout; sockets: Set<ConsoleSocket> }>();
  return {
    add(socket: ConsoleSocket, expiresAt: number) {
      let group = byExpiry.get(expiresAt);
      if (!group) {
        const sockets = new Set<ConsoleSocket>();
        const timer = setTimeout(
          () => {
            byExpiry.delete(expiresAt);
            for (const expired of sockets) onExpired(expired);
          },
          Math.max(0, expiresAt - Date.now()),
        );
        group = { timer, sockets };
        byExpiry.set(expiresAt, group);
      }
      group.sockets.add(socket);
    },
    remove(socket: ConsoleSocket, expiresAt: number) {
      const group = byExpiry.get(expiresAt);
      if (!group?.sockets.delete(socket) || group.sockets.size > 0) return;
      clearTimeout(group.timer);
      byExpiry.delete(expiresAt);
    },
  };
}
