/**
 * "Adding a third program must need no TypeScript change": a program added only as data, in
 * a SITE_DIR overlay (test/fixtures/site-third-program: program.json, centres.json, a new
 * value set and units.json with a new dimension), runs end to end in the real service:
 * synchronous verdicts, queued evaluations on push, the CapabilityStatement, and the unit
 * check at ingestion.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedCentre, patient, quantityObservation } from '../fixtures/resources.js';
import { completedEvaluationCount, startTestService, type TestService } from './harness.js';

const SITE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/site-third-program');
const PROGRAM = 'gestational-diabetes-follow-up';
const PROGRAM_URL = `http://forfait-fhir.org/fhir/PlanDefinition/${PROGRAM}`;
const HBA1C = '4548-4';
const AS_OF = '2026-11-01';

let t: TestService;
let gpRoleId: string;

beforeAll(async () => {
  t = await startTestService({ SITE_DIR });
  ({ gpRoleId } = await seedCentre(t));
});

afterAll(async () => {
  await t?.stop();
});

function gestationalDiabetes(patientId: string, clinicalStatus = 'active'): fhir4.Condition {
  return {
    resourceType: 'Condition',
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: clinicalStatus }] },
    code: { coding: [{ system: 'http://snomed.info/sct', code: '11687002', display: 'Gestational diabetes mellitus' }] },
    subject: { reference: `Patient/${patientId}` },
    recordedDate: '2026-03-01',
  };
}

/** A female patient of the centre's GP with a gestational-diabetes Condition; returns her id. */
async function womanWithGestationalDiabetes(identifier: string, birthDate = '1992-04-12'): Promise<string> {
  const created = await t.post('/fhir/Patient', patient(identifier, { gender: 'female', birthDate, gp: `PractitionerRole/${gpRoleId}` }));
  expect(created.status).toBe(201);
  const patientId = created.body.id as string;
  const condition = await t.post('/fhir/Condition', gestationalDiabetes(patientId));
  expect(condition.status).toBe(201);
  return patientId;
}

interface CriterionPart {
  code: string | undefined;
  status: string | undefined;
  value: fhir4.Quantity | undefined;
}

async function verdict(patientId: string, asOf = AS_OF): Promise<{ outcome: string | undefined; criteria: CriterionPart[] }> {
  const answer = await t.get(`/fhir/Patient/${patientId}/$evaluate-eligibility?program=${PROGRAM}&asOf=${asOf}`);
  expect(answer.status).toBe(200);
  const parameters = answer.body.parameter as fhir4.ParametersParameter[];
  const criteria = parameters
    .filter((p) => p.name === 'criterion')
    .map((c) => {
      const part = (name: string) => c.part?.find((p) => p.name === name);
      return { code: part('code')?.valueCode, status: part('status')?.valueCode, value: part('value')?.valueQuantity };
    });
  return { outcome: parameters.find((p) => p.name === 'outcome')?.valueCode, criteria };
}

async function guidanceResponses(patientId: string): Promise<fhir4.GuidanceResponse[]> {
  const bundle = await t.fhirGet(`GuidanceResponse?subject=Patient/${patientId}`);
  return (bundle.entry ?? []).map((e: fhir4.BundleEntry) => e.resource as fhir4.GuidanceResponse);
}

async function completedEvaluations(): Promise<number> {
  return completedEvaluationCount(t.evaluationQueue);
}

describe('a third program added as data only (SITE_DIR)', () => {
  it('$evaluate-eligibility judges it with its own criteria, in program order', async () => {
    const patientId = await womanWithGestationalDiabetes('third-eligible');
    await t.post('/fhir/Observation', quantityObservation(patientId, HBA1C, 5.9, '%', '2026-09-15', 'third-eligible-a1c'));

    const eligible = await verdict(patientId);
    expect(eligible.criteria.map((c) => c.code)).toEqual(['gp-in-centre', 'adult-woman', 'gestational-diabetes', 'hba1c-below-diabetes']);
    expect(eligible.criteria.map((c) => c.status)).toEqual(['met', 'met', 'met', 'met']);
    expect(eligible.criteria[3]?.value).toMatchObject({ value: 5.9, code: '%' });
    expect(eligible.outcome).toBe('eligible');

    // Before the HbA1c was measured, the HbA1c criterion is unknown: undetermined.
    const before = await verdict(patientId, '2026-09-01');
    expect(before.criteria.find((c) => c.code === 'hba1c-below-diabetes')?.status).toBe('unknown');
    expect(before.outcome).toBe('undetermined');
  });

  it('the program data decides: 6.5 % is not below the exclusive bound 6.5 %', async () => {
    const patientId = await womanWithGestationalDiabetes('third-high');
    await t.post('/fhir/Observation', quantityObservation(patientId, HBA1C, 6.5, '%', '2026-10-01', 'third-high-a1c'));
    const answer = await verdict(patientId);
    expect(answer.criteria.find((c) => c.code === 'hba1c-below-diabetes')?.status).toBe('not-met');
    expect(answer.outcome).toBe('not-eligible');
  });

  it('a man is not eligible (the age rule applies to women only)', async () => {
    const created = await t.post('/fhir/Patient', patient('third-man', { gender: 'male', birthDate: '1980-01-01', gp: `PractitionerRole/${gpRoleId}` }));
    const answer = await verdict(created.body.id as string);
    expect(answer.criteria.find((c) => c.code === 'adult-woman')?.status).toBe('not-met');
    expect(answer.outcome).toBe('not-eligible');
  });

  it('a pushed Observation queues an evaluation for all three programs, each recorded as a GuidanceResponse', async () => {
    const patientId = await womanWithGestationalDiabetes('third-push');
    await t.drained();
    const before = await completedEvaluations();

    // Queued evaluations judge at today's date: measured today, the value is within the look-back window.
    const today = new Date().toISOString().slice(0, 10);
    const pushed = await t.post('/fhir/Observation', quantityObservation(patientId, HBA1C, 5.4, '%', today, 'third-push-a1c'));
    expect(pushed.status).toBe(201);
    await t.drained();
    expect(await completedEvaluations()).toBe(before + 3);

    const responses = await guidanceResponses(patientId);
    expect(responses).toHaveLength(3);
    expect(responses.map((r) => r.moduleUri).sort()).toEqual(
      ['http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes', PROGRAM_URL, 'http://forfait-fhir.org/fhir/PlanDefinition/rediab'].sort(),
    );
    const third = responses.find((r) => r.moduleUri === PROGRAM_URL);
    expect(third?.status).toBe('success');
  });

  it('GET /fhir/metadata lists the third program among the programs a push is evaluated for', async () => {
    const metadata = await t.get('/fhir/metadata');
    expect(metadata.status).toBe(200);
    const resources = metadata.body.rest[0].resource as fhir4.CapabilityStatementRestResource[];
    const observation = resources.find((r) => r.type === 'Observation');
    expect(observation?.documentation).toContain(PROGRAM);
    expect(observation?.documentation).toContain('fnmf-prediabetes');
    expect(observation?.documentation).toContain('rediab');
  });

  it('an unknown program id is still refused (the catalog, not a wildcard, decides)', async () => {
    const created = await t.post('/fhir/Patient', patient('third-unknown-program', { gp: `PractitionerRole/${gpRoleId}` }));
    const answer = await t.get(`/fhir/Patient/${created.body.id}/$evaluate-eligibility?program=fourth-program&asOf=${AS_OF}`);
    expect(answer.status).toBe(400);
    expect(answer.body.resourceType).toBe('OperationOutcome');
    // The refusal lists the programs this instance runs, the data-only one included.
    expect(JSON.stringify(answer.body)).toContain(PROGRAM);
  });
});

describe('the unit check at ingestion is driven by program data', () => {
  // HbA1c in IFCC units (mmol/mol): not a multiple of %, so the fixture's dimension does not list it.
  const ifcc = (patientId: string): fhir4.Observation => quantityObservation(patientId, HBA1C, 42, 'mmol/mol', '2026-10-01', `ifcc-${patientId}`);

  it('with the third program, an HbA1c in a unit its dimension does not list is refused with 422', async () => {
    const created = await t.post('/fhir/Patient', patient('third-ifcc', { gp: `PractitionerRole/${gpRoleId}` }));
    const patientId = created.body.id as string;
    const refused = await t.post('/fhir/Observation', ifcc(patientId));
    expect(refused.status).toBe(422);
    expect(refused.body.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(refused.body.issue)).toContain('mmol/mol');
    expect(JSON.stringify(refused.body.issue)).toContain('hemoglobin-a1c-fraction');
    const stored = await t.fhirGet(`Observation?subject=Patient/${patientId}`);
    expect(stored.entry ?? []).toHaveLength(0);
  });

  describe('without the site folder', () => {
    let plain: TestService;
    beforeAll(async () => {
      plain = await startTestService();
    });
    afterAll(async () => {
      await plain?.stop();
    });

    it('the same HbA1c is accepted: no program declares HbA1c, so no unit is imposed on it', async () => {
      const created = await plain.post('/fhir/Patient', patient('plain-ifcc'));
      const accepted = await plain.post('/fhir/Observation', ifcc(created.body.id as string));
      expect(accepted.status).toBe(201);
      const metadata = await plain.get('/fhir/metadata');
      expect(JSON.stringify(metadata.body)).not.toContain(PROGRAM);
    });
  });
});
