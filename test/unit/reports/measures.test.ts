/**
 * The indicator Measures of profiles/ and what is built from them: every Measure loads and is
 * valid R4; a MeasureReport validates against program-measure-report; the pack Bundle and CSV;
 * centre scoping; and a bad Measure is refused naming the field.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadMeasures } from '../../../src/app/reports.service.js';
import { parseMeasure } from '../../../src/domain/reports/measure-definition.js';
import { evaluateGroups, evaluateMeasure } from '../../../src/domain/reports/measure-report.js';
import { CSV_COLUMNS, packBundle, packCsv } from '../../../src/domain/reports/pack.js';
import { scopeToCentre } from '../../../src/domain/reports/records.js';
import type { CentreScope, MeasureDefinition } from '../../../src/domain/reports/types.js';
import { formatIssue, initValidation, validateResource } from '../../../src/fhir/validation.js';
import { carePlan, catalog, claim, context, data, declined, episode, invoice, observation, ROOT, session, ucum } from './fixtures.js';

beforeAll(() => {
  initValidation();
}, 30_000);

const measures = loadMeasures(catalog, join(ROOT, 'profiles'));
const measure = (id: string): MeasureDefinition => {
  const found = measures.get(id);
  if (!found) throw new Error(`no Measure ${id}`);
  return found;
};

const CENTRE_A: CentreScope = { organization: 'Organization/a', identifier: { system: 'urn:centres', value: 'A' }, patients: new Set(['Patient/p1']), members: new Set(['PractitionerRole/gp-a']) };

const fixture = data({
  episodes: [
    episode({ id: 'e1', patient: 'p1', start: '2026-01-31', organization: 'Organization/a' }),
    episode({ id: 'e2', patient: 'p2', start: '2026-02-15', organization: 'Organization/b', end: '2026-03-01', reason: 'withdrew' }),
  ],
  carePlans: [carePlan('cp1', 'e1', 'intensive', '2026-01-31', '2026-05-30'), carePlan('cp2', 'e2', 'intensive', '2026-02-15', '2026-06-14', 'revoked')],
  encounters: [session('s1', 'e1', '2026-02-02', 'apa-group', ['apa-teacher']), session('s2', 'e2', '2026-02-20', 'dietary', ['dietitian'])],
  claims: [claim('c1', 'e1', '2026-01-31', [{ forfait: 'FNMF-SEQUENCE', amount: 690.6 }]), claim('c2', 'e2', '2026-02-15', [{ forfait: 'FNMF-SEQUENCE', amount: 690.6 }])],
  tasks: [declined('t1', 'p1', '2026-01-10T10:00:00Z', 'no-time'), declined('t2', 'p9', '2026-01-10T10:00:00Z', 'distance')],
  observations: [observation('o1', 'p1', '29463-7', '2026-01-20', ucum(82.4, 'kg')), observation('o2', 'p1', '29463-7', '2026-05-20', ucum(80, 'kg'))],
});

describe('the Measures of profiles/', () => {
  it('loads one Measure per indicator set of both programs, with the packs of the decree', () => {
    expect([...measures.keys()].sort()).toEqual([
      'fnmf-prediabetes-active-file',
      'fnmf-prediabetes-enrolments',
      'fnmf-prediabetes-exits',
      'fnmf-prediabetes-forfaits',
      'fnmf-prediabetes-new-diagnoses',
      'fnmf-prediabetes-outcomes',
      'fnmf-prediabetes-phases',
      'fnmf-prediabetes-screening',
      'fnmf-prediabetes-sessions',
      'rediab-admissions',
      'rediab-care-volumes',
      'rediab-exits',
      'rediab-expenses',
      'rediab-phases',
      'rediab-professionals',
      'rediab-screening',
    ]);
    expect(measure('rediab-exits').packs).toEqual(['annual-activity', 'interim-18-months', 'final-evaluation']);
    expect(measure('rediab-screening').packs).toEqual([]);
  });

  it.each([...measures.keys()])('%s is valid FHIR R4', (id) => {
    expect(validateResource(measure(id).resource, { profiles: [] }).map(formatIssue)).toEqual([]);
  });
});

describe('MeasureReport', () => {
  it.each([...measures.keys()])('the report of %s validates against program-measure-report, for the program and for a centre', (id) => {
    const m = measure(id);
    const ctx = context('2026-01-01', '2026-12-31', m.programId === 'rediab' ? { id: 'rediab', url: 'http://forfait-fhir.org/fhir/PlanDefinition/rediab', timeZone: 'Europe/Paris' } : undefined);
    for (const centre of [undefined, CENTRE_A]) {
      const report = evaluateMeasure({ measure: m, data: fixture, context: ctx, date: '2026-11-22T10:00:00Z', ...(centre ? { centre } : {}) });
      expect(validateResource(report).map(formatIssue)).toEqual([]);
      expect(report.group?.map((g) => g.id)).toEqual(m.groups.map((g) => g.id));
    }
  });

  it('has the shape of the contract: summary, measure canonical, period, reporter for a centre, group and stratum keys', () => {
    const report = evaluateMeasure({ measure: measure('fnmf-prediabetes-exits'), data: fixture, context: context('2026-01-01', '2026-12-31'), date: '2026-11-22T10:00:00Z', centre: CENTRE_A });
    expect(report).toMatchObject({
      resourceType: 'MeasureReport',
      status: 'complete',
      type: 'summary',
      measure: 'http://forfait-fhir.org/fhir/Measure/fnmf-prediabetes-exits|1.0.0',
      period: { start: '2026-01-01', end: '2026-12-31' },
      reporter: { reference: 'Organization/a', identifier: { system: 'urn:centres', value: 'A' } },
    });
    const declines = report.group?.find((g) => g.id === 'declines');
    expect(declines?.population?.[0]?.count).toBe(1);
    expect(declines?.stratifier?.[0]?.code?.[0]?.text).toBe('reason');
    expect(declines?.stratifier?.[0]?.stratum?.find((s) => s.value?.text === 'no-time')?.population?.[0]?.count).toBe(1);
  });

  it('is checked by the profile: a report without group ids, or a money score without a code, is invalid', () => {
    const report = evaluateMeasure({ measure: measure('fnmf-prediabetes-forfaits'), data: fixture, context: context('2026-01-01', '2026-12-31'), date: '2026-11-22T10:00:00Z' });
    const noId = { ...report, group: report.group?.map(({ id: _id, ...group }) => group) };
    expect(validateResource(noId).map(formatIssue).join(' ')).toMatch(/pmr-2/);
    const noCode = { ...report, group: report.group?.map((group) => ({ ...group, measureScore: { value: 1 } })) };
    expect(validateResource(noCode).map(formatIssue).join(' ')).toMatch(/pmr-4/);
  });

  it('writes money as an EUR Quantity', () => {
    const report = evaluateMeasure({ measure: measure('fnmf-prediabetes-forfaits'), data: fixture, context: context('2026-01-01', '2026-12-31'), date: '2026-11-22T10:00:00Z' });
    expect(report.group?.find((g) => g.id === 'claimed')?.measureScore).toEqual({ value: 1381.2, unit: 'EUR', system: 'urn:iso:std:iso:4217', code: 'EUR' });
    expect(report.group?.find((g) => g.id === 'budget-used')?.measureScore).toEqual({ value: 0.0143, unit: '1', system: 'http://unitsofmeasure.org', code: '1' });
  });
});

describe('centre scoping', () => {
  it('keeps the enrolments managed by the centre and what hangs off them, and the centre patients\' proposals', () => {
    const invoices = [invoice('i1', '2026-02-01', 'PractitionerRole/gp-a', { forfait: 'COOP', amount: 105.19, category: 'gp' }), invoice('i2', '2026-02-01', 'PractitionerRole/gp-b', { forfait: 'COOP', amount: 105.19, category: 'gp' })];
    expect(scopeToCentre({ ...fixture, invoices }, CENTRE_A).invoices.map((i) => i.id)).toEqual(['i1']);
    const scoped = scopeToCentre(fixture, CENTRE_A);
    expect(scoped.episodes.map((e) => e.id)).toEqual(['e1']);
    expect(scoped.carePlans.map((c) => c.id)).toEqual(['cp1']);
    expect(scoped.encounters.map((e) => e.id)).toEqual(['s1']);
    expect(scoped.claims.map((c) => c.id)).toEqual(['c1']);
    expect(scoped.tasks.map((t) => t.id)).toEqual(['t1']);
    expect(scoped.observations.map((o) => o.id)).toEqual(['o1', 'o2']);
  });
});

describe('a centre whose Organization is not stored yet', () => {
  it('manages nothing: zero figures, the centre named by its identifier only', () => {
    const centre: CentreScope = { identifier: { system: 'urn:centres', value: 'NEW' }, patients: new Set(), members: new Set() };
    const report = evaluateMeasure({ measure: measure('fnmf-prediabetes-enrolments'), data: fixture, context: context('2026-01-01', '2026-12-31'), date: '2026-11-22T10:00:00Z', centre });
    expect(report.reporter).toEqual({ identifier: { system: 'urn:centres', value: 'NEW' } });
    expect(report.group?.[0]?.population?.[0]?.count).toBe(0);
    expect(validateResource(report).map(formatIssue)).toEqual([]);
    expect(validateResource({ ...report, reporter: { reference: 'Practitioner/x' } }).map(formatIssue).join(' ')).toMatch(/pmr-5/);
  });
});

describe('report packs', () => {
  const header = { program: 'fnmf-prediabetes', pack: 'annual-activity', period: { start: '2026-01-01', end: '2026-12-31' }, centre: 'urn:centres|A' };
  const ids = ['fnmf-prediabetes-exits', 'fnmf-prediabetes-forfaits', 'fnmf-prediabetes-outcomes'];
  const ctx = context('2026-01-01', '2026-12-31');
  const evaluated = ids.map((id) => ({ measureId: id, groups: evaluateGroups({ measure: measure(id), data: fixture, context: ctx, centre: CENTRE_A }) }));

  it('is a collection Bundle with one MeasureReport per Measure, deterministic fullUrls, and an identifier naming the pack', () => {
    const reports = ids.map((id) => ({ measureId: id, report: evaluateMeasure({ measure: measure(id), data: fixture, context: ctx, date: '2026-11-22T10:00:00Z', centre: CENTRE_A }) }));
    const bundle = packBundle(header, reports, '2026-11-22T10:00:00Z');
    expect(bundle.type).toBe('collection');
    expect(bundle.identifier).toEqual({ system: 'http://forfait-fhir.org/fhir/report-pack', value: 'fnmf-prediabetes|annual-activity|2026-01-01|2026-12-31|urn:centres|A' });
    expect(bundle.entry?.map((e) => e.resource?.resourceType)).toEqual(['MeasureReport', 'MeasureReport', 'MeasureReport']);
    expect(packBundle(header, reports, '2026-11-22T10:00:00Z').entry?.map((e) => e.fullUrl)).toEqual(bundle.entry?.map((e) => e.fullUrl));
    expect(validateResource(bundle, { profiles: [] }).map(formatIssue)).toEqual([]);
  });

  it('is CSV with the documented columns: one row per count and per score, scores with fixed decimals', () => {
    const lines = packCsv(header, evaluated).split('\r\n');
    expect(lines[0]).toBe(CSV_COLUMNS.join(','));
    expect(lines).toContain('annual-activity,fnmf-prediabetes,fnmf-prediabetes-exits,2026-01-01,2026-12-31,urn:centres|A,declines,reason,no-time,initial-population,1,,');
    expect(lines).toContain('annual-activity,fnmf-prediabetes,fnmf-prediabetes-forfaits,2026-01-01,2026-12-31,urn:centres|A,claimed,,,measure-score,,690.60,EUR');
    expect(lines).toContain('annual-activity,fnmf-prediabetes,fnmf-prediabetes-forfaits,2026-01-01,2026-12-31,urn:centres|A,budget-used,,,measure-score,,0.0071,1');
    expect(lines).toContain('annual-activity,fnmf-prediabetes,fnmf-prediabetes-outcomes,2026-01-01,2026-12-31,urn:centres|A,weight,phase,intensive,measure-score,,-2.4,kg');
    expect(lines.at(-1)).toBe('');
  });
});

describe('a bad Measure', () => {
  const base = JSON.parse(JSON.stringify(measure('fnmf-prediabetes-exits').resource)) as fhir4.Measure;
  const withExpression = (expression: string): fhir4.Measure => {
    const copy = JSON.parse(JSON.stringify(base)) as fhir4.Measure;
    ((copy.group?.[0]?.population?.[0] as fhir4.MeasureGroupPopulation).criteria as fhir4.Expression).expression = expression;
    return copy;
  };
  it.each([
    ['an unknown kind', withExpression('{"kind":"nope"}'), /group\[0\]\.population\[0\]\.criteria\.expression\.kind: unknown indicator kind "nope"/],
    ['a bad parameter', withExpression('{"kind":"count-episodes","which":"sometimes"}'), /group\[0\]\.population\[0\]\.criteria\.expression: parameter which/],
    ['not JSON', withExpression('count(*)'), /not a JSON object/],
    ['no program', { ...base, useContext: [] }, /field useContext/],
    ['an unknown pack', { ...base, extension: [{ url: 'http://forfait-fhir.org/fhir/StructureDefinition/measure-report-pack', valueCode: 'monthly' }] }, /extension\[0\]\.valueCode/],
  ])('is refused naming the field: %s', (_name, resource, message) => {
    expect(() => parseMeasure(resource, 'Measure-x.json')).toThrow(message);
  });
});

describe('CapabilityStatement', () => {
  it('declares the Measure reads and operations, and stays valid R4', async () => {
    const { capabilityStatement } = await import('../../../src/http/capability.js');
    const statement = capabilityStatement({ version: '0.0.0', baseUrl: 'http://localhost/fhir', programs: ['fnmf-prediabetes', 'rediab'], enrolmentPrograms: ['fnmf-prediabetes', 'rediab'] });
    const measureResource = statement.rest?.[0]?.resource?.find((r) => r.type === 'Measure');
    expect(measureResource?.interaction?.map((i) => i.code)).toEqual(['read', 'search-type']);
    expect(measureResource?.operation?.map((o) => o.name)).toEqual(['evaluate-measure', 'report-pack']);
    expect(validateResource(statement, { profiles: [] }).map(formatIssue)).toEqual([]);
  });
});

describe('a third program', () => {
  it('gets its indicators from a Measure file only (SITE_DIR/profiles/), composed of the existing kinds', async () => {
    const { loadProgramCatalog } = await import('../../../src/programs/load-programs.js');
    const { verdict, episode: episodeOf } = await import('./fixtures.js');
    const withThird = loadProgramCatalog({ mappingsDir: join(ROOT, 'mappings'), profilesDir: join(ROOT, 'profiles'), siteDir: join(ROOT, 'test/fixtures/site-third-program') });
    const third = loadMeasures(withThird, join(ROOT, 'profiles'), join(ROOT, 'test/fixtures/reports-third-program'));
    const gdm = third.get('gdm-screening');
    expect(gdm?.programId).toBe('gestational-diabetes-follow-up');
    expect(third.size).toBe(measures.size + 1);
    const program = { id: 'gestational-diabetes-follow-up', url: 'http://forfait-fhir.org/fhir/PlanDefinition/gestational-diabetes-follow-up', timeZone: 'Europe/Paris' };
    const report = evaluateMeasure({
      measure: gdm as MeasureDefinition,
      data: data({
        guidanceResponses: [verdict('g1', 'p1', '2026-03-01T10:00:00Z', 'eligible', program), verdict('g2', 'p2', '2026-03-01T10:00:00Z', 'eligible', FNMF_FOR_THIRD)],
        episodes: [episodeOf({ id: 'e1', patient: 'p1', start: '2026-04-02', program: program.id }), episodeOf({ id: 'e2', patient: 'p2', start: '2026-04-02' })],
      }),
      context: context('2026-01-01', '2026-12-31', program),
      date: '2026-11-22T10:00:00Z',
    });
    expect(validateResource(report).map(formatIssue)).toEqual([]);
    expect(report.group?.map((g) => [g.id, g.population?.[0]?.count])).toEqual([
      ['screening', 1],
      ['admitted', 1],
    ]);
  });
});

const FNMF_FOR_THIRD = { id: 'fnmf-prediabetes', url: 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes', timeZone: 'Europe/Paris' };
