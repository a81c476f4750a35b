import { Router } from 'express';
import { LoginRequest, RefreshRequest } from '../../../shared/auth.ts';
import { parseOrThrow } from '../../../shared/errors.ts';
import type { AuthService } from '../../domain/auth-service.ts';
import { clientIp } from './authenticate.ts';

export function authRoutes(auth: AuthService): Router {
  const router = Router();
  router.post('/login', async (req, res) => {
    const body = parseOrThrow(LoginRequest, req.body, 'login request');
    res.json(await auth.login(body, clientIp(req)));
  });
  router.post('/refresh', async (req, res) => {
    const { refreshToken } = parseOrThrow(RefreshRequest, req.body, 'refresh request');
    res.json(await auth.refresh(refreshToken));
  });
  router.post('/logout', async (req, res) => {
    const { refreshToken } = parseOrThrow(RefreshRequest, req.body, 'logout request');
    await auth.logout(refreshToken);
    res.status(204).end();
  });
  return router;
}
