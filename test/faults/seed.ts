/**
 * Seeding and reading for the fault-injection suite, in bulk: the test fixtures
 * (test/fixtures/*) take a TestService; `asTestService` gives them one over a spawned API
 * process. Patients are written straight to the FHIR server of record in transactions (the
 * EHR's data already there); what is under test (observations pushed, evaluations queued,
 * claims generated and submitted) goes through the service.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { evaluationJobId } from '../../src/queue/job-ids.js';
import type { TestService } from '../integration/harness.js';
import { LOINC, UCUM } from '../fixtures/resources.js';
import { shift, today } from '../fixtures/enrolment.js';
import { fhirAll, http } from './harness.js';

export const PROGRAMS = ['fnmf-prediabetes', 'rediab'] as const;

/** What the fixtures use of a TestService, over HTTP to a spawned process. */
export function asTestService(url: string, fhirUrl: string, prefix: string): TestService {
  const partial = {
    url,
    fhirUrl,
    prefix,
    post: (path: string, body: unknown, headers?: Record<string, string>) => http('POST', `${url}${path}`, body, headers),
    get: (path: string) => http('GET', `${url}${path}`),
    fhirGet: async (path: string) => (await http('GET', `${fhirUrl}/${path}`)).body,
  };
  // Only these members are used by the fixtures called here (seedTeam, enrol, seedRediabPatient2002).
  return partial as unknown as TestService;
}

/** Writes resources with client ids to the FHIR server in transactions of `chunk` entries (PUT: idempotent). */
export async function putAll(fhirUrl: string, resources: (fhir4.Resource & { id: string })[], chunk = 500): Promise<void> {
  for (let i = 0; i < resources.length; i += chunk) {
    const entry = resources.slice(i, i + chunk).map((resource) => ({ resource, request: { method: 'PUT' as const, url: `${resource.resourceType}/${resource.id}` } }));
    const answer = await http('POST', fhirUrl, { resourceType: 'Bundle', type: 'transaction', entry } satisfies fhir4.Bundle);
    expect(answer.status, JSON.stringify(answer.body).slice(0, 500)).toBe(200);
  }
}

/**
 * `n` patients of the GP `gpReference`, aged 56, with a BMI of 27.4 measured two months ago:
 * a pushed fasting glucose of 1.15 g/L makes them FNMF-eligible. Returns their ids.
 */
export async function seedPatients(fhirUrl: string, gpReference: string, n: number, label: string): Promise<string[]> {
  const date = shift(today(), { months: -2 });
  const resources: (fhir4.Resource & { id: string })[] = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    ids.push(id);
    resources.push(
      {
        resourceType: 'Patient',
        id,
        identifier: [{ system: 'urn:test:faults:patient', value: `${label}-${i}` }],
        gender: i % 2 ? 'female' : 'male',
        birthDate: '1970-03-15',
        address: [{ use: 'home', postalCode: '75015', country: 'FR' }],
        generalPractitioner: [{ reference: gpReference }],
      } as fhir4.Patient & { id: string },
      {
        resourceType: 'Observation',
        id: randomUUID(),
        identifier: [{ system: 'urn:test:faults:observation', value: `${label}-${i}-bmi` }],
        status: 'final',
        code: { coding: [{ system: LOINC, code: '39156-5' }] },
        subject: { reference: `Patient/${id}` },
        effectiveDateTime: date,
        valueQuantity: { value: 27.4, unit: 'kg/m2', system: UCUM, code: 'kg/m2' },
      } as fhir4.Observation & { id: string },
    );
  }
  await putAll(fhirUrl, resources);
  return ids;
}

/** A fasting glucose of the patient (1.15 g/L, two months ago), identified by `key`: what an EHR pushes. */
export function glucose(patientId: string, key: string, value = 1.15): fhir4.Observation {
  return {
    resourceType: 'Observation',
    identifier: [{ system: 'urn:test:faults:observation', value: key }],
    status: 'final',
    code: { coding: [{ system: LOINC, code: '1558-6' }] },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: shift(today(), { months: -2 }),
    valueQuantity: { value, unit: 'g/L', system: UCUM, code: 'g/L' },
  };
}

/** The evaluation job ids an accepted Observation (as answered: id and version) must have led to: one, for every program. */
export function expectedJobIds(observation: fhir4.Observation): string[] {
  const patientId = (observation.subject?.reference ?? '').replace(/^Patient\//, '');
  const trigger = `Observation/${observation.id}${observation.meta?.versionId ? `/_history/${observation.meta.versionId}` : ''}`;
  return [evaluationJobId(PROGRAMS, patientId, [trigger])];
}

/** How many of each resource a patient has, per program (GuidanceResponse.moduleUri / Task.code), over the whole server. */
export async function writtenPerPatient(fhirUrl: string): Promise<{ responses: Map<string, number>; tasks: Map<string, number> }> {
  const [responses, tasks] = await Promise.all([fhirAll<fhir4.GuidanceResponse>(fhirUrl, 'GuidanceResponse'), fhirAll<fhir4.Task>(fhirUrl, 'Task')]);
  const count = (map: Map<string, number>, key: string): void => {
    map.set(key, (map.get(key) ?? 0) + 1);
  };
  const byResponse = new Map<string, number>();
  for (const response of responses) count(byResponse, `${response.subject?.reference ?? '?'} ${response.moduleUri ?? '?'}`);
  const byTask = new Map<string, number>();
  for (const task of tasks) {
    const code = task.code?.coding?.[0]?.code ?? '?';
    count(byTask, `${task.for?.reference ?? '?'} ${code} ${task.instantiatesUri ?? task.focus?.reference ?? ''}`);
  }
  return { responses: byResponse, tasks: byTask };
}

/** Number of keys seen more than once, and the extra copies. */
export function duplicates(counts: Map<string, number>): number {
  let extra = 0;
  for (const value of counts.values()) if (value > 1) extra += value - 1;
  return extra;
}

/**
 * Copies of an enrolment (patient, coverage, episode, team, plans) with fresh ids, written to the
 * FHIR server: `n` more enrolments owing the same forfaits. `presetEpisodeIds[i]`: the episode id
 * of copy i (others random). Returns the copies' episode ids.
 */
export async function cloneEnrolment(t: TestService, episodeId: string, n: number, presetEpisodeIds: string[] = []): Promise<string[]> {
  const episode = (await t.fhirGet(`EpisodeOfCare/${episodeId}`)) as fhir4.EpisodeOfCare;
  const patientRef = episode.patient.reference as string;
  const patient = (await t.fhirGet(patientRef)) as fhir4.Patient;
  const teamId = (episode.team?.[0]?.reference ?? '').replace(/^CareTeam\//, '');
  const careTeam = (await t.fhirGet(`CareTeam/${teamId}`)) as fhir4.CareTeam;
  const [coverages, plans] = await Promise.all([
    fhirAll<fhir4.Coverage>(t.fhirUrl, 'Coverage', { beneficiary: patientRef }),
    fhirAll<fhir4.CarePlan>(t.fhirUrl, 'CarePlan', { subject: patientRef }),
  ]);
  const originals: fhir4.Resource[] = [patient, ...coverages, episode, careTeam, ...plans];
  const label = (patient.identifier?.[0]?.value as string) ?? 'none';
  const strip = (resource: fhir4.Resource): fhir4.Resource => {
    const { meta, ...rest } = resource;
    return { ...rest, ...(meta?.profile ? { meta: { profile: meta.profile } } : {}) } as fhir4.Resource;
  };
  const templates = originals.map((resource) => JSON.stringify(strip(resource)));
  const oldIds = originals.map((resource) => resource.id as string);
  const copies: (fhir4.Resource & { id: string })[] = [];
  const episodes: string[] = [];
  for (let i = 0; i < n; i++) {
    const fresh = new Map(oldIds.map((id) => [id, id === episodeId && presetEpisodeIds[i] ? (presetEpisodeIds[i] as string) : randomUUID()]));
    for (const template of templates) {
      let text = template.split(label).join(`${label}-copy${i}`);
      for (const [from, to] of fresh) text = text.split(from).join(to);
      copies.push(JSON.parse(text) as fhir4.Resource & { id: string });
    }
    episodes.push(fresh.get(episodeId) as string);
  }
  await putAll(t.fhirUrl, copies);
  return episodes;
}

