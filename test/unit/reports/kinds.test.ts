/**
 * The indicator kinds (src/domain/reports/kinds/): exact values and the boundaries of
 * notes/report-api.md section 6 (inclusive period days, exits on the last day, time zones,
 * money, unit conversion).
 */
import { describe, expect, it } from 'vitest';
import { activeFileVsCapacity, countEpisodes, declinesByReason, exitsByReason, patientsPerPhase, phaseCompletion, professionalsByCategory, screeningOutcomes } from '../../../src/domain/reports/kinds/enrolment-kinds.js';
import { budget, claimsByForfaitAndCategory } from '../../../src/domain/reports/kinds/money-kinds.js';
import { newDiagnoses, observationChange } from '../../../src/domain/reports/kinds/outcome-kinds.js';
import { sessionsByKindAndCategory } from '../../../src/domain/reports/kinds/session-kinds.js';
import { formatScore } from '../../../src/domain/reports/measure-report.js';
import type { GroupResult, IndicatorKind, KindContext, ReportData } from '../../../src/domain/reports/types.js';
import { carePlan, careTeam, claim, condition, context, data, declined, episode, FNMF, invoice, observation, REDIAB, session, ucum, verdict } from './fixtures.js';

function run<P>(kind: IndicatorKind<P>, parameters: Record<string, unknown>, input: ReportData, ctx: KindContext): GroupResult {
  return kind.evaluate(kind.parse(parameters), input, ctx);
}

const counts = (result: GroupResult): Record<string, number> => Object.fromEntries(result.populations.map((p) => [p.code, p.count]));
const strata = (result: GroupResult, code: string, population = 'initial-population'): Record<string, number> =>
  Object.fromEntries((result.stratifiers.find((s) => s.code === code)?.strata ?? []).map((s) => [s.key, s.populations.find((p) => p.code === population)?.count ?? -1]));
const strataScores = (result: GroupResult, code: string): Record<string, string | undefined> =>
  Object.fromEntries((result.stratifiers.find((s) => s.code === code)?.strata ?? []).map((s) => [s.key, s.score ? formatScore(s.score) : undefined]));
const score = (result: GroupResult): string | undefined => (result.score ? formatScore(result.score) : undefined);

const YEAR = context('2026-01-01', '2026-12-31');

describe('count-episodes', () => {
  const episodes = [
    episode({ id: 'before', patient: 'p0', start: '2025-12-31' }),
    episode({ id: 'first-day', patient: 'p1', start: '2026-01-01' }),
    episode({ id: 'last-day', patient: 'p2', start: '2026-12-31', end: '2026-12-31', reason: 'withdrew' }),
    episode({ id: 'after', patient: 'p3', start: '2027-01-01', status: 'planned' }),
    episode({ id: 'march', patient: 'p4', start: '2026-03-15', end: '2026-06-01', reason: 'moved-away' }),
    episode({ id: 'cancelled', patient: 'p5', start: '2026-04-01', status: 'cancelled' }),
    episode({ id: 'other-program', patient: 'p6', start: '2026-04-01', program: 'rediab' }),
  ];

  it('counts admissions whose start day is in the period, both ends inclusive; cancelled and other programs never', () => {
    expect(counts(run(countEpisodes, { kind: 'count-episodes', which: 'admitted' }, data({ episodes }), YEAR))).toEqual({ 'initial-population': 3 });
  });

  it('lists every month of the period, zeros included', () => {
    const result = run(countEpisodes, { kind: 'count-episodes', which: 'admitted', stratifiers: ['month'] }, data({ episodes }), YEAR);
    const months = strata(result, 'month');
    expect(Object.keys(months)).toHaveLength(12);
    expect(months).toMatchObject({ '2026-01': 1, '2026-02': 0, '2026-03': 1, '2026-12': 1 });
  });

  it('counts the active file on the last day (an exit that day still counts) and the enrolled during the period', () => {
    expect(counts(run(countEpisodes, { kind: 'count-episodes', which: 'active-at-end' }, data({ episodes }), YEAR))).toEqual({ 'initial-population': 3 });
    expect(counts(run(countEpisodes, { kind: 'count-episodes', which: 'enrolled-during' }, data({ episodes }), YEAR))).toEqual({ 'initial-population': 4 });
    // p4 exited on 2026-06-01: active on that day, not on the next one.
    expect(counts(run(countEpisodes, { kind: 'count-episodes', which: 'active-at-end' }, data({ episodes }), context('2026-01-01', '2026-06-01')))).toEqual({ 'initial-population': 3 });
    expect(counts(run(countEpisodes, { kind: 'count-episodes', which: 'active-at-end' }, data({ episodes }), context('2026-01-01', '2026-06-02')))).toEqual({ 'initial-population': 2 });
  });

  it('refuses a month stratifier on anything but admissions', () => {
    expect(() => countEpisodes.parse({ kind: 'count-episodes', which: 'active-at-end', stratifiers: ['month'] })).toThrow(/stratifiers/);
  });
});

describe('active-file-vs-capacity', () => {
  it('is the active enrolments on the last day over the capacity of enrolment.json, four decimals', () => {
    const episodes = [episode({ id: 'a', patient: 'p1', start: '2026-01-01' }), episode({ id: 'b', patient: 'p2', start: '2026-02-01', end: '2026-12-31', reason: 'withdrew' })];
    const result = run(activeFileVsCapacity, { kind: 'active-file-vs-capacity' }, data({ episodes }), YEAR);
    expect(counts(result)).toEqual({ numerator: 2, denominator: 140 });
    expect(score(result)).toBe('0.0143'); // 2 / 140 = 0.0142857…
  });

  it('takes a capacity from the Measure when given, and has no score without any', () => {
    const episodes = [episode({ id: 'a', patient: 'p1', start: '2026-01-01' })];
    expect(score(run(activeFileVsCapacity, { kind: 'active-file-vs-capacity', capacity: 3 }, data({ episodes }), YEAR))).toBe('0.3333');
    expect(run(activeFileVsCapacity, { kind: 'active-file-vs-capacity' }, data({ episodes }), context('2026-01-01', '2026-12-31', REDIAB)).score).toBeUndefined();
  });
});

describe('exits-by-reason', () => {
  const codes = ['completed', 'withdrew', 'moved-away'];
  it('counts exits dated in the period by reason, listed codes first (zeros kept), others after; an exit the day after is out', () => {
    const episodes = [
      episode({ id: 'a', patient: 'p1', start: '2025-01-01', end: '2026-12-31', reason: 'withdrew' }),
      episode({ id: 'b', patient: 'p2', start: '2025-01-01', end: '2027-01-01', reason: 'withdrew' }),
      episode({ id: 'c', patient: 'p3', start: '2025-01-01', end: '2026-01-01', reason: 'deceased' }),
      episode({ id: 'd', patient: 'p4', start: '2025-01-01', end: '2026-05-01' }),
    ];
    const result = run(exitsByReason, { kind: 'exits-by-reason', codes }, data({ episodes }), YEAR);
    expect(counts(result)).toEqual({ 'initial-population': 3 });
    expect(Object.entries(strata(result, 'reason'))).toEqual([
      ['completed', 0],
      ['withdrew', 1],
      ['moved-away', 0],
      ['(none)', 1],
      ['deceased', 1],
    ]);
  });
});

describe('declines-by-reason', () => {
  it('dates a refusal by lastModified in the program time zone (23:30 UTC on 31 December is 1 January in Paris)', () => {
    const tasks = [
      declined('t1', 'p1', '2026-12-31T22:59:00Z', 'no-time'),
      declined('t2', 'p2', '2026-12-31T23:30:00Z', 'no-time'),
      declined('t3', 'p3', '2026-06-01T10:00:00+02:00', 'distance'),
      { ...declined('t4', 'p4', '2026-06-01T10:00:00Z', 'distance'), status: 'requested' as const },
      declined('t5', 'p5', '2026-06-01T10:00:00Z', 'distance', { ...FNMF, url: 'http://other' }),
    ];
    const result = run(declinesByReason, { kind: 'declines-by-reason', codes: ['not-interested', 'no-time', 'distance'] }, data({ tasks }), YEAR);
    expect(counts(result)).toEqual({ 'initial-population': 2 });
    expect(strata(result, 'reason')).toEqual({ 'not-interested': 0, 'no-time': 1, distance: 1 });
  });
});

describe('patients-per-phase and phase-completion', () => {
  // FNMF enrolled 2026-01-31: intensive 2026-01-31 → 2026-05-30, consolidation 2026-05-31 → 2028-01-30 (README calendar rules).
  const plans = (episodeId: string) => [carePlan(`${episodeId}-i`, episodeId, 'intensive', '2026-01-31', '2026-05-30'), carePlan(`${episodeId}-c`, episodeId, 'consolidation', '2026-05-31', '2028-01-30', 'draft')];
  const episodes = [
    episode({ id: 'stays', patient: 'p1', start: '2026-01-31' }),
    episode({ id: 'exits-last-day', patient: 'p2', start: '2026-01-31', end: '2026-05-30', reason: 'withdrew' }),
    episode({ id: 'exits-day-before', patient: 'p3', start: '2026-01-31', end: '2026-05-29', reason: 'withdrew' }),
  ];
  const input = data({ episodes, carePlans: episodes.flatMap((e) => plans(e.id as string)) });

  it('counts who is in each phase on the last day of the period', () => {
    const onLastIntensiveDay = run(patientsPerPhase, { kind: 'patients-per-phase', plans: ['intensive', 'consolidation'] }, input, context('2026-01-01', '2026-05-30'));
    expect(counts(onLastIntensiveDay)).toEqual({ 'initial-population': 2 });
    expect(strata(onLastIntensiveDay, 'phase')).toEqual({ intensive: 2, consolidation: 0 });
    const nextDay = run(patientsPerPhase, { kind: 'patients-per-phase', plans: ['intensive', 'consolidation'] }, input, context('2026-01-01', '2026-05-31'));
    expect(strata(nextDay, 'phase')).toEqual({ intensive: 0, consolidation: 1 });
  });

  it('counts a phase completed when the patient is still enrolled on its last day (an exit that day included)', () => {
    const result = run(phaseCompletion, { kind: 'phase-completion', plan: 'intensive' }, input, context('2026-05-01', '2026-05-31'));
    expect(counts(result)).toEqual({ numerator: 2, denominator: 3 });
    expect(score(result)).toBe('0.6667');
    // The plan's last day (2026-05-30) must be in the period.
    expect(counts(run(phaseCompletion, { kind: 'phase-completion', plan: 'intensive' }, input, context('2026-05-31', '2026-12-31')))).toEqual({ numerator: 0, denominator: 0 });
    expect(run(phaseCompletion, { kind: 'phase-completion', plan: 'intensive' }, input, context('2026-05-31', '2026-12-31')).score).toBeUndefined();
  });
});

describe('professionals-by-category', () => {
  it('counts distinct members of the teams of enrolments in the program during the period, by role', () => {
    const episodes = [
      episode({ id: 'a', patient: 'p1', start: '2026-01-01', team: 't1' }),
      episode({ id: 'b', patient: 'p2', start: '2026-02-01', team: 't2' }),
      episode({ id: 'old', patient: 'p3', start: '2024-01-01', end: '2025-12-31', reason: 'withdrew', team: 't3' }),
    ];
    const careTeams = [
      careTeam('t1', [['PractitionerRole/gp1', 'gp'], ['PractitionerRole/n1', 'nurse']]),
      careTeam('t2', [['PractitionerRole/gp1', 'gp'], ['PractitionerRole/d1', 'dietitian', 'nurse']]),
      careTeam('t3', [['PractitionerRole/gp9', 'gp']]),
    ];
    const result = run(professionalsByCategory, { kind: 'professionals-by-category', codes: ['gp', 'nurse', 'podiatrist'] }, data({ episodes, careTeams }), YEAR);
    expect(counts(result)).toEqual({ 'initial-population': 3 });
    expect(strata(result, 'category')).toEqual({ gp: 1, nurse: 2, podiatrist: 0, dietitian: 1 });
  });
});

describe('screening-outcomes', () => {
  it('counts current verdicts dated in the period by outcome', () => {
    const guidanceResponses = [verdict('g1', 'p1', '2026-03-01T10:00:00Z', 'eligible'), verdict('g2', 'p2', '2026-03-02T10:00:00Z', 'not-eligible'), verdict('g3', 'p3', '2027-01-02T10:00:00Z', 'eligible')];
    const result = run(screeningOutcomes, { kind: 'screening-outcomes', codes: ['eligible', 'not-eligible', 'undetermined'] }, data({ guidanceResponses }), YEAR);
    expect(counts(result)).toEqual({ 'initial-population': 2 });
    expect(strata(result, 'outcome')).toEqual({ eligible: 1, 'not-eligible': 1, undetermined: 0 });
  });
});

describe('sessions-by-kind-and-category', () => {
  const episodes = [episode({ id: 'a', patient: 'p1', start: '2026-01-01' }), episode({ id: 'b', patient: 'p2', start: '2026-01-01' }), episode({ id: 'c', patient: 'p3', start: '2026-01-01', end: '2026-02-01', reason: 'withdrew' })];
  const encounters = [
    session('s1', 'a', '2026-01-05', 'apa-group', ['apa-teacher']),
    session('s2', 'a', '2026-01-12', 'apa-group', ['apa-teacher', 'nurse']),
    session('s3', 'b', '2026-02-01', 'dietary', ['dietitian']),
    session('s4', 'b', '2026-02-02T00:30:00+01:00', 'dietary', ['dietitian']),
    session('s5', 'b', '2026-03-01', 'dietary', ['dietitian'], 'cancelled'),
    session('s6', 'c', '2026-01-20', 'apa-individual', ['apa-teacher']),
    session('s7', 'c', '2025-12-31', 'apa-individual', ['apa-teacher']),
    session('s8', 'other', '2026-01-20', 'apa-individual', ['apa-teacher']),
  ];
  const parameters = { kind: 'sessions-by-kind-and-category', kinds: ['apa-group', 'dietary', 'psychological'], categories: ['apa-teacher', 'dietitian', 'nurse'], stratifiers: ['kind', 'category', 'month'] };

  it('counts the sessions held in the period, once in total and once per participant category; the score is per enrolled patient', () => {
    const result = run(sessionsByKindAndCategory, parameters, data({ episodes, encounters }), context('2026-01-01', '2026-03-31'));
    expect(counts(result)).toEqual({ 'initial-population': 5, denominator: 3 });
    expect(score(result)).toBe('1.67'); // 5 / 3
    expect(strata(result, 'kind')).toEqual({ 'apa-group': 2, dietary: 2, psychological: 0, 'apa-individual': 1 });
    expect(strataScores(result, 'kind')).toEqual({ 'apa-group': '0.67', dietary: '0.67', psychological: '0.00', 'apa-individual': '0.33' });
    expect(strata(result, 'category')).toEqual({ 'apa-teacher': 3, dietitian: 2, nurse: 1 });
    expect(strata(result, 'month')).toEqual({ '2026-01': 3, '2026-02': 2, '2026-03': 0 });
  });

  it('crosses month and kind as YYYY-MM|kind, every month × listed kind first, then the other kinds found', () => {
    const result = run(sessionsByKindAndCategory, { ...parameters, kinds: ['apa-group', 'dietary'], stratifiers: ['month-kind'] }, data({ episodes, encounters }), context('2026-01-01', '2026-02-28'));
    expect(Object.entries(strata(result, 'month-kind'))).toEqual([
      ['2026-01|apa-group', 2],
      ['2026-01|dietary', 0],
      ['2026-01|apa-individual', 1],
      ['2026-02|apa-group', 0],
      ['2026-02|dietary', 2],
      ['2026-02|apa-individual', 0],
    ]);
  });
});

describe('claims-by-forfait-and-category and budget', () => {
  const claims = [
    claim('c1', 'a', '2026-01-01', [{ forfait: 'FNMF-SEQUENCE', amount: 690.6 }]),
    claim('c2', 'b', '2026-12-31', [{ forfait: 'FNMF-SEQUENCE', amount: 690.6 }]),
    claim('c3', 'c', '2027-01-01', [{ forfait: 'FNMF-SEQUENCE', amount: 690.6 }]),
    claim('c4', 'd', '2026-06-01', [{ forfait: 'FNMF-SEQUENCE', amount: 690.6 }], FNMF, 'cancelled'),
    claim('c5', 'e', '2025-06-01', [{ forfait: 'FNMF-SEQUENCE', amount: 690.6 }]),
  ];

  it('sums the claims due in the period exactly, by forfait and category', () => {
    const result = run(claimsByForfaitAndCategory, { kind: 'claims-by-forfait-and-category', forfaits: ['FNMF-SEQUENCE'] }, data({ claims }), YEAR);
    expect(counts(result)).toEqual({ 'initial-population': 2 });
    expect(score(result)).toBe('1381.20');
    expect(strataScores(result, 'forfait')).toEqual({ 'FNMF-SEQUENCE': '1381.20' });
    expect(strata(result, 'category')).toEqual({ '(none)': 2 });
  });

  it('sums by month of the due day, every month of the period', () => {
    const result = run(claimsByForfaitAndCategory, { kind: 'claims-by-forfait-and-category', stratifiers: ['month'] }, data({ claims }), context('2026-11-01', '2027-01-31'));
    expect(strata(result, 'month')).toEqual({ '2026-11': 0, '2026-12': 1, '2027-01': 1 });
    expect(strataScores(result, 'month')).toEqual({ '2026-11': '0.00', '2026-12': '690.60', '2027-01': '690.60' });
  });

  it('adds cents without binary rounding (0.10 + 0.20 = 0.30), and REDIAB COOP Invoices when asked', () => {
    const rediabClaims = [claim('r1', 'a', '2002-01-10', [{ forfait: 'FEID', amount: 0.1, category: 'gp' }, { forfait: 'FEID', amount: 0.2, category: 'nurse' }], REDIAB)];
    const invoices = [invoice('i1', '2002-01-15', 'PractitionerRole/gp1', { forfait: 'COOP', amount: 105.19, category: 'gp' }), invoice('i2', '2003-01-15', 'PractitionerRole/gp1', { forfait: 'COOP', amount: 105.19, category: 'gp' })];
    const ctx = context('2002-01-01', '2002-12-31', REDIAB);
    const withInvoices = run(claimsByForfaitAndCategory, { kind: 'claims-by-forfait-and-category', forfaits: ['FEID', 'COOP'], includeInvoices: true }, data({ claims: rediabClaims, invoices }), ctx);
    expect(counts(withInvoices)).toEqual({ 'initial-population': 2 });
    expect(score(withInvoices)).toBe('105.49');
    expect(strataScores(withInvoices, 'forfait')).toEqual({ FEID: '0.30', COOP: '105.19' });
    expect(strataScores(withInvoices, 'category')).toEqual({ gp: '105.29', nurse: '0.20' });
    expect(score(run(claimsByForfaitAndCategory, { kind: 'claims-by-forfait-and-category' }, data({ claims: rediabClaims, invoices }), ctx))).toBe('0.30');
  });

  it('follows the budget from the start of the program to the last day of the period', () => {
    const figure = (name: string) => run(budget, { kind: 'budget', figure: name }, data({ claims }), YEAR);
    expect(score(figure('budget'))).toBe('96684.00');
    expect(counts(figure('claimed-to-date'))).toEqual({ 'initial-population': 3 });
    expect(score(figure('claimed-to-date'))).toBe('2071.80');
    expect(score(figure('remaining'))).toBe('94612.20');
    expect(score(figure('used-ratio'))).toBe('0.0214'); // 2071.80 / 96684 = 0.021428…
    expect(score(run(budget, { kind: 'budget', figure: 'remaining', budget: '1000.00' }, data({ claims }), YEAR))).toBe('-1071.80');
  });

  it('reads accepted and paid amounts from the final ClaimResponses', () => {
    const responses: fhir4.ClaimResponse[] = [
      { resourceType: 'ClaimResponse', status: 'active', type: { coding: [{ code: 'professional' }] }, use: 'claim', patient: { reference: 'Patient/x' }, created: '2026-02-01', insurer: { reference: 'Organization/i' }, outcome: 'complete', request: { reference: 'Claim/c1' }, payment: { type: { coding: [{ code: 'complete' }] }, amount: { value: 690.6, currency: 'EUR' } } },
    ];
    expect(score(run(budget, { kind: 'budget', figure: 'accepted-to-date' }, data({ claims, claimResponses: responses }), YEAR))).toBe('690.60');
    expect(score(run(budget, { kind: 'budget', figure: 'paid-to-date' }, data({ claims, claimResponses: responses }), YEAR))).toBe('690.60');
  });
});

describe('observation-change', () => {
  // Enrolled 2026-01-31: intensive ends 2026-05-30.
  const episodes = [episode({ id: 'a', patient: 'p1', start: '2026-01-31' }), episode({ id: 'b', patient: 'p2', start: '2026-01-31' }), episode({ id: 'left', patient: 'p3', start: '2026-01-31', end: '2026-04-01', reason: 'withdrew' })];
  const carePlans = episodes.map((e) => carePlan(`${e.id}-i`, e.id as string, 'intensive', '2026-01-31', '2026-05-30'));
  const glucose = { kind: 'observation-change', valueSets: ['fasting-glucose', 'fasting-glucose-site'], dimension: 'glucose-mass-concentration', places: 2, plans: ['intensive', 'consolidation'] };

  it('converts mmol/L and mg/dL to g/L exactly and averages the changes, rounded half-up at the end', () => {
    const observations = [
      observation('o1', 'p1', '14771-0', '2026-01-20', ucum(6.1, 'mmol/L')), // 1.098976 g/L
      observation('o2', 'p1', '1558-6', '2026-05-30', ucum(100, 'mg/dL')), // 1.00 g/L → −0.098976
      observation('o3', 'p2', '1558-6', '2025-01-31', ucum(120, 'mg/dL')), // baseline: 12 months before the start, the window's first day
      observation('o4', 'p2', '1558-6', '2026-03-01', ucum(110, 'mg/dL')), // → −0.10
      observation('o5', 'p2', '1558-6', '2026-05-01', ucum(7, 'mmol/mol')), // unknown unit: skipped
      observation('o6', 'p3', '1558-6', '2026-01-01', ucum(120, 'mg/dL')), // left before the end of the phase
      observation('o7', 'p3', '1558-6', '2026-03-01', ucum(100, 'mg/dL')),
    ];
    const result = run(observationChange, glucose, data({ episodes, carePlans, observations }), context('2026-01-01', '2026-06-30'));
    expect(counts(result)).toEqual({ 'initial-population': 2, 'measure-population': 2 });
    expect(strata(result, 'phase')).toEqual({ intensive: 2, consolidation: 0 });
    expect(strata(result, 'phase', 'measure-population')).toEqual({ intensive: 2, consolidation: 0 });
    // (−0.098976 − 0.10) / 2 = −0.099488 → −0.10
    expect(strataScores(result, 'phase')).toEqual({ intensive: '-0.10', consolidation: undefined });
  });

  it('needs a baseline within the look-back window, on or before the start, and a value within the phase', () => {
    const observations = [
      observation('o1', 'p1', '29463-7', '2025-01-30', ucum(90, 'kg')), // one day too old
      observation('o2', 'p1', '29463-7', '2026-05-30', ucum(85, 'kg')),
      observation('o3', 'p2', '29463-7', '2026-01-31', ucum(80, 'kg')), // the start day counts as baseline
      observation('o4', 'p2', '29463-7', '2026-05-31', ucum(78, 'kg')), // the day after the phase: not its end value
      observation('o5', 'p2', '29463-7', '2026-04-15', ucum(79250, 'g')),
    ];
    const weight = { kind: 'observation-change', valueSets: ['body-weight'], dimension: 'mass', places: 1, plans: ['intensive'] };
    const result = run(observationChange, weight, data({ episodes, carePlans, observations }), context('2026-05-30', '2026-05-30'));
    expect(strata(result, 'phase', 'measure-population')).toEqual({ intensive: 1 });
    expect(strataScores(result, 'phase')).toEqual({ intensive: '-0.8' }); // 79.25 − 80 = −0.75 → −0.8 (half away from zero)
  });
});

describe('new-diagnoses', () => {
  it('counts enrolled patients with a diabetes onset in the period, during their enrolment, once each', () => {
    const episodes = [
      episode({ id: 'a', patient: 'p1', start: '2026-03-01' }),
      episode({ id: 'b', patient: 'p2', start: '2026-03-01' }),
      episode({ id: 'c', patient: 'p3', start: '2026-03-01', end: '2026-06-30', reason: 'diabetes-diagnosed' }),
      episode({ id: 'd', patient: 'p4', start: '2026-03-01' }),
    ];
    const conditions = [
      condition('c1', 'p1', '44054006', '2026-03-01'), // the start day counts
      condition('c1b', 'p1', '44054006', '2026-09-01'), // same patient: once
      condition('c2', 'p2', '44054006', '2026-02-28'), // before the enrolment
      condition('c3', 'p3', '73211009', '2026-06-30'), // the exit day counts
      condition('c4', 'p4', '44054006', '2026-05-01', 'refuted'),
      condition('c5', 'p9', '44054006', '2026-05-01'), // not enrolled
    ];
    const result = run(newDiagnoses, { kind: 'new-diagnoses', valueSets: ['diabetes'] }, data({ episodes, conditions }), YEAR);
    expect(counts(result)).toEqual({ numerator: 2, denominator: 4 });
    expect(score(result)).toBe('0.5000');
  });
});
