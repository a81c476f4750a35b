import { Router } from 'express';
import type { Metrics } from '../../metrics.ts';

export interface Readiness {
  /** Names of the dependencies that are not ready; empty when the process can take traffic. */
  check(): Promise<string[]>;
}

/**
 * `metricsText`: the exposition `/metrics` serves, this process's registry by default; under several server
 * processes on one port, all of theirs summed, since a scrape reaches whichever process the balancer picks.
 */
export function opsRoutes(
  metrics: Metrics,
  readiness: Readiness,
  metricsText: () => Promise<string> = () => metrics.registry.metrics(),
): Router {
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
    res.type(metrics.registry.contentType).send(await metricsText());
  });
  return router;
}
