import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';

/**
 * Committed changes not yet known to be delivered. Each commit notes itself in the same script, as overdue
 * after a grace; the process that committed it forgets the note once it has published the change and set its
 * timers. A process that dies in between, or a commit whose reply was lost (a timeout after Redis applied it:
 * the retry finds the change stored and has nothing to publish), leaves the note behind, and a server process
 * claims it when it falls overdue and delivers the change again: the process that made the commit while it
 * runs, any process once it has stopped. Delivery is at least once: consoles tell a change they have seen by
 * its seq.
 */
export interface Delivery {
  incidentId: string;
  /** The commit's events, oldest first: several when one commit carried more than one (both chains climbing). */
  fromSeq: number;
  toSeq: number;
  /** The server process that made the commit. */
  by?: string;
}

/**
 * A delivery as the note's member: `incidentId/fromSeq/toSeq/by`. (Earlier versions wrote no `by`, or the
 * session of a silent raise in its place, which the incident itself now keeps: any process claims such a note.)
 */
export function deliveryMember(d: Delivery): string {
  const member = `${d.incidentId}/${d.fromSeq}/${d.toSeq}`;
  return d.by === undefined ? member : `${member}/${d.by}`;
}

export function parseDelivery(member: string): Delivery | undefined {
  const [incidentId, from, to] = member.split('/');
  const fromSeq = Number(from);
  const toSeq = Number(to);
  if (!incidentId || !Number.isInteger(fromSeq) || !Number.isInteger(toSeq) || fromSeq > toSeq)
    return undefined;
  return { incidentId, fromSeq, toSeq };
}

// KEYS: the notes.  ARGV: how long (ms) until a claimed note falls overdue again, how many at most, the
// claiming process, the prefix of the keys that say a process runs.
// Claims the overdue notes by pushing them back: a claimer that dies leaves them to the next. Overdue by the
// store's clock, as the commits reckoned their notes' deadlines. The notes of another process that still runs
// are left as they are: that process has the change in hand, late under load, or claims the note itself
// (pushed back from here, they would wait longer for it each time another process looked first); delivering
// them from here as well would deliver them twice. So that a backlog of such notes does not hide the others,
// the overdue notes are read on past them, a page at a time, up to a hundred times as many as are claimed;
// each process's heartbeat is looked up once.
const CLAIM = `
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local limit = tonumber(ARGV[2])
local running = {[ARGV[3]] = false}
local claimed = {}
for offset = 0, limit * 99, limit do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', offset, limit)
  for _, member in ipairs(due) do
    local by = string.match(member, '^[^/]*/[^/]*/[^/]*/(.+)$')
    if by and running[by] == nil then running[by] = redis.call('EXISTS', ARGV[4] .. by) == 1 end
    if not by or not running[by] then claimed[#claimed + 1] = member end
  end
  if #claimed >= limit or #due < limit then break end
end
for i = limit + 1, #claimed do claimed[i] = nil end
for _, member in ipairs(claimed) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), member) end
return claimed
`;

/** How long a delivered change's note waits to be forgotten together with others: one write for many. */
const FORGET_BATCH_MS = 100;

/**
 * How long a process's own note counts as in its hands at most (see `held`), and how long its redelivery may
 * take over a round before it is taken for stuck: past this, whatever holds the change must be stuck, and the
 * change must still reach the consoles.
 */
export const HELD_AT_MOST_MS = 60_000;

export function createUndelivered(
  redis: Redis,
  keys: RedisKeys,
  self: {
    /** This process, as its notes name it. */
    id: string;
    /** How long this process counts as running after each `heartbeat` (see `running`). */
    aliveMs: number;
  },
) {
  let delivered: string[] = [];
  let pending: NodeJS.Timeout | undefined;
  // The notes of this process's own commits while it still has them in hand: sent, or stored and not yet
  // forgotten. Its redelivery leaves them alone: under load, seconds may pass between a commit and its
  // publication, and the process would otherwise deliver its own changes twice, adding load where there is
  // too much already. (Counted: a commit decided again after a conflict may note the same member.)
  const held = new Map<string, { count: number; since: number }>();
  const release = (member: string) => {
    const entry = held.get(member);
    if (entry && entry.count > 1) entry.count--;
    else held.delete(member);
  };
  const inHand = (member: string, now: number) => {
    const entry = held.get(member);
    return entry !== undefined && now - entry.since < HELD_AT_MOST_MS;
  };

  async function flush(): Promise<void> {
    clearTimeout(pending);
    pending = undefined;
    if (delivered.length === 0) return;
    const members = delivered;
    delivered = [];
    // A note that cannot be forgotten now only means one more delivery of that change later.
    await redis.zrem(keys.undelivered, ...members).catch(() => undefined);
    for (const member of members) release(member);
  }

  const running = keys.deliveringPrefix + self.id;

  return {
    /** The note of a commit this process makes. */
    member: (d: Omit<Delivery, 'by'>) => deliveryMember({ ...d, by: self.id }),

    /**
     * Tells the other processes this one still runs, and delivers its own commits: sent more often than
     * `aliveMs`, on a timer, so that it goes out even while the process is too busy to answer its commits for
     * seconds. A process that stops sending it (dead, or stuck that long) leaves its notes to the others.
     */
    async heartbeat(): Promise<void> {
      await redis.set(running, '1', 'PX', self.aliveMs);
    },

    /** This process stops: the notes it leaves behind are anybody's once overdue, without its heartbeat lapsing first. */
    async retire(): Promise<void> {
      await redis.del(running);
    },

    /** A commit noting `member` is about to be sent: the note is this process's until released or forgotten. */
    hold(member: string): void {
      const entry = held.get(member);
      if (entry) entry.count++;
      else held.set(member, { count: 1, since: Date.now() });
    },

    /** The held note is left to whoever claims it when it falls overdue (its commit failed, or is kept). */
    release,

    /** The change noted as `member` is out: published and its timers set. */
    delivered(member: string): void {
      delivered.push(member);
      pending ??= setTimeout(() => void flush(), FORGET_BATCH_MS);
    },

    flush,

    /**
     * Notes overdue now, each claimed until `retryAfterMs` from now: this process's own that it no longer holds,
     * and those of processes that no longer run.
     */
    async claimOverdue(retryAfterMs: number, limit: number): Promise<string[]> {
      const due = (await redis.eval(
        CLAIM,
        1,
        keys.undelivered,
        String(retryAfterMs),
        String(limit),
        self.id,
        keys.deliveringPrefix,
      )) as string[];
      const now = Date.now();
      return due.filter((member) => !inHand(member, now));
    },
  };
}

export type Undelivered = ReturnType<typeof createUndelivered>;
