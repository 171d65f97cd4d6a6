import { describe, expect, it } from 'vitest';
import {
  addDays,
  addMonths,
  initialPlanPeriods,
  isCalendarDate,
  nextPeriod,
  onDemandPeriod,
  periodIndexOf,
  periodsDue,
  planPeriod,
  planStatusAt,
} from '../../../src/domain/enrolment/plan-periods.js';
import type { PlanData } from '../../../src/programs/enrolment-schema.js';
import { fnmfEnrolment, rediabEnrolment } from './fixtures.js';

function plan(enrolment: typeof fnmfEnrolment, code: string): PlanData {
  const found = enrolment.plans.find((p) => p.code === code);
  if (!found) throw new Error(`no plan ${code}`);
  return found;
}

const intensive = plan(fnmfEnrolment, 'intensive');
const consolidation = plan(fnmfEnrolment, 'consolidation');
const followUp = plan(rediabEnrolment, 'follow-up');
const podiatry = plan(rediabEnrolment, 'podiatric-follow-up');

describe('calendar arithmetic (luxon clamps to the month end)', () => {
  it.each([
    ['2026-01-31', 1, '2026-02-28'],
    ['2028-01-31', 1, '2028-02-29'],
    ['2026-01-31', 4, '2026-05-31'],
    ['2026-10-31', 4, '2027-02-28'],
    ['2027-10-31', 4, '2028-02-29'],
    ['2028-02-29', 12, '2029-02-28'],
    ['2028-02-29', 48, '2032-02-29'],
  ])('%s + %i months = %s', (date, months, expected) => {
    expect(addMonths(date, months)).toBe(expected);
  });

  it.each([
    ['2026-05-31', -1, '2026-05-30'],
    ['2028-03-01', -1, '2028-02-29'],
    ['2026-12-31', 1, '2027-01-01'],
  ])('%s + %i days = %s', (date, days, expected) => {
    expect(addDays(date, days)).toBe(expected);
  });

  it.each(['2026-02-29', '2026-13-01', '2026-1-31', '2026-01-31T00:00:00Z', '', 20260131, undefined])('%s is not a calendar date', (value) => {
    expect(isCalendarDate(value)).toBe(false);
  });

  it('throws on an invalid date rather than guessing', () => {
    expect(() => addMonths('2026-02-30', 1)).toThrow(RangeError);
  });
});

describe('FNMF phases: intensive 4 months, consolidation the next 20 (the documented month-end rule)', () => {
  it.each([
    // start,      intensive end, consolidation start, consolidation end
    ['2026-01-01', '2026-04-30', '2026-05-01', '2027-12-31'],
    ['2026-01-31', '2026-05-30', '2026-05-31', '2028-01-30'], // the README example
    ['2026-10-31', '2027-02-27', '2027-02-28', '2028-10-30'], // clamped to 28 Feb, still no gap
    ['2027-10-31', '2028-02-28', '2028-02-29', '2029-10-30'], // leap year: 29 Feb 2028 starts consolidation
    ['2027-10-29', '2028-02-28', '2028-02-29', '2029-10-28'],
    ['2028-02-29', '2028-06-28', '2028-06-29', '2030-02-27'], // start on a leap day
    ['2026-08-31', '2026-12-30', '2026-12-31', '2028-08-30'],
    ['2026-12-31', '2027-04-29', '2027-04-30', '2028-12-30'],
  ])('from %s: intensive ends %s, consolidation %s..%s', (start, intensiveEnd, consolidationStart, consolidationEnd) => {
    expect(planPeriod(intensive, start, 0)).toEqual({ planCode: 'intensive', index: 0, start, end: intensiveEnd });
    expect(planPeriod(consolidation, start, 0)).toEqual({ planCode: 'consolidation', index: 0, start: consolidationStart, end: consolidationEnd });
  });

  it('initialPlanPeriods gives both phases, in program order', () => {
    expect(initialPlanPeriods(fnmfEnrolment, '2026-01-31', new Set(['gp', 'apa-teacher']))).toEqual([
      { planCode: 'intensive', index: 0, start: '2026-01-31', end: '2026-05-30' },
      { planCode: 'consolidation', index: 0, start: '2026-05-31', end: '2028-01-30' },
    ]);
  });

  it('a once plan has no next period', () => {
    expect(nextPeriod(intensive, planPeriod(intensive, '2026-01-31', 0), '2026-01-31')).toBeUndefined();
    expect(() => planPeriod(intensive, '2026-01-31', 1)).toThrow(RangeError);
  });
});

describe('consecutive periods neither overlap nor leave a gap', () => {
  // Every day of 2026-2029: the next phase starts the day after the previous one ends, and
  // the 24-month sequence ends the day before the same date two years on (clamped).
  const starts: string[] = [];
  for (let day = '2026-01-01'; day <= '2029-12-31'; day = addDays(day, 1)) starts.push(day);

  it('for the FNMF phases, from every start date of 2026-2029', () => {
    for (const start of starts) {
      const first = planPeriod(intensive, start, 0);
      const second = planPeriod(consolidation, start, 0);
      expect(second.start).toBe(addDays(first.end, 1));
      expect(first.end >= first.start && second.end >= second.start).toBe(true);
      expect(addDays(second.end, 1)).toBe(addMonths(start, 24));
    }
  });

  it('for 6 REDIAB follow-up years, from every start date of 2026-2029', () => {
    for (const start of starts) {
      let period = planPeriod(followUp, start, 0);
      expect(period.start).toBe(addMonths(start, 4));
      for (let year = 1; year < 6; year += 1) {
        const next = nextPeriod(followUp, period, start);
        expect(next?.start).toBe(addDays(period.end, 1));
        expect(next?.index).toBe(year);
        period = next as typeof period;
      }
    }
  });
});

describe('yearly periods run from one anniversary to the day before the next', () => {
  it.each([
    [0, '2028-02-29', '2029-02-27'],
    [1, '2029-02-28', '2030-02-27'],
    [2, '2030-02-28', '2031-02-27'],
    [3, '2031-02-28', '2032-02-28'],
    [4, '2032-02-29', '2033-02-27'],
  ])('podiatric follow-up from 2028-02-29, year %i: %s..%s', (index, start, end) => {
    expect(planPeriod(podiatry, '2028-02-29', index)).toEqual({ planCode: 'podiatric-follow-up', index, start, end });
  });

  it('REDIAB follow-up years start when initial education ends', () => {
    expect(planPeriod(followUp, '2026-03-15', 0)).toEqual({ planCode: 'follow-up', index: 0, start: '2026-07-15', end: '2027-07-14' });
    expect(planPeriod(followUp, '2026-03-15', 2)).toEqual({ planCode: 'follow-up', index: 2, start: '2028-07-15', end: '2029-07-14' });
  });

  it.each([
    ['2026-07-15', 0],
    ['2027-07-15', 1],
    ['2029-07-15', 3],
    ['2027-07-16', undefined],
    ['2026-03-15', undefined],
  ])('periodIndexOf(follow-up from 2026-03-15, %s) = %s', (start, index) => {
    expect(periodIndexOf(followUp, '2026-03-15', start)).toBe(index);
  });
});

describe('initialPlanPeriods and requiresRole', () => {
  it.each([
    ['without a podiatrist', ['gp', 'nurse'], ['initial-education', 'follow-up']],
    ['with a podiatrist', ['gp', 'podiatrist'], ['initial-education', 'follow-up', 'podiatric-follow-up']],
  ])('REDIAB %s', (_label, roles, codes) => {
    const periods = initialPlanPeriods(rediabEnrolment, '2026-03-15', new Set(roles));
    expect(periods.map((p) => p.planCode)).toEqual(codes);
    expect(periods.every((p) => p.index === 0)).toBe(true);
  });
});

describe('planStatusAt', () => {
  const period = { start: '2026-01-31', end: '2026-05-30' };
  it.each([
    ['2026-01-30', 'planned'],
    ['2026-01-31', 'active'],
    ['2026-03-01', 'active'],
    ['2026-05-30', 'active'],
    ['2026-05-31', 'completed'],
  ] as const)('on %s: %s', (asOf, status) => {
    expect(planStatusAt(period, asOf)).toBe(status);
  });
});

describe('periodsDue (yearly roll-over)', () => {
  const first = planPeriod(followUp, '2026-03-15', 0); // 2026-07-15 .. 2027-07-14
  it.each([
    ['2027-07-14', [], undefined], // last day of year 0: nothing yet
    ['2027-07-15', [1], undefined], // year 1 starts
    ['2029-08-01', [1, 2, 3], undefined], // catch-up of several years
    ['2029-08-01', [1], '2028-07-14'], // never beyond notAfter (an exit, the program end)
    ['2029-08-01', [1, 2], '2028-07-15'], // a period starting on notAfter is opened
  ])('on %s: periods %j (notAfter %s)', (asOf, indexes, notAfter) => {
    expect(periodsDue(followUp, first, '2026-03-15', asOf, notAfter).map((p) => p.index)).toEqual(indexes);
  });

  it('a once plan never rolls over', () => {
    expect(periodsDue(intensive, planPeriod(intensive, '2026-01-31', 0), '2026-01-31', '2030-01-01')).toEqual([]);
  });
});

describe('on-demand periods', () => {
  const complementary = rediabEnrolment.onDemandPlans[0];
  it.each([
    ['2026-08-31', '2027-02-27'],
    ['2027-08-31', '2028-02-28'],
    ['2026-05-10', '2026-11-09'],
  ])('6 months from %s end on %s', (start, end) => {
    expect(onDemandPeriod(complementary as NonNullable<typeof complementary>, start, 0)).toEqual({ planCode: 'complementary-education', index: 0, start, end });
  });
});
