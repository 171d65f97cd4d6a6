/**
 * Calendar dates in the program's time zone. Everything here is relative to an `asOf` date
 * passed in: this module never reads the clock.
 *
 * Calendar arithmetic on plain dates (YYYY-MM-DD, partial dates, ages, look-back windows) is
 * integer arithmetic (it runs for every patient of a bulk screening); luxon is used only where
 * a zone offset is needed (dateTimes with a time, latest instants), memoised.
 * test/unit/domain/dates-luxon-equivalence.test.ts checks it against the former luxon code.
 *
 * A `CalendarDate` is `YYYY-MM-DD`, so two of them compare correctly as strings.
 */
import { DateTime, IANAZone } from 'luxon';
import type { CalendarDate } from './types.js';

/** The local calendar dates a FHIR date/dateTime/instant may denote, and its latest instant (for ordering). */
export interface DateSpan {
  /** Earliest local date: equal to `last` unless the value is a partial date (YYYY or YYYY-MM). */
  first: CalendarDate;
  last: CalendarDate;
  /** Milliseconds since the epoch of the latest instant the value may denote. */
  latestInstant: number;
}

const YEAR = /^\d{4}$/;
const YEAR_MONTH = /^\d{4}-\d{2}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
/** FHIR dateTime/instant with a time. FHIR requires an offset; one missing is read as local time in the zone. */
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/;

function isoDate(value: DateTime): CalendarDate {
  const date = value.toISODate();
  if (date === null) throw new Error(`Invalid date: ${value.invalidExplanation ?? 'unknown reason'}`);
  return date;
}

/** Zones already checked: luxon's `isValidZone` builds an Intl.DateTimeFormat at each call. */
const validZones = new Set<string>();

/** @throws Error when `zone` is not an IANA zone name (program data is validated before). */
export function assertValidZone(zone: string): void {
  if (validZones.has(zone)) return;
  if (!IANAZone.isValidZone(zone)) throw new Error(`Invalid IANA time zone "${zone}"`);
  validZones.add(zone);
}

const dayFormatters = new Map<string, Intl.DateTimeFormat>();

/**
 * The calendar date of an instant in `zone` (an IANA name). A cached Intl formatter: luxon's
 * `setZone(...).toISODate()` cost about 0.2 ms per call, paid at every queued evaluation.
 */
export function dayInZone(instant: Date | number, zone: string): CalendarDate {
  let formatter = dayFormatters.get(zone);
  if (!formatter) {
    assertValidZone(zone);
    // en-CA formats a date as YYYY-MM-DD.
    formatter = new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' });
    dayFormatters.set(zone, formatter);
  }
  return formatter.format(instant);
}

/**
 * `dateSpanOf` is a pure function of (value, zone) and luxon's zone offsets are costly
 * (Intl formatToParts per DateTime): results are memoised, at most SPAN_CACHE_SIZE of them
 * (cleared when full). Spans are frozen, so a caller cannot alter a cached one. A plain
 * YYYY-MM-DD bypasses this cache: it is cheaper to compute (a new object each call).
 */
const SPAN_CACHE_SIZE = 50_000;
const spanCache = new Map<string, DateSpan | undefined>();

/**
 * The local calendar date(s) of a FHIR date, dateTime or instant in `zone`:
 * - a value with a time and an offset is converted to the zone (`2025-01-01T23:30:00Z` is
 *   2025-01-02 in Europe/Paris);
 * - a date-only value is taken as is (no zone shift);
 * - a partial date (`YYYY`, `YYYY-MM`) is the range of the dates it may denote.
 * Undefined when absent or not a valid FHIR date.
 */
export function dateSpanOf(value: string | undefined, zone: string): DateSpan | undefined {
  if (value === undefined) return undefined;
  // A plain YYYY-MM-DD (most values) costs less to compute than to look up; its latest instant is memoised apart.
  if (typeof value === 'string' && value.length === 10) {
    // Read char by char: what computeDateSpan does for a value DATE matches (trim and plainDateBounds
    // leave it as is), without testing the regex twice nor slicing.
    const year = digitsAt(value, 0, 4);
    const month = digitsAt(value, 5, 2);
    const day = digitsAt(value, 8, 2);
    if (year >= 0 && month >= 0 && day >= 0 && value.charCodeAt(4) === 0x2d && value.charCodeAt(7) === 0x2d) {
      if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
      return { first: value, last: value, latestInstant: endOfInstant(value, 'day', zone) };
    }
  } else if (value.length === 10 && DATE.test(value)) return computeDateSpan(value, zone); // not a string (malformed input): as before
  const key = `${zone}\u0000${value}`;
  if (spanCache.has(key)) return spanCache.get(key);
  const span = computeDateSpan(value, zone);
  if (spanCache.size >= SPAN_CACHE_SIZE) spanCache.clear();
  spanCache.set(key, span && Object.freeze(span));
  return span;
}

/** A dateTime with an offset whose fields are all in range (hour 24, second 60 and the like are left to luxon). */
const STRICT_DATE_TIME_WITH_OFFSET = /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?(Z|[+-](0\d|1[0-4]):[0-5]\d)$/;

/**
 * The instant of a dateTime with an offset, without luxon (every pushed Observation has one, and
 * each is new, so the span cache does not help): Date.parse once the calendar date is known to
 * exist. Undefined for anything else (luxon decides).
 */
function instantWithOffset(text: string): number | undefined {
  const match = STRICT_DATE_TIME_WITH_OFFSET.exec(text);
  if (!match) return undefined;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (month < 1 || month > 12 || day < 1) return undefined;
  if (new Date(Date.UTC(year, month - 1, day)).getUTCDate() !== day) return undefined;
  const instant = Date.parse(text);
  return Number.isNaN(instant) ? undefined : instant;
}

function computeDateSpan(value: string, zone: string): DateSpan | undefined {
  const text = value.trim();
  const plain = plainDateBounds(text);
  if (plain !== undefined) {
    // Plain (partial) dates: the calendar dates are integer arithmetic, no zone involved; only
    // the latest instant needs the zone's offset (luxon, memoised: dates repeat in a population).
    return plain === null ? undefined : { first: plain.first, last: plain.last, latestInstant: endOfInstant(text, plain.unit, zone) };
  }
  if (!DATE_TIME.test(text)) return undefined;
  const fast = instantWithOffset(text);
  if (fast !== undefined) {
    const date = dayInZone(fast, zone);
    return { first: date, last: date, latestInstant: fast };
  }
  const instant = DateTime.fromISO(text, { zone });
  if (!instant.isValid) return undefined;
  const date = isoDate(instant);
  return { first: date, last: date, latestInstant: instant.toMillis() };
}

/**
 * First and last calendar dates of a plain date `YYYY-MM-DD`, `YYYY-MM` or `YYYY` (trimmed);
 * null when it has that shape but is not a date (2025-02-30, 2025-13); undefined for any
 * other shape (a dateTime). A date-only value is taken as is, in any zone.
 */
function plainDateBounds(text: string): { first: CalendarDate; last: CalendarDate; unit: 'year' | 'month' | 'day' } | null | undefined {
  if (text.length === 10) {
    // YYYY-MM-DD (birth dates, most dates) read char by char: the strings DATE matches.
    const year = digitsAt(text, 0, 4);
    const month = digitsAt(text, 5, 2);
    const day = digitsAt(text, 8, 2);
    if (year < 0 || month < 0 || day < 0 || text.charCodeAt(4) !== 0x2d || text.charCodeAt(7) !== 0x2d) return undefined;
    if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
    // A valid YYYY-MM-DD is already what formatDate would write of it.
    return { first: text, last: text, unit: 'day' };
  }
  // Each other shape has its own length: one regex tested, not two.
  const unit = text.length === 4 ? (YEAR.test(text) ? 'year' : undefined) : text.length === 7 && YEAR_MONTH.test(text) ? 'month' : undefined;
  if (unit === undefined) return undefined;
  const year = Number(text.slice(0, 4));
  const month = unit === 'year' ? 1 : Number(text.slice(5, 7));
  const day = 1;
  if (month < 1 || month > 12) return null;
  const first = formatDate(year, month, day);
  const last = unit === 'month' ? formatDate(year, month, daysInMonth(year, month)) : formatDate(year, 12, 31);
  return { first, last, unit };
}

/** Per zone, per plain date text: the memoised latest instant (a two-level map: no key string to build). */
const endCache = new Map<string, Map<string, number>>();
let endCacheSize = 0;

/** Milliseconds of the last instant of the year/month/day `text` in `zone` (luxon, memoised). */
function endOfInstant(text: string, unit: 'year' | 'month' | 'day', zone: string): number {
  let byText = endCache.get(zone);
  if (byText === undefined) {
    byText = new Map();
    endCache.set(zone, byText);
  }
  const cached = byText.get(text);
  if (cached !== undefined) return cached;
  const end = fastEndOfInstant(text, unit, zone) ?? DateTime.fromISO(text, { zone }).endOf(unit).toMillis();
  if (endCacheSize >= SPAN_CACHE_SIZE) {
    for (const map of endCache.values()) map.clear();
    endCacheSize = 0;
  }
  byText.set(text, end);
  endCacheSize += 1;
  return end;
}

const offsetFormatters = new Map<string, Intl.DateTimeFormat>();
/** The end of an `en-US` `longOffset` date: `GMT+01:00`, `GMT-03:30`, `GMT+00:09:21`, or `GMT` alone. */
const LONG_OFFSET = /GMT(?:([+-])(\d{2}):(\d{2})(?::(\d{2}))?)?$/;

/**
 * The offset of `zone` at the instant `ms` (local wall clock minus UTC) in milliseconds, as a
 * cached Intl formatter writes it (`GMT+01:00`, to the second when not whole minutes);
 * undefined when it writes something else (the caller then falls back to luxon).
 */
function zoneOffsetMs(zone: string, ms: number): number | undefined {
  let formatter = offsetFormatters.get(zone);
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' });
    offsetFormatters.set(zone, formatter);
  }
  const match = LONG_OFFSET.exec(formatter.format(ms));
  if (!match) return undefined;
  if (match[1] === undefined) return 0;
  const offset = (Number(match[2]) * 3600 + Number(match[3]) * 60 + Number(match[4] ?? 0)) * 1000;
  return match[1] === '-' ? -offset : offset;
}

const DAY_MS = 86_400_000;

/**
 * The last instant of the year/month/day `text` (a valid plain date) in `zone`, without luxon:
 * the local midnight that starts the next year/month/day, less 1 ms. Only when the zone's
 * offset is the same whole number of minutes from two days before that midnight to two days
 * after (no DST or other change near it: the local midnight is one instant, and luxon's
 * `endOf(unit)` gives exactly it less 1 ms); undefined otherwise (luxon decides).
 * test/unit/domain/dates-luxon-equivalence.test.ts compares both.
 */
function fastEndOfInstant(text: string, unit: 'year' | 'month' | 'day', zone: string): number | undefined {
  const year = Number(text.slice(0, 4));
  if (!(year >= 1800 && year <= 9000)) return undefined;
  const month = unit === 'year' ? 1 : Number(text.slice(5, 7));
  const day = unit === 'day' ? Number(text.slice(8, 10)) : 1;
  // Date.UTC normalises the overflowing month/day (the 13th month, the 32nd day).
  const nextLocalMidnight = unit === 'year' ? Date.UTC(year + 1, 0, 1) : unit === 'month' ? Date.UTC(year, month, 1) : Date.UTC(year, month - 1, day + 1);
  const offset = zoneOffsetMs(zone, nextLocalMidnight - 2 * DAY_MS);
  if (offset === undefined || offset % 60_000 !== 0) return undefined;
  for (let days = -1; days <= 2; days += 1) {
    if (zoneOffsetMs(zone, nextLocalMidnight + days * DAY_MS) !== offset) return undefined;
  }
  return nextLocalMidnight - offset - 1;
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  return month === 2 && isLeapYear(year) ? 29 : (MONTH_DAYS[month - 1] ?? 0);
}

/** `YYYY-MM-DD`, years past 9999 (or before 0) written as luxon's `toISODate` does (`+010000-01-01`). */
function formatDate(year: number, month: number, day: number): CalendarDate {
  const yyyy = year >= 0 && year <= 9999 ? String(year).padStart(4, '0') : `${year < 0 ? '-' : '+'}${String(Math.abs(year)).padStart(6, '0')}`;
  return `${yyyy}-${month < 10 ? '0' : ''}${month}-${day < 10 ? '0' : ''}${day}`;
}

/**
 * When an Observation was made: `effectiveDateTime`, `effectivePeriod.end ?? start`,
 * `effectiveInstant`, falling back to `issued` (when the result was released).
 */
export function observationDateSpan(observation: fhir4.Observation, zone: string): DateSpan | undefined {
  const effective =
    observation.effectiveDateTime ??
    observation.effectivePeriod?.end ??
    observation.effectivePeriod?.start ??
    observation.effectiveInstant;
  return dateSpanOf(effective ?? observation.issued, zone);
}

interface YearMonthDay {
  year: number;
  month: number;
  day: number;
}

/** The number written by the `count` ASCII digits of `text` at `from`; -1 if one is not a digit. */
function digitsAt(text: string, from: number, count: number): number {
  let value = 0;
  for (let i = from; i < from + count; i += 1) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/**
 * @throws Error when `date` is not a valid `YYYY-MM-DD` calendar date. Read char by char (it
 * runs several times per patient): the same strings as `/^\d{4}-\d{2}-\d{2}$/` are accepted.
 */
function parseCalendarDate(date: CalendarDate): YearMonthDay {
  if (typeof date === 'string' && date.length === 10 && date.charCodeAt(4) === 45 && date.charCodeAt(7) === 45) {
    const year = digitsAt(date, 0, 4);
    const month = digitsAt(date, 5, 2);
    const day = digitsAt(date, 8, 2);
    if (year >= 0 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month)) return { year, month, day };
  }
  throw new Error(`Invalid calendar date "${date}" (expected YYYY-MM-DD)`);
}

/**
 * First day of a look-back window of `months` calendar months ending on `asOf`. Calendar
 * months are subtracted and the day clamped to the end of a shorter month (as luxon does):
 * 12 months before 2025-02-28 is 2024-02-28, 12 months before 2024-02-29 is 2023-02-28,
 * 1 month before 2025-03-31 is 2025-02-28.
 */
/** The last look-back start computed, per number of months (every patient of a run has the same `asOf`). */
const lastLookbackStarts = new Map<number, { asOf: CalendarDate; start: CalendarDate }>();

export function lookbackStart(asOf: CalendarDate, months: number): CalendarDate {
  const last = lastLookbackStarts.get(months);
  if (last !== undefined && last.asOf === asOf) return last.start;
  const start = computeLookbackStart(asOf, months);
  if (lastLookbackStarts.size >= 100) lastLookbackStarts.clear();
  lastLookbackStarts.set(months, { asOf, start });
  return start;
}

function computeLookbackStart(asOf: CalendarDate, months: number): CalendarDate {
  const { year, month, day } = parseCalendarDate(asOf);
  if (!Number.isInteger(months)) return isoDate(DateTime.fromISO(asOf, { zone: 'UTC' }).minus({ months }));
  const index = year * 12 + (month - 1) - months;
  const startYear = Math.floor(index / 12);
  const startMonth = index - startYear * 12 + 1;
  return formatDate(startYear, startMonth, Math.min(day, daysInMonth(startYear, startMonth)));
}

/**
 * A value counts when `asOf - months <= date <= asOf` (both ends inclusive). A value dated
 * after `asOf` never counts, so a replay at a past `asOf` sees what was known then. A
 * partial date counts only when every date it may denote lies in the window.
 * `months` undefined: no lower limit (any age, but still not after `asOf`).
 */
export function isWithinLookback(span: DateSpan, asOf: CalendarDate, months: number | undefined): boolean {
  if (span.last > asOf) return false;
  return months === undefined || span.first >= lookbackStart(asOf, months);
}

/**
 * True when `period` (absent: always) covers `asOf`. FHIR Period bounds are inclusive and
 * a partial bound covers its whole precision: start `2024` starts on 2024-01-01, end
 * `2024-06` ends on 2024-06-30. An unreadable bound never covers.
 */
export function periodCovers(period: fhir4.Period | undefined, asOf: CalendarDate, zone: string): boolean {
  if (period?.start !== undefined) {
    const start = dateSpanOf(period.start, zone);
    if (start === undefined || start.first > asOf) return false;
  }
  if (period?.end !== undefined) {
    const end = dateSpanOf(period.end, zone);
    if (end === undefined || end.last < asOf) return false;
  }
  return true;
}

/**
 * The birthday in `year` of someone born on `birthDate`. **Decision** (29 February births):
 * in a non-leap year the birthday is taken as 1 March (the day after 28 February), so a
 * year of age is never counted before it is complete.
 */
export function birthdayInYear(birthDate: CalendarDate, year: number): CalendarDate {
  const birth = parseCalendarDate(birthDate);
  const leapDay = birth.month === 2 && birth.day === 29;
  return leapDay && !isLeapYear(year) ? formatDate(year, 3, 1) : formatDate(year, birth.month, birth.day);
}

/** Completed years of age on `asOf` (one more on each birthday, 1 March for a 29 February birth in a non-leap year). */
export function completedYears(birthDate: CalendarDate, asOf: CalendarDate): number {
  const birthYear = parseCalendarDate(birthDate).year;
  const asOfYear = parseCalendarDate(asOf).year;
  return asOfYear - birthYear - (asOf < birthdayInYear(birthDate, asOfYear) ? 1 : 0);
}

/**
 * Whether someone born on `birthDate` is over `years` on `asOf`. DOMAIN.md 1, Decision
 * "Age": "strictly over N" (`exclusive`) holds from the day AFTER the Nth birthday;
 * `exclusive: false` holds from the birthday itself.
 */
export function isOverAge(birthDate: CalendarDate, years: number, exclusive: boolean, asOf: CalendarDate): boolean {
  const birthday = birthdayInYear(birthDate, parseCalendarDate(birthDate).year + years);
  return exclusive ? asOf > birthday : asOf >= birthday;
}

/**
 * Earliest and latest possible birth dates of a FHIR `Patient.birthDate` (a date, or a
 * partial date YYYY / YYYY-MM); undefined when absent or invalid.
 */
export function birthDateBounds(
  birthDate: string | undefined,
  zone: string,
): { earliest: CalendarDate; latest: CalendarDate } | undefined {
  // A plain date needs no zone: no span (whose latest instant needs the zone's offset) is built.
  const plain = birthDate === undefined ? undefined : plainDateBounds(birthDate.trim());
  if (plain !== undefined) return plain === null ? undefined : { earliest: plain.first, latest: plain.last };
  const span = dateSpanOf(birthDate, zone);
  return span && { earliest: span.first, latest: span.last };
}
