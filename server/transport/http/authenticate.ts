import type { Request, RequestHandler } from 'express';
import { DomainError } from '../../../shared/errors.ts';
import type { Role } from '../../../shared/roles.ts';
import type { AuthService, Principal } from '../../domain/auth-service.ts';

declare module 'express-serve-static-core' {
  interface Locals {
    principal?: Principal;
  }
}

/** Requires `Authorization: Bearer <access token>`; the verified caller is in `res.locals.principal`. */
export function authenticate(auth: AuthService): RequestHandler {
  return async (req, res, next) => {
    const header = req.get('authorization') ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    res.locals.principal = await auth.authenticate(match?.[1]);
    next();
  };
}

export function principalOf(res: { locals: { principal?: Principal } }): Principal {
  const principal = res.locals.principal;
  if (!principal) throw new DomainError('unauthorized', 'Not authenticated');
  return principal;
}

export function requireRole(...allowed: Role[]): RequestHandler {
  return (_req, res, next) => {
    if (!allowed.includes(principalOf(res).user.role))
      throw new DomainError('forbidden', 'Your role may not do this');
    next();
  };
}

/** The client address as Express derives it under the configured `trust proxy` hop count. */
export function clientIp(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}
