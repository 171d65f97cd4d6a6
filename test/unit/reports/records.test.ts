/** Days of FHIR dates and dateTimes in the program's zone (records.ts), and the months of a period. */
import { describe, expect, it } from 'vitest';
import { firstDay, lastDay, monthsOf } from '../../../src/domain/reports/records.js';

const ZONE = 'Europe/Paris';

describe('firstDay / lastDay', () => {
  it.each([
    ['2026-03-15', '2026-03-15', '2026-03-15'],
    ['2026-12-31T22:59:59Z', '2026-12-31', '2026-12-31'],
    ['2026-12-31T23:00:00Z', '2027-01-01', '2027-01-01'],
    ['2026-03-29T00:30:00Z', '2026-03-29', '2026-03-29'], // the spring DST change (UTC+1 → UTC+2)
    ['2026-06-30T22:30:00Z', '2026-07-01', '2026-07-01'], // summer time: UTC+2
    ['2026-10-25T22:30:00Z', '2026-10-25', '2026-10-25'], // after the autumn change: UTC+1
    ['2026-02-02T00:30:00+01:00', '2026-02-02', '2026-02-02'],
    ['2026-01-01T23:30:00', '2026-01-01', '2026-01-01'], // no offset: local time
    ['2026-03', '2026-03-01', '2026-03-31'], // partial dates cover their whole precision
    ['2026', '2026-01-01', '2026-12-31'],
  ])('%s → first %s, last %s', (value, first, last) => {
    expect(firstDay(value, ZONE)).toBe(first);
    expect(lastDay(value, ZONE)).toBe(last);
  });

  it.each(['2026-02-30', '2026-13-01', 'yesterday', ''])('%s is no day', (value) => {
    expect(firstDay(value, ZONE)).toBeUndefined();
  });
});

describe('monthsOf', () => {
  it('lists every month from the first day\'s to the last day\'s, across years', () => {
    expect(monthsOf({ start: '2026-11-30', end: '2027-02-01' })).toEqual(['2026-11', '2026-12', '2027-01', '2027-02']);
    expect(monthsOf({ start: '2026-05-01', end: '2026-05-31' })).toEqual(['2026-05']);
  });
});
