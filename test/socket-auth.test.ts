import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { closeConsoles, connectConsole, consoleFor } from './support/consoles.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterEach(closeConsoles);
afterAll(() => server.close());

describe('socket handshake', () => {
  it('refuses a console without a token with connect_error "unauthorized"', async () => {
    await expect(connectConsole(server.url, undefined)).rejects.toThrow('unauthorized');
  });

  it('joins a Permisan operator to exactly its Lapas room, its role room and its own user room', async () => {
    const { socket, session } = await consoleFor(server.url, 'operator.permisan');
    const res = await socket.emitWithAck('session:whoami', {});
    expect(res).toEqual({
      ok: true,
      data: {
        user: session.user,
        rooms: ['facility:lapas-permisan', 'role:lapas-permisan:operator', `user:${session.user.id}`].sort(),
        expiresAt: session.accessTokenExpiresAt,
      },
    });
  });
});
