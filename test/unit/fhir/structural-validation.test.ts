/**
 * The structural pre-pass of src/fhir/validation.ts (issue #6, hostile input): JSON kinds from
 * the R4 element definitions Medplum indexed, resource ids, and a bounded issue list.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { capIssues, initValidation, MAX_ISSUES, structuralIssues, validateResource } from '../../../src/fhir/validation.js';

beforeAll(() => {
  initValidation();
}, 120_000);

const where = (issues: fhir4.OperationOutcomeIssue[]): string[] => issues.map((issue) => `${issue.expression?.join(',') ?? ''}: ${issue.details?.text ?? ''}`);

const observation = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '1558-6' }] },
  subject: { reference: 'Patient/p1' },
  ...extra,
});

describe('JSON kinds Medplum lets through are refused, with the element named', () => {
  it.each([
    ['a boolean for a HumanName', { resourceType: 'Patient', name: [false] }, 'Patient.name[0]: Expected an object (HumanName), got a boolean'],
    ['a number for a CodeableConcept', observation({ code: 1.5 }), 'Observation.code: Expected an object (CodeableConcept), got a number'],
    ['numbers for References', { resourceType: 'Coverage', status: 'active', beneficiary: { reference: 'Patient/p1' }, payor: [0] }, 'Coverage.payor[0]: Expected an object (Reference), got a number'],
    ['an array for a single Coding list item', { resourceType: 'Condition', subject: { reference: 'Patient/p1' }, code: { coding: [[0, 0]] } }, 'Condition.code.coding[0]: Expected an object (Coding), got an array'],
    ['a number for Meta', { resourceType: 'Patient', meta: 5 }, 'Patient.meta: Expected an object (Meta), got a number'],
    ['a string for a decimal', observation({ valueQuantity: { value: '1.1' } }), 'Observation.valueQuantity.value: Expected a number (decimal), got a string'],
    ['a number for a code', observation({ status: 42 }), 'Observation.status: Expected a string (code), got a number'],
    ['a string for a boolean', { resourceType: 'Patient', active: 'yes' }, 'Patient.active: Expected a boolean (boolean), got a string'],
    ['a single value for a repeating element', { resourceType: 'Patient', name: { family: 'x' } }, 'Patient.name: Expected an array (Patient.name repeats), got an object'],
    ['an array for a single element', observation({ status: ['final'] }), 'Observation.status: Expected a single value (Observation.status does not repeat), got an array'],
    ['a string list for Meta.profile', observation({ meta: { profile: 'http://x' } }), 'Observation.meta.profile: Expected an array (Meta.profile repeats), got a string'],
    ['null', { resourceType: 'Patient', gender: null }, 'Patient.gender: Invalid null value'],
    ['an unknown element', { resourceType: 'Patient', colour: 'blue' }, 'Patient.colour: Invalid additional property "colour"'],
    ['a number for a primitive extension', { resourceType: 'Patient', _gender: 5 }, 'Patient._gender: Expected an object (Element), got a number'],
    ['a number for a contained resource', { resourceType: 'Patient', contained: [5] }, 'Patient.contained[0]: Expected a resource (an object), got a number'],
    ['an unknown contained resource type', { resourceType: 'Patient', contained: [{ resourceType: 'Nope' }] }, 'Patient.contained[0]: Unknown resource type "Nope"'],
    ['a number in a backbone element', { resourceType: 'Patient', contact: [{ name: 1 }] }, 'Patient.contact[0].name: Expected an object (HumanName), got a number'],
    ['a wrong kind inside an entry of a Bundle', { resourceType: 'Bundle', type: 'batch', entry: [{ request: 5, resource: { resourceType: 'Patient', name: [true] } }] }, 'Bundle.entry[0].request: Expected an object (BundleEntryRequest), got a number'],
  ])('%s', (_what, resource, expected) => {
    expect(where(structuralIssues(resource))).toContain(expected);
    // validateResource refuses it too (before Medplum: no repeated issues).
    expect(where(validateResource(resource as unknown as fhir4.Resource))).toContain(expected);
  });

  it('accepts choice types, primitive extensions paired with nulls, contained resources and nested Bundle resources', () => {
    expect(structuralIssues(observation({ valueQuantity: { value: 1.1, unit: 'g/L' }, effectiveDateTime: '2024-01-01' }))).toEqual([]);
    expect(structuralIssues({ resourceType: 'Patient', name: [{ given: ['a', null], _given: [null, { extension: [{ url: 'http://x', valueString: 'y' }] }] }] })).toEqual([]);
    expect(structuralIssues({ resourceType: 'Patient', contained: [{ resourceType: 'Organization', id: 'org', name: 'x' }], managingOrganization: { reference: '#org' } })).toEqual([]);
    expect(structuralIssues({ resourceType: 'Bundle', type: 'transaction', entry: [{ fullUrl: 'urn:uuid:1', resource: observation(), request: { method: 'POST', url: 'Observation' } }] })).toEqual([]);
  });

  it('ignores members set to undefined (an in-memory resource, as the builders make them)', () => {
    expect(structuralIssues({ resourceType: 'Patient', gender: undefined, name: [{ family: 'x', given: undefined }], meta: undefined })).toEqual([]);
  });

  it('refuses a null in a primitive array that has no extension in its place', () => {
    expect(where(structuralIssues({ resourceType: 'Patient', name: [{ given: ['a', null] }] }))).toEqual(['Patient.name[0].given[1]: Invalid null value']);
  });

  it('finds nothing in the HL7 R4 examples of the fixtures', () => {
    const dir = new URL('./fixtures/hl7-r4-examples/', import.meta.url);
    const files = readdirSync(dir).filter((file) => file.endsWith('.json'));
    expect(files.length).toBeGreaterThan(3);
    for (const file of files) expect(structuralIssues(JSON.parse(readFileSync(new URL(file, dir), 'utf8'))), file).toEqual([]);
  });
});

describe('Resource.id syntax', () => {
  it.each(['p1', 'A-b.9', 'x'.repeat(64)])('accepts %j', (id) => {
    expect(structuralIssues({ resourceType: 'Patient', id })).toEqual([]);
  });

  it.each(['.', '..', '{', 'a b', 'a/b', '', 'é', 'x'.repeat(65), 42])('refuses %j (root and contained)', (id) => {
    expect(where(structuralIssues({ resourceType: 'Patient', id }))).toEqual([expect.stringMatching(/^Patient\.id: Resource\.id is not a valid FHIR id/)]);
    expect(where(structuralIssues({ resourceType: 'Patient', contained: [{ resourceType: 'Patient', id }] }))).toEqual([expect.stringMatching(/^Patient\.contained\[0\]\.id: Resource\.id is not a valid FHIR id/)]);
    expect(validateResource({ resourceType: 'Patient', id } as fhir4.Patient)).not.toEqual([]);
  });
});

describe('bounded issue lists', () => {
  it(`a Patient with 130 000 wrong items gets ${MAX_ISSUES} issues, the last one counting the others (no RangeError)`, () => {
    const patient = { resourceType: 'Patient', name: [{ given: new Array(130_000).fill(0) }] } as unknown as fhir4.Patient;
    for (const issues of [structuralIssues(patient), validateResource(patient)]) {
      expect(issues).toHaveLength(MAX_ISSUES);
      expect(issues[MAX_ISSUES - 2]?.expression).toEqual([`Patient.name[0].given[${MAX_ISSUES - 2}]`]);
      expect(issues[MAX_ISSUES - 1]).toMatchObject({ code: 'too-costly', details: { text: `${130_000 - (MAX_ISSUES - 1)} further issue(s) not listed` } });
    }
  });

  it('exactly the limit: no count issue; one more: the count replaces the last one', () => {
    const wrong = (n: number) => ({ resourceType: 'Patient', name: [{ given: new Array(n).fill(0) }] });
    expect(structuralIssues(wrong(MAX_ISSUES)).every((issue) => issue.code === 'structure')).toBe(true);
    expect(structuralIssues(wrong(MAX_ISSUES))).toHaveLength(MAX_ISSUES);
    const over = structuralIssues(wrong(MAX_ISSUES + 1));
    expect(over).toHaveLength(MAX_ISSUES);
    expect(over[MAX_ISSUES - 1]?.details?.text).toBe('2 further issue(s) not listed');
  });

  it('Medplum\'s own issues are capped as well (300 telecom systems outside their required value set)', () => {
    const patient = { resourceType: 'Patient', telecom: new Array(300).fill(0).map(() => ({ system: 'pigeon', value: 'x' })) } as unknown as fhir4.Patient;
    expect(structuralIssues(patient)).toEqual([]);
    const issues = validateResource(patient);
    expect(issues).toHaveLength(MAX_ISSUES);
    expect(issues[MAX_ISSUES - 1]?.details?.text).toMatch(/further issue\(s\) not listed/);
  });

  it('capIssues keeps short lists as they are', () => {
    const issue: fhir4.OperationOutcomeIssue = { severity: 'error', code: 'invalid' };
    expect(capIssues([issue, issue], 2)).toEqual([issue, issue]);
    expect(capIssues([issue, issue, issue], 2)).toEqual([issue, { severity: 'error', code: 'too-costly', details: { text: '2 further issue(s) not listed' } }]);
  });
});
