import { rooms } from '../../../shared/rooms.ts';
import { partyRooms } from '../../../shared/routing.ts';
import type { TopologyIndex } from '../../../shared/topology.ts';
import type { ReminderPublisher } from '../../domain/escalation-service.ts';
import type { IncidentPublisher } from '../../domain/incident-writer.ts';
import type { Hub } from './socket-types.ts';

/**
 * Delivers each committed change through the adapter, so consoles on every process get it. Rooms are
 * computed from the incident's parties as they are now, at publish time.
 */
export function createIncidentPublisher(
  io: Hub,
  topology: TopologyIndex,
): IncidentPublisher & ReminderPublisher {
  return {
    changed({ incident, event, alert, quiet, superseded }) {
      const meta = { incidentId: incident.id, seq: incident.seq };
      const incidentRoom = rooms.incident(incident.id);
      const parties = partyRooms(topology, incident.parties);
      // The logins of its silent raises hear nothing of it, ever: not the alarm, nor any update, page or event
      // a watcher could see on their screens.
      const to = (targets: string[]) => io.to(targets).except(quiet.map(rooms.session));
      if (event.type === 'escalated') {
        const { chain, level, label, targets, dueAt, firedAt, addedUnits } = event.data;
        to([...targets.rooms, incidentRoom]).emit('escalation:fired', {
          ...meta,
          chain,
          level,
          label,
          targets,
          dueAt,
          firedAt,
        });
        // Units that had not heard of the incident get it as they would have at raise.
        const added = partyRooms(topology, addedUnits);
        if (alert && added.length > 0) to(added).emit('alert:new', { ...meta, incident, alert });
        // The change committed with it brings the parties the incident as it is after both.
        if (!superseded)
          to(parties)
            .except(added)
            .emit('incident:updated', { ...meta, incident });
      } else if (alert) {
        to(parties).emit('alert:new', { ...meta, incident, alert });
      } else if (!superseded) {
        to(parties).emit('incident:updated', { ...meta, incident });
      }
      // Nobody can be in the room of an incident just opened: joining needs the committed incident, and the
      // join's answer already carries this event. Publishing it would only cost a stream entry and a read.
      if (event.type !== 'opened') to([incidentRoom]).emit('incident:event', { ...meta, event });
    },

    reminded({ incident, chain, level, round, rooms: paged, quiet }) {
      io.to(paged).except(quiet.map(rooms.session)).emit('escalation:reminder', {
        incidentId: incident.id,
        seq: incident.seq,
        chain,
        level,
        round,
      });
    },
  };
}
