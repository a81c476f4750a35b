import { randomUUID } from 'node:crypto';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import type { TopologyIndex } from '../../../shared/topology.ts';
import type { ApiKeyService } from '../../domain/api-key-service.ts';
import type { AuthService } from '../../domain/auth-service.ts';
import type { IncidentService } from '../../domain/incident-service.ts';
import type { UserService } from '../../domain/user-service.ts';
import type { Logger } from '../../logger.ts';
import type { Metrics } from '../../metrics.ts';
import { alertRoutes } from './alerts.routes.ts';
import { apiKeyRoutes } from './api-keys.routes.ts';
import { authRoutes } from './auth.routes.ts';
import { authenticate, requireRole } from './authenticate.ts';
import { errorHandler, notFound } from './http-errors.ts';
import { incidentRoutes } from './incidents.routes.ts';
import { opsRoutes, type Readiness } from './ops.routes.ts';
import { userRoutes } from './users.routes.ts';

export interface HttpDeps {
  logger: Logger;
  metrics: Metrics;
  readiness: Readiness;
  metricsText?: () => Promise<string>;
  auth: AuthService;
  users: UserService;
  incidents: IncidentService;
  apiKeys: ApiKeyService;
  topology: TopologyIndex;
  /** Requests being answered are counted here, for a shutdown to wait on. */
  inFlight: { count: number };
  settings: { trustProxy: number; jsonLimit: string; metricsToken?: string };
}

const REQUEST_ID = /^[\w.-]{1,64}$/;

export function createHttpApp(deps: HttpDeps): Express {
  const app = express();
  // Exactly the number of proxy hops in front: any more and a client could forge its address past the rate limits.
  app.set('trust proxy', deps.settings.trustProxy);
  app.disable('x-powered-by');
  // Under a primary the HTTP server never listens (it is handed connections), so its close() waits for no
  // request; the count does. Socket.IO's requests never come here: a held long-poll does not hold it up.
  app.use((_req, res, next) => {
    deps.inFlight.count++;
    res.once('close', () => deps.inFlight.count--);
    next();
  });
  app.use(helmet());
  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/metrics' },
    }),
  );
  app.use((req, res, next) => {
    const end = deps.metrics.httpRequests.startTimer({ method: req.method });
    res.on('finish', () =>
      end({
        route: req.route?.path ?? (res.statusCode === 404 ? 'unmatched' : req.baseUrl),
        status: res.statusCode,
      }),
    );
    next();
  });
  app.use(express.json({ limit: deps.settings.jsonLimit }));

  app.use(opsRoutes(deps.metrics, deps.readiness, deps.metricsText, deps.settings.metricsToken));
  app.use('/api/auth', authRoutes(deps.auth));
  app.use('/api/alerts', alertRoutes(deps));

  const authed = express.Router();
  authed.use(authenticate(deps.auth));
  authed.get('/topology', (_req, res) => {
    res.json(deps.topology.topology);
  });
  authed.use('/incidents', incidentRoutes(deps.incidents));
  authed.use('/users', requireRole('admin'), userRoutes(deps.users));
  authed.use('/api-keys', requireRole('admin'), apiKeyRoutes(deps.apiKeys));
  app.use('/api', authed);

  app.use(notFound);
  app.use(errorHandler(deps.logger));
  return app;
}
