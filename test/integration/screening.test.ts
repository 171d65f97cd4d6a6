/**
 * Push mode end to end: EHR pushes over HTTP → FHIR server of record (embedded, over HTTP)
 * → BullMQ evaluation on real Redis → GuidanceResponse and Task on the FHIR server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertValid } from '../../src/fhir/validation.js';
import { seedCentre, patient, quantityObservation } from '../fixtures/resources.js';
import { completedEvaluationCount, eventually, startTestService, type TestService } from './harness.js';

const GR_PROFILE = 'http://forfait-fhir.org/fhir/StructureDefinition/eligibility-guidance-response';
const TASK_PROFILE = 'http://forfait-fhir.org/fhir/StructureDefinition/enrolment-proposal-task';

let t: TestService;
let gpRoleId: string;

beforeAll(async () => {
  t = await startTestService();
  ({ gpRoleId } = await seedCentre(t));
});

afterAll(async () => {
  await t?.stop();
});

async function guidanceResponses(patientId: string): Promise<fhir4.GuidanceResponse[]> {
  const bundle = await t.fhirGet(`GuidanceResponse?subject=Patient/${patientId}`);
  return (bundle.entry ?? []).map((e: fhir4.BundleEntry) => e.resource);
}

async function completedEvaluations(): Promise<number> {
  return completedEvaluationCount(t.evaluationQueue);
}

describe('push mode', () => {
  it('a pushed Observation leads to exactly one evaluation per program and one GuidanceResponse each; a re-sent one to none more', async () => {
    const created = await t.post('/fhir/Patient', patient('push-1', { birthDate: '1970-01-10', gp: `PractitionerRole/${gpRoleId}` }));
    expect(created.status).toBe(201);
    expect(created.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    const patientId = created.body.id as string;
    await t.drained();
    const afterPatient = await completedEvaluations();

    const observation = quantityObservation(patientId, '1558-6', 1.15, 'g/L', '2026-10-01', 'lab-push-1');
    const first = await t.post('/fhir/Observation', observation);
    expect(first.status).toBe(201);
    await t.drained();
    // One evaluation per program run by the adapter (fnmf-prediabetes, rediab).
    expect(await completedEvaluations()).toBe(afterPatient + 2);

    const responses = await guidanceResponses(patientId);
    expect(responses).toHaveLength(2);
    for (const response of responses) assertValid(response, [GR_PROFILE]);
    const versionsBefore = responses.map((r) => r.meta?.versionId).sort();

    const again = await t.post('/fhir/Observation', observation);
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    await t.drained();
    expect(await completedEvaluations()).toBe(afterPatient + 2);
    const responsesAfter = await guidanceResponses(patientId);
    expect(responsesAfter).toHaveLength(2);
    expect(responsesAfter.map((r) => r.meta?.versionId).sort()).toEqual(versionsBefore);
  });

  it('an Observation without identifier re-sent as is is stored once (content hash)', async () => {
    const created = await t.post('/fhir/Patient', patient('push-2', { gp: `PractitionerRole/${gpRoleId}` }));
    const observation = quantityObservation(created.body.id, '39156-5', 27.2, 'kg/m2', '2026-09-01');
    const first = await t.post('/fhir/Observation', observation);
    const second = await t.post('/fhir/Observation', observation);
    expect(first.status).toBe(201);
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
  });

  it('an eligible patient gets one Task for the GP, never two', async () => {
    const created = await t.post('/fhir/Patient', patient('push-3', { birthDate: '1972-05-20', gp: `PractitionerRole/${gpRoleId}` }));
    const patientId = created.body.id as string;
    const today = new Date().toISOString().slice(0, 10);
    await t.post('/fhir/Observation', quantityObservation(patientId, '1558-6', 6.1, 'mmol/L', today, 'lab-push-3-glu'));
    await t.post('/fhir/Observation', quantityObservation(patientId, '39156-5', 25, 'kg/m2', today, 'lab-push-3-bmi'));
    await t.drained();

    const fnmf = (await guidanceResponses(patientId)).find((r) => r.moduleUri?.endsWith('fnmf-prediabetes'));
    expect(fnmf?.status).toBe('success');
    const tasks = await eventually(async () => {
      const bundle = await t.fhirGet(`Task?subject=Patient/${patientId}`);
      return bundle.entry?.length ? (bundle.entry as fhir4.BundleEntry[]).map((e) => e.resource as fhir4.Task) : undefined;
    });
    expect(tasks).toHaveLength(1);
    assertValid(tasks[0] as fhir4.Task, [TASK_PROFILE]);
    expect(tasks[0]?.owner?.reference).toBe(`PractitionerRole/${gpRoleId}`);

    // A new observation re-evaluates; the Task stays single.
    await t.post('/fhir/Observation', quantityObservation(patientId, '29463-7', 70, 'kg', today, 'lab-push-3-w'));
    await t.drained();
    const again = await t.fhirGet(`Task?subject=Patient/${patientId}`);
    expect(again.entry).toHaveLength(1);
  });

  it('an undetermined verdict is recorded as data-required with what is missing', async () => {
    const created = await t.post('/fhir/Patient', patient('push-4', { birthDate: '1960-01-01', gp: `PractitionerRole/${gpRoleId}` }));
    await t.drained();
    const fnmf = (await guidanceResponses(created.body.id)).find((r) => r.moduleUri?.endsWith('fnmf-prediabetes'));
    expect(fnmf?.status).toBe('data-required');
    const codes = (fnmf?.dataRequirement ?? []).flatMap((d) => d.codeFilter?.flatMap((f) => f.code?.map((c) => c.code) ?? []) ?? []);
    expect(codes).toContain('1558-6');
    expect(codes).toContain('39156-5');
  });
});

describe('$evaluate-eligibility', () => {
  it('answers synchronously with the verdict, values and versioned evidence', async () => {
    const created = await t.post('/fhir/Patient', patient('sync-1', { birthDate: '1975-06-30', gp: `PractitionerRole/${gpRoleId}` }));
    const patientId = created.body.id as string;
    const glucose = await t.post('/fhir/Observation', quantityObservation(patientId, '1558-6', 121, 'mg/dL', '2026-06-01', 'sync-1-glu'));
    await t.post('/fhir/Observation', quantityObservation(patientId, '39156-5', 26.1, 'kg/m2', '2026-06-01', 'sync-1-bmi'));

    const answer = await t.post(`/fhir/Patient/${patientId}/$evaluate-eligibility`, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: 'fnmf-prediabetes' },
        { name: 'asOf', valueDate: '2026-11-01' },
      ],
    });
    expect(answer.status).toBe(200);
    assertValid(answer.body, ['http://forfait-fhir.org/fhir/StructureDefinition/eligibility-verdict-parameters']);
    const byName = (name: string) => (answer.body.parameter as fhir4.ParametersParameter[]).filter((p) => p.name === name);
    expect(byName('outcome')[0]?.valueCode).toBe('eligible');
    const criteria = byName('criterion').map((c) => Object.fromEntries((c.part ?? []).map((p) => [p.name, p])));
    expect(criteria.map((c) => c['code']?.valueCode)).toEqual(['gp-in-centre', 'age', 'fasting-glucose', 'bmi', 'no-diabetes']);
    const glucoseCriterion = byName('criterion').find((c) => c.part?.some((p) => p.name === 'code' && p.valueCode === 'fasting-glucose'));
    expect(glucoseCriterion?.part?.find((p) => p.name === 'value')?.valueQuantity).toMatchObject({ value: 1.21, code: 'g/L' });
    const evidence = glucoseCriterion?.part?.filter((p) => p.name === 'evidence').map((p) => p.valueReference?.reference);
    expect(evidence).toEqual([`Observation/${glucose.body.id}/_history/${glucose.body.meta.versionId}`]);
  });

  it('GET with query parameters works too; asOf before the measurements makes glucose unknown', async () => {
    const created = await t.post('/fhir/Patient', patient('sync-2', { gp: `PractitionerRole/${gpRoleId}` }));
    await t.post('/fhir/Observation', quantityObservation(created.body.id, '1558-6', 1.12, 'g/L', '2026-06-01', 'sync-2-glu'));
    const answer = await t.get(`/fhir/Patient/${created.body.id}/$evaluate-eligibility?program=fnmf-prediabetes&asOf=2026-01-01`);
    expect(answer.status).toBe(200);
    expect(answer.body.parameter.find((p: fhir4.ParametersParameter) => p.name === 'outcome').valueCode).toBe('undetermined');
  });

  it('converts the HL7 R4 glucose example (mmol/L) when it is fasting', async () => {
    const created = await t.post('/fhir/Patient', patient('sync-hl7', { gp: `PractitionerRole/${gpRoleId}` }));
    const { readFileSync } = await import('node:fs');
    const example = JSON.parse(readFileSync(new URL('../../../shared/fhir-samples/hl7-r4-examples/observation-example-f001-glucose.json', import.meta.url), 'utf8')) as fhir4.Observation;
    // As published: LOINC 15074-8 (glucose without fasting status), 6.3 mmol/L, subject Patient/f201.
    delete example.id;
    example.subject = { reference: `Patient/${created.body.id}` };
    example.effectivePeriod = { start: '2026-10-02T09:30:10+01:00' };
    // The adapter accepts it as is; with a fasting specimen it counts.
    const specimen = await t.post('/fhir/Specimen', { resourceType: 'Specimen', subject: { reference: `Patient/${created.body.id}` }, collection: { fastingStatusCodeableConcept: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0916', code: 'F' }] } } });
    expect(specimen.status).toBe(201);
    example.specimen = { reference: `Specimen/${specimen.body.id}` };
    const stored = await t.post('/fhir/Observation', example);
    expect(stored.status).toBe(201);
    const answer = await t.get(`/fhir/Patient/${created.body.id}/$evaluate-eligibility?program=fnmf-prediabetes&asOf=2026-11-01`);
    const glucose = answer.body.parameter.find((p: fhir4.ParametersParameter) => p.name === 'criterion' && p.part?.some((q) => q.valueCode === 'fasting-glucose'));
    // 6.3 mmol/L × 0.18016 = 1.135008 g/L → 1.14 at 0.01 g/L: in range.
    expect(glucose.part.find((p: fhir4.ParametersParameter) => p.name === 'value').valueQuantity).toMatchObject({ value: 1.14, code: 'g/L' });
    expect(glucose.part.find((p: fhir4.ParametersParameter) => p.name === 'status').valueCode).toBe('met');
  });
});
