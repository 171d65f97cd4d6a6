/**
 * `POST /fhir/$screen` with only `program` and `asOf`: the population is every patient whose
 * GP (a PractitionerRole, a Practitioner or the Organization itself) is in a participating
 * centre, and nobody else; the asynchronous request pattern (202 + Content-Location, then
 * 200 with the counts); and the operation's input errors.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { centreBundle, patient, quantityObservation } from '../fixtures/resources.js';
import { eventually, startTestService, type TestService } from './harness.js';

const PROGRAM = 'fnmf-prediabetes';
const AS_OF = '2026-11-01';

let t: TestService;
/** Screened patients, by the outcome their data implies at AS_OF. */
const inCentre: Record<'eligible' | 'not-eligible' | 'undetermined', string> = { eligible: '', 'not-eligible': '', undetermined: '' };
/** Patients not screened: another GP, no GP. */
const outside: string[] = [];

function idOf(location: string | undefined, type: string): string {
  const id = new RegExp(`${type}/([^/]+)`).exec(location ?? '')?.[1];
  expect(id, `${type} in ${location}`).toBeTruthy();
  return id as string;
}

async function push(resource: fhir4.Resource): Promise<string> {
  const response = await t.post(`/fhir/${resource.resourceType}`, resource);
  expect(response.status).toBe(201);
  return response.body.id as string;
}

async function guidanceResponses(patientId: string): Promise<fhir4.GuidanceResponse[]> {
  const bundle = (await t.fhirGet(`GuidanceResponse?subject=Patient/${patientId}`)) as fhir4.Bundle;
  return (bundle.entry ?? []).map((e) => e.resource as fhir4.GuidanceResponse);
}

function asOfOf(response: fhir4.GuidanceResponse): string | undefined {
  const verdict = response.contained?.find((r): r is fhir4.Parameters => r.resourceType === 'Parameters');
  return verdict?.parameter?.find((p) => p.name === 'asOf')?.valueDate;
}

beforeAll(async () => {
  t = await startTestService();
  const centre = await t.post('/fhir', centreBundle());
  expect(centre.status).toBe(200);
  const locations = (centre.body.entry as fhir4.BundleEntry[]).map((e) => e.response?.location ?? '');
  const organizationId = idOf(locations.find((l) => l.startsWith('Organization/')), 'Organization');
  const practitionerId = idOf(locations.find((l) => l.startsWith('Practitioner/')), 'Practitioner');
  const roleId = idOf(locations.find((l) => l.startsWith('PractitionerRole/')), 'PractitionerRole');
  const otherGp = await push({ resourceType: 'Practitioner', identifier: [{ system: 'urn:oid:1.2.250.1.71.4.2.1', value: '10000000777' }] } as fhir4.Practitioner);

  const tag = randomUUID().slice(0, 8);
  // GP = the PractitionerRole; 56 at AS_OF, fasting glucose 1.15 g/L, BMI 27: eligible.
  inCentre.eligible = await push(patient(`screen-role-${tag}`, { birthDate: '1970-01-10', gp: `PractitionerRole/${roleId}` }));
  await push(quantityObservation(inCentre.eligible, '1558-6', 1.15, 'g/L', '2026-10-01', `screen-role-glu-${tag}`));
  await push(quantityObservation(inCentre.eligible, '39156-5', 27, 'kg/m2', '2026-10-01', `screen-role-bmi-${tag}`));
  // GP = the Practitioner; glucose 1.40 g/L (above range), BMI 30: not eligible.
  inCentre['not-eligible'] = await push(patient(`screen-practitioner-${tag}`, { birthDate: '1965-05-05', gp: `Practitioner/${practitionerId}` }));
  await push(quantityObservation(inCentre['not-eligible'], '1558-6', 1.4, 'g/L', '2026-10-01', `screen-practitioner-glu-${tag}`));
  await push(quantityObservation(inCentre['not-eligible'], '39156-5', 30, 'kg/m2', '2026-10-01', `screen-practitioner-bmi-${tag}`));
  // GP = the centre Organization; 66, no glucose, no BMI: undetermined.
  inCentre.undetermined = await push(patient(`screen-organization-${tag}`, { birthDate: '1960-02-02', gp: `Organization/${organizationId}` }));
  // Another GP, and no GP: both with data that would make them eligible if they were screened.
  for (const [label, gp] of [['other-gp', `Practitioner/${otherGp}`], ['no-gp', undefined]] as const) {
    const id = await push(patient(`screen-${label}-${tag}`, { birthDate: '1970-01-10', ...(gp ? { gp } : {}) }));
    await push(quantityObservation(id, '1558-6', 1.15, 'g/L', '2026-10-01', `screen-${label}-glu-${tag}`));
    await push(quantityObservation(id, '39156-5', 27, 'kg/m2', '2026-10-01', `screen-${label}-bmi-${tag}`));
    outside.push(id);
  }
  await t.drained();

  // Pushing queued evaluations (as of today) for every patient. Remove their GuidanceResponses
  // from the server of record so that what exists after the screening is the screening's work.
  for (const id of [...Object.values(inCentre), ...outside]) {
    for (const response of await guidanceResponses(id)) {
      const deleted = await fetch(`${t.fhirUrl}/GuidanceResponse/${response.id}`, { method: 'DELETE' });
      expect(deleted.ok).toBe(true);
    }
    expect(await guidanceResponses(id)).toHaveLength(0);
  }
});

afterAll(async () => {
  await t?.stop();
});

describe('$screen with only program and asOf', () => {
  it('screens exactly the patients whose GP is in a participating centre, with the outcomes their data implies', async () => {
    const accepted = await t.post('/fhir/$screen', {
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: PROGRAM },
        { name: 'asOf', valueDate: AS_OF },
      ],
    });
    expect(accepted.status).toBe(202);
    expect(accepted.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    expect(accepted.body.resourceType).toBe('OperationOutcome');
    const location = accepted.headers.get('content-location');
    expect(location).toMatch(/\/fhir\/_async\/[0-9a-f-]{36}$/);
    const screenId = (location as string).split('/').pop() as string;

    const result = await eventually(async () => {
      const response = await fetch(location as string);
      expect([200, 202]).toContain(response.status);
      expect(response.headers.get('content-type')).toMatch(/application\/fhir\+json/);
      return response.status === 200 ? ((await response.json()) as fhir4.Parameters) : undefined;
    }, 30_000);

    const value = (name: string) => result.parameter?.find((p) => p.name === name);
    expect(value('id')?.valueString).toBe(screenId);
    expect(value('program')?.valueString).toBe(PROGRAM);
    expect(value('asOf')?.valueDate).toBe(AS_OF);
    expect(value('state')?.valueCode).toBe('completed');
    expect(value('total')?.valueInteger).toBe(3);
    expect(value('done')?.valueInteger).toBe(3);
    const counts = Object.fromEntries(
      (result.parameter ?? [])
        .filter((p) => p.name === 'count')
        .map((p) => [p.part?.find((q) => q.name === 'outcome')?.valueCode, p.part?.find((q) => q.name === 'count')?.valueInteger]),
    );
    expect(counts).toEqual({ eligible: 1, 'not-eligible': 1, undetermined: 1, error: 0 });

    // The screening's evaluations were for exactly those three patients.
    await t.drained();
    const children = (await t.evaluationQueue.getJobs(['completed', 'failed', 'waiting', 'active', 'delayed'], 0, -1)).filter(
      (job) => (job.data as { screenId?: string }).screenId === screenId,
    );
    expect(children.map((job) => (job.data as { patientId: string }).patientId).sort()).toEqual(Object.values(inCentre).sort());
    for (const job of children) expect(job.returnvalue).toMatchObject({ evaluations: [{ outcome: Object.entries(inCentre).find(([, id]) => id === (job.data as { patientId: string }).patientId)?.[0] }] });

    // One GuidanceResponse as of AS_OF for each screened patient, none for the others.
    for (const [outcome, id] of Object.entries(inCentre)) {
      const responses = await guidanceResponses(id);
      expect(responses, `GuidanceResponses of the ${outcome} patient`).toHaveLength(1);
      expect(responses[0]?.moduleUri).toMatch(/fnmf-prediabetes$/);
      expect(asOfOf(responses[0] as fhir4.GuidanceResponse)).toBe(AS_OF);
      expect(responses[0]?.status).toBe(outcome === 'undetermined' ? 'data-required' : 'success');
    }
    for (const id of outside) expect(await guidanceResponses(id)).toHaveLength(0);
  });

  it('an unknown screening id → 404 OperationOutcome', async () => {
    const response = await t.get(`/fhir/_async/${randomUUID()}`);
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    expect(response.body.resourceType).toBe('OperationOutcome');
    expect(response.body.issue[0].code).toBe('not-found');
  });

  it.each([
    ['a reference to another type', { name: 'patient', valueReference: { reference: 'Observation/1' } }],
    ['an absolute reference', { name: 'patient', valueReference: { reference: 'http://elsewhere.example/fhir/Patient/1' } }],
    ['a reference with no id', { name: 'patient', valueReference: { reference: 'Patient/' } }],
    ['no reference at all', { name: 'patient', valueBoolean: true }],
  ])('$screen with %s as patient → 400, nothing queued', async (_label, parameter) => {
    const before = await t.evaluationQueue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
    const response = await t.post('/fhir/$screen', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: PROGRAM }, parameter] });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    expect(response.body.resourceType).toBe('OperationOutcome');
    expect(response.headers.get('content-location')).toBeNull();
    expect(await t.evaluationQueue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed')).toEqual(before);
  });

  it('$screen with an unknown program → 400 naming the programs served', async () => {
    const response = await t.post('/fhir/$screen', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: 'no-such-program' }, { name: 'asOf', valueDate: AS_OF }] });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    expect(response.body.resourceType).toBe('OperationOutcome');
    expect(response.body.issue[0].diagnostics).toMatch(/no-such-program/);
    expect(response.body.issue[0].diagnostics).toMatch(/fnmf-prediabetes/);
    expect(response.headers.get('content-location')).toBeNull();
  });
});
