/**
 * Ids and local references (issue #6): `.` and `..` pass the FHIR id regex but are URL
 * dot-segments; every `Type/id` parser of the adapter goes through these helpers.
 */
import { describe, expect, it } from 'vitest';
import { isFhirId, localId, localReference, referenceKey } from '../../../src/domain/references.js';

describe('isFhirId', () => {
  it.each(['a', 'A-1.b', '0', 'a'.repeat(64), '...', '.a', 'a..'])('accepts %j', (id) => {
    expect(isFhirId(id)).toBe(true);
  });
  it.each(['.', '..', '', 'a'.repeat(65), 'a/b', 'a b', 'é', '%2e', 'a_b', undefined, null, 1])('refuses %j', (id) => {
    expect(isFhirId(id)).toBe(false);
  });
});

describe('localReference', () => {
  it('reads a relative Type/id of the given type(s)', () => {
    expect(localReference('Patient/p1', 'Patient')).toEqual({ type: 'Patient', id: 'p1', key: 'Patient/p1' });
    expect(localReference({ reference: 'PractitionerRole/r' }, ['Practitioner', 'PractitionerRole'])?.key).toBe('PractitionerRole/r');
    expect(localReference('Organization/o')?.type).toBe('Organization');
  });

  it.each([
    ['Patient/.', 'Patient'],
    ['Patient/..', 'Patient'],
    ['Observation/1', 'Patient'],
    ['Patient/1/_history/2', 'Patient'],
    ['https://other.example/fhir/Patient/1', 'Patient'],
    ['Patient/a/b', 'Patient'],
    ['Patient?identifier=x', 'Patient'],
    ['#contained', 'Patient'],
    ['patient/1', 'Patient'],
    ['', 'Patient'],
  ])('refuses %j as a relative %s reference', (reference, type) => {
    expect(localReference(reference, type)).toBeUndefined();
  });

  it('with anyBase, reads absolute and versioned references, still refusing dot ids', () => {
    expect(localId('https://fhir.example/fhir/Specimen/s1/_history/3', 'Specimen', { anyBase: true })).toBe('s1');
    expect(localId('Organization/o1', 'Organization', { anyBase: true })).toBe('o1');
    expect(localId('https://fhir.example/fhir/Organization/..', 'Organization', { anyBase: true })).toBeUndefined();
    expect(localId('https://fhir.example/fhir/Organization/.', 'Organization', { anyBase: true })).toBeUndefined();
    expect(localId('https://fhir.example/fhir/xOrganization/1', 'Organization', { anyBase: true })).toBeUndefined();
  });

  it('referenceKey refuses dot ids too', () => {
    expect(referenceKey('Practitioner/..')).toBeUndefined();
    expect(referenceKey('https://x/fhir/Practitioner/./_history/1')).toBeUndefined();
    expect(referenceKey('Practitioner/p.1')).toBe('Practitioner/p.1');
  });
});
