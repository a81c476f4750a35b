import { Router } from 'express';
import { parseOrThrow } from '../../../shared/errors.ts';
import { RaiseAlert } from '../../../shared/incident.ts';
import type { ApiKeyService } from '../../domain/api-key-service.ts';
import type { AuthService } from '../../domain/auth-service.ts';
import type { IncidentService } from '../../domain/incident-service.ts';

/** `POST /api/alerts`: a console with its access token, or a device with its `X-Api-Key`. */
export function alertRoutes(deps: {
  auth: AuthService;
  apiKeys: ApiKeyService;
  incidents: IncidentService;
}): Router {
  const router = Router();
  router.post('/', async (req, res) => {
    const apiKey = req.get('x-api-key');
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
    // A console's token brings its login, which a silent raise must keep quiet; a device has none.
    const { user, sessionId } = apiKey
      ? { user: await deps.apiKeys.authenticate(apiKey), sessionId: undefined }
      : await deps.auth.authenticate(bearer);
    const raise = parseOrThrow(RaiseAlert, req.body, 'alert');
    const result = await deps.incidents.raise(user, raise, sessionId === undefined ? {} : { sessionId });
    res.status(result.duplicate ? 200 : 201).json(result);
  });
  return router;
}
