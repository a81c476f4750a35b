import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';

/**
 * Committed changes not yet known to be delivered. Each commit notes itself in the same script, as overdue
 * after a grace; the process that committed it forgets the note once it has published the change and set its
 * timers. A process that dies in between, or a commit whose reply was lost (a timeout after Redis applied it:
 * the retry finds the change stored and has nothing to publish), leaves the note behind, and any server
 * process claims it when it falls overdue and delivers the change again. Delivery is at least once: consoles
 * tell a change they have seen by its seq.
 */
export interface Delivery {
  incidentId: string;
  /** The commit's events, oldest first: several when one commit carried more than one (both chains climbing). */
  fromSeq: number;
  toSeq: number;
}

/**
 * A delivery as the note's member: `incidentId/fromSeq/toSeq`. (Earlier versions added the session of a silent
 * raise, which the incident itself now keeps: such a member is read, and forgotten, as it was written.)
 */
export function deliveryMember(d: Delivery): string {
  return `${d.incidentId}/${d.fromSeq}/${d.toSeq}`;
}

export function parseDelivery(member: string): Delivery | undefined {
  const [incidentId, from, to] = member.split('/');
  const fromSeq = Number(from);
  const toSeq = Number(to);
  if (!incidentId || !Number.isInteger(fromSeq) || !Number.isInteger(toSeq) || fromSeq > toSeq)
    return undefined;
  return { incidentId, fromSeq, toSeq };
}

// KEYS: the notes.  ARGV: how long (ms) until a claimed note falls overdue again, how many at most.
// Claims the overdue notes by pushing them back: a claimer that dies leaves them to the next. Overdue by the
// store's clock, as the commits reckoned their notes' deadlines.
const CLAIM = `
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), member) end
return due
`;

/** How long a delivered change's note waits to be forgotten together with others: one write for many. */
const FORGET_BATCH_MS = 100;

/** How long a process's own note counts as in its hands at most (see `held`). */
const HELD_AT_MOST_MS = 60_000;

export function createUndelivered(redis: Redis, keys: RedisKeys) {
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
  // Past this, a held note is no longer taken for in hand: whatever holds it is stuck, and its change must
  // still reach the consoles.
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

  return {
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

    /** Notes overdue now, each claimed until `retryAfterMs` from now; none this process holds. */
    async claimOverdue(retryAfterMs: number, limit: number): Promise<string[]> {
      const due = (await redis.eval(
        CLAIM,
        1,
        keys.undelivered,
        String(retryAfterMs),
        String(limit),
      )) as string[];
      const now = Date.now();
      return due.filter((member) => !inHand(member, now));
    },
  };
}

export type Undelivered = ReturnType<typeof createUndelivered>;
