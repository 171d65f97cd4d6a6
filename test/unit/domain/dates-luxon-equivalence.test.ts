/**
 * The calendar arithmetic of src/domain/dates.ts is done on YYYY-MM-DD integers (speed of bulk
 * screening); these properties compare it, over many generated dates, with the luxon
 * implementation it replaced (copied here as the reference).
 */
import fc from 'fast-check';
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import { birthDateBounds, birthdayInYear, completedYears, dateSpanOf, isOverAge, lookbackStart } from '../../../src/domain/dates.js';

const YEAR = /^\d{4}$/;
const YEAR_MONTH = /^\d{4}-\d{2}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

function isoDate(value: DateTime): string {
  const date = value.toISODate();
  if (date === null) throw new Error('invalid');
  return date;
}

/** The former luxon implementation of dateSpanOf for plain (partial) dates. */
function referenceSpan(value: string, zone: string): { first: string; last: string; latestInstant: number } | undefined {
  const text = value.trim();
  const unit = YEAR.test(text) ? 'year' : YEAR_MONTH.test(text) ? 'month' : DATE.test(text) ? 'day' : undefined;
  if (unit === undefined) throw new Error('reference only for plain dates');
  const start = DateTime.fromISO(text, { zone });
  if (!start.isValid) return undefined;
  const end = start.endOf(unit);
  return { first: isoDate(start), last: isoDate(end), latestInstant: end.toMillis() };
}

function referenceCalendar(date: string): DateTime {
  const parsed = DATE.test(date) ? DateTime.fromISO(date, { zone: 'UTC' }) : undefined;
  if (!parsed?.isValid) throw new Error(`Invalid calendar date "${date}"`);
  return parsed;
}

function referenceLookbackStart(asOf: string, months: number): string {
  return isoDate(referenceCalendar(asOf).minus({ months }));
}

function referenceBirthday(birthDate: string, year: number): string {
  const birth = referenceCalendar(birthDate);
  const leap = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const [month, day] = birth.month === 2 && birth.day === 29 && !leap(year) ? [3, 1] : [birth.month, birth.day];
  return isoDate(DateTime.fromObject({ year, month, day }, { zone: 'UTC' }));
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');
/** Valid and invalid dates alike (day 0..31, month 0..13), dense around month ends. */
const year = fc.oneof(fc.integer({ min: 1890, max: 2100 }), fc.constantFrom(0, 1, 1600, 1900, 2000, 2024, 9999));
const rawDate = fc.tuple(year, fc.integer({ min: 0, max: 13 }), fc.oneof(fc.integer({ min: 0, max: 32 }), fc.integer({ min: 27, max: 31 })));
const dateText = rawDate.map(([y, m, d]) => `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}`);
const validDate = fc
  .tuple(year, fc.integer({ min: 1, max: 12 }), fc.oneof(fc.integer({ min: 1, max: 31 }), fc.integer({ min: 27, max: 31 })))
  .map(([y, m, d]) => `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}`)
  .filter((text) => DateTime.fromISO(text, { zone: 'UTC' }).isValid);
/** Zones with DST at midnight (Sao Paulo, Beirut), half hours (Kolkata, Lord Howe), west and east. */
const zone = fc.constantFrom('Europe/Paris', 'UTC', 'America/New_York', 'America/Sao_Paulo', 'Asia/Beirut', 'Asia/Kolkata', 'Australia/Lord_Howe', 'Pacific/Auckland', 'Indian/Reunion', 'America/Martinique');
const RUNS = 3000;

describe('date arithmetic without luxon equals the luxon path', () => {
  it('dateSpanOf of YYYY-MM-DD, YYYY-MM, YYYY (first, last, latestInstant; invalid → undefined)', () => {
    const text = fc.oneof(dateText, dateText.map((d) => d.slice(0, 7)), dateText.map((d) => d.slice(0, 4)));
    fc.assert(
      fc.property(text, zone, (value, tz) => {
        const span = dateSpanOf(value, tz);
        const reference = referenceSpan(value, tz);
        expect(span && { first: span.first, last: span.last, latestInstant: span.latestInstant }).toEqual(reference);
      }),
      { numRuns: RUNS },
    );
  });

  it('dateSpanOf of dateTimes with an offset (fields in and out of range, 0-9 fraction digits) equals luxon', () => {
    const twoDigits = (max: number) => fc.integer({ min: 0, max }).map((n) => pad(n, 2));
    const dateTime = fc
      .tuple(
        fc.integer({ min: 1900, max: 2100 }).map((y) => pad(y, 4)),
        twoDigits(13),
        twoDigits(32),
        twoDigits(24),
        twoDigits(60),
        fc.option(twoDigits(60), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 9 }).chain((n) => fc.stringMatching(new RegExp(`^\\d{${n}}$`))), { nil: undefined }),
        fc.oneof(fc.constant('Z'), fc.tuple(fc.constantFrom('+', '-'), twoDigits(15), fc.constantFrom('00', '30', '45', '59', '60')).map(([sign, h, m]) => `${sign}${h}:${m}`)),
      )
      .map(([y, mo, d, h, mi, sec, fraction, offset]) => `${y}-${mo}-${d}T${h}:${mi}${sec === undefined ? '' : `:${sec}${fraction === undefined ? '' : `.${fraction}`}`}${offset}`);
    fc.assert(
      fc.property(dateTime, zone, (value, tz) => {
        const span = dateSpanOf(value, tz);
        const instant = DateTime.fromISO(value, { zone: tz });
        const reference = instant.isValid ? { first: isoDate(instant), last: isoDate(instant), latestInstant: instant.toMillis() } : undefined;
        expect(span && { first: span.first, last: span.last, latestInstant: span.latestInstant }, value).toEqual(reference);
      }),
      { numRuns: RUNS * 3 },
    );
  });

  it('birthDateBounds of plain and partial dates (with surrounding spaces too)', () => {
    const text = fc.oneof(dateText, dateText.map((d) => d.slice(0, 7)), dateText.map((d) => ` ${d.slice(0, 4)} `));
    fc.assert(
      fc.property(text, zone, (value, tz) => {
        const reference = referenceSpan(value, tz);
        expect(birthDateBounds(value, tz)).toEqual(reference && { earliest: reference.first, latest: reference.last });
      }),
      { numRuns: RUNS },
    );
  });

  it('month ends and leap days, every day of 2023–2025 in Paris', () => {
    for (let day = DateTime.fromISO('2023-01-01', { zone: 'UTC' }); day.year < 2026; day = day.plus({ days: 1 })) {
      const text = isoDate(day);
      expect(dateSpanOf(text, 'Europe/Paris')?.latestInstant).toBe(referenceSpan(text, 'Europe/Paris')?.latestInstant);
      expect(dateSpanOf(text, 'Europe/Paris')?.first).toBe(text);
    }
    expect(dateSpanOf('2023-02-29', 'Europe/Paris')).toBeUndefined();
    expect(dateSpanOf('2024-02-29', 'Europe/Paris')?.last).toBe('2024-02-29');
    expect(dateSpanOf('1900-02', 'Europe/Paris')?.last).toBe('1900-02-28');
    expect(dateSpanOf('2000-02', 'Europe/Paris')?.last).toBe('2000-02-29');
  });

  it('latest instants without luxon (Intl offsets, luxon only near a change of offset) equal luxon: every day, month and year around DST and other changes', () => {
    // Changes at midnight (Sao Paulo, Santiago, Beirut, Havana), 30 min DST (Lord Howe), 2 h DST
    // (Troll), negative DST (Dublin), a skipped day (Apia 2011-12-30), Ramadan DST (Casablanca).
    const zones = ['Europe/Paris', 'America/Sao_Paulo', 'America/Santiago', 'Asia/Beirut', 'America/Havana', 'Australia/Lord_Howe', 'Antarctica/Troll', 'Europe/Dublin', 'Pacific/Apia', 'Africa/Casablanca', 'Asia/Kolkata', 'UTC'];
    const texts: string[] = [];
    for (let day = DateTime.fromISO('2010-12-25', { zone: 'UTC' }); day.year < 2012 || day.month < 2; day = day.plus({ days: 1 })) texts.push(isoDate(day));
    for (let year = 1800; year <= 2100; year += 7) texts.push(pad(year, 4));
    for (let month = 0; month < 12 * 3; month += 1) texts.push(`${2016 + Math.floor(month / 12)}-${pad((month % 12) + 1, 2)}`);
    texts.push('9000-12-31', '9001-01-01', '1799-12-31', '1800-01-01', '1911-03-10', '1911-03-11');
    for (const tz of zones) {
      for (const text of texts) expect(dateSpanOf(text, tz)?.latestInstant, `${text} ${tz}`).toBe(referenceSpan(text, tz)?.latestInstant);
    }
  });

  it('lookbackStart (calendar months back, day clamped to the month end)', () => {
    fc.assert(
      fc.property(validDate, fc.integer({ min: 0, max: 1300 }), (asOf, months) => {
        expect(lookbackStart(asOf, months)).toBe(referenceLookbackStart(asOf, months));
      }),
      { numRuns: RUNS },
    );
  });

  it('birthdayInYear, completedYears and isOverAge', () => {
    fc.assert(
      fc.property(validDate, validDate, fc.integer({ min: 0, max: 130 }), fc.boolean(), (birth, asOf, years, exclusive) => {
        const birthYear = Number(birth.slice(0, 4));
        const target = birthYear + years;
        expect(birthdayInYear(birth, target)).toBe(referenceBirthday(birth, target));
        const asOfYear = Number(asOf.slice(0, 4));
        const expectedYears = asOfYear - birthYear - (asOf < referenceBirthday(birth, asOfYear) ? 1 : 0);
        expect(completedYears(birth, asOf)).toBe(expectedYears);
        const birthday = referenceBirthday(birth, target);
        expect(isOverAge(birth, years, exclusive, asOf)).toBe(exclusive ? asOf > birthday : asOf >= birthday);
      }),
      { numRuns: RUNS },
    );
  });

  it('invalid calendar dates still throw', () => {
    expect(() => lookbackStart('2025-02-30', 1)).toThrow(/Invalid calendar date/);
    expect(() => completedYears('2025-13-01', '2026-01-01')).toThrow(/Invalid calendar date/);
    expect(() => birthdayInYear('2025-1-01', 2030)).toThrow(/Invalid calendar date/);
  });
});
