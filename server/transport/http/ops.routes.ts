import { Router } from 'express';
import type { Metrics } from '../../metrics.ts';

export interface Readiness {
  /** Names of the dependencies that are not ready; empty when the process can take traffic. */
  check(): Promise<string[]>;
}

export function opsRoutes(metrics: Metrics, readiness: Readiness): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const failing = await readiness.check();
    res
      .status(failing.length === 0 ? 200 : 503)
      .json({ status: failing.length === 0 ? 'ready' : 'not_ready', failing });
  });
  router.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  return router;
}
