import { io, type Socket } from 'socket.io-client';
import { DEMO_PASSWORD } from '../../server/domain/seed.ts';
import type { LoginResponse } from '../../shared/auth.ts';
import type { ClientToServerEvents, ServerToClientEvents } from '../../shared/events.ts';
import type { IncidentEvent } from '../../shared/incident.ts';

export type ConsoleClient = Socket<ServerToClientEvents, ClientToServerEvents>;

export async function post(baseUrl: string, path: string, body: unknown, token?: string) {
  const res = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

export async function get(baseUrl: string, path: string, token?: string) {
  const res = await fetch(`${baseUrl}${path}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

export async function login(
  baseUrl: string,
  username: string,
  password = DEMO_PASSWORD,
): Promise<LoginResponse> {
  const res = await post(baseUrl, '/api/auth/login', { username, password });
  if (res.status !== 200)
    throw new Error(`login ${username} failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as LoginResponse;
}

/** A device key for a panic button at `facilityId`, made by the demo admin: the answer of `POST /api/api-keys`. */
export async function makeDeviceKey(baseUrl: string, name: string, facilityId: string) {
  const admin = await login(baseUrl, 'admin');
  return { admin, created: await post(baseUrl, '/api/api-keys', { name, facilityId }, admin.accessToken) };
}

/** `POST /api/alerts` as a device raises: with its `X-Api-Key`. */
export function raiseWithKey(baseUrl: string, key: string, body: unknown) {
  return fetch(`${baseUrl}/api/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify(body),
  });
}

/** Tracks every console a test opens so `closeConsoles()` in afterEach leaves no socket behind. */
const open = new Set<ConsoleClient>();

export function openConsole(
  baseUrl: string,
  token: string | undefined,
  extra: Record<string, unknown> = {},
): ConsoleClient {
  const socket: ConsoleClient = io(baseUrl, {
    auth: token === undefined ? {} : { token },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    ...extra,
  });
  open.add(socket);
  return socket;
}

/** Connects and resolves once connected; rejects with the server's connect_error. */
export function connectConsole(
  baseUrl: string,
  token: string | undefined,
  extra: Record<string, unknown> = {},
) {
  const socket = openConsole(baseUrl, token, extra);
  return new Promise<ConsoleClient>((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(err));
  });
}

/** Logs a demo account in and connects its console. */
export async function consoleFor(baseUrl: string, username: string, password = DEMO_PASSWORD) {
  const session = await login(baseUrl, username, password);
  const socket = await connectConsole(baseUrl, session.accessToken);
  return { socket, session };
}

export function closeConsoles() {
  for (const socket of open) socket.disconnect();
  open.clear();
}

/** The clientRef of each `alert:new` a Polsek Nusakambangan console on `baseUrl` hears, in order. */
export async function polsekHearing(baseUrl: string): Promise<string[]> {
  const dispatch = await consoleFor(baseUrl, 'dispatch.nusakambangan');
  const heard: string[] = [];
  dispatch.socket.on('alert:new', ({ alert }) => heard.push(alert.clientRef));
  return heard;
}

/** An incident's latest events, as joining it gives them (the console joins its room). */
export async function joinedTimeline(socket: ConsoleClient, incidentId: string): Promise<IncidentEvent[]> {
  const joined = await socket.emitWithAck('incident:join', { incidentId });
  if (!joined.ok) throw new Error(JSON.stringify(joined.error));
  return joined.data.events;
}
