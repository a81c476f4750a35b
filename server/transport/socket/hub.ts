import type { Server as HttpServer, IncomingMessage } from 'node:http';
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

export function createHub(deps: HubDeps): { io: Hub; dropUser(userId: string): void } {
  const { settings, logger, metrics } = deps;
  const origins = new Set(settings.publicOrigins);

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
    adapter: createAdapter(deps.adapterRedis, {
      streamName: deps.keys.socketStream,
      channelPrefix: deps.keys.socketChannelPrefix,
      sessionKeyPrefix: deps.keys.socketSessionPrefix,
      maxLen: Math.max(10_000, Math.ceil((PEAK_BROADCASTS_PER_SECOND * settings.recoveryWindowMs) / 1000)),
      onlyPlaintext: true,
    }),
  });

  // Nothing after the handshake reads the raw HTTP request; releasing it saves memory per console.
  io.engine.on('connection', (rawSocket: { request: IncomingMessage | null }) => {
    rawSocket.request = null;
  });

  io.use(async (socket, next) => {
    const token = (socket.handshake.auth as { token?: unknown } | undefined)?.token;
    try {
      const principal = await deps.auth.authenticate(typeof token === 'string' ? token : undefined);
      socket.data = principal;
      next();
    } catch (error) {
      const code = toDomainError(error)?.code;
      if (code !== 'unauthorized') logger.warn({ err: error }, 'socket authentication could not complete');
      next(new Error(code === 'unauthorized' || code === undefined ? 'unauthorized' : code));
    }
  });

  io.on('connection', (socket) => {
    const { user, expiresAt } = socket.data;
    const unit = deps.topology.unit(user.unitId);
    if (!unit) {
      socket.disconnect(true);
      return;
    }
    void socket.join(roomsForMember(unit, user.role, user.id));
    metrics.socketsConnected.inc({ unit_type: unit.type });

    // The client refreshes its token and reconnects; until then this socket must not keep receiving.
    const expiry = setTimeout(
      () => {
        // With connection-state recovery a plain socket.emit travels through the Redis adapter and would
        // arrive after the disconnect; a local emit goes out at once, ahead of it.
        io.local.to(socket.id).emit('session:ended', { reason: 'expired' });
        socket.disconnect();
      },
      Math.max(0, expiresAt - Date.now()),
    );

    socket.on('disconnect', () => {
      clearTimeout(expiry);
      metrics.socketsConnected.dec({ unit_type: unit.type });
    });
    for (const install of deps.handlers) install(socket);
  });

  /** Ends a revoked user's sockets on this process (every process hears of each revocation). */
  const dropUser = (userId: string) => {
    io.local.to(rooms.user(userId)).emit('session:ended', { reason: 'revoked' });
    io.local.in(rooms.user(userId)).disconnectSockets();
  };

  return { io, dropUser };
}
