import { defineHandler, type HandlerContext } from './define-handler.ts';

export function sessionHandlers(ctx: HandlerContext) {
  return [
    defineHandler(ctx, 'session:whoami', async (_payload, caller, socket) => ({
      user: caller.user,
      rooms: [...socket.rooms].filter((room) => room !== socket.id).sort(),
      expiresAt: new Date(caller.expiresAt).toISOString(),
    })),
  ];
}
