import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';

/** A row of an index: an incident and its opening time, the index's score. */
export interface OpenedRow {
  id: string;
  openedMs: number;
}

// Resumes by the position's rank, not its score, so that a page never repeats however many incidents share
// one millisecond. A position not in the index (a made-up cursor) resumes below its millisecond.
// KEYS: the index.  ARGV: position's ms, position's id ('' for the newest), lowest ms, count.
const PAGE = `
local start = 0
if ARGV[2] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    start = redis.call('ZREVRANK', KEYS[1], ARGV[2]) + 1
  else
    start = redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf')
  end
end
local rows = redis.call('ZREVRANGE', KEYS[1], start, start + tonumber(ARGV[4]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  if tonumber(rows[i + 1]) < tonumber(ARGV[3]) then break end
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
end
return out
`;

/** The incidents of a unit (or of everyone, for an administrator) by opening time, newest first. */
export function createOpenedIndex(redis: Redis, keys: RedisKeys) {
  return {
    /** Up to `count` rows strictly after `position` (from the newest without one), none opened before `minMs`. */
    async after(
      unitId: string | undefined,
      position: OpenedRow | undefined,
      minMs: number,
      count: number,
    ): Promise<OpenedRow[]> {
      const key = unitId === undefined ? keys.allIncidents : keys.unitIncidents(unitId);
      const flat = (await redis.eval(
        PAGE,
        1,
        key,
        String(position?.openedMs ?? 0),
        position?.id ?? '',
        String(minMs),
        String(count),
      )) as string[];
      const out: OpenedRow[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2)
        out.push({ id: flat[i] ?? '', openedMs: Number(flat[i + 1]) });
      return out;
    },
  };
}

export type OpenedIndex = ReturnType<typeof createOpenedIndex>;
