import { rooms } from '../../../shared/rooms.ts';
import { partyRooms } from '../../../shared/routing.ts';
import type { TopologyIndex } from '../../../shared/topology.ts';
import type { IncidentPublisher } from '../../domain/incident-service.ts';
import type { Hub } from './socket-types.ts';

/**
 * Delivers each committed change through the adapter, so consoles on every process get it. Rooms are
 * computed from the incident's parties as they are now, at publish time.
 */
export function createIncidentPublisher(io: Hub, topology: TopologyIndex): IncidentPublisher {
  return {
    changed({ incident, event, alert, quietFor }) {
      const meta = { incidentId: incident.id, seq: incident.seq };
      const parties = io.to(partyRooms(topology, incident.parties));
      if (alert) {
        (quietFor === undefined ? parties : parties.except(quietFor)).emit('alert:new', {
          ...meta,
          incident,
          alert,
        });
      } else {
        parties.emit('incident:updated', { ...meta, incident });
      }
      io.to(rooms.incident(incident.id)).emit('incident:event', { ...meta, event });
    },
  };
}
