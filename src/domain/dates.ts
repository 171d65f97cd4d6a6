/**
 * Calendar dates in the program's time zone (luxon). Everything here is relative to an
 * `asOf` date passed in: this module never reads the clock.
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

/** @throws Error when `zone` is not an IANA zone name (program data is validated before). */
export function assertValidZone(zone: string): void {
  if (!IANAZone.isValidZone(zone)) throw new Error(`Invalid IANA time zone "${zone}"`);
}

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
  const text = value.trim();
  const unit = YEAR.test(text) ? 'year' : YEAR_MONTH.test(text) ? 'month' : DATE.test(text) ? 'day' : undefined;
  if (unit !== undefined) {
    const start = DateTime.fromISO(text, { zone });
    if (!start.isValid) return undefined;
    const end = start.endOf(unit);
    return { first: isoDate(start), last: isoDate(end), latestInstant: end.toMillis() };
  }
  if (!DATE_TIME.test(text)) return undefined;
  const instant = DateTime.fromISO(text, { zone });
  if (!instant.isValid) return undefined;
  const date = isoDate(instant);
  return { first: date, last: date, latestInstant: instant.toMillis() };
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

function parseCalendarDate(date: CalendarDate): DateTime {
  const parsed = DATE.test(date) ? DateTime.fromISO(date, { zone: 'UTC' }) : undefined;
  if (!parsed?.isValid) throw new Error(`Invalid calendar date "${date}" (expected YYYY-MM-DD)`);
  return parsed;
}

/**
 * First day of a look-back window of `months` calendar months ending on `asOf`. Luxon
 * subtracts calendar months and clamps to the end of a shorter month: 12 months before
 * 2025-02-28 is 2024-02-28, 12 months before 2024-02-29 is 2023-02-28, 1 month before
 * 2025-03-31 is 2025-02-28.
 */
export function lookbackStart(asOf: CalendarDate, months: number): CalendarDate {
  return isoDate(parseCalendarDate(asOf).minus({ months }));
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

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/**
 * The birthday in `year` of someone born on `birthDate`. **Decision** (29 February births):
 * in a non-leap year the birthday is taken as 1 March (the day after 28 February), so a
 * year of age is never counted before it is complete.
 */
export function birthdayInYear(birthDate: CalendarDate, year: number): CalendarDate {
  const birth = parseCalendarDate(birthDate);
  const leapDay = birth.month === 2 && birth.day === 29;
  const [month, day] = leapDay && !isLeapYear(year) ? [3, 1] : [birth.month, birth.day];
  return isoDate(DateTime.fromObject({ year, month, day }, { zone: 'UTC' }));
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
  const span = dateSpanOf(birthDate, zone);
  return span && { earliest: span.first, latest: span.last };
}
