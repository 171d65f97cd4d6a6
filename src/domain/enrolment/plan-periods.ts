/**
 * Calendar periods of a program's plans (DOMAIN.md 1, Care sequence; 2, "When each forfait
 * falls due"). Dates are `YYYY-MM-DD` calendar dates in the program's time zone, so the
 * arithmetic below is plain calendar arithmetic (luxon in UTC: no daylight-saving shifts).
 *
 * **Decision (month ends).** Every boundary is counted in whole months from ONE anchor, the
 * enrolment start S (luxon `plus({ months })`, which clamps to the last day of a shorter
 * month). A plan that starts `startOffsetMonths` after S, lasting `durationMonths`, has period
 * k (k = 0 for `once` plans; 0, 1, 2... for `yearly` ones):
 *
 *     start = S + (offset + k × duration) months
 *     end   = S + (offset + (k + 1) × duration) months − 1 day      (inclusive)
 *
 * Because a boundary is computed once and used both as one period's start and as the day after
 * the previous period's end, consecutive periods neither overlap nor leave a gap: the next
 * period always starts the day after the previous one ends, and the sequence never drifts
 * (chaining "previous end + 1 day + N months" would lose the clamped days for good). Examples:
 *
 * | S          | intensive (4 months)     | consolidation (20 months) |
 * |------------|--------------------------|---------------------------|
 * | 2026-01-31 | 2026-01-31 .. 2026-05-30 | 2026-05-31 .. 2028-01-30  |
 * | 2026-10-31 | 2026-10-31 .. 2027-02-27 | 2027-02-28 .. 2028-10-30  |
 * | 2027-10-31 | 2027-10-31 .. 2028-02-28 | 2028-02-29 .. 2029-10-30  |
 * | 2028-02-29 | 2028-02-29 .. 2028-06-28 | 2028-06-29 .. 2030-02-27  |
 *
 * Yearly periods therefore run from one monthly anniversary of S to the day before the next:
 * a REDIAB podiatric follow-up from 2028-02-29 has years 2028-02-29 .. 2029-02-27,
 * 2029-02-28 .. 2030-02-27, ..., 2031-02-28 .. 2032-02-28, 2032-02-29 .. 2033-02-27.
 *
 * An on-demand plan (`$add-plan`) is anchored on its own start date the same way.
 *
 * Pure: no clock (`asOf` is passed in).
 */
import { DateTime } from 'luxon';
import type { EnrolmentData, OnDemandPlanData, PlanData } from '../../programs/enrolment-schema.js';
import type { CalendarDate } from '../types.js';
import type { PlanPeriod } from './types.js';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** True for a valid `YYYY-MM-DD` calendar date (2026-02-30 is not one). */
export function isCalendarDate(value: unknown): value is CalendarDate {
  return typeof value === 'string' && DATE.test(value) && DateTime.fromISO(value, { zone: 'UTC' }).isValid;
}

function parse(date: CalendarDate): DateTime {
  if (!isCalendarDate(date)) throw new RangeError(`Invalid calendar date "${date}" (expected YYYY-MM-DD)`);
  return DateTime.fromISO(date, { zone: 'UTC' });
}

function format(value: DateTime): CalendarDate {
  const date = value.toISODate();
  if (date === null) throw new RangeError(`Invalid date: ${value.invalidExplanation ?? 'unknown reason'}`);
  return date;
}

/** `date` + `months` calendar months, clamped to the month's last day (2026-01-31 + 1 = 2026-02-28). */
export function addMonths(date: CalendarDate, months: number): CalendarDate {
  return format(parse(date).plus({ months }));
}

export function addDays(date: CalendarDate, days: number): CalendarDate {
  return format(parse(date).plus({ days }));
}

/** Period `index` of `plan` for an enrolment starting on `enrolmentStart` (see the module comment). */
export function planPeriod(plan: PlanData, enrolmentStart: CalendarDate, index: number): PlanPeriod {
  if (!Number.isInteger(index) || index < 0) throw new RangeError(`Invalid period index ${index}`);
  if (index > 0 && plan.repeat !== 'yearly') throw new RangeError(`Plan ${plan.code} has one period only`);
  const firstMonth = plan.startOffsetMonths + index * plan.durationMonths;
  return {
    planCode: plan.code,
    index,
    start: addMonths(enrolmentStart, firstMonth),
    end: addDays(addMonths(enrolmentStart, firstMonth + plan.durationMonths), -1),
  };
}

/** Period of an on-demand plan opened on `start` (`index`: how many of that plan the episode had before). */
export function onDemandPeriod(plan: OnDemandPlanData, start: CalendarDate, index: number): PlanPeriod {
  return { planCode: plan.code, index, start, end: addDays(addMonths(start, plan.durationMonths), -1) };
}

/**
 * The periods written at enrolment: period 0 of every plan of the program, in program order,
 * except a plan whose `requiresRole` no team member holds (REDIAB podiatric follow-up without
 * a podiatrist). Yearly plans start with period 0 only; later periods are opened by
 * `advancePlans` (or at once by `buildEnrolment` when the start is far enough in the past).
 */
export function initialPlanPeriods(enrolment: EnrolmentData, start: CalendarDate, teamRoles: ReadonlySet<string>): PlanPeriod[] {
  return enrolment.plans
    .filter((plan) => plan.requiresRole === undefined || teamRoles.has(plan.requiresRole))
    .map((plan) => planPeriod(plan, start, 0));
}

/**
 * The period after `previous` for a yearly plan; undefined for a `once` plan. It starts the day
 * after `previous` ends (see the module comment: both come from the same anchor).
 */
export function nextPeriod(plan: PlanData, previous: PlanPeriod, enrolmentStart: CalendarDate): PlanPeriod | undefined {
  if (plan.repeat !== 'yearly') return undefined;
  if (previous.planCode !== plan.code) throw new RangeError(`Period of plan ${previous.planCode} given for plan ${plan.code}`);
  return planPeriod(plan, enrolmentStart, previous.index + 1);
}

/**
 * Index of the period of `plan` starting on `start`, or undefined when no period starts that
 * day (a CarePlan written under other program data).
 */
export function periodIndexOf(plan: PlanData, enrolmentStart: CalendarDate, start: CalendarDate): number | undefined {
  const last = plan.repeat === 'yearly' ? Number.POSITIVE_INFINITY : 0;
  for (let index = 0; index <= last; index += 1) {
    const candidate = planPeriod(plan, enrolmentStart, index).start;
    if (candidate === start) return index;
    if (candidate > start) return undefined;
  }
  return undefined;
}

/** `planned` before the start, `active` from start to end (both inclusive), `completed` after the end. */
export function planStatusAt(period: Pick<PlanPeriod, 'start' | 'end'>, asOf: CalendarDate): 'planned' | 'active' | 'completed' {
  if (asOf < period.start) return 'planned';
  return asOf <= period.end ? 'active' : 'completed';
}

/**
 * The periods of a yearly plan to open after `previous`, up to `asOf`: each next period whose
 * predecessor has ended (its end is before `asOf`), as long as it starts on or before `notAfter`
 * (the episode's end, or a program end the caller passes). Empty for a `once` plan.
 */
export function periodsDue(
  plan: PlanData,
  previous: PlanPeriod,
  enrolmentStart: CalendarDate,
  asOf: CalendarDate,
  notAfter?: CalendarDate,
): PlanPeriod[] {
  const due: PlanPeriod[] = [];
  let last = previous;
  for (;;) {
    if (last.end >= asOf) return due;
    const next = nextPeriod(plan, last, enrolmentStart);
    if (next === undefined || (notAfter !== undefined && next.start > notAfter)) return due;
    due.push(next);
    last = next;
  }
}
