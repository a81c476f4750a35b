/**
 * Every Redis key Sinergi writes, in one place. Keys that a later Lua script must touch together share a
 * hash tag (`{…}`) so the layout also holds on a Redis Cluster.
 */
export function redisKeys(prefix: string) {
  return {
    prefix,
    topology: `${prefix}topology`,
    user: (userId: string) => `${prefix}{user:${userId}}`,
    userSessions: (userId: string) => `${prefix}{user:${userId}}:sessions`,
    usernames: `${prefix}usernames`,
    /** Same hash tag as the user: revoking every session of a user is one single-slot script. */
    session: (userId: string, sessionId: string) => `${prefix}{user:${userId}}:session:${sessionId}`,
    rateLimitPrefix: (name: string) => `${prefix}rl:${name}`,
    socketStream: `${prefix}socket.io`,
    socketChannelPrefix: `${prefix}socket.io`,
    socketSessionPrefix: `${prefix}sio:session:`,
  } as const;
}

export type RedisKeys = ReturnType<typeof redisKeys>;
