import { randomUUID } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import type { z } from 'zod';
import type { LoginResponse, PublicUser } from '../../shared/auth.ts';
import type { Ack } from '../../shared/envelope.ts';
import type { ErrorBody } from '../../shared/errors.ts';
import type {
  ClientToServerEvents,
  CommandName,
  CommandResult,
  Commands,
  ServerToClientEvents,
} from '../../shared/events.ts';
import type { Incident } from '../../shared/incident.ts';
import { roleLabels } from '../../shared/roles.ts';
import { ApiError, failureText, logout, refresh } from './auth-api.ts';
import { alertDetail, changeDetail, clock, errorLines, eventDetail, line, shortId } from './format.ts';

const ACK_TIMEOUT_MS = 15_000;
const RETRY_MS = 5_000;
// A change left unanswered (the server could not tell whether the store took it, or no answer came) is sent
// again, with the same clientRef, this many times in all, this far apart: the server makes it once.
const CHANGE_ATTEMPTS = 3;
const RESEND_AFTER_MS = 1_000;

/** The commands that change an incident: each carries a clientRef, so sending it again is safe. */
type ChangeName = 'alert:raise' | 'alert:ack' | 'incident:transition' | 'incident:note' | 'escalation:hold';

type ConsoleSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export interface SessionOptions {
  url: string;
  login: LoginResponse;
  print: (text: string) => void;
  /** The session cannot go on (its refresh token was refused): the console should exit. */
  onFatal: (error: ErrorBody) => void;
}

/**
 * One logged-in console: the socket, the tokens that keep it authenticated, and the incidents it knows.
 * Server messages are printed as they arrive; commands go through `send`.
 */
export class ConsoleSession {
  readonly user: PublicUser;
  readonly incidents = new Map<string, Incident>();
  private readonly quiet = new Set<string>();
  /** Settles after the first sync, so commands typed early can resolve id prefixes. */
  readonly ready: Promise<void>;
  private readonly socket: ConsoleSocket;
  private tokens: Omit<LoginResponse, 'user'>;
  private cursor: string | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private offlineNoticeShown = false;

  constructor(private readonly options: SessionOptions) {
    const { user, ...tokens } = options.login;
    this.user = user;
    this.tokens = tokens;
    // A function, so every (re)connection presents the newest access token.
    this.socket = io(options.url, {
      auth: (cb) => cb({ token: this.tokens.accessToken }),
      transports: ['websocket'],
    });
    let firstSync = () => {};
    this.ready = new Promise((resolve) => {
      firstSync = resolve;
    });
    this.listen(() => firstSync());
    this.scheduleRenewal(renewalDelay(this.tokens.accessTokenExpiresAt));
  }

  /** Sends a command and waits for its envelope; silence past the timeout becomes an `unavailable` error. */
  async send<K extends CommandName>(
    name: K,
    payload: z.input<Commands[K]['payload']>,
  ): Promise<Ack<CommandResult<K>>> {
    // Socket.IO's types cannot follow a generic event name; this signature restates the typed command map.
    const socket: Socket = this.socket;
    try {
      return await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(name, payload);
    } catch {
      return {
        ok: false,
        error: { code: 'unavailable', message: `no answer within ${ACK_TIMEOUT_MS / 1000} s` },
      };
    }
  }

  /**
   * Sends a change under a fresh clientRef, and sends it again under the same one while the answer is
   * `unavailable`: the officer's note or move is then made once, not lost and not doubled.
   */
  async change<K extends ChangeName>(
    name: K,
    payload: Omit<z.input<Commands[K]['payload']>, 'clientRef'>,
  ): Promise<Ack<CommandResult<K>>> {
    const sent = { ...payload, clientRef: randomUUID() } as z.input<Commands[K]['payload']>;
    for (let attempt = 1; ; attempt++) {
      const res = await this.send(name, sent);
      if (res.ok || res.error.code !== 'unavailable' || attempt === CHANGE_ATTEMPTS) return res;
      this.options.print(`no answer yet (${res.error.message}); sending it again`);
      await new Promise((resolve) => setTimeout(resolve, RESEND_AFTER_MS));
    }
  }

  /** Keeps an incident unless a newer state is already known; returns the state it replaced. */
  learn(incident: Incident): { fresh: boolean; before: Incident | undefined } {
    const before = this.incidents.get(incident.id);
    const fresh = !this.quiet.has(incident.id) && (!before || before.seq < incident.seq);
    if (fresh) this.incidents.set(incident.id, incident);
    return { fresh, before };
  }

  /** After a duress raise: this console never shows that incident, as the server never shows it the alarm. */
  keepQuietAbout(incidentId: string): void {
    if (!this.incidents.has(incidentId)) this.quiet.add(incidentId);
  }

  printError(error: ErrorBody): void {
    for (const text of errorLines(error)) this.options.print(text);
  }

  /** Stops renewing, disconnects and ends the session on the server; safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.renewTimer);
      await this.renewing;
      this.socket.disconnect();
      await logout(this.options.url, this.tokens.refreshToken).catch(() => undefined);
    })();
    return this.closing;
  }

  private listen(onFirstSync: () => void): void {
    const { print } = this.options;
    this.socket.on('connect', () => {
      this.offlineNoticeShown = false;
      const until = `session valid until ${clock(this.tokens.accessTokenExpiresAt)}`;
      const { username, role, unitId } = this.user;
      print(
        this.cursor === undefined
          ? `connected as ${username} (${role}: ${roleLabels[role].id}, ${unitId}); ${until}`
          : `reconnected; ${until}`,
      );
      void this.sync().finally(onFirstSync);
    });
    this.socket.on('disconnect', (reason) => {
      if (reason === 'io client disconnect') return;
      print(`disconnected (${reason})`);
      // The server let go of this socket (its token expired or was revoked): it will not come back alone.
      if (reason === 'io server disconnect') void this.renew();
    });
    this.socket.on('connect_error', (error) => {
      if (this.socket.active) {
        this.noticeOffline(`cannot reach ${this.options.url} (${error.message}); retrying`);
      } else if (error.message === 'unauthorized') {
        void this.renew();
      } else {
        print(`connection refused (${error.message}); retrying in ${RETRY_MS / 1000} s`);
        this.scheduleRenewal(RETRY_MS);
      }
    });
    this.socket.on('session:ended', ({ reason }) => print(`session ${reason}; renewing`));
    this.socket.on('alert:new', ({ incident, alert }) => {
      if (this.noteGap(incident).fresh)
        print(line('ALERT', alert.raisedAt, incident, alertDetail(alert, incident)));
    });
    this.socket.on('incident:updated', ({ incident }) => {
      const { fresh, before } = this.noteGap(incident);
      if (fresh) print(line('UPDATE', incident.updatedAt, incident, changeDetail(before, incident)));
    });
    this.socket.on('incident:event', ({ incidentId, event }) =>
      this.printAbout('EVENT', event.at, incidentId, `#${event.seq} ${eventDetail(event)}`),
    );
    this.socket.on('escalation:fired', ({ incidentId, chain, level, label, firedAt }) =>
      this.printAbout('ESCAL', firedAt, incidentId, `${chain} chain up to level ${level}: ${label}`),
    );
    this.socket.on('escalation:reminder', ({ incidentId, chain, level, round }) =>
      this.printAbout(
        'REMIND',
        new Date().toISOString(),
        incidentId,
        `still not acknowledged by the ${chain} chain at level ${level} (page ${round + 1})`,
      ),
    );
  }

  /** A line about an incident, with its summary when this console has it. */
  private printAbout(tag: string, at: string, incidentId: string, detail: string): void {
    const known = this.incidents.get(incidentId);
    this.options.print(
      known
        ? line(tag, at, known, detail)
        : `${clock(at)} ${tag.padEnd(6)} ${shortId(incidentId)} — ${detail}`,
    );
  }

  /** Says once per outage that the server is out of reach, rather than at every retry. */
  private noticeOffline(text: string): void {
    if (!this.offlineNoticeShown) this.options.print(text);
    this.offlineNoticeShown = true;
  }

  /** Learns a pushed incident; a jump in `seq` means messages were missed, which a sync fills in. */
  private noteGap(incident: Incident) {
    const result = this.learn(incident);
    if (result.before && incident.seq > result.before.seq + 1) void this.sync();
    return result;
  }

  /** Open incidents on the first call; afterwards whatever changed since the last cursor. */
  private async sync(): Promise<void> {
    for (let more = true; more; ) {
      const first = this.cursor === undefined;
      const res = await this.send('sync', first ? {} : { since: this.cursor });
      if (!res.ok) return this.printError(res.error);
      const { cursor, open, changed } = res.data;
      this.cursor = cursor;
      more = res.data.more;
      if (first) this.options.print(`${open.length} open incident(s)`);
      for (const incident of [...open, ...changed]) {
        const { fresh, before } = this.learn(incident);
        const detail = before ? changeDetail(before, incident) : '';
        if (fresh) this.options.print(line(first ? 'OPEN' : 'SYNC', incident.updatedAt, incident, detail));
      }
    }
  }

  private scheduleRenewal(delayMs: number): void {
    if (this.closing) return;
    clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => void this.renew(), delayMs);
  }

  private renew(): Promise<void> {
    this.renewing ??= this.refreshAndReconnect().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async refreshAndReconnect(): Promise<void> {
    try {
      this.tokens = await refresh(this.options.url, this.tokens.refreshToken);
    } catch (error) {
      if (error instanceof ApiError && error.body.code === 'unauthorized')
        return this.options.onFatal(error.body);
      this.noticeOffline(`could not renew the session (${failureText(error)}); retrying`);
      return this.scheduleRenewal(RETRY_MS);
    }
    if (this.closing) return;
    this.scheduleRenewal(renewalDelay(this.tokens.accessTokenExpiresAt));
    // Reconnect now so the socket carries the new token before the server ends the old one.
    this.socket.disconnect().connect();
  }
}

/** Renew when four fifths of the access token's life have passed. */
function renewalDelay(expiresAt: string): number {
  return Math.max(1000, (Date.parse(expiresAt) - Date.now()) * 0.8);
}
