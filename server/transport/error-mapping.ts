import { DomainError } from '../../shared/errors.ts';
import { isRedisUnavailable } from '../redis/redis-errors.ts';

/** The client-facing error for anything a route or command threw; undefined for a bug (answered as `internal`). */
export function toDomainError(error: unknown): DomainError | undefined {
  if (error instanceof DomainError) return error;
  if (isRedisUnavailable(error))
    return new DomainError('unavailable', 'The store is unavailable; try again shortly');
  const type = (error as { type?: unknown } | null)?.type;
  if (type === 'entity.parse.failed') return new DomainError('validation_failed', 'Malformed JSON body');
  if (type === 'entity.too.large') return new DomainError('payload_too_large', 'Request body too large');
  if (type === 'encoding.unsupported' || type === 'charset.unsupported')
    return new DomainError('validation_failed', 'Unsupported body encoding');
  return undefined;
}
