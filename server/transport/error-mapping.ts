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
  // The other faults Express and its body parser find in a request (a path whose escapes do not decode, a
  // body that is not in the Content-Encoding it claims) carry a 4xx status; http-errors marks the ones whose
  // message is safe to show.
  const { expose, status, message } = (error ?? {}) as {
    expose?: unknown;
    status?: unknown;
    message?: unknown;
  };
  if (typeof status === 'number' && status >= 400 && status < 500)
    return new DomainError(
      status === 413 ? 'payload_too_large' : 'validation_failed',
      expose === true ? String(message) : 'Malformed request',
    );
  return undefined;
}
