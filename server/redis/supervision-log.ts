import type { Logger } from '../logger.ts';
import type { CompactionEvent } from './aof-compaction.ts';
import type { SupervisionEvent } from './embedded-redis.ts';
import { loggableAddress } from './redis-connection.ts';
import type { RedisStore } from './redis-store.ts';

/**
 * An embedded redis-server that dies is started again on its address; until it is back, raises fail with
 * `unavailable` (the store) or consoles wait for their broadcasts (the broadcast Redis): an operator must
 * see why.
 */
export function redisSupervisionLog(logger: Logger) {
  return (event: SupervisionEvent | CompactionEvent) => {
    switch (event.type) {
      case 'compacting':
        // Overdue: the store stayed busy while its file grew four times past due; rewriting now may slow it.
        logger[event.reason === 'overdue' ? 'warn' : 'info'](
          { reason: event.reason, aofBytes: event.currentBytes, aofBaseBytes: event.baseBytes },
          'rewriting the store’s append-only file',
        );
        return;
      case 'compaction_failed':
        logger.error({ err: event.error }, 'could not start rewriting the store’s append-only file');
        return;
    }
    const { dir, address } = event;
    switch (event.type) {
      case 'exited':
        logger.error(
          { dir, address, code: event.code, signal: event.signal },
          'embedded redis-server exited; restarting it',
        );
        return;
      case 'restarted':
        logger.warn({ dir, address, pid: event.pid }, 'embedded redis-server restarted');
        return;
      case 'restart_failed':
        logger.error(
          { dir, address, err: event.error, retryInMs: event.retryInMs },
          'embedded redis-server did not restart; retrying',
        );
        return;
      case 'waiting_for_tool':
        logger.warn(
          { dir, address, other: event.other },
          'a command-line tool started the embedded redis-server while it was down; restarting it when the tool finishes',
        );
        return;
      case 'superseded':
        logger.fatal(
          { dir, address, other: event.other },
          'another process restarted the embedded redis-server on another address; restart this process to reach it',
        );
        return;
    }
  };
}

/**
 * Says which Redis serves, and warns once per start (`warn`) when the store does not sync every write: the
 * promise that an acknowledged alert survives a crash then rests on luck.
 */
export function logStoreReady(logger: Logger, store: RedisStore, warn: boolean): void {
  logger.info(
    {
      embedded: store.embedded,
      url: loggableAddress(store.url),
      socketUrl: loggableAddress(store.socketUrl),
      version: store.version,
    },
    'redis ready',
  );
  if (warn && !store.durable)
    logger.warn(
      { url: loggableAddress(store.url) },
      'the store does not sync every write to disk (it needs appendonly yes and appendfsync always): ' +
        'alerts already acknowledged can be lost if its machine fails',
    );
}
