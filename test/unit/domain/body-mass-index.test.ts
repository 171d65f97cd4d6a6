import { describe, expect, it } from 'vitest';
import type { CriterionStatus } from '../../../src/domain/types.js';
import { bmiObs, criterion, heightObs, observation, record, weightObs } from './fhir-fixtures.js';
import { fnmf, withCriterion } from './program-fixtures.js';

const CODE = 'bmi';

interface Case {
  name: string;
  observations: () => fhir4.Observation[];
  status: CriterionStatus;
  value?: string;
  /** Which fixtures (by index in `observations`) are the evidence. */
  evidence?: number[];
}

const cases: Case[] = [
  { name: 'BMI 25', observations: () => [bmiObs(25, '2025-05-01')], status: 'met', value: '25', evidence: [0] },
  { name: 'BMI 24.9', observations: () => [bmiObs(24.9, '2025-05-01')], status: 'not-met', value: '24.9', evidence: [0] },
  { name: 'BMI in kg/m^2 (alias)', observations: () => [observation({ code: '39156-5' }, { value: 31.2, unit: 'kg/m^2' }, '2025-05-01')], status: 'met', value: '31.2' },
  {
    name: '80 kg / 178.9 cm = 24.9959: below 25, compared exactly',
    observations: () => [weightObs(80, 'kg', '2025-05-01'), heightObs(178.9, 'cm', '2025-05-01')],
    status: 'not-met',
    value: '24.9959',
    evidence: [0, 1],
  },
  {
    name: '80 kg / 178.8 cm = 25.0239',
    observations: () => [weightObs(80, 'kg', '2025-05-01'), heightObs(178.8, 'cm', '2025-05-01')],
    status: 'met',
    value: '25.0239',
    evidence: [0, 1],
  },
  {
    name: 'weight in g and height in m',
    observations: () => [weightObs(80000, 'g', '2025-05-01'), heightObs(1.788, 'm', '2025-05-01')],
    status: 'met',
    value: '25.0239',
  },
  {
    name: 'a height older than the window is used',
    observations: () => [weightObs(81, 'kg', '2025-05-01'), heightObs(178, 'cm', '2010-03-01')],
    status: 'met',
    value: '25.565',
    evidence: [0, 1],
  },
  {
    name: 'the latest height is used',
    observations: () => [weightObs(81, 'kg', '2025-05-01'), heightObs(150, 'cm', '2010-03-01'), heightObs(190, 'cm', '2020-03-01')],
    status: 'not-met',
    value: '22.4377',
    evidence: [0, 2],
  },
  {
    name: 'a height after asOf is ignored',
    observations: () => [weightObs(81, 'kg', '2025-05-01'), heightObs(178, 'cm', '2010-03-01'), heightObs(190, 'cm', '2025-07-01')],
    status: 'met',
    value: '25.565',
    evidence: [0, 1],
  },
  {
    name: 'a weight more recent than the BMI Observation is preferred',
    observations: () => [bmiObs(26, '2025-01-01'), weightObs(70, 'kg', '2025-05-01'), heightObs(180, 'cm', '2015-01-01')],
    status: 'not-met',
    value: '21.6049',
    evidence: [1, 2],
  },
  {
    name: 'a BMI Observation more recent than the weight is used',
    observations: () => [bmiObs(26, '2025-05-01'), weightObs(70, 'kg', '2025-01-01'), heightObs(180, 'cm', '2015-01-01')],
    status: 'met',
    value: '26',
    evidence: [0],
  },
  {
    name: 'a newer weight without any height: the BMI Observation',
    observations: () => [bmiObs(26, '2025-01-01'), weightObs(70, 'kg', '2025-05-01')],
    status: 'met',
    value: '26',
    evidence: [0],
  },
  { name: 'BMI older than 12 months', observations: () => [bmiObs(30, '2024-06-14')], status: 'unknown' },
  { name: 'BMI exactly 12 months old', observations: () => [bmiObs(30, '2024-06-15')], status: 'met', value: '30' },
  { name: 'weight older than 12 months', observations: () => [weightObs(90, 'kg', '2024-06-14'), heightObs(170, 'cm', '2025-05-01')], status: 'unknown' },
  { name: 'a weight without height', observations: () => [weightObs(90, 'kg', '2025-05-01')], status: 'unknown', evidence: [0] },
  { name: 'nothing', observations: () => [], status: 'unknown' },
  { name: 'BMI entered in error', observations: () => [bmiObs(30, '2025-05-01', { status: 'entered-in-error' })], status: 'unknown' },
  { name: 'BMI with an unknown unit', observations: () => [observation({ code: '39156-5' }, { value: 30, code: 'kg' }, '2025-05-01')], status: 'unknown' },
  { name: 'weight with an unknown unit', observations: () => [weightObs(12, 'stone', '2025-05-01'), heightObs(170, 'cm', '2025-05-01')], status: 'unknown' },
];

describe('body-mass-index criterion of the FNMF program', () => {
  it.each(cases)('$name → $status $value', ({ observations, status, value, evidence }) => {
    const list = observations();
    const result = criterion(fnmf, CODE, record({ observations: list }));
    expect(result.status).toBe(status);
    expect(result.value).toEqual(value === undefined ? undefined : { type: 'Quantity', value, unit: 'kg/m2', code: 'kg/m2' });
    if (evidence) expect(result.evidence).toEqual(evidence.map((i) => `Observation/${list[i]?.id}/_history/1`));
    expect(result.reason).toMatch(/\.$/);
  });

  it('rounds before comparing when the criterion gives a precision', () => {
    const rounded = withCriterion(fnmf, CODE, (c) => (c.kind === 'body-mass-index' ? { ...c, precision: 1 } : c));
    const result = criterion(rounded, CODE, record({ observations: [weightObs(80, 'kg', '2025-05-01'), heightObs(178.9, 'cm', '2025-05-01')] }));
    expect(result).toMatchObject({ status: 'met', value: { value: '25.0' } });
  });

  it('applies heightLookbackMonths when given', () => {
    const recentHeight = withCriterion(fnmf, CODE, (c) => (c.kind === 'body-mass-index' ? { ...c, heightLookbackMonths: 24 } : c));
    const observations = [weightObs(81, 'kg', '2025-05-01'), heightObs(178, 'cm', '2010-03-01')];
    const result = criterion(recentHeight, CODE, record({ observations }));
    expect(result.status).toBe('unknown');
    expect(result.missing?.map((m) => m.description)).toEqual([
      'body-mass index within the last 12 months',
      'body height within the last 24 months',
    ]);
  });

  it('explains a computed BMI', () => {
    const result = criterion(fnmf, CODE, record({ observations: [weightObs(80, 'kg', '2025-05-01'), heightObs(178.9, 'cm', '2025-04-01')] }));
    expect(result.reason).toBe(
      'Body-mass index 24.9959 kg/m2 computed from the body weight of 2025-05-01 (80 kg) and the body height of 2025-04-01 (178.9 cm), below the required range >= 25 kg/m2.',
    );
  });

  it('asks for a BMI, or a weight and a height, when there is nothing', () => {
    const result = criterion(fnmf, CODE, record());
    expect(result.missing?.map((m) => [m.codes?.map((c) => c.code), m.description])).toEqual([
      [['39156-5'], 'body-mass index within the last 12 months'],
      [['29463-7'], 'body weight within the last 12 months, with a body height, to compute the body-mass index'],
      [['8302-2'], 'body height'],
    ]);
  });

  it('reports unit issues on the resource concerned', () => {
    const weight = weightObs(12, 'stone', '2025-05-01');
    const result = criterion(fnmf, CODE, record({ observations: [weight, heightObs(170, 'cm', '2025-05-01')] }));
    expect(result.issues).toEqual([expect.objectContaining({ code: 'code-invalid', resource: `Observation/${weight.id}/_history/1` })]);
  });
});
