import type { Ack } from '../../../shared/envelope.ts';
import { DomainError, type ErrorBody, fieldIssues } from '../../../shared/errors.ts';
import {
  type CommandName,
  type CommandPayload,
  type CommandResult,
  commands,
} from '../../../shared/events.ts';
import type { Principal } from '../../domain/auth-service.ts';
import type { Logger } from '../../logger.ts';
import type { Metrics } from '../../metrics.ts';
import { toDomainError } from '../error-mapping.ts';
import type { ConsoleSocket } from './socket-types.ts';

export interface HandlerContext {
  logger: Logger;
  metrics: Metrics;
  /** Re-establishes the caller at each command, so a disabled account or ended session stops at once. */
  recheck(principal: Principal): Promise<Principal>;
  /** Commands in flight on this process, so shutdown can let them finish. */
  inFlight: { count: number; draining: boolean };
}

/**
 * `standing` is the re-check of the caller. A plain handler runs once it has passed, with `caller` as it
 * found them; a handler defined with `overlapRecheck` runs at once with `caller` as authenticated at
 * connection, and must await `standing` before it changes anything.
 */
export type CommandHandler<K extends CommandName> = (
  payload: CommandPayload<K>,
  caller: Principal,
  socket: ConsoleSocket,
  standing: Promise<Principal>,
) => Promise<CommandResult<K>>;

export interface HandlerOptions {
  /**
   * Overlap the re-check with the handler's first reads: one Redis round trip less before a decision, on
   * the paths where every round trip waits behind broadcasts on a busy process (raising an alert).
   */
  overlapRecheck?: boolean;
}

function errorBody(error: unknown, logger: Logger, event: string): ErrorBody {
  const known = toDomainError(error);
  if (known) return known.toBody();
  logger.error({ err: error, event }, 'unhandled error in socket command');
  return { code: 'internal', message: 'Internal error' };
}

/**
 * The one way a socket command is wired: validate with the shared schema, re-check the caller, run the
 * service, answer exactly one envelope through the ack. Nothing thrown escapes into Socket.IO, which does
 * not catch rejected listeners.
 */
export function defineHandler<K extends CommandName>(
  ctx: HandlerContext,
  event: K,
  handler: CommandHandler<K>,
  options: HandlerOptions = {},
) {
  // One listener shared by every console: Socket.IO calls it with the socket as `this`, so thousands of
  // consoles cost no closure each.
  function listener(this: ConsoleSocket, ...args: unknown[]) {
    const ack = args.at(-1);
    if (typeof ack !== 'function') {
      ctx.metrics.socketCommandsWithoutAck.inc({ event });
      ctx.logger.warn(
        { event, userId: this.data.user?.id },
        'socket command without acknowledgement ignored',
      );
      return;
    }
    const payload = args.length > 1 ? args[0] : undefined;
    void run(this, payload, ack as (res: Ack<CommandResult<K>>) => void);
  }

  async function run(socket: ConsoleSocket, raw: unknown, ack: (res: Ack<CommandResult<K>>) => void) {
    const end = ctx.metrics.socketCommands.startTimer({ event });
    ctx.inFlight.count++;
    let outcome = 'ok';
    try {
      if (ctx.inFlight.draining)
        throw new DomainError('unavailable', 'Server is shutting down; retry after reconnecting');
      const parsed = commands[event].payload.safeParse(raw);
      if (!parsed.success) {
        throw new DomainError('validation_failed', `Invalid ${event} payload`, {
          issues: fieldIssues(parsed.error),
        });
      }
      const standing = ctx.recheck(principalOf(socket));
      // Observed here so that a refusal the handler reaches first is not also reported as unhandled.
      standing.catch(() => undefined);
      const caller = options.overlapRecheck ? principalOf(socket) : await standing;
      const data = await handler(parsed.data as CommandPayload<K>, caller, socket, standing);
      // Whatever a handler did with it, nothing is answered to a caller who no longer stands.
      await standing;
      ack({ ok: true, data });
    } catch (error) {
      const body = errorBody(error, ctx.logger, event);
      outcome = body.code;
      ack({ ok: false, error: body });
      if (body.code === 'unauthorized') socket.disconnect(true);
    } finally {
      ctx.inFlight.count--;
      end({ outcome });
    }
  }

  return (socket: ConsoleSocket) => {
    // Socket.IO's typed `on` cannot follow a generic event name; the listener checks every argument itself.
    (socket.on as (event: string, listener: (...args: unknown[]) => void) => void)(event, listener);
  };
}

function principalOf(socket: ConsoleSocket): Principal {
  const { user, sessionId, expiresAt } = socket.data;
  return { user, sessionId, expiresAt };
}
