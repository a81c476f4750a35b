import type { Redis } from 'ioredis';
import type { Role } from '../../shared/roles.ts';
import { type RedisKeys, SESSION_USED_SUFFIX } from './keys.ts';

export interface UserRecord {
  id: string;
  username: string;
  displayName: string;
  role: Role;
  unitId: string;
  passwordHash: string;
  disabled: boolean;
  createdAt: string;
}

// Claims the username and writes the user in one step, so two admins creating the same name race safely.
const CREATE_USER = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
return 1
`;

// KEYS: the user, their sessions' index (sessions share the user's hash tag: one slot).  ARGV: '1' to end
// every session, the session key prefix, the used-secrets suffix, then field/value pairs.
const UPDATE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
if ARGV[1] == '1' then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    redis.call('DEL', ARGV[2] .. id, ARGV[2] .. id .. ARGV[3])
  end
  redis.call('DEL', KEYS[2])
end
return 1
`;

export function createUserRepository(redis: Redis, keys: RedisKeys) {
  const toRecord = (h: Record<string, string>): UserRecord | undefined =>
    h.id
      ? {
          id: h.id,
          username: h.username ?? '',
          displayName: h.displayName ?? '',
          role: h.role as Role,
          unitId: h.unitId ?? '',
          passwordHash: h.passwordHash ?? '',
          disabled: h.disabled === '1',
          createdAt: h.createdAt ?? '',
        }
      : undefined;

  return {
    /** False when the username is taken. */
    async create(user: UserRecord): Promise<boolean> {
      const fields = Object.entries({ ...user, disabled: user.disabled ? '1' : '0' }).flat();
      const created = await redis.eval(
        CREATE_USER,
        2,
        keys.usernames,
        keys.user(user.id),
        user.username,
        user.id,
        ...fields,
      );
      return created === 1;
    },

    async findById(userId: string): Promise<UserRecord | undefined> {
      return toRecord(await redis.hgetall(keys.user(userId)));
    },

    async findByUsername(username: string): Promise<UserRecord | undefined> {
      const id = await redis.hget(keys.usernames, username);
      return id ? this.findById(id) : undefined;
    },

    async list(): Promise<UserRecord[]> {
      const ids = await redis.hvals(keys.usernames);
      const pipeline = redis.pipeline();
      for (const id of ids) pipeline.hgetall(keys.user(id));
      const rows = (await pipeline.exec()) ?? [];
      return rows
        .map(([, h]) => toRecord(h as Record<string, string>))
        .filter((u): u is UserRecord => u !== undefined)
        .sort((a, b) => a.username.localeCompare(b.username));
    },

    async count(): Promise<number> {
      return redis.hlen(keys.usernames);
    },

    /**
     * Changes an account's fields; with `endSessions`, ends every session of it in the same script, so that a
     * new password or a disabling never stands beside a session from before it (a crash between two steps
     * left them all alive). False when there is no such user.
     */
    async update(
      userId: string,
      changes: Partial<Pick<UserRecord, 'displayName' | 'passwordHash' | 'disabled'>>,
      { endSessions = false } = {},
    ) {
      const fields = Object.entries(changes).map(([k, v]) => [
        k,
        typeof v === 'boolean' ? (v ? '1' : '0') : v,
      ]);
      if (fields.length === 0 && !endSessions) return true;
      const updated = await redis.eval(
        UPDATE,
        2,
        keys.user(userId),
        keys.userSessions(userId),
        endSessions ? '1' : '0',
        keys.session(userId, ''),
        SESSION_USED_SUFFIX,
        ...fields.flat(),
      );
      return updated === 1;
    },
  };
}

export type UserRepository = ReturnType<typeof createUserRepository>;
