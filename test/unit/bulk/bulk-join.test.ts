/**
 * Bulk screening's pure parts: which resources a program can use and what of them is kept,
 * the join per patient, the directory completed from the input, and the line splitting. The
 * decisive check: a verdict from the reduced, partitioned and joined resources is the verdict
 * of the full record, for every generated patient and both programs.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ndjsonLines } from '../../../src/app/bulk-screening.js';
import { PatientJoin, addToBucket, centresOfPatient, compactVerdict, directoryWithInput, emptyBucket, enrolledIn, recordOf, type PatientBucket } from '../../../src/domain/bulk/join.js';
import { PartitionRunWriter, forEachKeyedRecord, runsInInputOrder } from '../../../src/domain/bulk/partition-codec.js';
import { partitionOf, patientIdOf, reduceResource, reductionPlan } from '../../../src/domain/bulk/reduce.js';
import { evaluateEligibility } from '../../../src/domain/evaluate.js';
import type { PatientRecord } from '../../../src/domain/types.js';
import { loadProgramCatalog } from '../../../src/programs/load-programs.js';
import { BENCH_AS_OF, BENCH_CENTRE, generateBulk } from '../../../bench/bulk-generate.js';

const ROOT = path.resolve(__dirname, '../../..');
const catalog = loadProgramCatalog({ mappingsDir: path.join(ROOT, 'mappings'), profilesDir: path.join(ROOT, 'profiles') });
const fnmf = catalog.programs.get('fnmf-prediabetes')!;
const rediab = catalog.programs.get('rediab')!;
const LOINC = 'http://loinc.org';

let dir: string;
const byType = new Map<string, fhir4.Resource[]>();

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bulk-join-'));
  const set = await generateBulk(dir, 400, 7);
  for (const file of set.files) {
    byType.set(file.type, readFileSync(file.path, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as fhir4.Resource));
  }
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('reductionPlan and reduceResource', () => {
  it('keeps for FNMF the Observations of its value sets and the diabetes Conditions; no Coverage, no address', () => {
    const plan = reductionPlan(fnmf, catalog);
    const obs = (code: string): fhir4.Observation => ({ resourceType: 'Observation', id: 'o', status: 'final', code: { coding: [{ system: LOINC, code }] }, subject: { reference: 'Patient/p' } });
    expect(reduceResource(obs('1558-6'), plan)).toBeDefined();
    expect(reduceResource(obs('39156-5'), plan)).toBeDefined();
    expect(reduceResource(obs('2345-7'), plan)).toBeDefined(); // unqualified glucose: judged with a fasting qualifier
    expect(reduceResource(obs('8867-4'), plan)).toBeUndefined(); // heart rate: no criterion reads it
    const condition = (code: string): fhir4.Condition => ({ resourceType: 'Condition', subject: { reference: 'Patient/p' }, code: { coding: [{ system: 'http://snomed.info/sct', code }] } });
    expect(reduceResource(condition('44054006'), plan)).toBeDefined();
    expect(reduceResource(condition('11687002'), plan)).toBeDefined(); // gestational diabetes: the age rule reads it
    expect(reduceResource(condition('38341003'), plan)).toBeUndefined(); // hypertension
    expect(reduceResource({ resourceType: 'Coverage', status: 'active', beneficiary: { reference: 'Patient/p' }, payor: [] } as fhir4.Coverage, plan)).toBeUndefined();
    expect(reductionPlan(rediab, catalog)).toMatchObject({ coverages: true, consents: true, address: true });
  });

  it('keeps of a Patient only what criteria read: no name, identifier, telecom or narrative', () => {
    const patient: fhir4.Patient = {
      resourceType: 'Patient',
      id: 'p1',
      meta: { versionId: '3', lastUpdated: '2026-01-01T00:00:00Z' },
      text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Jane Doe</div>' },
      identifier: [{ system: 'urn:x', value: 'SECRET-NIR' }],
      name: [{ family: 'Doe' }],
      telecom: [{ system: 'phone', value: '0600000000' }],
      gender: 'female',
      birthDate: '1970-01-01',
      address: [{ use: 'home', line: ['1 rue X'], city: 'Lille', postalCode: '59000' }],
      generalPractitioner: [{ reference: 'PractitionerRole/r1', display: 'Dr X' }],
    };
    expect(reduceResource(patient, reductionPlan(fnmf, catalog))).toEqual({
      resourceType: 'Patient', id: 'p1', meta: { versionId: '3' }, gender: 'female', birthDate: '1970-01-01', generalPractitioner: [{ reference: 'PractitionerRole/r1' }],
    });
    // REDIAB judges the residence: the postal code (and use, period) only.
    expect((reduceResource(patient, reductionPlan(rediab, catalog)) as fhir4.Patient).address).toEqual([{ use: 'home', postalCode: '59000' }]);
  });

  it('drops Observation and Condition categories and code displays (no criterion reads them), keeps Consent categories', () => {
    const plan = reductionPlan(fnmf, catalog);
    const observation = byType.get('Observation')![0] as fhir4.Observation;
    expect(observation.category).toBeDefined();
    expect(observation.code.coding?.[0]?.display).toBeDefined();
    const reduced = reduceResource(observation, plan) as fhir4.Observation;
    expect(reduced.category).toBeUndefined();
    expect(reduced.code).toEqual({ coding: observation.code.coding!.map(({ system, code }) => ({ system, code })) });
    expect(reduced.valueQuantity).toEqual(observation.valueQuantity);
    // The input is left as it was.
    expect(observation.code.coding?.[0]?.display).toBeDefined();
    const condition: fhir4.Condition = { resourceType: 'Condition', subject: { reference: 'Patient/p' }, category: [{ coding: [{ code: 'problem-list-item' }] }], code: { text: 'T2D', coding: [{ system: 'http://snomed.info/sct', code: '44054006', display: 'Diabetes type 2', userSelected: true }] } };
    expect(reduceResource(condition, plan)).toEqual({ resourceType: 'Condition', subject: { reference: 'Patient/p' }, code: { text: 'T2D', coding: [{ system: 'http://snomed.info/sct', code: '44054006', userSelected: true }] } });
    const consent = { resourceType: 'Consent', status: 'active', patient: { reference: 'Patient/p' }, category: [{ coding: [{ system: 'urn:c', code: 'x', display: 'X' }] }] } as fhir4.Consent;
    expect((reduceResource(consent, reductionPlan(rediab, catalog)) as fhir4.Consent).category).toEqual(consent.category);
    // A code that is not a CodeableConcept with codings is kept as it is (never a throw of its own).
    expect(reduceResource({ ...condition, code: { text: 'no coding' } } as fhir4.Condition, plan)).toBeUndefined();
  });

  it('keys each resource by its patient, and nothing else', () => {
    expect(patientIdOf({ resourceType: 'Patient', id: 'a' } as fhir4.Patient)).toBe('a');
    expect(patientIdOf({ resourceType: 'Patient', id: '..' } as fhir4.Patient)).toBeUndefined();
    expect(patientIdOf({ resourceType: 'Patient', id: 'a/b' } as fhir4.Patient)).toBeUndefined();
    expect(patientIdOf({ resourceType: 'Observation', subject: { reference: 'https://fhir.example/fhir/Patient/b/_history/2' } } as fhir4.Observation)).toBe('b');
    expect(patientIdOf({ resourceType: 'Observation', subject: { reference: 'Group/g' } } as fhir4.Observation)).toBeUndefined();
    expect(patientIdOf({ resourceType: 'Observation', subject: { reference: 'Patient/..' } } as fhir4.Observation)).toBeUndefined();
    expect(patientIdOf({ resourceType: 'Coverage', beneficiary: { reference: 'Patient/c' } } as fhir4.Coverage)).toBe('c');
    expect(patientIdOf({ resourceType: 'Consent', patient: { reference: 'Patient/d' } } as fhir4.Consent)).toBe('d');
    expect(patientIdOf({ resourceType: 'Organization', id: 'o' } as fhir4.Organization)).toBeUndefined();
  });

  it('partitions deterministically within range', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i += 1) {
      const partition = partitionOf(`p${i}`, 16);
      expect(partition).toBe(partitionOf(`p${i}`, 16));
      expect(partition).toBeGreaterThanOrEqual(0);
      expect(partition).toBeLessThan(16);
      seen.add(partition);
    }
    expect(seen.size).toBe(16);
  });
});

describe('join', () => {
  function fullRecords(): Map<string, PatientRecord> {
    const records = new Map<string, PatientRecord>();
    for (const patient of byType.get('Patient') as fhir4.Patient[]) {
      records.set(patient.id!, { patient, observations: [], conditions: [], coverages: [], consents: [], specimens: [], organizations: [] });
    }
    const organizations = byType.get('Organization') as fhir4.Organization[];
    for (const type of ['Observation', 'Condition', 'Coverage'] as const) {
      for (const resource of byType.get(type) ?? []) {
        const record = records.get(patientIdOf(resource)!)!;
        if (type === 'Observation') record.observations.push(resource as fhir4.Observation);
        if (type === 'Condition') record.conditions.push(resource as fhir4.Condition);
        if (type === 'Coverage') {
          record.coverages.push(resource as fhir4.Coverage);
          for (const organization of organizations) if (!record.organizations.includes(organization) && organization.id === 'cpam') record.organizations.push(organization);
        }
      }
    }
    return records;
  }

  it.each([['fnmf-prediabetes'], ['rediab']])('gives %s the verdict of the full record for every patient, through 4 partitions in shuffled order', (programId) => {
    const program = catalog.programs.get(programId)!;
    const plan = reductionPlan(program, catalog);
    const organizations = byType.get('Organization') as fhir4.Organization[];
    const directory = directoryWithInput(program, { members: new Map() }, organizations, byType.get('PractitionerRole') as fhir4.PractitionerRole[]);
    // Types interleaved as in several NDJSON files, each line through JSON as the partition files hold it.
    const partitions: string[][] = [[], [], [], []];
    for (const type of ['Observation', 'Coverage', 'Patient', 'Condition']) {
      for (const resource of byType.get(type) ?? []) {
        const reduced = reduceResource(resource, plan);
        if (reduced) partitions[partitionOf(patientIdOf(resource)!, 4)]!.push(JSON.stringify(reduced));
      }
    }
    const payors = new Map(organizations.map((o) => [`Organization/${o.id}`, o]));
    const full = fullRecords();
    let judged = 0;
    const outcomes = new Set<string>();
    for (const lines of partitions) {
      const join = new PatientJoin();
      for (const line of lines) join.add(JSON.parse(line) as fhir4.Resource);
      for (const [id, bucket] of join.buckets) {
        const fromBulk = evaluateEligibility(program, catalog, recordOf(bucket as PatientBucket & { patient: fhir4.Patient }, payors), directory, BENCH_AS_OF);
        const fromFull = evaluateEligibility(program, catalog, full.get(id)!, directory, BENCH_AS_OF);
        expect(fromBulk).toEqual(fromFull);
        outcomes.add(fromBulk.outcome);
        judged += 1;
      }
    }
    expect(judged).toBe(400);
    if (programId === 'fnmf-prediabetes') expect([...outcomes].sort()).toEqual(['eligible', 'not-eligible', 'undetermined']);
  });

  it.each([['fnmf-prediabetes'], ['rediab']])('gives %s the same verdicts through keyed partition records grouped per patient and parsed per patient (the worker\'s path)', (programId) => {
    const program = catalog.programs.get(programId)!;
    const plan = reductionPlan(program, catalog);
    const organizations = byType.get('Organization') as fhir4.Organization[];
    const directory = directoryWithInput(program, { members: new Map() }, organizations, byType.get('PractitionerRole') as fhir4.PractitionerRole[]);
    const payors = new Map(organizations.map((o) => [`Organization/${o.id}`, o]));
    const parts: Buffer[] = [];
    const writer = new PartitionRunWriter(512, (bytes) => parts.push(Buffer.from(bytes)));
    const join = new PatientJoin();
    let block = 0;
    for (const type of ['Observation', 'Coverage', 'Patient', 'Condition']) {
      for (const resource of byType.get(type) ?? []) {
        const reduced = reduceResource(resource, plan);
        if (!reduced) continue;
        writer.addKeyed(block, patientIdOf(resource)!, JSON.stringify(reduced));
        join.add(JSON.parse(JSON.stringify(reduced)) as fhir4.Resource);
      }
      block += 1;
    }
    writer.flush();
    const recordsOf = new Map<string, string[]>();
    for (const run of runsInInputOrder([Buffer.concat(parts)])) {
      forEachKeyedRecord(new TextDecoder().decode(run.bytes.subarray(run.start, run.end)), (key, json) => {
        const records = recordsOf.get(key);
        if (records) records.push(json);
        else recordsOf.set(key, [json]);
      });
    }
    expect([...recordsOf.keys()]).toEqual([...join.buckets.keys()]);
    for (const [id, records] of recordsOf) {
      const bucket = emptyBucket();
      for (const json of records) addToBucket(bucket, JSON.parse(json) as fhir4.Resource);
      expect(bucket).toEqual(join.buckets.get(id));
      const verdict = evaluateEligibility(program, catalog, recordOf(bucket as PatientBucket & { patient: fhir4.Patient }, payors), directory, BENCH_AS_OF);
      expect(verdict).toEqual(evaluateEligibility(program, catalog, recordOf(join.buckets.get(id) as PatientBucket & { patient: fhir4.Patient }, payors), directory, BENCH_AS_OF));
    }
  });

  it('completes the directory from the input: centre Organization, its active roles and their practitioners', () => {
    const org: fhir4.Organization = { resourceType: 'Organization', id: 'c', meta: { versionId: '2' }, identifier: [BENCH_CENTRE] };
    const other: fhir4.Organization = { resourceType: 'Organization', id: 'x', identifier: [{ system: 'urn:x', value: 'X' }] };
    const roles: fhir4.PractitionerRole[] = [
      { resourceType: 'PractitionerRole', id: 'r1', active: true, organization: { reference: 'Organization/c' }, practitioner: { reference: 'Practitioner/d1' } },
      { resourceType: 'PractitionerRole', id: 'r2', active: false, organization: { reference: 'Organization/c' }, practitioner: { reference: 'Practitioner/d2' } },
      { resourceType: 'PractitionerRole', id: 'r3', organization: { reference: 'Organization/x' } },
    ];
    const base = { members: new Map([['PractitionerRole/r1', { centre: 'server|centre', evidence: ['PractitionerRole/r1/_history/9'] }]]) };
    const directory = directoryWithInput(fnmf, base, [org, other], roles);
    const label = `${BENCH_CENTRE.system}|${BENCH_CENTRE.value}`;
    expect(directory.members.get('Organization/c')).toEqual({ centre: label, evidence: ['Organization/c/_history/2'] });
    expect(directory.members.get('PractitionerRole/r1')?.centre).toBe('server|centre'); // the server's entry wins
    expect(directory.members.get('Practitioner/d1')?.centre).toBe(label);
    expect(directory.members.has('PractitionerRole/r2')).toBe(false);
    expect(directory.members.has('Practitioner/d2')).toBe(false);
    expect(directory.members.has('PractitionerRole/r3')).toBe(false);
    expect([...centresOfPatient({ resourceType: 'Patient', generalPractitioner: [{ reference: 'Practitioner/d1' }] }, directory)]).toEqual([label]);
    expect(centresOfPatient({ resourceType: 'Patient', generalPractitioner: [{ reference: 'PractitionerRole/r3' }] }, directory).size).toBe(0);
  });

  it('sees an open enrolment in the program among the input EpisodeOfCares', () => {
    const join = new PatientJoin();
    const episode = (status: fhir4.EpisodeOfCare['status'], code: string): fhir4.EpisodeOfCare => ({
      resourceType: 'EpisodeOfCare', status, patient: { reference: 'Patient/p' }, type: [{ coding: [{ system: 'urn:programs', code }] }],
    });
    join.add(episode('finished', 'fnmf-prediabetes'));
    join.add(episode('active', 'rediab'));
    const bucket = join.buckets.get('p')!;
    expect(enrolledIn(bucket, 'fnmf-prediabetes', 'urn:programs')).toBe(false);
    expect(enrolledIn(bucket, 'rediab', 'urn:programs')).toBe(true);
  });

  it('writes a compact verdict with the patient reference and statuses, no name nor identifier', () => {
    const patient = (byType.get('Patient') as fhir4.Patient[])[0]!;
    const record: PatientRecord = { patient, observations: [], conditions: [], coverages: [], consents: [], specimens: [], organizations: [] };
    const verdict = evaluateEligibility(fnmf, catalog, record, { members: new Map() }, BENCH_AS_OF);
    const line = JSON.stringify(compactVerdict(patient.id!, verdict));
    expect(line).toContain(`"reference":"Patient/${patient.id}"`);
    expect(line).not.toContain(patient.name![0]!.family!);
    expect(line).not.toContain(patient.identifier![0]!.value!);
    expect(line).not.toContain(patient.birthDate!);
    expect(JSON.parse(line).parameter.filter((p: { name: string }) => p.name === 'criterion')).toHaveLength(fnmf.definition.criteria.length);
  });
});

describe('ndjsonLines', () => {
  async function* chunks(parts: string[]): AsyncGenerator<string> {
    for (const part of parts) yield part;
  }
  it('rebuilds lines split across chunks, and the last line without a newline', async () => {
    const lines: string[] = [];
    for await (const batch of ndjsonLines(chunks(['{"a":1}\n{"b"', ':2}\n', '{"c":3}']))) lines.push(...batch);
    expect(lines).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
  });
  it('refuses a line longer than 16 MB instead of buffering it', async () => {
    const huge = 'x'.repeat(4 * 1024 * 1024);
    const read = async () => {
      for await (const _batch of ndjsonLines(chunks([huge, huge, huge, huge, huge]))) void _batch;
    };
    await expect(read()).rejects.toThrow(/longer than/);
  });
  it('decodes a multi-byte character split across Buffer chunks', async () => {
    const bytes = Buffer.from('{"x":"é"}\n');
    const lines: string[] = [];
    async function* buffers(): AsyncGenerator<Buffer> {
      yield bytes.subarray(0, 7);
      yield bytes.subarray(7);
    }
    for await (const batch of ndjsonLines(buffers())) lines.push(...batch);
    expect(lines).toEqual(['{"x":"é"}']);
  });
});
