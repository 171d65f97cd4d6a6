/**
 * Every Synthea bundle of ../shared/fhir-samples/synthea/ (organisation and practitioner
 * bundles first) is ingested as it is and screened at a fixed asOf: no 5xx, and verdicts
 * that follow from the data. No Synthea patient names a GP (Patient.generalPractitioner),
 * so FNMF's gp-in-centre is not met; their US addresses fail REDIAB's residence.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestService, type TestService } from './harness.js';

const ROOT = new URL('../../../shared/fhir-samples/synthea/', import.meta.url);
const AS_OF = '2025-06-30';

interface Ingested {
  file: string;
  patientId?: string;
  birthDate?: string;
  hasFastingGlucoseCode: boolean;
  hasActiveDiabetes: boolean;
}

let t: TestService;
const ingested: Ingested[] = [];

function bundleFiles(): string[] {
  return readdirSync(ROOT).flatMap((dir) =>
    readdirSync(new URL(`${dir}/`, ROOT))
      .map((file) => `${dir}/${file}`)
      // Organisations and practitioners first: patient bundles reference them conditionally.
      .sort((a, b) => Number(!/Information/.test(a)) - Number(!/Information/.test(b)) || a.localeCompare(b)),
  );
}

beforeAll(async () => {
  t = await startTestService();
}, 120_000);

afterAll(async () => {
  await t?.stop();
});

describe('Synthea bundles', () => {
  it('are all ingested without a 5xx, every entry stored', async () => {
    for (const file of bundleFiles()) {
      const text = readFileSync(new URL(file, ROOT), 'utf8');
      const bundle = JSON.parse(text) as fhir4.Bundle;
      const response = await t.post('/fhir', text);
      expect(response.status, file).toBe(200);
      const statuses = (response.body.entry as fhir4.BundleEntry[]).map((e) => e.response?.status?.slice(0, 1));
      expect(statuses.every((s) => s === '2'), `${file}: ${JSON.stringify(response.body.entry.find((e: fhir4.BundleEntry) => !e.response?.status?.startsWith('2')))}`).toBe(true);
      const patientIndex = (bundle.entry ?? []).findIndex((e) => e.resource?.resourceType === 'Patient');
      if (patientIndex < 0) continue;
      const patient = bundle.entry?.[patientIndex]?.resource as fhir4.Patient;
      const location = response.body.entry[patientIndex].response.location as string;
      const resources = (bundle.entry ?? []).map((e) => e.resource as fhir4.Resource);
      ingested.push({
        file,
        patientId: /Patient\/([^/]+)/.exec(location)?.[1],
        ...(patient.birthDate ? { birthDate: patient.birthDate } : {}),
        hasFastingGlucoseCode: resources.some((r) => r.resourceType === 'Observation' && (r as fhir4.Observation).code.coding?.some((c) => ['1558-6', '14771-0', '1556-0'].includes(c.code ?? ''))),
        hasActiveDiabetes: resources.some(
          (r) =>
            r.resourceType === 'Condition' &&
            (r as fhir4.Condition).code?.coding?.some((c) => c.code === '44054006') &&
            (r as fhir4.Condition).clinicalStatus?.coding?.some((c) => c.code === 'active') &&
            !(r as fhir4.Condition).abatementDateTime,
        ),
      });
    }
    expect(ingested.length).toBe(33);
    await t.drained(120_000);
  }, 600_000);

  it('a re-sent patient bundle stores nothing new', async () => {
    const file = bundleFiles().find((f) => /Alberto_Atencio/.test(f)) as string;
    const { patientId } = ingested.find((i) => i.file === file) as Ingested;
    const count = async () => (await t.fhirGet(`Observation?subject=Patient/${patientId}&_count=1000`)).entry?.length ?? 0;
    const before = await count();
    const response = await t.post('/fhir', readFileSync(new URL(file, ROOT), 'utf8'));
    expect(response.status).toBe(200);
    expect(await count()).toBe(before);
  });

  it('each patient gets a correct, explained FNMF verdict at a fixed asOf', async () => {
    for (const patient of ingested) {
      const answer = await t.get(`/fhir/Patient/${patient.patientId}/$evaluate-eligibility?program=fnmf-prediabetes&asOf=${AS_OF}`);
      expect(answer.status, patient.file).toBe(200);
      const parameters = answer.body.parameter as fhir4.ParametersParameter[];
      const criteria = Object.fromEntries(
        parameters
          .filter((p) => p.name === 'criterion')
          .map((c) => [c.part?.find((p) => p.name === 'code')?.valueCode, Object.fromEntries((c.part ?? []).filter((p) => p.name !== 'evidence').map((p) => [p.name, p]))]),
      );
      expect(parameters.find((p) => p.name === 'outcome')?.valueCode, patient.file).toBe('not-eligible');
      expect(criteria['gp-in-centre']?.['status']?.valueCode).toBe('not-met');
      expect(criteria['gp-in-centre']?.['reason']?.valueString).toMatch(/general practitioner/i);
      // Age: strictly over 45 at asOf.
      const age = Math.floor(DateTime.fromISO(AS_OF).diff(DateTime.fromISO(patient.birthDate as string), 'years').years);
      expect(criteria['age']?.['value']?.valueInteger, patient.file).toBe(age);
      const over45 = DateTime.fromISO(AS_OF) > DateTime.fromISO(patient.birthDate as string).plus({ years: 45 });
      expect(criteria['age']?.['status']?.valueCode, patient.file).toBe(over45 ? 'met' : 'not-met');
      // Synthea records glucose without fasting status: never proves the criterion.
      if (!patient.hasFastingGlucoseCode) expect(criteria['fasting-glucose']?.['status']?.valueCode, patient.file).toBe('unknown');
      if (patient.hasActiveDiabetes) expect(criteria['no-diabetes']?.['status']?.valueCode, patient.file).toBe('not-met');
    }
  });

  it('$screen of the ingested patients reports progress and counts', async () => {
    const kickoff = await t.post('/fhir/$screen', {
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: 'rediab' },
        { name: 'asOf', valueDate: AS_OF },
        ...ingested.map((p) => ({ name: 'patient', valueReference: { reference: `Patient/${p.patientId}` } })),
      ],
    });
    expect(kickoff.status).toBe(202);
    const location = kickoff.headers.get('content-location') as string;
    expect(location).toMatch(/\/fhir\/_async\//);
    const done = await eventually(async () => {
      const status = await fetch(location);
      if (status.status === 202) {
        // The total is unknown ('?') until the screening job has listed its patients.
        expect(status.headers.get('x-progress')).toMatch(/^\d+\/(\d+|\?) evaluated$/);
        return undefined;
      }
      expect(status.status).toBe(200);
      return (await status.json()) as fhir4.Parameters;
    }, 120_000);
    const value = (name: string) => done.parameter?.find((p) => p.name === name);
    expect(value('state')?.valueCode).toBe('completed');
    expect(value('total')?.valueInteger).toBe(33);
    expect(value('done')?.valueInteger).toBe(33);
    const counts = Object.fromEntries((done.parameter ?? []).filter((p) => p.name === 'count').map((p) => [p.part?.[0]?.valueCode, p.part?.[1]?.valueInteger]));
    // US addresses are outside the CPAM districts: residence not met for all.
    expect(counts).toEqual({ eligible: 0, 'not-eligible': 33, undetermined: 0, error: 0 });
  });
});
