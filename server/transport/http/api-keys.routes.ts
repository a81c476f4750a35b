import { Router } from 'express';
import { ApiKeyId, CreateApiKeyRequest } from '../../../shared/api-keys.ts';
import { parseOrThrow } from '../../../shared/errors.ts';
import type { ApiKeyService } from '../../domain/api-key-service.ts';
import { principalOf } from './authenticate.ts';

/** Admin-only; mounted behind `authenticate` and `requireRole('admin')`. */
export function apiKeyRoutes(apiKeys: ApiKeyService): Router {
  const router = Router();
  router.get('/', async (_req, res) => {
    res.json({ apiKeys: await apiKeys.list() });
  });
  router.post('/', async (req, res) => {
    const request = parseOrThrow(CreateApiKeyRequest, req.body, 'API key');
    res.status(201).json(await apiKeys.create(request, principalOf(res).user));
  });
  router.delete('/:id', async (req, res) => {
    await apiKeys.revoke(parseOrThrow(ApiKeyId, req.params.id, 'API key id'));
    res.status(204).end();
  });
  return router;
}
