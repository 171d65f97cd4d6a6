import { describe, expect, it } from 'vitest';
import { codeableConceptIn, enumeratedCodes, valueSetContains } from '../../../src/domain/value-sets.js';
import type { ValueSetData } from '../../../src/programs/schema.js';
import { catalog } from './program-fixtures.js';

const vs = (id: string): ValueSetData => catalog.valueSets.get(id) as ValueSetData;
const ICD10 = 'http://hl7.org/fhir/sid/icd-10';
const ICD10CM = 'http://hl7.org/fhir/sid/icd-10-cm';
const SNOMED = 'http://snomed.info/sct';
const LOINC = 'http://loinc.org';

describe('valueSetContains', () => {
  it.each([
    ['diabetes', SNOMED, '44054006', true],
    ['diabetes', SNOMED, '15777000', false], // prediabetes
    ['diabetes', LOINC, '44054006', false], // right code, wrong system
    ['diabetes', undefined, '44054006', false],
    ['diabetes', ICD10, 'E11', true],
    ['diabetes', ICD10, 'E11.9', true],
    ['diabetes', ICD10, 'E119', true],
    ['diabetes', ICD10, 'E14.9', true],
    ['diabetes', ICD10, 'E15', false],
    ['diabetes', ICD10, 'E1', false],
    ['diabetes', ICD10, 'R73.0', false],
    ['diabetes', ICD10CM, 'E11.65', true],
    ['type-2-diabetes', ICD10, 'E10.9', false],
    ['type-2-diabetes', ICD10, 'E11.9', true],
    ['gestational-diabetes-history', ICD10, 'O24.4', true],
    ['gestational-diabetes-history', ICD10, 'O24.41', true],
    ['gestational-diabetes-history', ICD10, 'O24.419', true],
    ['gestational-diabetes-history', ICD10, 'O244', true], // CIM-10 written without the dot
    ['gestational-diabetes-history', ICD10, 'O24', false],
    ['gestational-diabetes-history', ICD10, 'O24.3', false],
    ['fasting-glucose', LOINC, '1558-6', true],
    ['fasting-glucose', LOINC, '1558', false],
    ['fasting-glucose', LOINC, '2345-7', false],
  ])('%s contains %s|%s: %s', (id, system, code, expected) => {
    expect(valueSetContains(vs(id), { system, code })).toBe(expected);
  });

  it('includes a whole code system when an include lists neither concepts nor filters', () => {
    const all: ValueSetData = {
      resourceType: 'ValueSet',
      id: 'all',
      url: 'http://example.org/ValueSet/all',
      status: 'active',
      compose: { include: [{ system: 'http://example.org/cs' }] },
    };
    expect(valueSetContains(all, { system: 'http://example.org/cs', code: 'anything' })).toBe(true);
    expect(valueSetContains(all, { system: 'http://example.org/other', code: 'anything' })).toBe(false);
  });
});

describe('codeableConceptIn', () => {
  it.each([
    [{ coding: [{ system: LOINC, code: '2345-7' }, { system: LOINC, code: '1558-6' }] }, true],
    [{ coding: [{ system: LOINC, code: '2345-7' }] }, false],
    [{ text: 'fasting glucose' }, false],
    [undefined, false],
  ])('%j in fasting-glucose: %s', (concept, expected) => {
    expect(codeableConceptIn(concept, vs('fasting-glucose'))).toBe(expected);
  });
});

describe('enumeratedCodes', () => {
  it('lists concepts, leaves is-a filters out', () => {
    expect(enumeratedCodes(vs('type-2-diabetes'))).toEqual([{ system: SNOMED, code: '44054006', display: 'Diabetes mellitus type 2' }]);
  });
});
