/**
 * Program evaluation reports over HTTP (issue #5, points 1 and 2; contract notes/report-api.md):
 * the real service against real Redis and the embedded FHIR server, a small FNMF program seeded
 * through the public API in two participating centres (a SITE_DIR adds centre B to
 * centres.json): enrolments, a session each, an exit, a refused proposal and the forfait claims.
 *
 * Then: the Measures; `$evaluate-measure` for the program and for each centre (exact values);
 * the report pack as a Bundle and as CSV; every MeasureReport valid; 400 / 404; the AuditEvent
 * of a report read. With authentication on (second part): a client bound to a centre gets its
 * own centre's figures whatever it asks, and 403 for another or an unknown centre.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatIssue, initValidation, validateResource } from '../../src/fhir/validation.js';
import { bill, enrol, enrolFnmf, INSURERS, seedCoverage, seedInsurer, ROOT, type Enrolled } from '../fixtures/billing.js';
import { expectOutcome, FNMF, parameters, seedFnmfPatient, seedTeam, sessionEncounter, shift, today, type SeededTeam } from '../fixtures/enrolment.js';
import { CENTRE_VAUGIRARD, TEST_CENTRES_ENV } from '../fixtures/auth.js';
import { startAuthService, type AuthService } from '../fixtures/auth-service.js';
import { DEMO_CENTRE } from '../fixtures/resources.js';
import { eventually, startTestService, type TestService } from './harness.js';

const CENTRE_B = { system: DEMO_CENTRE.system, value: 'CDS-REPORTS-B' };
const CENTRE_A_LABEL = `${DEMO_CENTRE.system}|${DEMO_CENTRE.value}`;
const CENTRE_B_LABEL = `${CENTRE_B.system}|${CENTRE_B.value}`;

/** A SITE_DIR whose FNMF centres.json lists the demo centre (A) and centre B. */
function twoCentreSite(): string {
  const siteDir = mkdtempSync(path.join(tmpdir(), 'forfait-reports-'));
  const target = path.join(siteDir, 'programs', FNMF);
  mkdirSync(target, { recursive: true });
  const centres = JSON.parse(readFileSync(path.join(ROOT, 'mappings', 'programs', FNMF, 'centres.json'), 'utf8')) as { centres: unknown[] };
  centres.centres.push({ identifier: CENTRE_B, name: 'Centre B (reports test)' });
  writeFileSync(path.join(target, 'centres.json'), JSON.stringify(centres, null, 2));
  return siteDir;
}

type Report = fhir4.MeasureReport;
const group = (report: Report, id: string): fhir4.MeasureReportGroup => {
  const found = report.group?.find((g) => g.id === id);
  if (!found) throw new Error(`no group ${id} in ${JSON.stringify(report)}`);
  return found;
};
const count = (g: fhir4.MeasureReportGroup | fhir4.MeasureReportGroupStratifierStratum, code = 'initial-population'): number | undefined =>
  g.population?.find((p) => p.code?.coding?.[0]?.code === code)?.count;
const strata = (g: fhir4.MeasureReportGroup, stratifier: string): Record<string, number | undefined> =>
  Object.fromEntries((g.stratifier?.find((s) => s.code?.[0]?.text === stratifier)?.stratum ?? []).map((s) => [s.value?.text as string, count(s)]));

function expectValid(resource: fhir4.Resource): void {
  expect(validateResource(resource).map(formatIssue)).toEqual([]);
}

describe('reports without authentication', () => {
  let t: TestService;
  let teamA: SeededTeam;
  let teamB: SeededTeam;
  const T = today();
  const period = { start: shift(T, { months: -2 }), end: T };
  const starts = { a1: shift(T, { months: -1 }), a2: shift(T, { days: -20 }), b1: shift(T, { days: -15 }) };
  let a1: Enrolled;
  let a2: Enrolled;
  let b1: Enrolled;
  const q = (extra: Record<string, string> = {}): string => new URLSearchParams({ periodStart: period.start, periodEnd: period.end, ...extra }).toString();
  const evaluate = async (id: string, extra: Record<string, string> = {}): Promise<Report> => {
    const response = await t.get(`/fhir/Measure/${id}/$evaluate-measure?${q(extra)}`);
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expectValid(response.body as Report);
    return response.body as Report;
  };

  beforeAll(async () => {
    initValidation();
    t = await startTestService({ SITE_DIR: twoCentreSite() });
    teamA = await seedTeam(t, 'rep-a');
    teamB = await seedTeam(t, 'rep-b', ['gp', 'apa-teacher', 'nurse'], CENTRE_B);
    const insurerId = await seedInsurer(t, INSURERS.mgen, 'MGEN');
    a1 = await enrolFnmf(t, teamA, 'rep-a1', { start: starts.a1, insurerId });
    a2 = await enrolFnmf(t, teamA, 'rep-a2', { start: starts.a2, insurerId });
    const b1Patient = await seedFnmfPatient(t, teamB, 'rep-b1');
    await seedCoverage(t, b1Patient, insurerId, 'rep-b1');
    b1 = { ...(await enrol(t, b1Patient, { program: FNMF, start: starts.b1, team: teamB.as(['gp', 'apa-teacher']) })) };
    // One APA group session each (A1 two), then A2 moves away; A3 refuses the proposal.
    const sessions: [Enrolled, SeededTeam, string, string][] = [
      [a1, teamA, shift(T, { days: -25 }), 'rep-s1'],
      [a1, teamA, shift(T, { days: -18 }), 'rep-s2'],
      [b1, teamB, shift(T, { days: -10 }), 'rep-s3'],
    ];
    for (const [enrolled, team, date, identifier] of sessions) {
      const response = await t.post('/fhir/Encounter', sessionEncounter({ patientId: enrolled.patientId, episodeId: enrolled.episodeId, kind: 'apa-group', date, member: { reference: team.member('apa-teacher').reference, role: 'apa-teacher' }, identifier }));
      expect([200, 201], JSON.stringify(response.body)).toContain(response.status);
    }
    const exit = await t.post(`/fhir/EpisodeOfCare/${a2.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'moved-away' }, { name: 'date', valueDate: shift(T, { days: -5 }) }));
    expect(exit.status, JSON.stringify(exit.body)).toBe(200);
    const a3 = await seedFnmfPatient(t, teamA, 'rep-a3');
    // The queued evaluation writes the proposal Task; decline after it (see notes: a decline racing
    // the evaluation can be overwritten by it).
    await t.drained();
    const decline = await t.post(`/fhir/Patient/${a3}/$decline`, parameters({ name: 'program', valueString: FNMF }, { name: 'reason', valueCode: 'no-time' }));
    expect(decline.status, JSON.stringify(decline.body)).toBe(200);
    const billed = await bill(t, T, FNMF);
    expect(billed.claims).toBe(3);
  }, 120_000);

  afterAll(async () => {
    await t?.stop();
  });

  it('lists the Measures of the programs, reads one, and answers 404 for an unknown one', async () => {
    const all = await t.get('/fhir/Measure');
    expect(all.status).toBe(200);
    expect(all.body.type).toBe('searchset');
    expect(all.body.total).toBe(16);
    const fnmf = await t.get(`/fhir/Measure?context=${FNMF}`);
    expect((fnmf.body.entry as fhir4.BundleEntry[]).map((e) => e.resource?.id)).toEqual([
      'fnmf-prediabetes-active-file',
      'fnmf-prediabetes-enrolments',
      'fnmf-prediabetes-exits',
      'fnmf-prediabetes-forfaits',
      'fnmf-prediabetes-new-diagnoses',
      'fnmf-prediabetes-outcomes',
      'fnmf-prediabetes-phases',
      'fnmf-prediabetes-screening',
      'fnmf-prediabetes-sessions',
    ]);
    const one = await t.get('/fhir/Measure/fnmf-prediabetes-exits');
    expect(one.status).toBe(200);
    expect(one.body.url).toBe('http://forfait-fhir.org/fhir/Measure/fnmf-prediabetes-exits');
    // The participating centres, for a centre selector.
    const venues = (one.body as fhir4.Measure).useContext?.filter((c) => c.code.code === 'venue').map((c) => c.valueReference);
    expect(venues).toEqual([
      { reference: `Organization/${teamA.organizationId}`, identifier: DEMO_CENTRE, display: expect.any(String) },
      { reference: `Organization/${teamB.organizationId}`, identifier: CENTRE_B, display: 'Centre B (reports test)' },
    ]);
    expectOutcome(await t.get('/fhir/Measure/no-such-measure'), 404);
    expectOutcome(await t.get(`/fhir/Measure/no-such-measure/$evaluate-measure?${q()}`), 404);
    expectOutcome(await t.get('/fhir/Measure?context=nope'), 400);
  });

  it('evaluates each indicator of the whole program exactly', async () => {
    const enrolments = await evaluate('fnmf-prediabetes-enrolments');
    expect(enrolments).toMatchObject({ status: 'complete', type: 'summary', period: { start: period.start, end: period.end }, measure: 'http://forfait-fhir.org/fhir/Measure/fnmf-prediabetes-enrolments|1.0.0' });
    expect(enrolments.reporter).toBeUndefined();
    expect(count(group(enrolments, 'admitted'))).toBe(3);
    const perMonth = strata(group(enrolments, 'enrolments-per-month'), 'month');
    const expectedMonths: Record<string, number> = {};
    for (const start of Object.values(starts)) expectedMonths[start.slice(0, 7)] = (expectedMonths[start.slice(0, 7)] ?? 0) + 1;
    for (const [month, value] of Object.entries(perMonth)) expect(value, month).toBe(expectedMonths[month] ?? 0);
    expect(Object.keys(perMonth)[0]).toBe(period.start.slice(0, 7));

    const exits = await evaluate('fnmf-prediabetes-exits');
    expect(count(group(exits, 'exits'))).toBe(1);
    expect(strata(group(exits, 'exits'), 'reason')).toMatchObject({ 'moved-away': 1, withdrew: 0, completed: 0 });
    expect(count(group(exits, 'declines'))).toBe(1);
    expect(strata(group(exits, 'declines'), 'reason')).toMatchObject({ 'no-time': 1, distance: 0 });

    const activeFile = group(await evaluate('fnmf-prediabetes-active-file'), 'active-file');
    expect([count(activeFile, 'numerator'), count(activeFile, 'denominator')]).toEqual([2, 140]);
    expect(activeFile.measureScore).toEqual({ value: 0.0143, unit: '1', system: 'http://unitsofmeasure.org', code: '1' });

    const phases = group(await evaluate('fnmf-prediabetes-phases'), 'patients-per-phase');
    expect(count(phases)).toBe(2);
    expect(strata(phases, 'phase')).toEqual({ intensive: 2, consolidation: 0 });

    const sessions = group(await evaluate('fnmf-prediabetes-sessions'), 'sessions');
    expect([count(sessions), count(sessions, 'denominator')]).toEqual([3, 3]);
    expect(sessions.measureScore?.value).toBe(1);
    expect(strata(sessions, 'kind')).toMatchObject({ 'apa-group': 3, dietary: 0 });
    expect(strata(sessions, 'category')).toMatchObject({ 'apa-teacher': 3, gp: 0 });

    const forfaits = await evaluate('fnmf-prediabetes-forfaits');
    expect(count(group(forfaits, 'claimed'))).toBe(3);
    expect(group(forfaits, 'claimed').measureScore).toEqual({ value: 2071.8, unit: 'EUR', system: 'urn:iso:std:iso:4217', code: 'EUR' });
    expect(group(forfaits, 'budget').measureScore?.value).toBe(96684);
    expect(group(forfaits, 'claimed-to-date').measureScore?.value).toBe(2071.8);
    expect(group(forfaits, 'remaining').measureScore?.value).toBe(94612.2);
    expect(group(forfaits, 'budget-used').measureScore?.value).toBe(0.0214);
  });

  it('gives one centre\'s figures for subject=Organization/{id} or centre=system|value', async () => {
    const bySubject = await evaluate('fnmf-prediabetes-exits', { subject: `Organization/${teamA.organizationId}` });
    expect(bySubject.reporter).toEqual({ reference: `Organization/${teamA.organizationId}`, identifier: DEMO_CENTRE });
    expect([count(group(bySubject, 'exits')), count(group(bySubject, 'declines'))]).toEqual([1, 1]);
    const b = await evaluate('fnmf-prediabetes-exits', { centre: CENTRE_B_LABEL });
    expect(b.reporter?.reference).toBe(`Organization/${teamB.organizationId}`);
    expect([count(group(b, 'exits')), count(group(b, 'declines'))]).toEqual([0, 0]);
    const forfaitsA = await evaluate('fnmf-prediabetes-forfaits', { centre: CENTRE_A_LABEL });
    expect(group(forfaitsA, 'claimed').measureScore?.value).toBe(1381.2);
    expect(group(forfaitsA, 'remaining').measureScore?.value).toBe(95302.8);
    const sessionsB = group(await evaluate('fnmf-prediabetes-sessions', { centre: `Organization/${teamB.organizationId}` }), 'sessions');
    expect([count(sessionsB), count(sessionsB, 'denominator')]).toEqual([1, 1]);
    const activeA = group(await evaluate('fnmf-prediabetes-active-file', { centre: CENTRE_A_LABEL }), 'active-file');
    expect(count(activeA, 'numerator')).toBe(1);
  });

  it('answers POST with a Parameters body like GET', async () => {
    const response = await t.post('/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure', parameters({ name: 'periodStart', valueDate: period.start }, { name: 'periodEnd', valueDate: period.end }, { name: 'subject', valueReference: { reference: `Organization/${teamB.organizationId}` } }));
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(count(group(response.body as Report, 'admitted'))).toBe(1);
  });

  it('refuses bad parameters with a 400 OperationOutcome naming the parameter', async () => {
    const cases: [string, RegExp][] = [
      [`/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?periodEnd=${T}`, /periodStart/],
      [`/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?periodStart=${T}`, /periodEnd/],
      [`/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?periodStart=2026-13-01&periodEnd=${T}`, /periodStart/],
      [`/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?periodStart=${T}&periodEnd=${shift(T, { days: -1 })}`, /after/],
      [`/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?${q({ reportType: 'individual' })}`, /reportType/],
      ['/fhir/Measure/fnmf-prediabetes-sessions/$evaluate-measure?periodStart=0001-01-01&periodEnd=9999-12-31', /at most 25 years/],
      [`/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?${q({ subject: 'Patient/x' })}`, /subject/],
      [`/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?${q({ centre: 'urn:nowhere|X' })}`, /not a participating centre/],
      [`/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?${q({ centre: CENTRE_A_LABEL, subject: `Organization/${teamA.organizationId}` })}`, /not both/],
      [`/fhir/Measure/$report-pack?${q({ program: FNMF })}`, /pack/],
      [`/fhir/Measure/$report-pack?${q({ program: 'nope', pack: 'annual-activity' })}`, /program/],
      [`/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'weekly' })}`, /pack/],
      [`/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'annual-activity', _format: 'xml' })}`, /_format/],
    ];
    for (const [url, message] of cases) expect(expectOutcome(await t.get(url), 400), url).toMatch(message);
  });

  it('builds the report pack as a collection Bundle of valid MeasureReports', async () => {
    const response = await t.get(`/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'annual-activity' })}`);
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const bundle = response.body as fhir4.Bundle;
    expect(bundle.type).toBe('collection');
    expect(bundle.identifier).toEqual({ system: 'http://forfait-fhir.org/fhir/report-pack', value: `${FNMF}|annual-activity|${period.start}|${period.end}` });
    const measures = (bundle.entry ?? []).map((e) => (e.resource as Report).measure.split('|')[0]?.split('/').pop());
    expect(measures).toEqual(['fnmf-prediabetes-active-file', 'fnmf-prediabetes-enrolments', 'fnmf-prediabetes-exits', 'fnmf-prediabetes-forfaits', 'fnmf-prediabetes-new-diagnoses', 'fnmf-prediabetes-outcomes', 'fnmf-prediabetes-phases', 'fnmf-prediabetes-sessions']);
    for (const entry of bundle.entry ?? []) {
      expect(entry.fullUrl).toMatch(/^urn:uuid:[0-9a-f-]{36}$/);
      expectValid(entry.resource as Report);
    }
    expect(validateResource(bundle, { profiles: [] }).map(formatIssue)).toEqual([]);
  });

  it('gives the same pack as CSV, for _format=text/csv and for Accept: text/csv, and per centre', async () => {
    const csv = await t.get(`/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'interim-18-months', _format: 'text/csv' })}`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const lines = (csv.body as string).split('\r\n');
    expect(lines[0]).toBe('pack,program,measure,period_start,period_end,centre,group,stratifier,stratum,population,count,score,unit');
    const prefix = `interim-18-months,${FNMF}`;
    expect(lines).toContain(`${prefix},fnmf-prediabetes-exits,${period.start},${period.end},,exits,reason,moved-away,initial-population,1,,`);
    expect(lines).toContain(`${prefix},fnmf-prediabetes-forfaits,${period.start},${period.end},,claimed,,,measure-score,,2071.80,EUR`);
    expect(lines).toContain(`${prefix},fnmf-prediabetes-active-file,${period.start},${period.end},,active-file,,,measure-score,,0.0143,1`);
    const viaAccept = await fetch(`${t.url}/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'interim-18-months' })}`, { headers: { accept: 'text/csv' } });
    expect(viaAccept.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(await viaAccept.text()).toBe(csv.body);
    const viaPost = await fetch(`${t.url}/fhir/Measure/$report-pack?_format=text/csv`, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify(parameters({ name: 'program', valueString: FNMF }, { name: 'pack', valueCode: 'interim-18-months' }, { name: 'periodStart', valueDate: period.start }, { name: 'periodEnd', valueDate: period.end })),
    });
    expect(await viaPost.text()).toBe(csv.body);
    const centreB = await t.get(`/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'final-evaluation', centre: CENTRE_B_LABEL, _format: 'csv' })}`);
    expect((centreB.body as string).split('\r\n')).toContain(`final-evaluation,${FNMF},fnmf-prediabetes-forfaits,${period.start},${period.end},${CENTRE_B_LABEL},claimed,,,measure-score,,690.60,EUR`);
  });

  it('records an AuditEvent for a report read, as for other reads', async () => {
    await evaluate('fnmf-prediabetes-phases');
    const event = await eventually(async () => {
      const bundle = (await t.fhirGet('AuditEvent?_count=10000')) as fhir4.Bundle;
      return (bundle.entry ?? []).map((e) => e.resource as fhir4.AuditEvent).find((e) => JSON.stringify(e).includes('evaluate-measure') && JSON.stringify(e.entity ?? []).includes('Measure/fnmf-prediabetes-phases'));
    });
    expect(event.action).toBe('E');
    expect(event.outcome).toBe('0');
  });
});

describe('reports with authentication: centre isolation', () => {
  let s: AuthService;
  const CLAIM_B = 'REPORTS-B';
  const T = today();
  const q = (extra: Record<string, string> = {}): string => new URLSearchParams({ periodStart: shift(T, { months: -1 }), periodEnd: T, ...extra }).toString();
  let tokenA: string;
  let tokenB: string;
  let orgA: string;
  let orgB: string;

  /** A centre's directory written straight to the FHIR server (directory data is not what is tested here). */
  async function directory(centre: fhir4.Identifier, label: string): Promise<{ organization: string; gp: string; apa: string }> {
    const create = async (resource: fhir4.Resource): Promise<string> => {
      const response = await fetch(`${s.t.fhirUrl}/${resource.resourceType}`, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(resource) });
      expect(response.status).toBe(201);
      return ((await response.json()) as { id: string }).id;
    };
    const organization = await create({ resourceType: 'Organization', identifier: [centre], active: true } as fhir4.Organization);
    const roles: string[] = [];
    for (const role of ['gp', 'apa-teacher']) {
      const practitioner = await create({ resourceType: 'Practitioner', identifier: [{ system: 'urn:test:practitioner', value: `${label}-${role}-${randomUUID()}` }] } as fhir4.Practitioner);
      roles.push(await create({ resourceType: 'PractitionerRole', active: true, practitioner: { reference: `Practitioner/${practitioner}` }, organization: { reference: `Organization/${organization}` } } as fhir4.PractitionerRole));
    }
    return { organization, gp: `PractitionerRole/${roles[0]}`, apa: `PractitionerRole/${roles[1]}` };
  }

  beforeAll(async () => {
    initValidation();
    s = await startAuthService({ SITE_DIR: twoCentreSite(), AUTH_CENTRES: `${TEST_CENTRES_ENV},${CLAIM_B}=${CENTRE_B_LABEL}` });
    const scopes = ['system/*.cruds', 'system/admin'];
    tokenA = await s.fixture.mintToken({ scopes, centre: CENTRE_VAUGIRARD.claim, sub: 'reports-a' });
    tokenB = await s.fixture.mintToken({ scopes, centre: CLAIM_B, sub: 'reports-b' });
    const a = await directory(DEMO_CENTRE, 'iso-rep-a');
    const b = await directory(CENTRE_B, 'iso-rep-b');
    orgA = a.organization;
    orgB = b.organization;
    for (const [token, dir, label, count] of [[tokenA, a, 'iso-rep-a', 2], [tokenB, b, 'iso-rep-b', 1]] as const) {
      const as = s.as(token);
      for (let index = 0; index < count; index++) {
        const team = { organizationId: dir.organization, members: {}, member: (role: string) => ({ role, practitionerId: '', practitionerRoleId: '', reference: role === 'gp' ? dir.gp : dir.apa }), as: () => [] } as unknown as SeededTeam;
        const patientId = await seedFnmfPatient(as, team, `${label}-${index}`);
        await enrol(as, patientId, { program: FNMF, start: shift(T, { days: -7 }), team: [{ reference: dir.gp, role: 'gp' }, { reference: dir.apa, role: 'apa-teacher' }] });
      }
    }
  }, 120_000);

  afterAll(async () => {
    await s?.stop();
  });

  const admitted = (body: Report): number | undefined => count(group(body, 'admitted'));

  it('gives a centre client its own centre\'s figures when it names no centre, or its own', async () => {
    const own = await s.request('GET', `/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure?${q()}`, { token: tokenA });
    expect(own.status, own.text).toBe(200);
    expect(admitted(own.body)).toBe(2);
    expect(own.body.reporter).toEqual({ reference: `Organization/${orgA}`, identifier: DEMO_CENTRE });
    const named = await s.request('GET', `/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure?${q({ subject: `Organization/${orgA}` })}`, { token: tokenA });
    expect(admitted(named.body)).toBe(2);
    const b = await s.request('GET', `/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure?${q()}`, { token: tokenB });
    expect(admitted(b.body)).toBe(1);
    const pack = await s.request('GET', `/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'annual-activity', _format: 'text/csv' })}`, { token: tokenB });
    expect(pack.status).toBe(200);
    const rows = pack.text.split('\r\n').slice(1).filter(Boolean);
    expect(rows.every((row) => row.split(',')[5] === CENTRE_B.system.replace(/,/g, '') + '|' + CENTRE_B.value)).toBe(true);
  });

  it('answers 403, revealing nothing, for another centre or an unknown one', async () => {
    const forbidden = [
      `/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure?${q({ subject: `Organization/${orgB}` })}`,
      `/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure?${q({ centre: CENTRE_B_LABEL })}`,
      `/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure?${q({ centre: 'urn:nowhere|X' })}`,
      `/fhir/Measure/fnmf-prediabetes-enrolments/$evaluate-measure?${q({ subject: 'Organization/0badc0de-0000-4000-8000-000000000000' })}`,
      `/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'annual-activity', centre: CENTRE_B_LABEL })}`,
    ];
    const bodies = new Set<string>();
    for (const url of forbidden) {
      const answer = await s.request('GET', url, { token: tokenA });
      expect(answer.status, url).toBe(403);
      expect(answer.body.resourceType).toBe('OperationOutcome');
      bodies.add(answer.text);
    }
    expect(bodies.size).toBe(1);
  });

  it('lists only the client\'s own centre among the Measures\' venues', async () => {
    const answer = await s.request('GET', '/fhir/Measure/fnmf-prediabetes-exits', { token: tokenB });
    expect(answer.status).toBe(200);
    expect((answer.body as fhir4.Measure).useContext?.filter((c) => c.code.code === 'venue').map((c) => c.valueReference?.identifier?.value)).toEqual([CENTRE_B.value]);
  });

  it('needs a token with the report scopes', async () => {
    for (const url of ['/fhir/Measure', '/fhir/Measure/fnmf-prediabetes-exits', `/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?${q()}`, `/fhir/Measure/$report-pack?${q({ program: FNMF, pack: 'annual-activity' })}`]) {
      expect((await s.request('GET', url)).status, url).toBe(401);
    }
    const noReportScope = await s.fixture.mintToken({ scopes: ['system/Patient.rs'], centre: CENTRE_VAUGIRARD.claim });
    expect((await s.request('GET', `/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?${q()}`, { token: noReportScope })).status).toBe(403);
    const reportScopes = await s.fixture.mintToken({ scopes: ['system/MeasureReport.rs', 'system/Measure.rs'], centre: CENTRE_VAUGIRARD.claim });
    expect((await s.request('GET', `/fhir/Measure/fnmf-prediabetes-exits/$evaluate-measure?${q()}`, { token: reportScopes })).status).toBe(200);
    expect((await s.request('GET', '/fhir/Measure', { token: reportScopes })).status).toBe(200);
  });
});
