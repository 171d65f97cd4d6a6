/**
 * The payloads of partition records (src/domain/bulk/partition-codec.ts `encodeResource` /
 * `decodeResource`): what is read back is what JSON would give back, values and key order,
 * whether the resource took the positional form or JSON; no payload holds a newline.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeResource, encodeResource } from '../../../src/domain/bulk/partition-codec.js';
import { reduceResource, reductionPlan } from '../../../src/domain/bulk/reduce.js';
import { loadProgramCatalog } from '../../../src/programs/load-programs.js';
import { generateBulk } from '../../../bench/bulk-generate.js';

const ROOT = path.resolve(__dirname, '../../..');

/** Same values and same key order, at every level, as JSON gives back. */
function expectAsJson(resource: fhir4.Resource): string {
  const payload = encodeResource(resource);
  expect(payload).not.toContain('\n');
  const decoded = decodeResource(payload);
  expect(JSON.stringify(decoded)).toBe(JSON.stringify(resource));
  expect(decoded).toStrictEqual(JSON.parse(JSON.stringify(resource)));
  return payload;
}

const observation = (extra: Record<string, unknown> = {}): fhir4.Observation =>
  ({
    resourceType: 'Observation',
    id: 'o-1',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '1558-6' }] },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: '2026-04-17',
    valueQuantity: { value: 7.32, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
    meta: { versionId: '1' },
    ...extra,
  }) as fhir4.Observation;

const patient = (extra: Record<string, unknown> = {}): fhir4.Patient =>
  ({ resourceType: 'Patient', id: 'p1', meta: { versionId: '3' }, gender: 'female', birthDate: '1966-11-19', generalPractitioner: [{ reference: 'PractitionerRole/role-10' }], ...extra }) as fhir4.Patient;

describe('record payloads', () => {
  it('writes the common Observation and Patient shapes positionally, and reads them back as JSON would', () => {
    expect(expectAsJson(observation())).toMatch(/^O\d+\t/);
    expect(expectAsJson(patient())).toMatch(/^P\d+\t/);
    // Optional keys absent, booleans, issued, deceased.
    expect(expectAsJson({ resourceType: 'Observation' } as fhir4.Observation)).toBe('O0');
    const { valueQuantity, meta, ...head } = observation();
    expect(expectAsJson({ ...head, issued: '2026-04-18T10:00:00Z', valueQuantity, meta } as fhir4.Observation)).toMatch(/^O/);
    // issued after meta: out of the form's order, JSON.
    expect(expectAsJson(observation({ issued: '2026-04-18T10:00:00Z' }))).toMatch(/^\{/);
    expect(expectAsJson({ resourceType: 'Patient', id: 'p1', active: false, gender: 'male', deceasedBoolean: true, generalPractitioner: [{ reference: 'Practitioner/1' }] } as fhir4.Patient)).toMatch(/^P/);
    expect(expectAsJson({ resourceType: 'Patient', id: 'x', active: true, deceasedDateTime: '2020-01-01' } as fhir4.Patient)).toMatch(/^P/);
    // Empty texts and numbers of every form.
    expect(expectAsJson(observation({ status: '', id: '' }))).toMatch(/^O/);
    for (const value of [0, -0, 1e21, 1e-7, -12.5, 0.1 + 0.2, Number.MAX_SAFE_INTEGER]) {
      expectAsJson(observation({ valueQuantity: { value, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' } }));
    }
  });

  it('keeps values with multi-byte characters, carriage returns and other controls', () => {
    expect(expectAsJson(observation({ status: 'fin\u00e9 \u8840 \ud83e\ude78 \r \u0000' }))).toMatch(/^O/);
    expect(expectAsJson(patient({ gender: 'x\u2028y' }))).toMatch(/^P/);
  });

  it('falls back to JSON for anything that does not fit a form exactly', () => {
    const json = [
      // a value holding a tab, a newline or a lone surrogate
      observation({ status: 'a\tb' }),
      observation({ id: 'a\nb' }),
      observation({ status: 'x\ud800' }),
      patient({ birthDate: '\udc00' }),
      // another key, another key order, resourceType not first
      observation({ extension: [{ url: 'http://example.org/fasting', valueBoolean: true }] }),
      { id: 'o-2', resourceType: 'Observation', status: 'final' } as fhir4.Observation,
      { resourceType: 'Observation', status: 'final', id: 'o-3' } as fhir4.Observation,
      // nested shapes other than the forms'
      observation({ code: { coding: [{ system: 'http://loinc.org', code: '1558-6' }, { system: 'urn:x', code: 'y' }] } }),
      observation({ code: { coding: [{ code: '1558-6', system: 'http://loinc.org' }] } }),
      observation({ code: { coding: [{ system: 'http://loinc.org', code: '1558-6' }], text: 'glucose' } }),
      observation({ subject: { reference: 'Patient/p1', display: 'x' } }),
      observation({ valueQuantity: { value: '7.32', unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' } }),
      observation({ valueQuantity: { value: 7.32, unit: 'mmol/L' } }),
      observation({ meta: { versionId: 1 } }),
      observation({ status: null }),
      patient({ generalPractitioner: [] }),
      patient({ generalPractitioner: [{}] }),
      patient({ generalPractitioner: [{ reference: 'PractitionerRole/a' }, { reference: 'Practitioner/b' }] }),
      patient({ active: 'yes' }),
      patient({ gender: 5 }),
      patient({ address: [{ use: 'home', postalCode: '75015' }] }),
      { resourceType: 'Condition', id: 'c', subject: { reference: 'Patient/p1' } } as fhir4.Condition,
      { resourceType: 'EpisodeOfCare', status: 'active', patient: { reference: 'Patient/p1' } } as fhir4.EpisodeOfCare,
    ];
    for (const resource of json) expect(expectAsJson(resource as fhir4.Resource)).toMatch(/^\{/);
  });

  it('reads back repeated values (statuses, codes, units) as JSON would, however they alternate', () => {
    const units = ['mg/dL', 'mmol/L', 'g/L', 'kg', 'cm', 'kg/m2', 'lb', '[in_i]', 'mm', 'g', 'mg/dl', 'mg/dLx', 'mg/d'];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...units), fc.constantFrom('final', 'amended', 'fin', 'finalx', ''), fc.constantFrom('1', '2', '10', '')), { minLength: 1, maxLength: 60 }), (rows) => {
        for (const [unit, status, version] of rows) {
          expectAsJson(observation({ status, meta: { versionId: version }, valueQuantity: { value: 1, unit, system: 'http://unitsofmeasure.org', code: unit } }));
        }
      }),
    );
  });

  it('reads back any JSON-like Observation or Patient as JSON would', () => {
    const text = fc.string({ unit: 'binary', maxLength: 12 });
    const maybe = <T>(arbitrary: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arbitrary, { nil: undefined });
    const resource = fc.oneof(
      fc.record({
        resourceType: fc.constant('Observation'),
        id: maybe(text),
        status: maybe(fc.oneof(text, fc.integer())),
        code: maybe(fc.record({ coding: fc.array(fc.record({ system: text, code: text }), { maxLength: 2 }) })),
        subject: maybe(fc.record({ reference: text })),
        effectiveDateTime: maybe(text),
        issued: maybe(text),
        valueQuantity: maybe(fc.record({ value: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), text), unit: text, system: text, code: text })),
        meta: maybe(fc.record({ versionId: text })),
      }),
      fc.record({
        resourceType: fc.constant('Patient'),
        id: maybe(text),
        meta: maybe(fc.record({ versionId: text })),
        active: maybe(fc.boolean()),
        gender: maybe(fc.oneof(text, fc.constant(null))),
        birthDate: maybe(text),
        deceasedBoolean: maybe(fc.boolean()),
        deceasedDateTime: maybe(text),
        generalPractitioner: maybe(fc.array(fc.record({ reference: text }, { requiredKeys: [] }), { maxLength: 2 })),
      }),
    );
    fc.assert(
      fc.property(resource, (generated) => {
        // What reduceResource hands over: JSON values only (no undefined-valued keys).
        const reduced = JSON.parse(JSON.stringify(generated)) as fhir4.Resource;
        expectAsJson(reduced);
      }),
      { numRuns: 5_000 },
    );
  });

  describe('on generated bulk data', () => {
    let dir: string;
    let resources: { program: string; resource: fhir4.Resource }[] = [];
    beforeAll(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'bulk-codec-'));
      const set = await generateBulk(dir, 300, 11);
      const catalog = loadProgramCatalog({ mappingsDir: path.join(ROOT, 'mappings'), profilesDir: path.join(ROOT, 'profiles') });
      for (const program of catalog.programs.values()) {
        const plan = reductionPlan(program, catalog);
        for (const file of set.files) {
          for (const line of readFileSync(file.path, 'utf8').split('\n').filter(Boolean)) {
            const reduced = reduceResource(JSON.parse(line) as fhir4.Resource, plan);
            if (reduced) resources.push({ program: program.definition.id, resource: reduced });
          }
        }
      }
    });
    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
      resources = [];
    });

    it('reads back every reduced resource of every program as JSON would; writes the Observations and Patients of FNMF positionally', () => {
      let positional = 0;
      for (const { resource } of resources) if (!expectAsJson(resource).startsWith('{')) positional += 1;
      const fnmf = resources.filter(({ program, resource }) => program === 'fnmf-prediabetes' && (resource.resourceType === 'Observation' || resource.resourceType === 'Patient'));
      expect(fnmf.length).toBeGreaterThan(600);
      for (const { resource } of fnmf) expect(encodeResource(resource)).toMatch(/^[OP]/);
      expect(positional).toBeGreaterThanOrEqual(fnmf.length);
    });
  });
});
