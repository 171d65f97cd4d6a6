import { describe, expect, it } from 'vitest';
import type { CriterionStatus } from '../../../src/domain/types.js';
import { ICD10, SNOMED, condition, criterion, record } from './fhir-fixtures.js';
import { fnmf, rediab, withCriterion } from './program-fixtures.js';

type ConditionCase = [name: string, conditions: () => fhir4.Condition[], status: CriterionStatus];

describe('no-active-condition: no active diabetes (FNMF exclusion)', () => {
  it.each<ConditionCase>([
    ['no condition', () => [], 'met'],
    ['active type 2 diabetes (SNOMED)', () => [condition('44054006', SNOMED, { clinical: 'active' })], 'not-met'],
    ['active diabetes mellitus (SNOMED 73211009)', () => [condition('73211009', SNOMED, { clinical: 'active' })], 'not-met'],
    ['active type 1 diabetes (SNOMED)', () => [condition('46635009', SNOMED, { clinical: 'active' })], 'not-met'],
    ['active ICD-10 E11.9', () => [condition('E11.9', ICD10, { clinical: 'active' })], 'not-met'],
    ['active ICD-10 E14', () => [condition('E14', ICD10, { clinical: 'active' })], 'not-met'],
    ['recurrence', () => [condition('44054006', SNOMED, { clinical: 'recurrence' })], 'not-met'],
    ['relapse', () => [condition('E11.9', ICD10, { clinical: 'relapse' })], 'not-met'],
    ['no clinicalStatus and no abatement', () => [condition('44054006', SNOMED)], 'not-met'],
    ['no clinicalStatus, abated', () => [condition('44054006', SNOMED, { abatementDateTime: '2020-01-01' })], 'met'],
    ['resolved diabetes', () => [condition('44054006', SNOMED, { clinical: 'resolved' })], 'met'],
    ['inactive diabetes', () => [condition('E11.9', ICD10, { clinical: 'inactive' })], 'met'],
    ['diabetes in remission', () => [condition('44054006', SNOMED, { clinical: 'remission' })], 'met'],
    ['entered in error', () => [condition('44054006', SNOMED, { clinical: 'active', verification: 'entered-in-error' })], 'met'],
    ['refuted', () => [condition('44054006', SNOMED, { clinical: 'active', verification: 'refuted' })], 'met'],
    ['diagnosed after asOf (replay)', () => [condition('44054006', SNOMED, { clinical: 'active', onsetDateTime: '2025-07-01' })], 'met'],
    ['recorded after asOf, no onset', () => [condition('44054006', SNOMED, { clinical: 'active', recordedDate: '2025-07-01' })], 'met'],
    ['prediabetes', () => [condition('15777000', SNOMED, { clinical: 'active' })], 'met'],
    ['abnormal glucose tolerance R73.0', () => [condition('R73.0', ICD10, { clinical: 'active' })], 'met'],
    ['gestational diabetes O24.4', () => [condition('O24.4', ICD10, { clinical: 'active' })], 'met'],
    ['resolved and active', () => [condition('44054006', SNOMED, { clinical: 'resolved' }), condition('E11.9', ICD10, { clinical: 'active' })], 'not-met'],
  ])('%s → %s', (_name, conditions, status) => {
    const list = conditions();
    const result = criterion(fnmf, 'no-diabetes', record({ conditions: list }));
    expect(result.status).toBe(status);
    expect(result.value).toEqual({ type: 'boolean', value: status === 'not-met' });
  });

  it('cites the active Condition, with its code and no name', () => {
    const active = condition('E11.9', ICD10, { clinical: 'active' });
    const result = criterion(fnmf, 'no-diabetes', record({ conditions: [active] }));
    expect(result.evidence).toEqual([`Condition/${active.id}/_history/3`]);
    expect(result.reason).toBe('Active diabetes recorded (code E11.9).');
  });
});

describe('active-condition: type 2 diabetes (REDIAB)', () => {
  // REDIAB's data says whenAbsent "not-met"; the "unknown" variant asks for the diagnosis instead.
  const asking = withCriterion(rediab, 'type-2-diabetes', (c) => ({ ...c, whenAbsent: 'unknown' }) as typeof c);
  it.each<ConditionCase>([
    ['active SNOMED 44054006', () => [condition('44054006', SNOMED, { clinical: 'active' })], 'met'],
    ['active ICD-10 E11.9', () => [condition('E11.9', ICD10, { clinical: 'active' })], 'met'],
    ['active ICD-10 E119 (no dot)', () => [condition('E119', ICD10, { clinical: 'active' })], 'met'],
    ['resolved type 2 diabetes', () => [condition('44054006', SNOMED, { clinical: 'resolved' })], 'not-met'],
    ['no diagnosis at all (REDIAB: outside the population)', () => [], 'not-met'],
    ['only type 1 diabetes', () => [condition('E10.9', ICD10, { clinical: 'active' })], 'not-met'],
    ['entered in error only', () => [condition('44054006', SNOMED, { clinical: 'active', verification: 'entered-in-error' })], 'not-met'],
  ])('%s → %s', (_name, conditions, status) => {
    const result = criterion(rediab, 'type-2-diabetes', record({ conditions: conditions() }));
    expect(result.status).toBe(status);
  });

  it.each<ConditionCase>([
    ['no diagnosis at all: asks for one', () => [], 'unknown'],
    ['only type 1 diabetes', () => [condition('E10.9', ICD10, { clinical: 'active' })], 'unknown'],
    ['resolved type 2 diabetes stays not-met', () => [condition('44054006', SNOMED, { clinical: 'resolved' })], 'not-met'],
  ])('whenAbsent unknown: %s → %s', (_name, conditions, status) => {
    const result = criterion(asking, 'type-2-diabetes', record({ conditions: conditions() }));
    expect(result.status).toBe(status);
  });

  it('lists the codes that would settle an unknown', () => {
    const result = criterion(asking, 'type-2-diabetes', record());
    expect(result.missing).toEqual([
      {
        type: 'Condition',
        codes: [{ system: SNOMED, code: '44054006', display: 'Diabetes mellitus type 2' }],
        description: 'an active type 2 diabetes diagnosis',
      },
    ]);
  });
});
