import { Router } from 'express';
import { CreateUserRequest, ResetPasswordRequest, UpdateUserRequest, UserId } from '../../../shared/auth.ts';
import { parseOrThrow } from '../../../shared/errors.ts';
import type { UserService } from '../../domain/user-service.ts';

/** Admin-only account management; mounted behind `authenticate` and `requireRole('admin')`. */
export function userRoutes(users: UserService): Router {
  const router = Router();
  router.get('/', async (_req, res) => {
    res.json({ users: await users.list() });
  });
  router.post('/', async (req, res) => {
    res.status(201).json({ user: await users.create(parseOrThrow(CreateUserRequest, req.body, 'user')) });
  });
  router.get('/:id', async (req, res) => {
    res.json({ user: await users.get(parseOrThrow(UserId, req.params.id, 'user id')) });
  });
  router.patch('/:id', async (req, res) => {
    const id = parseOrThrow(UserId, req.params.id, 'user id');
    res.json({ user: await users.update(id, parseOrThrow(UpdateUserRequest, req.body, 'user change')) });
  });
  router.post('/:id/password', async (req, res) => {
    const id = parseOrThrow(UserId, req.params.id, 'user id');
    const { password } = parseOrThrow(ResetPasswordRequest, req.body, 'password reset');
    await users.resetPassword(id, password);
    res.status(204).end();
  });
  return router;
}
