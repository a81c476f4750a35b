import { describe, expect, it } from 'vitest';
import {
  type ChainState,
  decideReminder,
  type EscalationLevel,
  nextReminderAt,
  nextWake,
} from '../shared/escalation.ts';

const T0 = Date.parse('2026-11-28T03:00:00.000Z');
const at = (seconds: number) => T0 + seconds * 1000;
const iso = (seconds: number) => new Date(at(seconds)).toISOString();

// The default shape: the first level waits 30 s and is paged again every 10 s; the top level every 60 s.
const LEVELS: EscalationLevel[] = [
  { label: 'Ruang kendali Lapas', notify: [{ scope: 'facility' }], waitSeconds: 30, repeatSeconds: 10 },
  { label: 'Ka. KPLP', notify: [{ scope: 'facility', role: 'security_chief' }], repeatSeconds: 60 },
];
const waiting: ChainState = { level: 0, levelCount: 2, generation: 3, status: 'running', dueAt: iso(30) };
const atTop: ChainState = { level: 1, levelCount: 2, generation: 3, status: 'exhausted', dueAt: null };
const timer = { level: 1, generation: 3, waitFrom: iso(0) };

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
    expect(nextWake({ ...waiting, status: 'held' }, LEVELS, T0, T0)).toBeUndefined();
    const silent = LEVELS.map(({ repeatSeconds: _, ...level }) => level);
    expect(nextWake(waiting, silent, T0, T0)).toEqual({ at: at(30), climb: true });
    expect(nextWake(atTop, silent, T0, T0)).toBeUndefined();
  });
});

describe('a chain timer that wakes before its climb', () => {
  it('pages the round now due and sleeps until the next round, then until the climb', () => {
    expect(decideReminder(waiting, LEVELS, timer, at(10))).toEqual({
      round: 1,
      wake: { at: at(20), climb: false },
    });
    expect(decideReminder(waiting, LEVELS, timer, at(20.5))).toEqual({
      round: 2,
      wake: { at: at(30), climb: true },
    });
  });

  it('sends one page, not a burst, for rounds missed while no worker ran', () => {
    expect(decideReminder(atTop, LEVELS, { ...timer, level: 2 }, at(250))).toEqual({
      round: 4,
      wake: { at: at(300), climb: false },
    });
  });

  it('pages nothing when woken early, as after a retry, and sleeps until the round', () => {
    expect(decideReminder(waiting, LEVELS, timer, at(9))).toEqual({
      round: undefined,
      wake: { at: at(10), climb: false },
    });
  });

  it('climbs now, with no page, when the chain’s own climb has come sooner than the timer was set for', () => {
    const sooner = { ...waiting, dueAt: iso(12) };
    expect(decideReminder(sooner, LEVELS, timer, at(13))).toEqual({
      round: undefined,
      wake: { at: at(12), climb: true },
    });
  });

  it('does nothing once the chain has moved on: acknowledged, held, climbed or restarted', () => {
    for (const moved of [
      { ...waiting, status: 'acknowledged' as const, generation: 4 },
      { ...waiting, status: 'held' as const, generation: 4 },
      { ...waiting, level: 1 },
      { ...waiting, generation: 4 },
    ])
      expect(decideReminder(moved, LEVELS, timer, at(10))).toBeUndefined();
  });
});
