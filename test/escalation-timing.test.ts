import { describe, expect, it } from 'vitest';
import {
  type ChainState,
  dueOnWake,
  type EscalationLevel,
  type EscalationSnapshot,
  incidentWake,
  nextReminderAt,
  nextWake,
  waitStart,
} from '../shared/escalation.ts';

const T0 = Date.parse('2026-11-28T03:00:00.000Z');
const at = (seconds: number) => T0 + seconds * 1000;
const iso = (seconds: number) => new Date(at(seconds)).toISOString();

// The default shape: the first level waits 30 s and is paged again every 10 s; the top level every 60 s.
const LEVELS: EscalationLevel[] = [
  { label: 'Ruang kendali Lapas', notify: [{ scope: 'facility' }], waitSeconds: 30, repeatSeconds: 10 },
  { label: 'Ka. KPLP', notify: [{ scope: 'facility', role: 'security_chief' }], repeatSeconds: 60 },
];
const waiting: ChainState = {
  level: 0,
  levelCount: 2,
  generation: 3,
  status: 'running',
  dueAt: iso(30),
  waitFrom: iso(0),
};
const atTop: ChainState = {
  level: 1,
  levelCount: 2,
  generation: 3,
  status: 'exhausted',
  dueAt: null,
  waitFrom: iso(0),
};

describe('reminder rounds of a waiting level', () => {
  it('fall every repeat from the start of the wait, and never at or after the climb', () => {
    expect(nextReminderAt(waiting, LEVELS, T0, T0)).toBe(at(10));
    expect(nextReminderAt(waiting, LEVELS, T0, at(10))).toBe(at(20));
    // Late by 4 s, the next round is still at 20 s: lateness never pushes the rounds back.
    expect(nextReminderAt(waiting, LEVELS, T0, at(14))).toBe(at(20));
    // The round at 30 s would land on the climb, whose page supersedes it.
    expect(nextReminderAt(waiting, LEVELS, T0, at(20))).toBeUndefined();
    expect(nextWake(waiting, LEVELS, T0, at(20))).toEqual({ at: at(30), climb: true });
  });

  it('go on for ever at the top level, and not at all for a chain that waits for nothing', () => {
    expect(nextWake(atTop, LEVELS, T0, at(600))).toEqual({ at: at(660), climb: false });
    expect(nextWake({ ...waiting, status: 'acknowledged' }, LEVELS, T0, T0)).toBeUndefined();
    const silent = LEVELS.map(({ repeatSeconds: _, ...level }) => level);
    expect(nextWake(waiting, silent, T0, T0)).toEqual({ at: at(30), climb: true });
    expect(nextWake(atTop, silent, T0, T0)).toBeUndefined();
  });
});

// An incident whose chains both wait at their first level, on the default shape for both.
const POLICY: EscalationSnapshot = {
  policyId: 'critical',
  chains: { corrections: { levels: LEVELS }, police: { levels: LEVELS } },
};
const incident = (corrections: ChainState, police: ChainState = corrections) => ({
  updatedAt: iso(0),
  escalation: { policyId: 'critical', chains: { corrections, police } },
});
const both = incident(waiting);

describe('an incident’s one timer', () => {
  it('wakes at the earliest climb, end of hold or round of either chain', () => {
    expect(incidentWake(both, POLICY, T0)).toEqual({ at: at(10), climb: false });
    const heldPolice = { ...waiting, status: 'held' as const, dueAt: null, heldUntil: iso(5) };
    expect(incidentWake(incident(waiting, heldPolice), POLICY, T0)).toEqual({ at: at(5), climb: true });
    const acked = { ...waiting, status: 'acknowledged' as const, dueAt: null };
    expect(incidentWake(incident(acked, atTop), POLICY, at(600))).toEqual({ at: at(660), climb: false });
    expect(incidentWake(incident(acked), POLICY, T0)).toBeUndefined();
  });

  it('on time for a round, pages both waiting levels once and sleeps until the next round, then until the climb', () => {
    expect(dueOnWake(both, POLICY, at(10), at(10))).toEqual({
      climbs: [],
      resumes: [],
      rounds: [
        { chain: 'corrections', level: 0, round: 1 },
        { chain: 'police', level: 0, round: 1 },
      ],
    });
    expect(incidentWake(both, POLICY, at(10))).toEqual({ at: at(20), climb: false });
    expect(incidentWake(both, POLICY, at(20.5))).toEqual({ at: at(30), climb: true });
  });

  it('sends one page, not a burst, for rounds missed while no worker ran', () => {
    expect(dueOnWake(incident(atTop), POLICY, at(60), at(250)).rounds).toEqual([
      { chain: 'corrections', level: 1, round: 4 },
      { chain: 'police', level: 1, round: 4 },
    ]);
  });

  it('pages nothing when woken early, as after a retry, or again for a round paged before it was set', () => {
    expect(dueOnWake(both, POLICY, at(10), at(9))).toEqual({ climbs: [], resumes: [], rounds: [] });
    // Set at 20 s, after round 1 was paged, and woken at 15 s by hand: round 1 is not paged twice.
    expect(dueOnWake(both, POLICY, at(20), at(15)).rounds).toEqual([]);
  });

  it('climbs a chain whose climb has come, with no page for the level it leaves, and pages the other', () => {
    const sooner = { ...waiting, dueAt: iso(12) };
    expect(dueOnWake(incident(sooner, waiting), POLICY, at(10), at(13))).toEqual({
      climbs: ['corrections'],
      resumes: [],
      rounds: [{ chain: 'police', level: 0, round: 1 }],
    });
  });

  it('resumes a chain whose hold has run out, and does nothing for chains that wait for nothing', () => {
    const held = { ...waiting, status: 'held' as const, dueAt: null, heldUntil: iso(12) };
    const acked = { ...waiting, status: 'acknowledged' as const, dueAt: null };
    expect(dueOnWake(incident(held, acked), POLICY, at(12), at(12))).toEqual({
      climbs: [],
      resumes: ['corrections'],
      rounds: [],
    });
    expect(dueOnWake(incident(held, acked), POLICY, at(10), at(11))).toEqual({
      climbs: [],
      resumes: [],
      rounds: [],
    });
  });

  it('counts the rounds of an incident stored before the start of the wait was kept from the climb less the wait', () => {
    const { waitFrom: _unknown, ...stored } = waiting;
    expect(waitStart(stored, LEVELS, at(99))).toBe(T0);
    expect(waitStart({ ...atTop, waitFrom: undefined }, LEVELS, at(99))).toBe(at(99));
    expect(incidentWake(incident(stored), POLICY, T0)).toEqual({ at: at(10), climb: false });
  });
});
