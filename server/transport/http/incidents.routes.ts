import { Router } from 'express';
import { parseOrThrow } from '../../../shared/errors.ts';
import { EventsQuery, IncidentId, ListIncidentsQuery } from '../../../shared/incident.ts';
import type { IncidentService } from '../../domain/incident-service.ts';
import { principalOf } from './authenticate.ts';

export function incidentRoutes(incidents: IncidentService): Router {
  const router = Router();
  router.get('/', async (req, res) => {
    const query = parseOrThrow(ListIncidentsQuery, req.query, 'query');
    res.json(await incidents.list(principalOf(res), query));
  });
  router.get('/:id', async (req, res) => {
    const id = parseOrThrow(IncidentId, req.params.id, 'incident id');
    res.json({ incident: await incidents.get(principalOf(res), id) });
  });
  router.get('/:id/events', async (req, res) => {
    const id = parseOrThrow(IncidentId, req.params.id, 'incident id');
    const { afterSeq, limit } = parseOrThrow(EventsQuery, req.query, 'query');
    res.json({ events: await incidents.events(principalOf(res), id, afterSeq, limit) });
  });
  return router;
}
