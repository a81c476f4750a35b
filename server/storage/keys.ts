/** A session's key plus this is its list of used refresh secrets: scripts given only the prefix find it. */
export const SESSION_USED_SUFFIX = ':used';

/**
 * Every Redis key Sinergi writes, in one place. An incident's keys share a hash tag (`{…}`), as do a user's,
 * but the commit of an incident change also keeps the global and per-unit indexes in the same script: the
 * store is one Redis (with replicas if wanted), not a Redis Cluster.
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
    /** The hashes of a session's recently rotated-away refresh secrets, newest first. */
    sessionUsed: (userId: string, sessionId: string) =>
      `${prefix}{user:${userId}}:session:${sessionId}${SESSION_USED_SUFFIX}`,
    /** For a short while after a session ends, how it ended: a resent ending then finds its own. */
    sessionEnded: (userId: string, sessionId: string) =>
      `${prefix}{user:${userId}}:session:${sessionId}:ended`,
    incident: (id: string) => `${prefix}{inc:${id}}`,
    incidentEvents: (id: string) => `${prefix}{inc:${id}}:events`,
    incidentAlerts: (id: string) => `${prefix}{inc:${id}}:alerts`,
    /** The last reminder round paged for each wait of an incident's chains: each round is paged once. */
    incidentPages: (id: string) => `${prefix}{inc:${id}}:pages`,
    /** The commands a client marked with a clientRef, applied to the incident: each is applied once (kept a week). */
    incidentRequests: (id: string) => `${prefix}{inc:${id}}:requests`,
    /** Which alert a user's clientRef produced: the idempotency record of a raise. */
    alertRef: (userId: string, clientRef: string) => `${prefix}alert-ref:${userId}:${clientRef}`,
    /** Escalation policies in force, each stored once under the SHA-256 of its canonical JSON (the ref). */
    policyPrefix: `${prefix}policy:`,
    /** The active incident that new alerts for the same place and kind join. */
    dedup: (facilityId: string, category: string, block: string, drill: boolean) =>
      `${prefix}dedup:${facilityId}:${category}:${block}:${drill ? 'drill' : 'live'}`,
    /** Committed changes not yet known to be delivered, by when they are overdue: see undelivered.ts. */
    undelivered: `${prefix}incidents:undelivered`,
    /** Present while a server process runs: others leave the delivery of its commits to it meanwhile. */
    deliveringPrefix: `${prefix}delivering:`,
    changeSeq: `${prefix}incidents:change-seq`,
    changed: `${prefix}incidents:changed`,
    allIncidents: `${prefix}incidents:all`,
    openIncidents: `${prefix}incidents:open`,
    /** Per-unit indexes; the commit script builds these names from `unitIndexPrefix` + unit id + suffix. */
    unitIndexPrefix: `${prefix}unit:`,
    unitIncidents: (unitId: string) => `${prefix}unit:${unitId}:incidents`,
    unitOpen: (unitId: string) => `${prefix}unit:${unitId}:open`,
    apiKey: (keyHash: string) => `${prefix}api-key:${keyHash}`,
    apiKeys: `${prefix}api-keys`,
    /** BullMQ's own prefix: its queues' keys all start with it. */
    bullPrefix: `${prefix}bull`,
    rateLimitPrefix: (name: string) => `${prefix}rl:${name}`,
    /** Pub/sub channel: user ids whose sockets every process must drop now. */
    revocations: `${prefix}revocations`,
    socketStream: `${prefix}socket.io`,
    socketChannelPrefix: `${prefix}socket.io`,
    socketSessionPrefix: `${prefix}sio:session:`,
  } as const;
}

export type RedisKeys = ReturnType<typeof redisKeys>;
