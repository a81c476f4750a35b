import { rooms } from '../../../shared/rooms.ts';
import type { EscalationService } from '../../domain/escalation-service.ts';
import type { IncidentService } from '../../domain/incident-service.ts';
import { defineHandler, type HandlerContext } from './define-handler.ts';

export function incidentHandlers(
  ctx: HandlerContext,
  incidents: IncidentService,
  escalation: EscalationService,
) {
  return [
    defineHandler(
      ctx,
      'alert:raise',
      (payload, caller, _socket, standing) =>
        incidents.raise(caller.user, payload, {
          sessionId: caller.sessionId,
          standing: standing.then((p) => p.user),
        }),
      { overlapRecheck: true },
    ),
    defineHandler(ctx, 'alert:ack', (ack, caller) => incidents.acknowledge(caller, ack)),
    defineHandler(ctx, 'incident:join', async ({ incidentId }, caller, socket) => {
      const joined = await incidents.join(caller, incidentId);
      await socket.join(rooms.incident(incidentId));
      return joined;
    }),
    defineHandler(ctx, 'incident:leave', async ({ incidentId }, _caller, socket) => {
      const wasIn = socket.rooms.has(rooms.incident(incidentId));
      await socket.leave(rooms.incident(incidentId));
      return { left: wasIn };
    }),
    defineHandler(ctx, 'incident:transition', (transition, caller) =>
      incidents.transition(caller, transition),
    ),
    defineHandler(ctx, 'incident:note', (note, caller) => incidents.note(caller, note)),
    defineHandler(ctx, 'escalation:hold', (hold, caller) => escalation.hold(caller, hold)),
    defineHandler(ctx, 'sync', ({ since }, caller) =>
      incidents.sync(caller, since === undefined ? undefined : Number(since)),
    ),
  ];
}
