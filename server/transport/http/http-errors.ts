import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { HttpErrorResponse } from '../../../shared/envelope.ts';
import type { ErrorCode } from '../../../shared/errors.ts';
import { DomainError } from '../../../shared/errors.ts';
import type { Logger } from '../../logger.ts';
import { toDomainError } from '../error-mapping.ts';

const STATUS: Record<ErrorCode, number> = {
  validation_failed: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  invalid_transition: 409,
  payload_too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const known = toDomainError(error);
    if (!known) logger.error({ err: error, reqId: req.id }, 'unhandled error in HTTP route');
    // The caller is only told to try again; the operator needs what failed underneath.
    else if (known.code === 'unavailable' && known.cause !== undefined)
      logger.warn({ err: known.cause, reqId: req.id }, 'request answered unavailable');
    const body = known?.toBody() ?? {
      code: 'internal' as const,
      message: `Internal error (request ${String(req.id)})`,
    };
    const { retryAfterMs, ...rest } = body;
    if (retryAfterMs !== undefined)
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
    const response: HttpErrorResponse = {
      error: retryAfterMs === undefined ? rest : { ...rest, retryAfterMs },
    };
    res.status(STATUS[body.code]).json(response);
  };
}

export const notFound: RequestHandler = (req) => {
  throw new DomainError('not_found', `No route ${req.method} ${req.path}`);
};
