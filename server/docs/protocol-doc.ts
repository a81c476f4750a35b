import { z } from 'zod';
import { CreateApiKeyRequest, CreatedApiKey } from '../../shared/api-keys.ts';
import {
  CreateUserRequest,
  LoginRequest,
  LoginResponse,
  RefreshRequest,
  ResetPasswordRequest,
  UpdateUserRequest,
} from '../../shared/auth.ts';
import { ErrorBody, errorCodes } from '../../shared/errors.ts';
import { type CommandName, commands, type ServerEvents, serverEvents } from '../../shared/events.ts';
import {
  Alert,
  EventsQuery,
  EventsResult,
  Incident,
  IncidentEvent,
  IncidentResult,
  LIST_SCAN_LIMIT,
  ListIncidentsQuery,
  ListIncidentsResult,
  RaiseAlert,
  RaiseResult,
} from '../../shared/incident.ts';

/** One line on each command; a command without one fails the protocol test, so none goes undocumented. */
const commandNotes: Record<CommandName, string> = {
  'session:whoami': 'Who the server thinks you are, and the rooms your console joined.',
  'alert:raise':
    'Raise an alert for your own Lapas (operator or security chief). Retries with the same `clientRef` return the original with `duplicate: true`; an alert for the same Lapas, category and block while an incident for them is active joins that incident. `silent: true` is a duress raise: routed as critical, and your login hears nothing of it, finds it nowhere and cannot act on it (`not_found`).',
  'alert:ack':
    "Acknowledge for your agency (corrections or police). A second ack by the same agency returns the incident unchanged. `onBehalfOf` records an ack received by radio, phone or in person from a party whose console is down; the ack counts for that unit's agency.",
  'incident:join':
    'Open an incident: its state and latest timeline events, and `incident:event` messages from now on.',
  'incident:leave': 'Stop receiving `incident:event` messages for an incident.',
  'incident:transition':
    'Move an incident along its lifecycle (see the transition table in the README). Counts against your note budget: notes and status changes share one per-user limit.',
  'incident:note':
    'Add a plain-text note to the timeline. Notes and status changes share one per-user limit.',
  'escalation:hold':
    'Hold (snooze) one chain of command for a while, with a reason (supervisors and security chiefs for the corrections chain, police commanders for the police chain). It resumes by itself at the end; the hold is on the timeline. Counts against your note budget, as its reason goes to every party.',
  sync: 'After a reconnect: every open incident in your scope, and those changed since the `cursor` you last received.',
};

const serverEventNotes: Record<keyof ServerEvents, string> = {
  'session:ended':
    'Your access token expired (`expired`: refresh and reconnect), or your session ended: logged out, its refresh token presented twice, the account disabled or its password reset (`revoked`: log in again). The socket closes next.',
  'alert:new': 'A new incident, or one more alert on an active incident, for a unit you belong to.',
  'incident:updated':
    'An incident you are a party to changed (ack, status, note, escalation…): the incident as it is now. Changes committed together (both chains climbing at once) bring one, at the seq of the last; `seq` may skip.',
  'incident:event': 'One timeline event of an incident whose room you joined.',
  'escalation:fired':
    'A chain of command climbed a level: sent to the rooms that level pages and to the incident room. Units it makes parties also get `alert:new`.',
  'escalation:reminder': 'A level still waiting for an acknowledgement is paged again.',
};

interface Route {
  method: string;
  path: string;
  who: string;
  note: string;
  body?: z.ZodType;
  query?: z.ZodType;
  response?: z.ZodType;
}

const routes: Route[] = [
  {
    method: 'POST',
    path: '/api/auth/login',
    who: 'anyone',
    note: 'Rate-limited per username and per address.',
    body: LoginRequest,
    response: LoginResponse,
  },
  {
    method: 'POST',
    path: '/api/auth/refresh',
    who: 'refresh token holder',
    note: 'Rotates the refresh token; replaying an old one ends the session.',
    body: RefreshRequest,
    response: LoginResponse,
  },
  {
    method: 'POST',
    path: '/api/auth/logout',
    who: 'refresh token holder',
    note: 'Ends the session (204).',
    body: RefreshRequest,
  },
  { method: 'GET', path: '/api/topology', who: 'any user', note: 'Units, blocks and who covers whom.' },
  {
    method: 'POST',
    path: '/api/alerts',
    who: 'operator / security chief (Bearer), or a device (`X-Api-Key`)',
    note: 'Same rules as `alert:raise`; 201 when stored, 200 for a duplicate.',
    body: RaiseAlert,
    response: RaiseResult,
  },
  {
    method: 'GET',
    path: '/api/incidents',
    who: 'any user',
    note: `Newest first, only incidents your unit is a party to; follow \`nextCursor\` until it is null. Each answer reads at most ${LIST_SCAN_LIMIT.toLocaleString('en')} incidents, so one may hold fewer than \`limit\`, even none, and still carry a cursor.`,
    query: ListIncidentsQuery,
    response: ListIncidentsResult,
  },
  {
    method: 'GET',
    path: '/api/incidents/:id',
    who: 'a party',
    note: '404 for ids you may not know of.',
    response: IncidentResult,
  },
  {
    method: 'GET',
    path: '/api/incidents/:id/events',
    who: 'a party',
    note: 'Timeline events with `seq > afterSeq`, oldest first.',
    query: EventsQuery,
    response: EventsResult,
  },
  { method: 'GET', path: '/api/users', who: 'admin', note: 'All accounts.' },
  {
    method: 'POST',
    path: '/api/users',
    who: 'admin',
    note: 'Create an account; the role must fit the unit.',
    body: CreateUserRequest,
  },
  {
    method: 'PATCH',
    path: '/api/users/:id',
    who: 'admin',
    note: 'Rename, disable or enable; disabling ends every session and socket.',
    body: UpdateUserRequest,
  },
  {
    method: 'POST',
    path: '/api/users/:id/password',
    who: 'admin',
    note: 'Set a new password; ends every session.',
    body: ResetPasswordRequest,
  },
  { method: 'GET', path: '/api/api-keys', who: 'admin', note: 'Device keys (never the key itself).' },
  {
    method: 'POST',
    path: '/api/api-keys',
    who: 'admin',
    note: 'Create a device key for one Lapas; the key is shown once.',
    body: CreateApiKeyRequest,
    response: CreatedApiKey,
  },
  { method: 'DELETE', path: '/api/api-keys/:id', who: 'admin', note: 'Revoke a device key.' },
  {
    method: 'GET',
    path: '/healthz · /readyz · /metrics',
    who: 'anyone',
    note: 'Liveness, readiness (Redis, shutdown), Prometheus metrics.',
  },
];

/** Types written out once under "Types" and referred to by name everywhere else. */
const namedTypes: Record<string, z.ZodType> = { Incident, Alert, IncidentEvent };

function rawSchema(schema: z.ZodType, io: 'input' | 'output'): unknown {
  const strip = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(strip);
    if (!node || typeof node !== 'object') return node;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      // A reader needs neither the draft URL nor the uuid regex beside `format: uuid`.
      if (k === '$schema' || (k === 'pattern' && 'format' in node)) continue;
      out[k] = strip(v);
    }
    return out;
  };
  return strip(z.toJSONSchema(schema, { io, unrepresentable: 'any' }));
}

const namedJson = new Map(
  Object.entries(namedTypes).map(([name, t]) => [JSON.stringify(rawSchema(t, 'output')), name]),
);

function schemaOf(schema: z.ZodType, io: 'input' | 'output', expand = false): string {
  const refer = (node: unknown, top: boolean): unknown => {
    if (!top) {
      const name = namedJson.get(JSON.stringify(node));
      if (name) return { $ref: `#/types/${name}` };
    }
    if (Array.isArray(node)) return node.map((n) => refer(n, false));
    if (!node || typeof node !== 'object') return node;
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, refer(v, false)]));
  };
  return JSON.stringify(refer(rawSchema(schema, io), expand), null, 2);
}

const block = (title: string, schema: z.ZodType, io: 'input' | 'output', expand = false) =>
  `<details><summary>${title}</summary>\n\n\`\`\`json\n${schemaOf(schema, io, expand)}\n\`\`\`\n\n</details>\n`;

/** docs/PROTOCOL.md, generated from the shared schemas so the document cannot drift from the code. */
export function renderProtocol(): string {
  const out: string[] = [];
  out.push(`<!-- Generated by \`npm run docs:protocol\` from the zod schemas in shared/. Do not edit by hand. -->

# Sinergi protocol

Everything a console or an integration sends or receives. The zod schemas in \`shared/\` are the source of
truth; this file is generated from them and a test fails if it is out of date.

## Connecting

1. \`POST /api/auth/login\` with \`{ username, password }\` → \`{ accessToken, refreshToken, user }\`.
2. Connect Socket.IO to the same origin with \`auth: { token: accessToken }\` (never in the query string).
   A missing, bad or expired token is refused with a \`connect_error\` whose message is \`unauthorized\`.
3. On connect the socket joins its unit's room (\`facility:<id>\`, \`precinct:<id>\` or \`command:<id>\`), its
   role room (\`role:<unitId>:<role>\`), its own user room and the room of its login (session). \`incident:join\` adds \`incident:<id>\`.
4. Before the access token expires, \`POST /api/auth/refresh\` and reconnect with the new token; at expiry
   the server sends \`session:ended\` and disconnects the socket.
5. After any reconnect, call \`sync\` with the last \`cursor\` you received.

## Answers and errors

Every client → server event takes an acknowledgement callback as its last argument and is answered with
exactly one envelope: \`{ ok: true, data }\` or \`{ ok: false, error: { code, message, issues? } }\`. HTTP errors
use \`{ error: { code, message, issues? } }\`. An event sent without a callback is ignored.

A console that gets no answer (a timeout, a dropped connection) cannot tell whether its command was made.
Commands that change an incident (\`alert:raise\`, \`alert:ack\`, \`incident:transition\`, \`incident:note\`,
\`escalation:hold\`) take a \`clientRef\` (a UUID, fresh for each command; required for a raise): send the
command again with the same \`clientRef\` and it is made once, on any server process, however often it
arrives (for a week after it was made). A repeat of one already made is answered \`duplicate: true\` with
the incident as it is now (to the login of a silent raise, as its raise left it), costs no rate-limit point,
even with none left, and changes nothing, even where the command itself would now be refused (a status the
incident has reached, an incident since closed). A \`clientRef\` is its sender's: another user's equal one is
another command. Use a fresh one for every command: a note and a status change under one \`clientRef\` are
one command, and the second is answered as a repeat of the first.

| code | meaning | HTTP |
|---|---|---|
`);
  const http: Record<(typeof errorCodes)[number], [string, number]> = {
    validation_failed: ['the payload failed its schema; `issues` lists each field', 400],
    unauthorized: ['no valid token or session', 401],
    forbidden: ['you are a party, but your role may not do this', 403],
    not_found: ['no such thing, or nothing you may know of', 404],
    conflict: ['already exists (a username)', 409],
    invalid_transition: ['the incident cannot make that move from where it is', 409],
    payload_too_large: ['the body is over 64 KiB', 413],
    rate_limited: [
      'too many raises, notes, status changes and holds, or logins; `retryAfterMs` (and `Retry-After`) say when',
      429,
    ],
    unavailable: ['the store is unreachable or the server is shutting down; retry', 503],
    internal: ['a bug; logged with the request id', 500],
  };
  for (const code of errorCodes) out.push(`| \`${code}\` | ${http[code][0]} | ${http[code][1]} |\n`);
  out.push(`\n${block('Error body', ErrorBody, 'output')}\n## Client → server events\n\n`);
  for (const name of Object.keys(commands) as CommandName[]) {
    out.push(`### \`${name}\`\n\n${commandNotes[name]}\n\n`);
    out.push(block('payload', commands[name].payload, 'input'));
    out.push(block('data (in `{ ok: true, data }`)', commands[name].result, 'output'));
    out.push('\n');
  }
  out.push(
    '## Server → client events\n\nEvery incident message carries `incidentId` and `seq`: a console that sees a gap in `seq` has missed something and should `sync`.\n\n',
  );
  for (const name of Object.keys(serverEvents) as (keyof ServerEvents)[]) {
    out.push(
      `### \`${name}\`\n\n${serverEventNotes[name]}\n\n${block('payload', serverEvents[name], 'output')}\n`,
    );
  }
  out.push(
    '## HTTP\n\nAuthenticated routes take `Authorization: Bearer <accessToken>`.\n\n| method | path | who | what |\n|---|---|---|---|\n',
  );
  for (const r of routes) out.push(`| ${r.method} | \`${r.path}\` | ${r.who} | ${r.note} |\n`);
  out.push('\n');
  for (const r of routes) {
    if (!r.body && !r.query && !r.response) continue;
    out.push(`### ${r.method} \`${r.path}\`\n\n`);
    if (r.body) out.push(block('body', r.body, 'input'));
    if (r.query) out.push(block('query', r.query, 'input'));
    if (r.response) out.push(block('response', r.response, 'output'));
    out.push('\n');
  }
  out.push('## Types\n\nReferred to above as `#/types/<name>`.\n\n');
  for (const [name, schema] of Object.entries(namedTypes))
    out.push(`### ${name}\n\n${block(name, schema, 'output', true)}\n`);
  return out.join('');
}
