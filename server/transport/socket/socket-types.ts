import type { Server, Socket } from 'socket.io';
import type {
  ClientToServerEvents,
  InterServerEvents,
  ServerToClientEvents,
  SocketData,
} from '../../../shared/events.ts';

export type Hub = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type ConsoleSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
