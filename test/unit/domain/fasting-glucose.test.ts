import { describe, expect, it } from 'vitest';
import type { CriterionStatus } from '../../../src/domain/types.js';
import {
  DEMO_LAB,
  LOINC,
  V2_0916,
  criterion,
  glucose,
  observation,
  record,
  specimen,
} from './fhir-fixtures.js';
import { fnmf, withCriterion } from './program-fixtures.js';

const CODE = 'fasting-glucose';
const FASTING = { coding: [{ system: V2_0916, code: 'F' }] };
const NOT_FASTING = { coding: [{ system: V2_0916, code: 'NF' }] };
const unqualified = (value: number, unit: string, date: string, fields: Partial<fhir4.Observation> = {}) =>
  glucose(value, unit, date, fields, '2345-7');

interface Case {
  name: string;
  observations: () => fhir4.Observation[];
  specimens?: fhir4.Specimen[];
  status: CriterionStatus;
  value?: string;
  flags?: string[];
}

const cases: Case[] = [
  // Bounds at 0.01 g/L after half-up rounding (DOMAIN.md 1, Decision).
  { name: '1.10 g/L', observations: () => [glucose(1.1, 'g/L', '2025-05-01')], status: 'met', value: '1.10' },
  { name: '1.095 g/L rounds to 1.10', observations: () => [glucose(1.095, 'g/L', '2025-05-01')], status: 'met', value: '1.10' },
  { name: '1.094 g/L rounds to 1.09', observations: () => [glucose(1.094, 'g/L', '2025-05-01')], status: 'not-met', value: '1.09' },
  { name: '1.26 g/L', observations: () => [glucose(1.26, 'g/L', '2025-05-01')], status: 'met', value: '1.26' },
  {
    name: '1.265 g/L rounds to 1.27: above range',
    observations: () => [glucose(1.265, 'g/L', '2025-05-01')],
    status: 'not-met',
    value: '1.27',
    flags: ['above range: possible diabetes'],
  },
  { name: '110.5 mg/dL = 1.105 g/L rounds to 1.11', observations: () => [glucose(110.5, 'mg/dL', '2025-05-01')], status: 'met', value: '1.11' },
  { name: '126 mg/dl (alias)', observations: () => [glucose(126, 'mg/dl', '2025-05-01')], status: 'met', value: '1.26' },
  { name: '6.1 mmol/L = 1.099 g/L', observations: () => [glucose(6.1, 'mmol/L', '2025-05-01', {}, '14771-0')], status: 'met', value: '1.10' },
  { name: '7.0 mmol/L = 1.261 g/L', observations: () => [glucose(7.0, 'mmol/L', '2025-05-01', {}, '14771-0')], status: 'met', value: '1.26' },
  { name: '6.0 mmol/L = 1.081 g/L', observations: () => [glucose(6.0, 'mmol/L', '2025-05-01', {}, '14771-0')], status: 'not-met', value: '1.08' },
  {
    name: '7.1 mmol/L = 1.279 g/L',
    observations: () => [glucose(7.1, 'mmol/L', '2025-05-01', {}, '14771-0')],
    status: 'not-met',
    value: '1.28',
    flags: ['above range: possible diabetes'],
  },
  { name: 'capillary fasting glucose 1556-0', observations: () => [glucose(1.2, 'g/L', '2025-05-01', {}, '1556-0')], status: 'met', value: '1.20' },

  // Which values count as fasting (DOMAIN.md 1, Decision).
  { name: 'non-fasting 2345-7 alone', observations: () => [unqualified(1.15, 'g/L', '2025-05-01')], status: 'unknown' },
  {
    name: '2345-7 with Specimen fastingStatus F',
    observations: () => [unqualified(1.15, 'g/L', '2025-05-01', { specimen: { reference: 'Specimen/s1' } })],
    specimens: [specimen('s1', 'F')],
    status: 'met',
    value: '1.15',
  },
  {
    name: '2345-7 with an absolute Specimen reference',
    observations: () => [unqualified(1.15, 'g/L', '2025-05-01', { specimen: { reference: 'https://fhir.example/fhir/Specimen/s1' } })],
    specimens: [specimen('s1', 'F')],
    status: 'met',
    value: '1.15',
  },
  {
    name: '2345-7 with Specimen fastingStatus NF',
    observations: () => [unqualified(1.15, 'g/L', '2025-05-01', { specimen: { reference: 'Specimen/s1' } })],
    specimens: [specimen('s1', 'NF')],
    status: 'unknown',
  },
  {
    name: '2345-7 whose Specimen is not in the record',
    observations: () => [unqualified(1.15, 'g/L', '2025-05-01', { specimen: { reference: 'Specimen/s9' } })],
    specimens: [specimen('s1', 'F')],
    status: 'unknown',
  },
  {
    name: '2345-7 with a contained fasting Specimen',
    observations: () => [
      unqualified(1.15, 'g/L', '2025-05-01', { specimen: { reference: '#sp' }, contained: [specimen('sp', 'F')] }),
    ],
    status: 'met',
    value: '1.15',
  },
  { name: '2345-7 with method F', observations: () => [unqualified(1.15, 'g/L', '2025-05-01', { method: FASTING })], status: 'met', value: '1.15' },
  {
    name: '2345-7 with an extension valueCodeableConcept F',
    observations: () => [
      unqualified(1.15, 'g/L', '2025-05-01', { extension: [{ url: 'http://example.org/fasting', valueCodeableConcept: FASTING }] }),
    ],
    status: 'met',
    value: '1.15',
  },
  {
    name: '2345-7 with a component coded F',
    observations: () => [unqualified(1.15, 'g/L', '2025-05-01', { component: [{ code: FASTING }] })],
    status: 'met',
    value: '1.15',
  },
  {
    name: '2345-7 with a component valued F',
    observations: () => [unqualified(1.15, 'g/L', '2025-05-01', { component: [{ code: { text: 'fasting status' }, valueCodeableConcept: FASTING }] })],
    status: 'met',
    value: '1.15',
  },
  {
    name: '2345-7 with a component valued NF',
    observations: () => [unqualified(1.15, 'g/L', '2025-05-01', { component: [{ code: { text: 'fasting status' }, valueCodeableConcept: NOT_FASTING }] })],
    status: 'unknown',
  },
  {
    name: 'site local code GLYC-AJ (declared fasting by the site)',
    observations: () => [observation({ system: DEMO_LAB, code: 'GLYC-AJ' }, { value: 1.18, code: 'g/L' }, '2025-05-01')],
    status: 'met',
    value: '1.18',
  },
  {
    name: 'a newer non-fasting value does not hide the latest fasting one',
    observations: () => [glucose(1.15, 'g/L', '2025-01-01'), unqualified(1.4, 'g/L', '2025-05-01')],
    status: 'met',
    value: '1.15',
  },
  { name: 'HbA1c is not glucose', observations: () => [observation({ system: LOINC, code: '4548-4' }, { value: 6, code: '%' }, '2025-05-01')], status: 'unknown' },

  // The latest value in the window decides.
  { name: 'latest wins (newer above range)', observations: () => [glucose(1.15, 'g/L', '2025-01-01'), glucose(1.3, 'g/L', '2025-05-01')], status: 'not-met', value: '1.30', flags: ['above range: possible diabetes'] },
  { name: 'latest wins (newer in range)', observations: () => [glucose(1.3, 'g/L', '2025-01-01'), glucose(1.15, 'g/L', '2025-05-01')], status: 'met', value: '1.15' },
  {
    name: 'latest wins within the same day, by time',
    // 09:30Z is 11:30 in Paris, later than 11:00+02:00 although it sorts before it as text
    observations: () => [glucose(1.15, 'g/L', '2025-05-01T09:30:00Z'), glucose(1.3, 'g/L', '2025-05-01T11:00:00+02:00')],
    status: 'met',
    value: '1.15',
  },
  { name: 'exactly 12 months before asOf counts', observations: () => [glucose(1.15, 'g/L', '2024-06-15')], status: 'met', value: '1.15' },
  { name: 'the day before the window does not', observations: () => [glucose(1.15, 'g/L', '2024-06-14')], status: 'unknown' },
  {
    name: 'a value after asOf is ignored (replay)',
    observations: () => [glucose(1.15, 'g/L', '2025-01-01'), glucose(1.3, 'g/L', '2025-06-16')],
    status: 'met',
    value: '1.15',
  },
  {
    name: 'asOf in Paris: 2025-06-15T22:30Z is already 2025-06-16',
    observations: () => [glucose(1.15, 'g/L', '2025-01-01'), glucose(1.3, 'g/L', '2025-06-15T22:30:00Z')],
    status: 'met',
    value: '1.15',
  },
  {
    name: 'entered-in-error is ignored',
    observations: () => [glucose(1.15, 'g/L', '2025-01-01'), glucose(1.3, 'g/L', '2025-05-01', { status: 'entered-in-error' })],
    status: 'met',
    value: '1.15',
  },
  {
    name: 'cancelled is ignored',
    observations: () => [glucose(1.15, 'g/L', '2025-01-01'), glucose(1.3, 'g/L', '2025-05-01', { status: 'cancelled' })],
    status: 'met',
    value: '1.15',
  },
  {
    name: 'an Observation without a value (dataAbsentReason) is ignored',
    observations: () => [
      glucose(1.15, 'g/L', '2025-01-01'),
      observation({ code: '1558-6' }, undefined, '2025-05-01', { dataAbsentReason: { coding: [{ code: 'not-performed' }] } }),
    ],
    status: 'met',
    value: '1.15',
  },

  // Units.
  { name: 'unknown unit', observations: () => [glucose(5.5, 'mmol', '2025-05-01')], status: 'unknown' },
  {
    name: 'the latest value has an unknown unit: never judge an older one instead',
    observations: () => [glucose(1.15, 'g/L', '2025-01-01'), glucose(5.5, 'mmol', '2025-05-01')],
    status: 'unknown',
  },
  {
    name: 'an older value with an unknown unit does not matter',
    observations: () => [glucose(5.5, 'mmol', '2025-01-01'), glucose(1.15, 'g/L', '2025-05-01')],
    status: 'met',
    value: '1.15',
  },
  { name: 'no glucose at all', observations: () => [], status: 'unknown' },
];

describe('latest-observation-in-range: fasting glucose of the FNMF program', () => {
  it.each(cases)('$name → $status $value', ({ observations, specimens = [], status, value, flags }) => {
    const result = criterion(fnmf, CODE, record({ observations: observations(), specimens }));
    expect(result.status).toBe(status);
    if (value !== undefined) expect(result.value).toEqual({ type: 'Quantity', value, unit: 'g/L', code: 'g/L' });
    else expect(result.value).toBeUndefined();
    expect(result.flags).toEqual(flags);
    expect(result.reason).toMatch(/\.$/);
  });

  it('cites the Observation and the Specimen that made it fasting, versioned', () => {
    const obs = unqualified(1.15, 'g/L', '2025-05-01', { specimen: { reference: 'Specimen/s1' } });
    const result = criterion(fnmf, CODE, record({ observations: [obs], specimens: [specimen('s1', 'F')] }));
    expect(result.evidence).toEqual([`Observation/${obs.id}/_history/1`, 'Specimen/s1/_history/2']);
  });

  it('uses Type/id when the resource has no versionId', () => {
    const obs = glucose(1.15, 'g/L', '2025-05-01', { meta: {} });
    expect(criterion(fnmf, CODE, record({ observations: [obs] })).evidence).toEqual([`Observation/${obs.id}`]);
  });

  it('explains a conversion in the reason', () => {
    const result = criterion(fnmf, CODE, record({ observations: [glucose(6.1, 'mmol/L', '2025-05-01', {}, '14771-0')] }));
    expect(result.reason).toBe(
      'Latest fasting plasma glucose (2025-05-01): 6.1 mmol/L, i.e. 1.10 g/L, within the required range [1.10 ; 1.26] g/L.',
    );
  });

  it('reports an unknown unit as an issue on the latest Observation', () => {
    const latest = glucose(5.5, 'mmol', '2025-05-01');
    const result = criterion(fnmf, CODE, record({ observations: [glucose(1.15, 'g/L', '2025-01-01'), latest] }));
    expect(result.evidence).toEqual([`Observation/${latest.id}/_history/1`]);
    expect(result.issues).toEqual([
      expect.objectContaining({
        severity: 'error',
        code: 'code-invalid',
        resource: `Observation/${latest.id}/_history/1`,
        expression: 'Observation.valueQuantity',
      }),
    ]);
    expect(result.issues?.[0]?.diagnostics).toMatch(/"mmol".*g\/L, mg\/dL, mmol\/L/);
  });

  it('says that only non-fasting values were found, and asks for a fasting one', () => {
    const result = criterion(fnmf, CODE, record({ observations: [unqualified(1.15, 'g/L', '2025-05-01')] }));
    expect(result.reason).toMatch(/not recorded as fasting/);
    expect(result.missing?.[0]?.codes?.map((c) => c.code)).toEqual(['1558-6', '14771-0', '1556-0', 'GLYC-AJ']);
  });

  it('asks for a value within the window when there is none', () => {
    const result = criterion(fnmf, CODE, record({ observations: [glucose(1.15, 'g/L', '2024-06-14')] }));
    expect(result.missing).toEqual([
      {
        type: 'Observation',
        codes: expect.arrayContaining([expect.objectContaining({ system: LOINC, code: '1558-6' })]),
        description: 'fasting plasma glucose within the last 12 months',
      },
    ]);
    expect(result.reason).toMatch(/2024-06-14, is too old/);
  });

  const exclusiveHigh = withCriterion(fnmf, CODE, (c) =>
    c.kind === 'latest-observation-in-range' ? { ...c, high: { value: '1.26', inclusive: false } } : c,
  );
  it.each([
    [1.26, 'not-met', ['above range: possible diabetes']],
    [1.259, 'not-met', ['above range: possible diabetes']], // rounds to 1.26 first
    [1.254, 'met', undefined],
  ] as const)('a program copy with an exclusive high bound: %s g/L is %s', (value, status, flags) => {
    const result = criterion(exclusiveHigh, CODE, record({ observations: [glucose(value, 'g/L', '2025-05-01')] }));
    expect(result.status).toBe(status);
    expect(result.flags).toEqual(flags);
  });

  it('compares exactly when the criterion has no precision', () => {
    const exact = withCriterion(fnmf, CODE, (c) => {
      if (c.kind !== 'latest-observation-in-range') return c;
      const { precision: _dropped, ...rest } = c;
      return rest;
    });
    const result = criterion(exact, CODE, record({ observations: [glucose(1.095, 'g/L', '2025-05-01')] }));
    expect(result).toMatchObject({ status: 'not-met', value: { value: '1.095' } });
  });
});
