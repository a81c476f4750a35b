import { describe, expect, it } from 'vitest';
import { loadTopologyFile } from '../server/config-files.ts';
import { type Status, statuses } from '../shared/incident.ts';
import { checkTransition, nextStatuses, transitions } from '../shared/incident-lifecycle.ts';
import { roles } from '../shared/roles.ts';
import { isParty, routeIncident } from '../shared/routing.ts';
import { indexTopology, Topology } from '../shared/topology.ts';

const topology = indexTopology(await loadTopologyFile('config/topology.json'));
const facilities = topology.topology.units.filter((u) => u.type === 'facility');
const island = facilities.filter((f) => f.id !== 'lapas-cilacap');

describe('routing over the whole default topology', () => {
  it.each(island.map((f) => f.id))(
    'routes a critical %s incident to it, Polsek Nusakambangan, Korwil, Kanwil and Polresta only',
    (id) => {
      expect(routeIncident(topology, id, 4)).toEqual({
        facilityId: id,
        precincts: ['polsek-nusakambangan'],
        commands: ['korwil-nusakambangan', 'kanwil-ditjenpas-jateng', 'polresta-cilacap'],
        parties: [
          id,
          'polsek-nusakambangan',
          'korwil-nusakambangan',
          'kanwil-ditjenpas-jateng',
          'polresta-cilacap',
        ],
      });
    },
  );

  it.each(facilities.flatMap((f) => [1, 2, 3].map((s) => [f.id, s] as const)))(
    'routes a %s incident of severity %s to its Lapas and primary Polsek only',
    (id, severity) => {
      const facility = topology.facility(id);
      expect(routeIncident(topology, id, severity).parties).toEqual([id, facility?.primaryPrecinct]);
    },
  );

  it('never routes any incident of any Lapas to another Lapas, or to Polda at raise', () => {
    for (const f of facilities) {
      for (const severity of [1, 2, 3, 4]) {
        const { parties } = routeIncident(topology, f.id, severity);
        expect(parties.filter((p) => topology.unit(p)?.type === 'facility')).toEqual([f.id]);
        expect(parties).not.toContain('polda-jateng');
      }
    }
  });

  it('keeps the mainland pair apart: Lapas Cilacap goes to Polsek Cilacap Tengah and Kanwil, never Korwil or Polsek Nusakambangan', () => {
    expect(routeIncident(topology, 'lapas-cilacap', 4).parties).toEqual([
      'lapas-cilacap',
      'polsek-cilacap-tengah',
      'kanwil-ditjenpas-jateng',
      'polresta-cilacap',
    ]);
  });

  it('adds a backup precinct at raise only from the severity the topology gives it', () => {
    const custom = indexTopology(
      Topology.parse({
        ...topology.topology,
        units: topology.topology.units.map((u) =>
          u.id === 'lapas-batu' && u.type === 'facility'
            ? { ...u, backupPrecincts: [{ unitId: 'polsek-cilacap-selatan', atRaiseFromSeverity: 3 }] }
            : u,
        ),
      }),
    );
    expect(routeIncident(custom, 'lapas-batu', 2).precincts).toEqual(['polsek-nusakambangan']);
    expect(routeIncident(custom, 'lapas-batu', 3).precincts).toEqual([
      'polsek-nusakambangan',
      'polsek-cilacap-selatan',
    ]);
  });

  it('treats admins as a party to everything and other users only through their unit', () => {
    const incident = { parties: routeIncident(topology, 'lapas-permisan', 2).parties };
    expect(isParty({ role: 'admin', unitId: 'lapas-batu' }, incident)).toBe(true);
    expect(isParty({ role: 'operator', unitId: 'lapas-batu' }, incident)).toBe(false);
    expect(isParty({ role: 'dispatcher', unitId: 'polsek-nusakambangan' }, incident)).toBe(true);
  });
});

describe('incident lifecycle', () => {
  const legal: [Status, Status][] = [
    ['open', 'responding'],
    ['open', 'contained'],
    ['open', 'false_alarm'],
    ['open', 'cancelled'],
    ['acknowledged', 'responding'],
    ['acknowledged', 'contained'],
    ['acknowledged', 'resolved'],
    ['acknowledged', 'false_alarm'],
    ['acknowledged', 'cancelled'],
    ['responding', 'contained'],
    ['responding', 'resolved'],
    ['contained', 'responding'],
    ['contained', 'resolved'],
    ['resolved', 'closed'],
    ['resolved', 'responding'],
  ];
  const isLegal = (from: Status, to: Status) => legal.some(([f, t]) => f === from && t === to);

  it.each(statuses.flatMap((from) => statuses.map((to) => [from, to] as const)))(
    '%s → %s is legal only if listed',
    (from, to) => {
      const someoneMay = roles.some((role) => checkTransition(from, to, role).ok);
      expect(someoneMay).toBe(isLegal(from, to));
      if (!isLegal(from, to))
        expect(checkTransition(from, to, 'security_chief')).toMatchObject({ code: 'invalid_transition' });
    },
  );

  it('reaches acknowledged only through an acknowledgement, and nothing leaves closed, false_alarm or cancelled', () => {
    for (const from of statuses) expect(transitions[from].acknowledged).toBeUndefined();
    for (const end of ['closed', 'false_alarm', 'cancelled'] as const)
      expect(Object.keys(transitions[end])).toEqual([]);
  });

  it('lets only the facility call a false alarm, only case owners close, and never a supervisor or admin act', () => {
    expect(checkTransition('open', 'false_alarm', 'dispatcher')).toMatchObject({
      ok: false,
      code: 'forbidden',
    });
    expect(checkTransition('open', 'false_alarm', 'operator')).toEqual({ ok: true });
    expect(checkTransition('resolved', 'closed', 'operator')).toMatchObject({ ok: false, code: 'forbidden' });
    expect(checkTransition('resolved', 'closed', 'commander')).toEqual({ ok: true });
    for (const from of statuses) {
      expect(nextStatuses(from, 'supervisor')).toEqual([]);
      expect(nextStatuses(from, 'admin')).toEqual([]);
    }
  });
});
