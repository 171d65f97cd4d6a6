/**
 * The coordinator dashboard (issue #5, part 3) in a real headless browser: Debian's chromium
 * driven by playwright-core, against the real service seeded with a slice of the two-year
 * scenario (test/fixtures/program-scenario.ts, every 5th patient: the expectations are computed
 * from the same plan). It selects a program and a centre, reads what each chart holds
 * (`Chart.getChart(canvas).data`) and each table, and compares them with the report API's
 * answers and with the scenario's expected values; shows an OperationOutcome for a bad
 * period; asks for a bearer token when authentication is on; and takes the README's
 * screenshot (test-results/dashboard.png, copied to docs/dashboard.png).
 *
 * Skipped, saying so, only when /usr/bin/chromium is missing (.ci/run installs it).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getAuthFixture, CENTRE_VAUGIRARD, TEST_CENTRES_ENV } from '../fixtures/auth.js';
import { expectedGroup, FNMF, planScenario, REDIAB, ROOT, scenarioSiteDir, seedScenario, slicePlan, type ExpectedGroup, type ReportPeriod, type SeededScenario } from '../fixtures/program-scenario.js';
import { startTestService, type TestService } from './harness.js';

const CHROMIUM = '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
if (!HAS_CHROMIUM) console.warn(`[dashboard] SKIPPED: ${CHROMIUM} is missing (Debian package "chromium"; .ci/run installs it).`);

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

interface ChartData {
  labels: string[];
  datasets: { label: string; data: (number | null)[] }[];
}

let t: TestService;
let seeded: SeededScenario;
let profileDir: string;
let context: BrowserContext;
let page: Page;
const consoleErrors: string[] = [];

async function launch(): Promise<BrowserContext> {
  profileDir = mkdtempSync(path.join(tmpdir(), 'forfait-chromium-'));
  return chromium.launchPersistentContext(profileDir, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1200, height: 900 } });
}

/** What the page's globals look like to this (DOM-less) TypeScript project. */
interface PageGlobals {
  document: { getElementById(id: string): unknown };
  Chart: { getChart(canvas: unknown): { data: { labels: unknown[]; datasets: { label: string; data: unknown[] }[] } } | undefined };
  sessionStorage: { getItem(key: string): string | null };
}

/** A chart's data as Chart.js holds it (`Chart.getChart(canvas).data`), read in the page. */
async function chartData(id: string): Promise<ChartData> {
  return page.evaluate((canvasId: string) => {
    const g = globalThis as unknown as PageGlobals;
    const chart = g.Chart.getChart(g.document.getElementById(canvasId));
    if (!chart) throw new Error(`no chart on #${canvasId}`);
    return { labels: chart.data.labels.map(String), datasets: chart.data.datasets.map((d) => ({ label: d.label, data: d.data.map((v) => (v === null ? null : Number(v))) })) };
  }, id);
}

/** The page says it is done (its body's data-state); a selector, not a function: the page's CSP forbids eval. */
const SETTLED = 'body[data-state="ready"], body[data-state="error"]';

async function tableRows(id: string): Promise<string[][]> {
  return page.$$eval(`#${id} tbody tr`, (rows) => rows.map((row) => [...row.querySelectorAll('th, td')].map((c) => (c.textContent ?? '').trim())));
}

/** Picks the program, then the centre by its name in the selector (listed from the Measures), or all centres. */
async function showReport(program: string, centreName: string | undefined, period: ReportPeriod): Promise<void> {
  await page.selectOption('#program', program);
  await page.selectOption('#centre', centreName === undefined ? { index: 0 } : { label: centreName });
  await page.fill('#centre-identifier', '');
  await page.fill('#period-start', period.start);
  await page.fill('#period-end', period.end);
  await page.click('#show');
  await page.waitForSelector(SETTLED, { state: 'attached' });
}

/** The API's own MeasureReport group for the same question (what the page must show). */
async function apiGroup(measureId: string, groupId: string, period: ReportPeriod, centre: string): Promise<fhir4.MeasureReportGroup> {
  const query = new URLSearchParams({ periodStart: period.start, periodEnd: period.end, centre });
  const response = await t.get(`/fhir/Measure/${measureId}/$evaluate-measure?${query.toString()}`);
  expect(response.status, JSON.stringify(response.body).slice(0, 500)).toBe(200);
  const group = (response.body as fhir4.MeasureReport).group?.find((g) => g.id === groupId);
  if (!group) throw new Error(`no group ${groupId} in ${measureId}`);
  return group;
}

const count = (holder: { population?: { code?: fhir4.CodeableConcept; count?: number }[] } | undefined, code: string): number | undefined =>
  holder?.population?.find((p) => p.code?.coding?.some((c) => c.code === code))?.count;
const stratumCounts = (group: fhir4.MeasureReportGroup, key: string): Record<string, number> =>
  Object.fromEntries((group.stratifier?.find((s) => s.code?.[0]?.text === key)?.stratum ?? []).map((s) => [s.value?.text ?? '?', count(s, 'initial-population') ?? 0]));
const expectedCounts = (group: ExpectedGroup, key: string): Record<string, number> => Object.fromEntries(Object.entries(group.strata[key] ?? {}).map(([k, v]) => [k, v.populations['initial-population'] ?? 0]));
const nonZero = (counts: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(counts).filter(([, v]) => v !== 0));

describe.skipIf(!HAS_CHROMIUM)('coordinator dashboard in headless chromium', () => {
  beforeAll(async () => {
    const today = DateTime.now().setZone('Europe/Paris').toISODate() as string;
    const plan = slicePlan(planScenario(20261122, today), 5);
    t = await startTestService({ SITE_DIR: scenarioSiteDir(plan) });
    seeded = await seedScenario(t, plan, { drained: () => t.drained(180_000) });
    context = await launch();
    page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
  }, 900_000);

  afterAll(async () => {
    await context?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    await t?.stop();
  });

  it('is served with a same-origin-only Content-Security-Policy, Chart.js from the adapter', async () => {
    const answer = await fetch(`${t.url}/dashboard/`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = answer.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    const vendor = await fetch(`${t.url}/dashboard/vendor/chart.umd.js`);
    expect(vendor.status).toBe(200);
    expect(vendor.headers.get('content-type')).toMatch(/javascript/);
    expect(await vendor.text()).toContain('Chart.js v4');
    expect((await fetch(`${t.url}/dashboard/nothing-here.js`)).status).toBe(404);
  });

  it('shows an FNMF centre: funnel, sessions, claims and outcomes as the report API and the scenario say', async () => {
    const { plan } = seeded;
    const period = { start: plan.periodStart, end: plan.periodEnd };
    const centreIndex = 0;
    const centre = `${plan.centres[FNMF][centreIndex]?.identifier.system}|${plan.centres[FNMF][centreIndex]?.identifier.value}`;
    await page.goto(`${t.url}/dashboard/`);
    await page.waitForSelector(SETTLED, { state: 'attached' });
    const centreOptions = await page.$$eval('#centre option', (options) => options.map((option) => option.textContent));
    expect(centreOptions).toEqual(['All centres', ...plan.centres[FNMF].map((c) => c.name)]);
    await showReport(FNMF, plan.centres[FNMF][centreIndex]?.name, period);
    expect(await page.textContent('#errors')).toBe('');
    expect(await page.isVisible('#errors')).toBe(false);
    expect(await page.textContent('#scope')).toContain(`centre ${plan.centres[FNMF][centreIndex]?.identifier.value}`);

    // The funnel: screened, eligible, enrolled, in each phase on the last day, exited.
    const e = (measure: string, group: string) => expectedGroup(plan, measure, group, period, centreIndex);
    const screening = e('fnmf-prediabetes-screening', 'screening');
    const phases = e('fnmf-prediabetes-phases', 'patients-per-phase');
    const expectedFunnel = [
      screening.populations['initial-population'],
      expectedCounts(screening, 'outcome')['eligible'],
      e('fnmf-prediabetes-enrolments', 'admitted').populations['initial-population'],
      expectedCounts(phases, 'phase')['intensive'],
      expectedCounts(phases, 'phase')['consolidation'],
      e('fnmf-prediabetes-exits', 'exits').populations['initial-population'],
    ];
    const funnel = await chartData('chart-funnel');
    expect(funnel.labels).toEqual(['Screened', 'Eligible', 'Enrolled', 'In intensive', 'In consolidation', 'Exited']);
    expect(funnel.datasets[0]?.data).toEqual(expectedFunnel);
    const apiScreening = await apiGroup('fnmf-prediabetes-screening', 'screening', period, centre);
    expect(funnel.datasets[0]?.data[0]).toBe(count(apiScreening, 'initial-population'));
    expect(await tableRows('table-funnel')).toEqual(funnel.labels.map((label, i) => [label, String(expectedFunnel[i])]));
    expect(expectedFunnel.every((n) => (n ?? 0) >= 0) && (expectedFunnel[2] ?? 0) > 0).toBe(true);

    // Sessions per month and by kind.
    const sessions = e('fnmf-prediabetes-sessions', 'sessions');
    const apiSessions = await apiGroup('fnmf-prediabetes-sessions', 'sessions', period, centre);
    const byMonth = await chartData('chart-sessions-month');
    expect(byMonth.labels).toEqual(Object.keys(expectedCounts(sessions, 'month')));
    const monthTotals = byMonth.labels.map((_, i) => byMonth.datasets.reduce((sum, d) => sum + (d.data[i] ?? 0), 0));
    expect(Object.fromEntries(byMonth.labels.map((m, i) => [m, monthTotals[i]]))).toEqual(expectedCounts(sessions, 'month'));
    expect(Object.fromEntries(byMonth.labels.map((m, i) => [m, monthTotals[i]]))).toEqual(stratumCounts(apiSessions, 'month'));
    // One stacked dataset per kind: the month × kind counts.
    const monthKind = expectedCounts(sessions, 'month-kind');
    for (const dataset of byMonth.datasets) {
      expect(dataset.data, dataset.label).toEqual(byMonth.labels.map((month) => monthKind[`${month}|${dataset.label}`] ?? 0));
    }
    const byKind = await chartData('chart-sessions-kind');
    const shownKinds = Object.fromEntries(byKind.labels.map((k, i) => [k, byKind.datasets[0]?.data[i] ?? 0]));
    expect(nonZero(shownKinds)).toEqual(nonZero(expectedCounts(sessions, 'kind')));
    expect(shownKinds).toEqual(stratumCounts(apiSessions, 'kind'));
    expect((await tableRows('table-sessions-kind')).map((row) => [row[0], Number(row[1])])).toEqual(Object.entries(shownKinds));

    // Claims against the budget: the API's figures, which are the scenario's.
    const claimed = e('fnmf-prediabetes-forfaits', 'claimed');
    const claims = await chartData('chart-claims');
    const apiClaimed = await apiGroup('fnmf-prediabetes-forfaits', 'claimed', period, centre);
    const monthly = apiClaimed.stratifier?.some((s) => s.code?.[0]?.text === 'month');
    if (monthly) {
      // Claimed per month and cumulated, ending at the period's total, against the budget.
      expect(claims.labels).toEqual(Object.keys(claimed.strata['month'] ?? {}));
      expect(claims.datasets.find((d) => d.label.startsWith('Claimed in the month'))?.data.map((v) => (v ?? 0).toFixed(2))).toEqual(Object.values(claimed.strata['month'] ?? {}).map((m) => m.score));
      const cumulative = claims.datasets.find((d) => d.label.startsWith('Claimed, cumulative'));
      expect(cumulative?.data.at(-1)?.toFixed(2)).toBe(claimed.score);
      expect(claims.datasets.find((d) => d.label.startsWith('Budget'))?.data[0]).toBe(96684);
      const lastRow = (await tableRows('table-claims')).at(-1);
      expect(lastRow?.[0]).toBe(claims.labels.at(-1));
    } else {
      expect(claims.labels).toEqual(['FNMF-SEQUENCE', 'Claimed to date', 'Budget']);
      expect(claims.datasets[0]?.data.map((v) => (v ?? 0).toFixed(2))).toEqual([
        claimed.strata['forfait']?.['FNMF-SEQUENCE']?.score,
        e('fnmf-prediabetes-forfaits', 'claimed-to-date').score,
        '96684.00',
      ]);
    }

    // Outcome changes: mean change per phase for weight, BMI, glucose.
    const outcomes = await chartData('chart-outcomes');
    expect(outcomes.labels).toEqual(['Weight', 'BMI', 'Fasting glucose']);
    for (const phase of ['intensive', 'consolidation']) {
      const shown = outcomes.datasets.find((d) => d.label === `End of ${phase}`);
      const expected = ['weight', 'bmi', 'fasting-glucose'].map((g) => {
        const score = e('fnmf-prediabetes-outcomes', g).strata['phase']?.[phase]?.score;
        return score === undefined ? null : Number(score);
      });
      expect(shown?.data, phase).toEqual(expected);
    }
    expect(outcomes.datasets.find((d) => d.label === 'End of intensive')?.data.some((v) => v !== null)).toBe(true);

    mkdirSync(path.join(ROOT, 'test-results'), { recursive: true });
    mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
    const screenshot = path.join(ROOT, 'test-results', 'dashboard.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    copyFileSync(screenshot, path.join(ROOT, 'docs', 'dashboard.png'));
    expect(consoleErrors).toEqual([]);
  });

  it('shows REDIAB for all centres, with no outcome section (the program has no outcome Measure)', async () => {
    const { plan } = seeded;
    const period = { start: plan.periodStart, end: plan.periodEnd };
    await showReport(REDIAB, undefined, period);
    expect(await page.isVisible('#errors')).toBe(false);
    expect(await page.textContent('#scope')).toContain('all centres');
    const funnel = await chartData('chart-funnel');
    expect(funnel.labels).toEqual(['Screened', 'Eligible', 'Enrolled', 'In initial-education', 'In follow-up', 'In podiatric-follow-up', 'In complementary-education', 'Exited']);
    const phases = expectedGroup(plan, 'rediab-phases', 'patients-per-phase', period);
    expect(funnel.datasets[0]?.data.slice(3, 7)).toEqual(['initial-education', 'follow-up', 'podiatric-follow-up', 'complementary-education'].map((p) => expectedCounts(phases, 'phase')[p]));
    expect(funnel.datasets[0]?.data[2]).toBe(expectedGroup(plan, 'rediab-admissions', 'admitted', period).populations['initial-population']);
    const claims = await chartData('chart-claims');
    const expenses = expectedGroup(plan, 'rediab-expenses', 'forfaits', period);
    expect(claims.labels).toEqual(Object.keys(expenses.strata['month'] ?? {}));
    expect(claims.datasets.find((d) => d.label.startsWith('Claimed in the month'))?.data.map((v) => (v ?? 0).toFixed(2))).toEqual(Object.values(expenses.strata['month'] ?? {}).map((m) => m.score));
    expect(claims.datasets.find((d) => d.label.startsWith('Claimed, cumulative'))?.data.at(-1)?.toFixed(2)).toBe(expenses.score);
    // REDIAB has no budget Measure: no budget line.
    expect(claims.datasets.some((d) => d.label.startsWith('Budget'))).toBe(false);
    expect(await page.isVisible('#chart-outcomes')).toBe(false);
  });

  it('shows the OperationOutcome of a bad period readably', async () => {
    const { plan } = seeded;
    await showReport(FNMF, undefined, { start: plan.periodEnd, end: plan.periodStart });
    expect(await page.isVisible('#errors')).toBe(true);
    const text = (await page.textContent('#errors')) ?? '';
    expect(text).toContain('HTTP 400');
    expect(text).toMatch(/error \(\w[\w-]*\): .+/);
    expect(text).toContain('periodStart');
    expect(await page.getAttribute('#errors', 'role')).toBe('alert');
  });

  it('labels every selector and captions every table', async () => {
    const labelled = await page.$$eval('label[for]', (labels) => labels.map((label) => label.getAttribute('for')));
    const fields = await page.$$eval('select, input', (elements) => elements.map((element) => element.id));
    const unlabelled = fields.filter((id) => !labelled.includes(id));
    expect(unlabelled).toEqual([]);
    const uncaptioned = await page.$$eval('table', (tables) => tables.filter((table) => !(table.querySelector('caption')?.textContent ?? '').trim()).map((table) => table.id));
    expect(uncaptioned).toEqual([]);
  });
});

describe.skipIf(!HAS_CHROMIUM)('coordinator dashboard with authentication on', () => {
  let secured: TestService;
  let securedContext: BrowserContext;

  afterAll(async () => {
    await securedContext?.close();
    await secured?.stop();
  });

  it('asks for a bearer token, keeps it for the tab, and sends it with every report request', async () => {
    const auth = await getAuthFixture();
    const dir = mkdtempSync(path.join(tmpdir(), 'forfait-dashboard-auth-'));
    secured = await startTestService({ ...auth.env({ jwksFile: auth.writeJwksFile(dir) }), AUTH_CENTRES: TEST_CENTRES_ENV });
    const securedProfile = mkdtempSync(path.join(tmpdir(), 'forfait-chromium-'));
    securedContext = await chromium.launchPersistentContext(securedProfile, { executablePath: CHROMIUM, args: ARGS, headless: true });
    const tab = await securedContext.newPage();
    const authorizations: (string | undefined)[] = [];
    tab.on('request', (request) => {
      if (request.url().includes('/fhir/')) authorizations.push(request.headers()['authorization']);
    });
    // The page itself loads without a token; its first report request is refused: the form appears.
    const answer = await tab.goto(`${secured.url}/dashboard/`);
    expect(answer?.status()).toBe(200);
    await tab.waitForSelector('#token-form:not([hidden])');
    expect(await tab.isVisible('#errors')).toBe(true);
    expect(await tab.textContent('#errors')).toContain('HTTP 401');

    const token = await auth.mintToken({ scopes: ['system/Measure.rs', 'system/MeasureReport.rs'], centre: CENTRE_VAUGIRARD.claim });
    await tab.fill('#token', token);
    await tab.click('#token-form button[type="submit"]');
    await tab.waitForSelector(SETTLED, { state: 'attached' });
    expect(await tab.isVisible('#errors'), (await tab.textContent('#errors')) ?? '').toBe(false);
    // A client bound to a centre sees its own centre's reports.
    expect(await tab.textContent('#scope')).toContain('centre CDS-MGEN-VAUGIRARD');
    expect(await tab.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('forfait-fhir.dashboard.token'))).toBe(token);
    expect(authorizations.at(-1)).toBe(`Bearer ${token}`);
    rmSync(dir, { recursive: true, force: true });
    rmSync(securedProfile, { recursive: true, force: true });
  });
});
