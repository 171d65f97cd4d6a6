import { describe, expect, it } from 'vitest';
import { DateTime } from 'luxon';
import {
  birthDateBounds,
  birthdayInYear,
  completedYears,
  dateSpanOf,
  dayInZone,
  isOverAge,
  isWithinLookback,
  lookbackStart,
  observationDateSpan,
  periodCovers,
} from '../../../src/domain/dates.js';

const PARIS = 'Europe/Paris';

describe('dateSpanOf (local calendar dates in the program zone)', () => {
  it.each([
    ['2025-01-01T23:30:00Z', '2025-01-02', '2025-01-02'], // UTC evening is the next day in Paris
    ['2025-07-01T22:30:00Z', '2025-07-02', '2025-07-02'], // summer time, +02:00
    ['2025-07-01T21:30:00Z', '2025-07-01', '2025-07-01'],
    ['2025-01-02T00:30:00+05:00', '2025-01-01', '2025-01-01'], // an offset ahead of Paris
    ['2025-03-10T08:00:00.123+01:00', '2025-03-10', '2025-03-10'],
    ['2025-03-10T08:00:00', '2025-03-10', '2025-03-10'], // no offset: local time in the zone
    ['2025-03-10', '2025-03-10', '2025-03-10'], // a date is taken as is
    ['2024-02', '2024-02-01', '2024-02-29'],
    ['2025', '2025-01-01', '2025-12-31'],
  ])('%s is %s..%s', (value, first, last) => {
    expect(dateSpanOf(value, PARIS)).toMatchObject({ first, last });
  });

  it.each(['', 'yesterday', '2025-13-01', '2025-02-30', '2025-W01', '20250101', undefined])('%s is not a FHIR date', (value) => {
    expect(dateSpanOf(value, PARIS)).toBeUndefined();
  });

  // Ten characters: the shape read char by char (the fast path of YYYY-MM-DD) and its neighbours.
  it.each(['2025-00-10', '2025-01-00', '2025-01-32', '2025-04-31', '2023-02-29', '1900-02-29', '2025/01/01', '2025-1-010', '２025-01-01', '2025-01-0a', ' 2025-01-1', '2025-01-1 ', '+2025-01-1'])('%s (ten characters) is not a FHIR date', (value) => {
    expect(dateSpanOf(value, PARIS)).toBeUndefined();
  });

  it.each([
    ['2024-02-29', '2024-02-29'],
    ['2000-02-29', '2000-02-29'],
    ['0000-01-01', '0000-01-01'],
    ['9999-12-31', '9999-12-31'],
    ['2025-12-31', '2025-12-31'],
  ])('%s (ten characters) is the day itself, its latest instant the end of the day in the zone', (value, day) => {
    const span = dateSpanOf(value, PARIS);
    expect(span).toMatchObject({ first: day, last: day });
    if (value === '2025-12-31') expect(span?.latestInstant).toBe(Date.parse('2026-01-01T00:00:00+01:00') - 1);
  });

  it('orders instants across offsets', () => {
    const a = dateSpanOf('2025-03-10T08:00:00+01:00', PARIS);
    const b = dateSpanOf('2025-03-10T07:30:00Z', PARIS);
    expect(a && b && b.latestInstant > a.latestInstant).toBe(true);
  });
});

describe('observationDateSpan', () => {
  const base: fhir4.Observation = { resourceType: 'Observation', status: 'final', code: {} };
  it.each([
    [{ effectiveDateTime: '2025-03-01', issued: '2025-03-05T10:00:00Z' }, '2025-03-01'],
    [{ effectivePeriod: { start: '2025-03-01', end: '2025-03-02' } }, '2025-03-02'],
    [{ effectivePeriod: { start: '2025-03-01' } }, '2025-03-01'],
    [{ effectiveInstant: '2025-03-03T23:00:00Z' }, '2025-03-04'],
    [{ issued: '2025-03-05T10:00:00Z' }, '2025-03-05'],
    [{}, undefined],
  ])('%j is dated %s', (fields, date) => {
    expect(observationDateSpan({ ...base, ...fields }, PARIS)?.last).toBe(date);
  });
});

describe('look-back window', () => {
  it.each([
    ['2025-06-15', 12, '2024-06-15'],
    ['2025-02-28', 12, '2024-02-28'],
    ['2024-02-29', 12, '2023-02-28'], // luxon clamps to the end of the shorter month
    ['2025-03-31', 1, '2025-02-28'],
    ['2024-03-31', 1, '2024-02-29'],
  ])('%s minus %s months is %s', (asOf, months, start) => {
    expect(lookbackStart(asOf, months)).toBe(start);
  });

  const day = (date: string) => ({ first: date, last: date, latestInstant: 0 });
  it.each([
    ['2024-06-15', true], // exactly 12 months before asOf: counts
    ['2024-06-14', false], // the day before: does not
    ['2025-06-15', true], // asOf itself
    ['2025-06-16', false], // after asOf (a replay): never
  ])('a value of %s with asOf 2025-06-15 and 12 months: %s', (date, expected) => {
    expect(isWithinLookback(day(date), '2025-06-15', 12)).toBe(expected);
  });

  it('counts a partial date only when all of it is in the window', () => {
    expect(isWithinLookback({ first: '2025-05-01', last: '2025-05-31', latestInstant: 0 }, '2025-06-15', 12)).toBe(true);
    expect(isWithinLookback({ first: '2025-06-01', last: '2025-06-30', latestInstant: 0 }, '2025-06-15', 12)).toBe(false);
    expect(isWithinLookback({ first: '2024-06-01', last: '2024-06-30', latestInstant: 0 }, '2025-06-15', 12)).toBe(false);
  });

  it('has no lower limit without months', () => {
    expect(isWithinLookback(day('1990-01-01'), '2025-06-15', undefined)).toBe(true);
    expect(isWithinLookback(day('2025-06-16'), '2025-06-15', undefined)).toBe(false);
  });
});

describe('periodCovers', () => {
  it.each([
    [undefined, true],
    [{}, true],
    [{ start: '2025-06-15' }, true],
    [{ start: '2025-06-16' }, false],
    [{ end: '2025-06-15' }, true],
    [{ end: '2025-06-14' }, false],
    [{ start: '2025', end: '2025' }, true], // partial bounds cover their whole year
    [{ end: '2025-06' }, true],
    [{ end: '2025-05' }, false],
    [{ end: '2025-06-14T23:30:00Z' }, true], // 2025-06-15 01:30 in Paris
    [{ start: 'not a date' }, false],
  ])('%j covers 2025-06-15: %s', (period, expected) => {
    expect(periodCovers(period, '2025-06-15', PARIS)).toBe(expected);
  });
});

describe('age', () => {
  it.each([
    ['1980-06-15', '2025-06-14', 44],
    ['1980-06-15', '2025-06-15', 45],
    ['1980-06-15', '2025-06-16', 45],
    ['1980-02-29', '2025-02-28', 44], // Decision: in a non-leap year, 29 February birthdays fall on 1 March
    ['1980-02-29', '2025-03-01', 45],
    ['1980-02-29', '2024-02-29', 44],
    ['1980-02-29', '2024-02-28', 43],
  ])('born %s, on %s: %s completed years', (birth, asOf, years) => {
    expect(completedYears(birth, asOf)).toBe(years);
  });

  it.each([
    ['2023', '03-01'],
    ['2024', '02-29'],
  ])('a 29 February birthday in %s falls on %s', (year, monthDay) => {
    expect(birthdayInYear('1980-02-29', Number(year))).toBe(`${year}-${monthDay}`);
  });

  it.each([
    // birth, years, exclusive, asOf, over?
    ['1980-06-15', 45, true, '2025-06-15', false], // on the 45th birthday: not strictly over 45
    ['1980-06-15', 45, true, '2025-06-16', true], // the day after
    ['1980-06-15', 45, false, '2025-06-15', true], // inclusive: from the birthday itself
    ['1980-06-15', 45, false, '2025-06-14', false],
    ['1980-02-29', 45, true, '2025-03-01', false], // the 45th birthday is 1 March 2025
    ['1980-02-29', 45, true, '2025-03-02', true],
    ['1980-02-29', 45, false, '2025-02-28', false],
    ['1980-02-29', 45, false, '2025-03-01', true],
    ['1980-02-29', 44, true, '2024-03-01', true], // 2024 is a leap year: the birthday is 29 February
  ])('born %s over %s (exclusive %s) on %s: %s', (birth, years, exclusive, asOf, expected) => {
    expect(isOverAge(birth, years, exclusive, asOf)).toBe(expected);
  });

  it.each([
    ['1980-06-15', '1980-06-15', '1980-06-15'],
    ['1980', '1980-01-01', '1980-12-31'],
    ['1980-02', '1980-02-01', '1980-02-29'],
    ['1981-02', '1981-02-01', '1981-02-28'],
    ['1980-12', '1980-12-01', '1980-12-31'],
    ['2000-02-29', '2000-02-29', '2000-02-29'],
    [' 1980-06-15 ', '1980-06-15', '1980-06-15'], // trimmed
    ['1980-06-15T10:00:00+02:00', '1980-06-15', '1980-06-15'], // a dateTime: its date in the zone
  ])('birthDate %s is between %s and %s', (birthDate, earliest, latest) => {
    expect(birthDateBounds(birthDate, PARIS)).toEqual({ earliest, latest });
  });

  // Ten characters (read char by char) and the other plain shapes, out of range or malformed.
  it.each(['1900-02-29', '1981-02-29', '1980-00-10', '1980-13-01', '1980-01-00', '1980-04-31', '1980/06/15', '1980-6-150', '1980-06-1x', '１980-06-15', '1980-00', '1980-13', '198x', '', undefined])('birthDate %s has no bounds', (birthDate) => {
    expect(birthDateBounds(birthDate, PARIS)).toBeUndefined();
  });
});

describe('dayInZone (today in a program time zone)', () => {
  it('is the local calendar date of the instant, across midnight and DST changes', () => {
    expect(dayInZone(Date.parse('2025-01-01T22:59:59Z'), 'Europe/Paris')).toBe('2025-01-01');
    expect(dayInZone(Date.parse('2025-01-01T23:00:00Z'), 'Europe/Paris')).toBe('2025-01-02');
    // Summer time: UTC+2.
    expect(dayInZone(Date.parse('2025-06-30T21:59:59Z'), 'Europe/Paris')).toBe('2025-06-30');
    expect(dayInZone(Date.parse('2025-06-30T22:00:00Z'), 'Europe/Paris')).toBe('2025-07-01');
    // The day of the spring change (2025-03-30, 02:00 → 03:00) and an overseas department.
    expect(dayInZone(new Date('2025-03-30T00:30:00Z'), 'Europe/Paris')).toBe('2025-03-30');
    expect(dayInZone(Date.parse('2025-01-01T03:59:59Z'), 'America/Martinique')).toBe('2024-12-31');
    expect(dayInZone(Date.parse('2024-02-29T12:00:00Z'), 'UTC')).toBe('2024-02-29');
  });

  it('gives what luxon gives, for instants over two years', () => {
    for (let t = Date.parse('2024-01-01T00:00:00Z'); t < Date.parse('2026-01-01T00:00:00Z'); t += 3_600_000 * 7 + 13_000) {
      expect(dayInZone(t, 'Europe/Paris')).toBe(DateTime.fromMillis(t).setZone('Europe/Paris').toISODate());
    }
  });

  it('refuses a zone that is not an IANA name', () => {
    expect(() => dayInZone(0, 'Mars/Olympus')).toThrow(/Invalid IANA time zone/);
  });
});
