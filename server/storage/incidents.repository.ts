import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { EscalationSnapshot } from '../../shared/escalation.ts';
import type { Alert, Incident, IncidentEvent } from '../../shared/incident.ts';
import { isCommandTimeout } from '../redis/redis-errors.ts';
import type { RedisKeys } from './keys.ts';
import { createPolicyTexts } from './policy-texts.ts';

/** An incident as stored, with what the next append must chain to and the escalation policy in force. */
export interface StoredIncident {
  incident: Incident;
  lastHash: string;
  policy: EscalationSnapshot;
  /** The logins (sessions) of its silent raises: none of their consoles is ever told of it. */
  quiet: readonly string[];
}

export type ListedIncident = Pick<StoredIncident, 'incident' | 'quiet'>;

export interface Commit {
  /** The seq the incident had when the change was decided; the commit fails if it moved since. */
  expectedSeq: number;
  incident: Incident;
  event: IncidentEvent;
  /** Events before `event` in the same commit, oldest first (an append only): `incident` is after all. */
  earlier?: IncidentEvent[];
  /** Still in consoles' open lists (not closed, false alarm or cancelled). */
  listedOpen: boolean;
  /** The note of its delivery the commit writes (see undelivered.ts). */
  note: string;
}

/** What makes two alerts the same unfolding situation. */
export interface DedupScope {
  facilityId: string;
  category: string;
  location: { block: string };
  drill: boolean;
}

/** A client's command, by who sent it and the clientRef it gave (see CommandRef). */
export interface CommandRequest {
  userId: string;
  clientRef: string;
}

export interface AppendCommit extends Commit {
  /** The command the commit carries out, applied once however often it is sent. */
  request?: CommandRequest;
}

const requestField = (r: CommandRequest) => `${r.userId}:${r.clientRef}`;

export type AppendOutcome =
  | { status: 'committed'; changeSeq: number }
  | { status: 'conflict' }
  /** The request had been applied, by the change with this seq: nothing was stored. */
  | { status: 'duplicate'; seq: number };

export interface RaiseCommit extends Commit {
  alert: Alert;
  refKey: { userId: string; clientRef: string };
  dedup: DedupScope;
  /** The dedup record the decision saw ('' for none); a different one now means a concurrent raise. */
  expectedDedup: string;
  dedupWindowMs: number;
  /** The session (login) of a silent raise, added to the incident's quiet sessions. */
  quietFor?: string;
}

export type RaiseOutcome =
  | { status: 'committed'; changeSeq: number }
  | ({ status: 'duplicate' } & AlertRef)
  | { status: 'conflict' };

const REF_TTL_SECONDS = 7 * 24 * 3600;

/** How often a reminder round's claim is sent, under the same token, while its replies time out. */
const CLAIM_ATTEMPTS = 3;

// One incident change: check the seq it was decided on, store the new state, append its event, and keep the
// indexes in step — all or nothing, so there is never a state without its event or an event without its state.
// An event that brings a policy goes without it, beside the policy's ref; the text is stored once under that
// ref, which becomes the incident's policy in force (`policy` is where earlier versions kept its text).
// Each commit also notes itself as undelivered (see undelivered.ts), due by the store's clock, which every
// process claiming overdue notes reads too (servers on several hosts need not agree on the time). A commit
// that takes the incident out of the open lists (for good: no status leads back from there) drops what only
// a waiting chain needs, its reminder pages and the note of a spare timer, and marks it final so that a
// timer run still under way, having read the incident before, cannot bring them back.
// KEYS: incident, events, change-seq, changed, all, open, undelivered.  ARGV: see `commitArgs`.
const COMMIT_BODY = `
-- The event goes first: Redis does not undo a script's writes when a later command fails, and a refused
-- append must leave the incident as it was.
local function append(k, policies, seq, json, ref, policy, token)
  local fields = {'e', json}
  if ref ~= '' then
    fields[#fields + 1] = 'p'
    fields[#fields + 1] = ref
  end
  if token ~= '' then
    fields[#fields + 1] = 'c'
    fields[#fields + 1] = token
  end
  redis.call('XADD', k[2], seq .. '-1', unpack(fields))
  if ref ~= '' then
    redis.call('SET', policies .. ref, policy, 'NX')
    redis.call('HSET', k[1], 'policyRef', ref)
    redis.call('HDEL', k[1], 'policy')
  end
end
-- A commit that finds its incident moved on may be this very commit, applied already: ioredis sends a command
-- again when its connection dropped before the reply came. Its event carries the commit's token (two timer
-- runs deciding the same climb in the same millisecond seal identical events, so the event cannot tell); the
-- answer is then the incident's latest change number, as a commit that just ran would give.
local function applied(k, a)
  if a[16] == '' then return nil end
  local entry = redis.call('XRANGE', k[2], a[2] .. '-1', a[2] .. '-1')[1]
  local fields = entry and entry[2]
  if not fields or fields[#fields - 1] ~= 'c' or fields[#fields] ~= a[16] then return nil end
  return tonumber(redis.call('ZSCORE', k[4], a[6]))
end
local function commit(k, a)
  if (redis.call('HGET', k[1], 'seq') or '0') ~= a[1] then return applied(k, a) end
  append(k, a[13], a[2], a[4], a[11], a[12], a[16])
  redis.call('HSET', k[1], 'doc', a[3], 'seq', a[2], 'lastHash', a[5])
  local change = redis.call('INCR', k[3])
  redis.call('ZADD', k[4], change, a[6])
  redis.call('ZADD', k[5], a[7], a[6])
  local clock = redis.call('TIME')
  redis.call('ZADD', k[7], clock[1] * 1000 + math.floor(clock[2] / 1000) + tonumber(a[15]), a[14])
  local open = a[8] == '1'
  if open then redis.call('SADD', k[6], a[6]) else redis.call('SREM', k[6], a[6]) end
  if not open then
    redis.call('DEL', k[1] .. ':pages')
    redis.call('HDEL', k[1], 'spareTimer')
    redis.call('HSET', k[1], 'final', '1')
  end
  for _, unit in ipairs(cjson.decode(a[10])) do
    redis.call('ZADD', a[9] .. unit .. ':incidents', a[7], a[6])
    if open then redis.call('SADD', a[9] .. unit .. ':open', a[6]) else redis.call('SREM', a[9] .. unit .. ':open', a[6]) end
  end
  return change
end
`;

// KEYS: the seven commit keys, then the incident's requests hash.  ARGV: the sixteen commit args, the client's
// request ('' for none: "user:clientRef", applied once), then the events before the commit's own, as (seq,
// JSON, policy ref, policy JSON), oldest first. A request found applied answers with the seq that applied it,
// unless this is that very commit resent.
const APPEND = `${COMMIT_BODY}
local function committed(change)
  if not change then return {'conflict'} end
  return {'committed', tostring(change)}
end
if ARGV[17] ~= '' then
  local done = redis.call('HGET', KEYS[8], ARGV[17])
  if done then
    local change = applied(KEYS, ARGV)
    if change then return committed(change) end
    return {'duplicate', done}
  end
end
if #ARGV > 17 then
  if (redis.call('HGET', KEYS[1], 'seq') or '0') ~= ARGV[1] then return committed(applied(KEYS, ARGV)) end
  for i = 18, #ARGV, 4 do append(KEYS, ARGV[13], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], '') end
end
local change = commit(KEYS, ARGV)
if change and ARGV[17] ~= '' then
  redis.call('HSET', KEYS[8], ARGV[17], ARGV[2])
  redis.call('EXPIRE', KEYS[8], ${REF_TTL_SECONDS})
end
return committed(change)
`;

// KEYS: the seven commit keys, then alert ref, dedup.  ARGV: the sixteen commit args (no token: the ref, unique
// to this raise, tells a resent commit), then expected dedup record, ref value, ref TTL, dedup window (ms), and
// the session of a silent raise ('' for none), added to the incident's quiet sessions. The alert itself is in
// its event, which the ref names.
const RAISE = `${COMMIT_BODY}
local ref = redis.call('GET', KEYS[8])
if ref == ARGV[18] then return {'committed', redis.call('ZSCORE', KEYS[4], ARGV[6]) or '0'} end
if ref then return {'duplicate', ref} end
if (redis.call('GET', KEYS[9]) or '') ~= ARGV[17] then return {'conflict'} end
local change = commit(KEYS, ARGV)
if not change then return {'conflict'} end
redis.call('SET', KEYS[8], ARGV[18], 'EX', ARGV[19])
redis.call('SET', KEYS[9], ARGV[6], 'PX', ARGV[20])
if ARGV[21] ~= '' then
  local quiet = redis.call('HGET', KEYS[1], 'quiet')
  redis.call('HSET', KEYS[1], 'quiet', quiet and (quiet .. ' ' .. ARGV[21]) or ARGV[21])
end
return {'committed', tostring(change)}
`;

// KEYS: the incident, its pages hash.  ARGV: the claim's token, then (wait, round) pairs, a wait being
// "chain.generation.level". Claims each round later than the last one claimed for its wait while the chain
// still waits there (running, or exhausted at its top level, in that generation at that level): a timer run
// that read the incident before an acknowledgement, a hold or a climb must not page after it. Answers 1
// (claimed) or 0 for each pair, and 0 for all once the incident is final. A field holds "round:token": the
// same claim sent again after its reply was lost on a dropped connection finds its own token and is
// answered as claimed, not as a round already paged (which nobody would then page).
const CLAIM_PAGES = `
local final = redis.call('HGET', KEYS[1], 'final') == '1'
local doc = not final and redis.call('HGET', KEYS[1], 'doc')
local chains = doc and cjson.decode(doc).escalation.chains
local claimed = {}
for i = 2, #ARGV, 2 do
  local round = tonumber(ARGV[i + 1])
  local chain, generation, level = string.match(ARGV[i], '^(%a+)%.(%d+)%.(%d+)$')
  local c = chains and chains[chain]
  local waits = c and (c.status == 'running' or c.status == 'exhausted')
    and c.generation == tonumber(generation) and c.level == tonumber(level)
  local last, token = string.match(redis.call('HGET', KEYS[2], ARGV[i]) or '0', '^(%d+):?(.*)$')
  if not waits then
    claimed[#claimed + 1] = 0
  elseif round > tonumber(last) then
    redis.call('HSET', KEYS[2], ARGV[i], round .. ':' .. ARGV[1])
    claimed[#claimed + 1] = 1
  elseif round == tonumber(last) and token == ARGV[1] then
    claimed[#claimed + 1] = 1
  else
    claimed[#claimed + 1] = 0
  end
end
return claimed
`;

// KEYS: the incident.  ARGV: the spare timer's job id. Not on a final incident, whose commit dropped it.
const NOTE_SPARE_TIMER = `
if redis.call('HGET', KEYS[1], 'final') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'spareTimer', ARGV[1])
return 1
`;

/**
 * A script run by its SHA1 (EVALSHA), loaded again by EVAL when Redis has not seen it since its last start:
 * every commit would otherwise send the whole script text along with the incident.
 */
function luaScript(redis: Redis, source: string) {
  const sha = createHash('sha1').update(source).digest('hex');
  return async (numKeys: number, ...args: string[]): Promise<unknown> => {
    try {
      return await redis.evalsha(sha, numKeys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return redis.eval(source, numKeys, ...args);
    }
  };
}

/** Where a commit's note of its delivery must be forgotten by: after that, another process delivers it. */
export const REDELIVER_AFTER_MS = 5000;

export function createIncidentRepository(
  redis: Redis,
  keys: RedisKeys,
  options: {
    redeliverAfterMs?: number;
    /** Told of an incident whose stored document does not parse, which the reads that list skip. */
    onUnreadable?: (id: string, error: unknown) => void;
  } = {},
) {
  const redeliverAfterMs = options.redeliverAfterMs ?? REDELIVER_AFTER_MS;
  // An event that brings a policy (an opening, an alert raising the severity) is stored without it, beside
  // its ref, which also becomes the incident's policy in force: stored inline, a new incident's policy took a
  // third of what it wrote to the append-only file. Events are sealed, and read back, whole.
  const policies = createPolicyTexts(redis, keys);

  /** An event as stored: its JSON without the policy it brings, the policy's ref and text ('' for none). */
  function storedEvent(event: IncidentEvent): [json: string, ref: string, policy: string] {
    const policy = bringsAlert(event) ? event.data.escalation : undefined;
    if (!policy) return [JSON.stringify(event), '', ''];
    const { ref, json } = policies.textOf(policy);
    return [JSON.stringify({ ...event, data: { ...event.data, escalation: undefined } }), ref, json];
  }

  const appendScript = luaScript(redis, APPEND);
  const raiseScript = luaScript(redis, RAISE);
  const claimPagesScript = luaScript(redis, CLAIM_PAGES);
  const noteSpareTimerScript = luaScript(redis, NOTE_SPARE_TIMER);
  const commitKeys = (id: string) => [
    keys.incident(id),
    keys.incidentEvents(id),
    keys.changeSeq,
    keys.changed,
    keys.allIncidents,
    keys.openIncidents,
    keys.undelivered,
  ];
  /** `token` marks the commit's last event, so that the same commit sent again knows itself ('' for none). */
  const commitArgs = (c: Commit, token: string) => {
    const [json, ref, policy] = storedEvent(c.event);
    return [
      String(c.expectedSeq),
      String(c.event.seq),
      JSON.stringify(c.incident),
      json,
      c.event.hash,
      c.incident.id,
      String(Date.parse(c.incident.openedAt)),
      c.listedOpen ? '1' : '0',
      keys.unitIndexPrefix,
      JSON.stringify(c.incident.parties),
      ref,
      policy,
      keys.policyPrefix,
      c.note,
      String(redeliverAfterMs),
      token,
    ];
  };

  /** Stream entries back into events, each with the policy it brought. */
  async function eventsOf(rows: [id: string, fields: string[]][]): Promise<IncidentEvent[]> {
    const brought = await policies.read(rows.flatMap(([, f]) => (f[2] === 'p' && f[3] ? [f[3]] : [])));
    return rows.map(([, fields]) => {
      const event = JSON.parse(fields[1] ?? 'null') as IncidentEvent;
      const policy = fields[2] === 'p' ? brought.get(fields[3] ?? '') : undefined;
      if (policy && bringsAlert(event)) event.data.escalation = policy;
      return event;
    });
  }

  /** The alert an event brought (an opening, an attached alert), read from the timeline. */
  async function alertOfEvent(id: string, seq: number): Promise<Alert | undefined> {
    const [entry] = await redis.xrange(keys.incidentEvents(id), `${seq}-1`, `${seq}-1`);
    const event = entry ? (JSON.parse(entry[1][1] ?? 'null') as IncidentEvent) : undefined;
    return bringsAlert(event) ? event.data.alert : undefined;
  }

  const dedupKeyOf = (s: DedupScope) => keys.dedup(s.facilityId, s.category, s.location.block, s.drill);

  /** Incidents for the reads that list them, each with its quiet sessions (see `StoredIncident`). */
  async function loadMany(ids: string[]): Promise<ListedIncident[]> {
    if (ids.length === 0) return [];
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.hmget(keys.incident(id), 'doc', 'quiet');
    const rows = (await pipeline.exec()) ?? [];
    return rows.flatMap(([err, fields], i) => {
      const [doc, quiet] = (fields ?? []) as (string | null)[];
      if (err || !doc) return [];
      // One damaged record must not take every other incident of a unit's sync or list with it.
      try {
        return [{ incident: JSON.parse(doc) as Incident, quiet: sessionsOf(quiet) }];
      } catch (error) {
        options.onUnreadable?.(ids[i] ?? '', error);
        return [];
      }
    });
  }

  return {
    async load(id: string): Promise<StoredIncident | undefined> {
      const [doc, lastHash, ref, inline, quiet] = await redis.hmget(
        keys.incident(id),
        'doc',
        'lastHash',
        'policyRef',
        'policy',
        'quiet',
      );
      if (!doc || !lastHash) return undefined;
      const policy = ref
        ? (await policies.read([ref])).get(ref)
        : inline
          ? parseInlinePolicy(inline)
          : undefined;
      return policy && { incident: JSON.parse(doc) as Incident, lastHash, policy, quiet: sessionsOf(quiet) };
    },

    loadMany,

    /**
     * Where the incident's spare timer is: a one-off set by a change that came while both its timer and the
     * timer's follow-up ran, under an id of its own, which the auditor looks up here.
     */
    async spareTimer(id: string): Promise<string | undefined> {
      return (await redis.hget(keys.incident(id), 'spareTimer')) ?? undefined;
    },

    async noteSpareTimer(id: string, jobId: string): Promise<void> {
      await noteSpareTimerScript(1, keys.incident(id), jobId);
    },

    /** The seq of the incident's latest change (0: no such incident). */
    async seq(id: string): Promise<number> {
      return Number((await redis.hget(keys.incident(id), 'seq')) ?? 0);
    },

    /**
     * Claims reminder rounds, each of a wait (a chain's level in one of its generations): true for each later
     * than any claimed before for its wait, by this run or another run of the same timer (a stalled job taken
     * over, a follow-up beside the timer), while the chain still waits there. One field per wait, however long
     * it pages.
     */
    async claimPages(id: string, pages: { wait: string; round: number }[]): Promise<boolean[]> {
      const args = pages.flatMap((p) => [p.wait, String(p.round)]);
      const token = randomBytes(9).toString('base64url');
      const claim = () => claimPagesScript(2, keys.incident(id), keys.incidentPages(id), token, ...args);
      // A claim whose reply timed out may have been made. Sent again under its token it is known for this run's
      // own; a retry of the whole run, under a token of its own, would find the round claimed and page nobody.
      for (let attempt = 1; ; attempt++) {
        try {
          return ((await claim()) as number[]).map((c) => c === 1);
        } catch (error) {
          if (attempt === CLAIM_ATTEMPTS || !isCommandTimeout(error)) throw error;
        }
      }
    },

    /** The alert an idempotency ref points to, read from the event that brought it. */
    async alert({ incidentId, alertId, seq }: AlertRef): Promise<Alert | undefined> {
      if (seq !== undefined) {
        const alert = await alertOfEvent(incidentId, seq);
        return alert?.id === alertId ? alert : undefined;
      }
      // Refs written by earlier versions name no event: their incident's alerts hash held the alert's seq,
      // or before that its JSON.
      const stored = await redis.hget(keys.incidentAlerts(incidentId), alertId);
      if (!stored) return undefined;
      if (stored.startsWith('{')) return JSON.parse(stored) as Alert;
      return alertOfEvent(incidentId, Number(stored));
    },

    async dedupRecord(scope: DedupScope): Promise<string> {
      return (await redis.get(dedupKeyOf(scope))) ?? '';
    },

    async alertRef(
      userId: string,
      clientRef: string,
    ): Promise<{ incidentId: string; alertId: string } | undefined> {
      return parseRef(await redis.get(keys.alertRef(userId, clientRef)));
    },

    /** Appends events; undefined when another writer changed the incident first (decide again and retry). */
    async append(commit: AppendCommit): Promise<AppendOutcome> {
      const { id } = commit.incident;
      const [status, value] = (await appendScript(
        8,
        ...commitKeys(id),
        keys.incidentRequests(id),
        ...commitArgs(commit, randomBytes(6).toString('base64url')),
        commit.request ? requestField(commit.request) : '',
        ...(commit.earlier ?? []).flatMap((e) => [String(e.seq), ...storedEvent(e)]),
      )) as [string, string | undefined];
      if (status === 'committed') return { status, changeSeq: Number(value) };
      if (status === 'duplicate') return { status, seq: Number(value) };
      return { status: 'conflict' };
    },

    async raise(c: RaiseCommit): Promise<RaiseOutcome> {
      const [status, value] = (await raiseScript(
        9,
        ...commitKeys(c.incident.id),
        keys.alertRef(c.refKey.userId, c.refKey.clientRef),
        dedupKeyOf(c.dedup),
        ...commitArgs(c, ''),
        c.expectedDedup,
        `${c.incident.id}/${c.alert.id}/${c.event.seq}`,
        String(REF_TTL_SECONDS),
        String(c.dedupWindowMs),
        c.quietFor ?? '',
      )) as [string, string | undefined];
      if (status === 'committed') return { status, changeSeq: Number(value) };
      const ref = parseRef(value ?? null);
      if (status === 'duplicate' && ref) return { status, ...ref };
      return { status: 'conflict' };
    },

    /** The seq of the change that applied a client's command to the incident, if one did. */
    async requestApplied(id: string, request: CommandRequest): Promise<number | undefined> {
      const seq = await redis.hget(keys.incidentRequests(id), requestField(request));
      return seq === null ? undefined : Number(seq);
    },

    /** The alert that opened the incident, from its first timeline event. */
    openingAlert: (id: string) => alertOfEvent(id, 1),

    /** Events with seq > afterSeq, oldest first. */
    async events(id: string, afterSeq: number, limit: number): Promise<IncidentEvent[]> {
      return eventsOf(await redis.xrange(keys.incidentEvents(id), `${afterSeq + 1}-0`, '+', 'COUNT', limit));
    },

    /** The latest `limit` events, oldest first. */
    async latestEvents(id: string, limit: number): Promise<IncidentEvent[]> {
      return eventsOf((await redis.xrevrange(keys.incidentEvents(id), '+', '-', 'COUNT', limit)).reverse());
    },

    /** Incidents still on consoles' lists for a unit (or for everyone, for an administrator). */
    async openIds(unitId: string | undefined): Promise<string[]> {
      return redis.smembers(unitId === undefined ? keys.openIncidents : keys.unitOpen(unitId));
    },

    async currentChangeSeq(): Promise<number> {
      return Number((await redis.get(keys.changeSeq)) ?? 0);
    },

    /** Incidents whose last change is after `since`, oldest change first, with the change seq of each. */
    async changedSince(since: number, limit: number): Promise<{ id: string; change: number }[]> {
      const flat = await redis.zrangebyscore(
        keys.changed,
        `(${since}`,
        '+inf',
        'WITHSCORES',
        'LIMIT',
        0,
        limit,
      );
      const out: { id: string; change: number }[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2)
        out.push({ id: flat[i] ?? '', change: Number(flat[i + 1]) });
      return out;
    },
  };
}

/** An opening or an attached alert: the events that bring an alert, and with it maybe a policy. */
export function bringsAlert(
  event: IncidentEvent | undefined,
): event is Extract<IncidentEvent, { type: 'opened' | 'alert_attached' }> {
  return event?.type === 'opened' || event?.type === 'alert_attached';
}

// Incidents stored by earlier versions hold their policy's text beside them: each text is parsed once.
const inlinePolicies = new Map<string, EscalationSnapshot>();
function parseInlinePolicy(json: string): EscalationSnapshot {
  let policy = inlinePolicies.get(json);
  if (!policy) {
    if (inlinePolicies.size > 256) inlinePolicies.clear();
    policy = JSON.parse(json) as EscalationSnapshot;
    inlinePolicies.set(json, policy);
  }
  return policy;
}

/** Where a raise was stored: its incident, its alert and the event that brought it. */
export interface AlertRef {
  incidentId: string;
  alertId: string;
  /** Absent in refs written by earlier versions. */
  seq?: number;
}

/** The quiet sessions as stored: space-separated session ids. */
function sessionsOf(stored: string | null | undefined): string[] {
  return stored ? stored.split(' ') : [];
}

function parseRef(value: string | null): AlertRef | undefined {
  const [incidentId, alertId, seq] = value?.split('/') ?? [];
  if (!incidentId || !alertId) return undefined;
  return seq ? { incidentId, alertId, seq: Number(seq) } : { incidentId, alertId };
}

export type IncidentRepository = ReturnType<typeof createIncidentRepository>;
