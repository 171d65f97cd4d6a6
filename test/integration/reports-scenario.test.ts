/**
 * Issue #5, "Done means": a realistic two-year run of both programs (test/fixtures/program-scenario.ts:
 * 160 patients, two centres per program, seeded only through the public API) and every
 * indicator of the report API (/work/notes/report-api.md) asserted to its exact value, computed
 * from the scenario's own plan: each Measure over the two years for all centres and for each
 * centre, over each year (the edge between them holds an enrolment on either side), and the
 * report packs as a Bundle and as CSV for the three pack kinds.
 */
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertValid } from '../../src/fhir/validation.js';
import {
  actualGroup,
  addDays,
  addMonths,
  expectedGroup,
  FNMF,
  MEASURES,
  planScenario,
  REDIAB,
  scenarioSiteDir,
  seedScenario,
  type ProgramId,
  type ReportPeriod,
  type SeededScenario,
} from '../fixtures/program-scenario.js';
import { startTestService, type TestService } from './harness.js';

const SEED = 20261122;
const PACKS = ['annual-activity', 'interim-18-months', 'final-evaluation'] as const;
const REPORT_PROFILE = 'http://forfait-fhir.org/fhir/StructureDefinition/program-measure-report';

let t: TestService;
let seeded: SeededScenario;
let seedMs = 0;

beforeAll(async () => {
  const today = DateTime.now().setZone('Europe/Paris').toISODate() as string;
  const plan = planScenario(SEED, today);
  t = await startTestService({ SITE_DIR: scenarioSiteDir(plan) });
  const started = Date.now();
  seeded = await seedScenario(t, plan, { drained: () => t.drained(180_000), log: (line) => console.log(`[scenario] ${line}`) });
  seedMs = Date.now() - started;
  console.log(`[scenario] ${plan.patients.length} patients seeded in ${seedMs} ms`);
}, 900_000);

afterAll(async () => {
  await t?.stop();
});

function periods(): Record<string, ReportPeriod> {
  const { periodStart, periodEnd } = seeded.plan;
  const yearOneEnd = addDays(addMonths(periodStart, 12), -1);
  return { 'two years': { start: periodStart, end: periodEnd }, 'year 1': { start: periodStart, end: yearOneEnd }, 'year 2': { start: addDays(yearOneEnd, 1), end: periodEnd } };
}

async function evaluate(measureId: string, period: ReportPeriod, centreId?: string): Promise<fhir4.MeasureReport> {
  const query = new URLSearchParams({ periodStart: period.start, periodEnd: period.end, ...(centreId ? { subject: `Organization/${centreId}` } : {}) });
  const response = await t.get(`/fhir/Measure/${measureId}/$evaluate-measure?${query.toString()}`);
  expect(response.status, JSON.stringify(response.body).slice(0, 1000)).toBe(200);
  const report = response.body as fhir4.MeasureReport;
  expect(report.resourceType).toBe('MeasureReport');
  expect(report.period).toEqual({ start: period.start, end: period.end });
  return report;
}

function expectReport(program: ProgramId, measureId: string, report: fhir4.MeasureReport, period: ReportPeriod, centre?: number): void {
  for (const groupId of MEASURES[program][measureId] ?? []) {
    const expected = expectedGroup(seeded.plan, measureId, groupId, period, centre);
    expect(actualGroup(report, groupId, expected), `${measureId} / ${groupId} over ${period.start}..${period.end}${centre === undefined ? '' : ` centre ${centre}`}`).toEqual(expected);
  }
}

describe('a two-year program scenario seeded through the public API', () => {
  it('holds what the plan says: 160 patients, 96 enrolments, and sessions of every kind', () => {
    const { plan } = seeded;
    expect(plan.patients).toHaveLength(160);
    expect(seeded.patientIds.size).toBe(160);
    expect(seeded.episodeIds.size).toBe(plan.patients.filter((p) => p.enrolment).length);
    const kinds = new Set(plan.patients.flatMap((p) => p.enrolment?.events.flatMap((e) => (e.type === 'session' ? [e.kind] : [])) ?? []));
    expect([...kinds].sort()).toEqual(['apa-group', 'apa-individual', 'diabetes-education-individual', 'dietary', 'education-workshop', 'gp-consultation', 'nurse-coaching', 'podiatry', 'psychological', 'resource-platform']);
    const reasons = new Set(plan.patients.flatMap((p) => p.enrolment?.events.flatMap((e) => (e.type === 'exit' ? [e.reason] : [])) ?? []));
    expect([...reasons].sort()).toEqual(['completed', 'deceased', 'diabetes-diagnosed', 'lost-to-follow-up', 'moved-away', 'other', 'withdrew']);
  });

  for (const program of [FNMF, REDIAB] as const) {
    describe(program, () => {
      for (const measureId of Object.keys(MEASURES[program])) {
        it(`${measureId}: exact values over two years, each year, and each centre`, async () => {
          for (const [name, period] of Object.entries(periods())) {
            const report = await evaluate(measureId, period);
            assertValid(report);
            assertValid(report, [REPORT_PROFILE]);
            expect(report.reporter, name).toBeUndefined();
            expectReport(program, measureId, report, period);
          }
          const twoYears = periods()['two years'] as ReportPeriod;
          for (const centre of [0, 1]) {
            const centreId = seeded.centreIds[program][centre] as string;
            const report = await evaluate(measureId, twoYears, centreId);
            expect(report.reporter?.reference).toBe(`Organization/${centreId}`);
            expectReport(program, measureId, report, twoYears, centre);
          }
        });
      }

      for (const pack of PACKS) {
        it(`the ${pack} pack, as a Bundle and as CSV`, async () => {
          const period = periods()['two years'] as ReportPeriod;
          const query = new URLSearchParams({ program, pack, periodStart: period.start, periodEnd: period.end });
          const bundleAnswer = await t.get(`/fhir/Measure/$report-pack?${query.toString()}`);
          expect(bundleAnswer.status, JSON.stringify(bundleAnswer.body).slice(0, 1000)).toBe(200);
          const bundle = bundleAnswer.body as fhir4.Bundle;
          expect(bundle.type).toBe('collection');
          expect(bundle.identifier).toEqual({ system: 'http://forfait-fhir.org/fhir/report-pack', value: `${program}|${pack}|${period.start}|${period.end}` });
          const inPack = Object.keys(MEASURES[program]).filter((id) => !id.endsWith('-screening')).sort();
          const reports = (bundle.entry ?? []).map((entry) => entry.resource as fhir4.MeasureReport);
          expect(reports.map((r) => /Measure\/([^|]+)/.exec(r.measure)?.[1])).toEqual(inPack);
          reports.forEach((report, index) => expectReport(program, inPack[index] as string, report, period));

          const csvAnswer = await fetch(`${t.url}/fhir/Measure/$report-pack?${query.toString()}&_format=text/csv`);
          expect(csvAnswer.status).toBe(200);
          expect(csvAnswer.headers.get('content-type')).toMatch(/^text\/csv/);
          const rows = parseCsv(await csvAnswer.text());
          expect(rows[0]).toEqual(['pack', 'program', 'measure', 'period_start', 'period_end', 'centre', 'group', 'stratifier', 'stratum', 'population', 'count', 'score', 'unit']);
          // Every group's counts and score, as the expectation says, on its own CSV row.
          for (const measureId of inPack) {
            for (const groupId of MEASURES[program][measureId] ?? []) {
              const expected = expectedGroup(seeded.plan, measureId, groupId, period);
              const groupRows = rows.filter((row) => row[2] === measureId && row[6] === groupId && row[7] === '' && row[8] === '');
              expect(groupRows.length, `${measureId}/${groupId} rows`).toBeGreaterThan(0);
              for (const row of groupRows) expect(row.slice(0, 6)).toEqual([pack, program, measureId, period.start, period.end, '']);
              const counts = Object.fromEntries(groupRows.filter((row) => row[9] !== 'measure-score').map((row) => [row[9], Number(row[10])]));
              expect(counts, `${measureId}/${groupId} counts`).toEqual(expected.populations);
              const score = groupRows.find((row) => row[9] === 'measure-score')?.[11];
              expect(score, `${measureId}/${groupId} score`).toBe(expected.score);
              for (const [stratifier, strata] of Object.entries(expected.strata)) {
                for (const [stratum, value] of Object.entries(strata)) {
                  const stratumRows = rows.filter((row) => row[2] === measureId && row[6] === groupId && row[7] === stratifier && row[8] === stratum);
                  if (Object.values(value.populations).every((c) => c === 0) && stratumRows.length === 0) continue;
                  const stratumCounts = Object.fromEntries(stratumRows.filter((row) => row[9] !== 'measure-score').map((row) => [row[9], Number(row[10])]));
                  expect(stratumCounts, `${measureId}/${groupId}/${stratifier}=${stratum}`).toEqual(value.populations);
                  expect(stratumRows.find((row) => row[9] === 'measure-score')?.[11], `${measureId}/${groupId}/${stratifier}=${stratum} score`).toBe(value.score);
                }
              }
            }
          }
        });
      }
    });
  }

  it('refuses a period that ends before it starts, naming the parameter', async () => {
    const response = await t.get(`/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure?periodStart=${seeded.plan.periodEnd}&periodEnd=${seeded.plan.periodStart}`);
    expect(response.status).toBe(400);
    expect(response.body.resourceType).toBe('OperationOutcome');
  });
});

/** RFC 4180 CSV (quoted fields, doubled quotes, CRLF rows). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
