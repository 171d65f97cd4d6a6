import { describe, expect, it } from 'vitest';
import type { CriterionStatus } from '../../../src/domain/types.js';
import { ICD10, SNOMED, condition, criterion, patient, record } from './fhir-fixtures.js';
import { fnmf } from './program-fixtures.js';

const GESTATIONAL = () => condition('11687002', SNOMED, { clinical: 'resolved' });

interface Case {
  name: string;
  birthDate?: string;
  gender?: fhir4.Patient['gender'];
  conditions?: () => fhir4.Condition[];
  asOf: string;
  status: CriterionStatus;
  age?: number;
}

const cases: Case[] = [
  { name: 'on the 45th birthday: exactly 45 is not over 45', birthDate: '1980-06-15', asOf: '2025-06-15', status: 'not-met', age: 45 },
  { name: 'the day after the 45th birthday', birthDate: '1980-06-15', asOf: '2025-06-16', status: 'met', age: 45 },
  { name: 'the day before the 45th birthday', birthDate: '1980-06-15', asOf: '2025-06-14', status: 'not-met', age: 44 },
  { name: 'male over 45', birthDate: '1960-01-01', gender: 'male', asOf: '2025-06-15', status: 'met', age: 65 },
  { name: '29 February birth: the 45th birthday is 1 March 2025', birthDate: '1980-02-29', asOf: '2025-03-01', status: 'not-met', age: 45 },
  { name: '29 February birth: met from 2 March 2025', birthDate: '1980-02-29', asOf: '2025-03-02', status: 'met', age: 45 },
  { name: '29 February birth: 44 on 28 February 2025', birthDate: '1980-02-29', asOf: '2025-02-28', status: 'not-met', age: 44 },

  // Over 35 for women with a history of gestational diabetes.
  { name: 'woman with gestational diabetes, on her 35th birthday', birthDate: '1990-06-15', conditions: () => [GESTATIONAL()], asOf: '2025-06-15', status: 'not-met', age: 35 },
  { name: 'woman with gestational diabetes, the day after her 35th birthday', birthDate: '1990-06-15', conditions: () => [GESTATIONAL()], asOf: '2025-06-16', status: 'met', age: 35 },
  { name: 'man with the same condition', birthDate: '1990-06-15', gender: 'male', conditions: () => [GESTATIONAL()], asOf: '2025-06-16', status: 'not-met', age: 35 },
  { name: 'woman aged 40 without that history', birthDate: '1985-01-01', asOf: '2025-06-15', status: 'not-met', age: 40 },
  {
    name: 'history of gestational diabetes (SNOMED 472971004)',
    birthDate: '1985-01-01',
    conditions: () => [condition('472971004', SNOMED)],
    asOf: '2025-06-15',
    status: 'met',
    age: 40,
  },
  { name: 'ICD-10 O24.41, inactive', birthDate: '1985-01-01', conditions: () => [condition('O24.41', ICD10, { clinical: 'inactive' })], asOf: '2025-06-15', status: 'met', age: 40 },
  {
    name: 'gestational diabetes entered in error',
    birthDate: '1985-01-01',
    conditions: () => [condition('11687002', SNOMED, { verification: 'entered-in-error' })],
    asOf: '2025-06-15',
    status: 'not-met',
    age: 40,
  },
  {
    name: 'gestational diabetes with an onset after asOf (replay)',
    birthDate: '1985-01-01',
    conditions: () => [condition('11687002', SNOMED, { onsetDateTime: '2025-07-01' })],
    asOf: '2025-06-15',
    status: 'not-met',
    age: 40,
  },
  { name: 'gender not recorded, 40 with gestational diabetes', birthDate: '1985-01-01', gender: undefined, conditions: () => [GESTATIONAL()], asOf: '2025-06-15', status: 'unknown', age: 40 },
  { name: 'gender not recorded, but over 45', birthDate: '1975-01-01', gender: undefined, conditions: () => [GESTATIONAL()], asOf: '2025-06-15', status: 'met', age: 50 },

  // Partial birth dates: judged with the earliest and the latest possible ones.
  { name: 'born in 1980: may or may not be over 45 on 2025-06-15', birthDate: '1980', asOf: '2025-06-15', status: 'unknown' },
  { name: 'born in 1980: over 45 on 2026-01-01 either way', birthDate: '1980', asOf: '2026-01-01', status: 'met' }, // 45 or 46: no single age
  { name: 'born in 1990, no gestational diabetes: under 45 either way', birthDate: '1990', asOf: '2025-06-15', status: 'not-met' },
  { name: 'born in May 1980: over 45 on 2025-06-15 either way', birthDate: '1980-05', asOf: '2025-06-15', status: 'met', age: 45 },
  { name: 'no birth date', birthDate: undefined, asOf: '2025-06-15', status: 'unknown' },
];

describe('age criterion of the FNMF program', () => {
  it.each(cases)('$name → $status', ({ birthDate, gender = 'female', conditions, asOf, status, age, name }) => {
    const p = patient({ gender: name.startsWith('gender not recorded') ? undefined : gender });
    if (birthDate === undefined) delete p.birthDate;
    else p.birthDate = birthDate;
    const result = criterion(fnmf, 'age', record({ patient: p, conditions: conditions?.() ?? [] }), asOf);
    expect(result.status).toBe(status);
    expect(result.value).toEqual(age === undefined ? undefined : { type: 'integer', value: age });
    expect(result.reason).toMatch(/\.$/);
  });

  it('cites the patient and the gestational-diabetes Condition when that rule is met', () => {
    const gd = GESTATIONAL();
    const result = criterion(fnmf, 'age', record({ patient: patient({ birthDate: '1990-06-15' }), conditions: [gd] }), '2025-06-16');
    expect(result.evidence).toEqual(['Patient/p1/_history/1', `Condition/${gd.id}/_history/3`]);
    expect(result.reason).toBe('Age 35 on 2025-06-16: past the 35th birthday (women with a history of gestational diabetes).');
  });

  it('explains both rules when none is met', () => {
    const result = criterion(fnmf, 'age', record({ patient: patient({ birthDate: '1990-06-15', gender: 'male' }) }), '2025-06-16');
    expect(result.reason).toBe(
      'Age 35 on 2025-06-16: not past the 45th birthday; the rule (women with a history of gestational diabetes) does not apply: recorded gender is male.',
    );
  });

  it('asks for what is missing', () => {
    const partial = criterion(fnmf, 'age', record({ patient: patient({ birthDate: '1980' }) }));
    expect(partial.missing).toEqual([{ type: 'Patient', description: 'full date of birth (Patient.birthDate is partial)' }]);
    expect(partial.reason).toMatch(/^Age 44 or 45 on 2025-06-15/);
    const noGender = criterion(fnmf, 'age', record({ patient: patient({ birthDate: '1985-01-01', gender: undefined }), conditions: [GESTATIONAL()] }));
    expect(noGender.missing).toEqual([{ type: 'Patient', description: 'administrative gender (Patient.gender)' }]);
  });

  it('reports an invalid birth date as an issue', () => {
    const result = criterion(fnmf, 'age', record({ patient: patient({ birthDate: '1980-02-30' }) }));
    expect(result.status).toBe('unknown');
    expect(result.issues?.[0]).toMatchObject({ code: 'value', expression: 'Patient.birthDate', resource: 'Patient/p1/_history/1' });
  });
});
