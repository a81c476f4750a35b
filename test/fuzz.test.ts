import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorBody } from '../shared/errors.ts';
import { type CommandName, commands } from '../shared/events.ts';
import { type ConsoleClient, closeConsoles, consoleFor } from './support/consoles.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';

let server: TestServer;
let socket: ConsoleClient;
beforeAll(async () => {
  server = await startTestServer();
  ({ socket } = await consoleFor(server.url, 'operator.permisan'));
});
afterAll(async () => {
  closeConsoles();
  await server.close();
});

/** Every key under this server's prefix (rate-limit counters and the adapter's stream aside), to prove a refused command wrote nothing. */
async function snapshot(): Promise<string[]> {
  const keys = await server.app.redis.keys(`${server.prefix}*`);
  return keys.filter((k) => !k.includes(':rl:') && !k.includes('socket.io')).sort();
}

// Mutations of a valid raise: the payloads most likely to slip past a weak schema.
const nearlyValidRaise = fc.record(
  {
    clientRef: fc.oneof(fc.uuid(), fc.string(), fc.constant(undefined)),
    facilityId: fc.oneof(fc.constant('lapas-permisan'), fc.string(), fc.integer()),
    category: fc.oneof(fc.constant('riot'), fc.string()),
    severity: fc.oneof(fc.integer({ min: -5, max: 10 }), fc.double(), fc.string()),
    location: fc.oneof(fc.record({ block: fc.oneof(fc.constant('a'), fc.string()) }), fc.anything()),
    description: fc.oneof(fc.string({ maxLength: 5000 }), fc.integer()),
    drill: fc.anything(),
    silent: fc.anything(),
    extra: fc.anything(),
  },
  { requiredKeys: [] },
);

describe('fuzzed payloads', () => {
  const names = Object.keys(commands) as CommandName[];

  it.each(names)(
    'answers %s garbage with one error envelope, stores nothing and keeps serving',
    async (name) => {
      const before = await snapshot();
      const schema = commands[name].payload;
      const arbitrary = name === 'alert:raise' ? fc.oneof(fc.anything(), nearlyValidRaise) : fc.anything();
      await fc.assert(
        fc.asyncProperty(arbitrary, async (payload) => {
          // What the server receives is the payload after JSON (undefined keys gone, -0 is 0…): judge that.
          const sent = payload === undefined ? undefined : JSON.parse(JSON.stringify(payload) ?? 'null');
          fc.pre(!schema.safeParse(sent).success);
          const res = await socket.timeout(2000).emitWithAck(name as 'sync', sent as never);
          expect(res.ok).toBe(false);
          if (!res.ok) expect(ErrorBody.safeParse(res.error).success).toBe(true);
        }),
        { numRuns: 60 },
      );
      expect(await snapshot()).toEqual(before);
      expect(await socket.emitWithAck('session:whoami', {})).toMatchObject({ ok: true });
    },
  );

  it('ignores events without an acknowledgement and events it does not know, without crashing', async () => {
    for (const name of names)
      (socket.emit as (event: string, ...args: unknown[]) => void)(name, { junk: true });
    (socket.emit as (event: string, ...args: unknown[]) => void)('no:such-event', 1, 2, 3);
    expect(await socket.emitWithAck('session:whoami', {})).toMatchObject({ ok: true });
  });
});
