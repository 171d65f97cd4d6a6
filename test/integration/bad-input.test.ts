/**
 * Bad input answers with an OperationOutcome of the right status and leaves nothing queued
 * (and, for a transaction, nothing written).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patient, quantityObservation } from '../fixtures/resources.js';
import { completedEvaluationCount, startTestService, type TestService } from './harness.js';

let t: TestService;
let patientId: string;
let baseline: number;

async function jobCount(): Promise<number> {
  const counts = await t.evaluationQueue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
  return Object.values(counts).reduce((sum, n) => sum + n, 0);
}

async function observationCount(): Promise<number> {
  const bundle = await t.fhirGet(`Observation?subject=Patient/${patientId}`);
  return bundle.entry?.length ?? 0;
}

beforeAll(async () => {
  t = await startTestService();
  patientId = (await t.post('/fhir/Patient', patient('bad-input-1'))).body.id;
  await t.drained();
  baseline = await jobCount();
});

afterAll(async () => {
  await t?.stop();
});

function expectOutcome(response: { status: number; body: any; headers: Headers }, status: number, pattern?: RegExp): void {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/application\/fhir\+json/);
  expect(response.body.resourceType).toBe('OperationOutcome');
  expect(response.body.issue.length).toBeGreaterThan(0);
  if (pattern) expect(JSON.stringify(response.body.issue)).toMatch(pattern);
}

describe('bad input', () => {
  it.each([
    ['malformed JSON', '/fhir/Observation', '{"resourceType": "Observation", ', 400, /not valid JSON/],
    ['wrong resourceType', '/fhir/Observation', { resourceType: 'Condition', subject: { reference: 'Patient/x' } }, 400, /does not match/],
    ['not an object', '/fhir/Observation', '[1,2]', 400, /JSON object/],
    ['missing resourceType', '/fhir/Observation', { status: 'final' }, 400, /resourceType/],
    ['unknown type', '/fhir/Medication', { resourceType: 'Medication' }, 404, /not served/],
    ['invalid R4 (bad status code type)', '/fhir/Observation', { resourceType: 'Observation', status: 42, code: { text: 'x' }, subject: { reference: 'Patient/p' } }, 400, undefined],
  ])('%s: POST %s', async (_label, path, body, status, pattern) => {
    const response = await t.post(path, body);
    expectOutcome(response, status, pattern);
    expect(await jobCount()).toBe(baseline);
  });

  it('missing subject → 422', async () => {
    const observation = quantityObservation(patientId, '1558-6', 1.1, 'g/L', '2026-01-01');
    delete observation.subject;
    expectOutcome(await t.post('/fhir/Observation', observation), 422, /patient it is about/);
    expect(await jobCount()).toBe(baseline);
  });

  it('a reference to another server → 422', async () => {
    const observation = quantityObservation(patientId, '1558-6', 1.1, 'g/L', '2026-01-01');
    observation.subject = { reference: 'https://elsewhere.example/fhir/Patient/1' };
    expectOutcome(await t.post('/fhir/Observation', observation), 422, /other servers/);
  });

  it('unknown unit on a glucose → 422 naming the unit, nothing stored, nothing queued', async () => {
    const before = await observationCount();
    const response = await t.post('/fhir/Observation', quantityObservation(patientId, '1558-6', 5.5, 'mmol/dL', '2026-01-01'));
    expectOutcome(response, 422, /mmol\/dL/);
    expect(response.body.issue[0].expression[0]).toMatch(/^Observation\.valueQuantity/);
    expect(await observationCount()).toBe(before);
    expect(await jobCount()).toBe(baseline);
  });

  it('wrong content type → 415', async () => {
    const response = await fetch(`${t.url}/fhir/Observation`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expect(response.status).toBe(415);
    expect(((await response.json()) as fhir4.Resource).resourceType).toBe('OperationOutcome');
  });

  it('body too large → 413', async () => {
    const small = await startTestService({ MAX_BODY_BYTES: '2048' });
    try {
      const big = patient('big');
      (big as { text?: unknown }).text = { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${'x'.repeat(5000)}</div>` };
      expectOutcome(await small.post('/fhir/Patient', big), 413);
    } finally {
      await small.stop();
    }
  });

  it('unknown program → 400 listing the programs', async () => {
    const response = await t.post(`/fhir/Patient/${patientId}/$evaluate-eligibility`, { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: 'nope' }] });
    expectOutcome(response, 400, /fnmf-prediabetes/);
  });

  it('missing program, bad asOf → 400', async () => {
    expectOutcome(await t.post(`/fhir/Patient/${patientId}/$evaluate-eligibility`, { resourceType: 'Parameters', parameter: [] }), 400, /required/);
    expectOutcome(
      await t.post(`/fhir/Patient/${patientId}/$evaluate-eligibility`, { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: 'rediab' }, { name: 'asOf', valueDate: '2026-02-30' }] }),
      400,
      /asOf/,
    );
  });

  it('unknown patient → 404', async () => {
    expectOutcome(await t.get('/fhir/Patient/does-not-exist/$evaluate-eligibility?program=rediab'), 404);
  });

  it('a transaction with one bad entry among good ones: none is written, nothing queued', async () => {
    const before = await observationCount();
    const response = await t.post('/fhir', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: quantityObservation(patientId, '39156-5', 26, 'kg/m2', '2026-03-01', 'tx-good-1'), request: { method: 'POST', url: 'Observation' } },
        { resource: quantityObservation(patientId, '1558-6', 5.5, 'furlongs', '2026-03-01', 'tx-bad'), request: { method: 'POST', url: 'Observation' } },
      ],
    });
    expectOutcome(response, 422, /Bundle\.entry\[1\]/);
    expect(await observationCount()).toBe(before);
    expect(await jobCount()).toBe(baseline);
  });

  it('a batch with one bad entry among good ones: the good ones are kept and evaluated', async () => {
    const before = await observationCount();
    await t.drained();
    const evaluationsBefore = await completedEvaluationCount(t.evaluationQueue);
    const response = await t.post('/fhir', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: quantityObservation(patientId, '39156-5', 26, 'kg/m2', '2026-03-01', 'batch-good-1'), request: { method: 'POST', url: 'Observation' } },
        { resource: quantityObservation(patientId, '1558-6', 5.5, 'furlongs', '2026-03-01', 'batch-bad'), request: { method: 'POST', url: 'Observation' } },
        { resource: quantityObservation(patientId, '29463-7', 80, 'kg', '2026-03-01', 'batch-good-2'), request: { method: 'POST', url: 'Observation' } },
      ],
    });
    expect(response.status).toBe(200);
    expect(response.body.type).toBe('batch-response');
    const statuses = response.body.entry.map((e: fhir4.BundleEntry) => e.response?.status?.slice(0, 3));
    expect(statuses).toEqual(['201', '422', '201']);
    expect(response.body.entry[1].response.outcome.resourceType).toBe('OperationOutcome');
    expect(await observationCount()).toBe(before + 2);
    await t.drained();
    // The two good entries are about one patient: one job evaluates it for every program.
    expect(await jobCount()).toBe(baseline + 1);
    expect(await completedEvaluationCount(t.evaluationQueue)).toBe(evaluationsBefore + 2);
  });

  it('a Bundle of another type → 400', async () => {
    expectOutcome(await t.post('/fhir', { resourceType: 'Bundle', type: 'collection', entry: [] }), 400, /batch or transaction/);
  });
});
