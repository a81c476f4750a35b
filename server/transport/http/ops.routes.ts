import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { type Request, Router } from 'express';
import { DomainError } from '../../../shared/errors.ts';
import type { Metrics } from '../../metrics.ts';
import { clientIp } from './authenticate.ts';

export interface Readiness {
  /** Names of the dependencies that are not ready; empty when the process can take traffic. */
  check(): Promise<string[]>;
}

/**
 * `metricsText`: the exposition `/metrics` serves, this process's registry by default; under several server
 * processes on one port, all of theirs summed, since a scrape reaches whichever process the balancer picks.
 * `metricsToken`: what a scraper must present; without one, only this machine may scrape.
 */
export function opsRoutes(
  metrics: Metrics,
  readiness: Readiness,
  metricsText: () => Promise<string> = () => metrics.registry.metrics(),
  metricsToken?: string,
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
  router.get('/metrics', async (req, res) => {
    checkMayScrape(req, metricsToken);
    res.type(metrics.registry.contentType).send(await metricsText());
  });
  return router;
}

/**
 * The figures say when incidents happen and how many consoles each kind of unit has up: not for whoever can
 * reach the port. With a token, whoever presents it (`Authorization: Bearer`); without, a scraper on this
 * machine (behind a proxy, `TRUST_PROXY` makes the address the client's, not the proxy's).
 */
function checkMayScrape(req: Request, token: string | undefined): void {
  if (token !== undefined) {
    const presented = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1] ?? '';
    const digest = (value: string) => createHash('sha256').update(value).digest();
    if (!timingSafeEqual(digest(presented), digest(token)))
      throw new DomainError('unauthorized', 'Metrics need the scrape token (Authorization: Bearer)');
    return;
  }
  if (!isLoopback(clientIp(req)))
    throw new DomainError('forbidden', 'Metrics are served to this machine only unless METRICS_TOKEN is set');
}

function isLoopback(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return address === '::1' || (isIP(v4) === 4 && v4.startsWith('127.'));
}
