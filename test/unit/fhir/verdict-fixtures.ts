/** Verdicts and a program shared by the FHIR builder and validation tests. */
import { readFileSync } from 'node:fs';
import { programSchema, type LoadedProgram } from '../../../src/programs/schema.js';
import type { EligibilityVerdict } from '../../../src/domain/types.js';

export function loadProgram(id: 'fnmf-prediabetes' | 'rediab'): LoadedProgram {
  const file = new URL(`../../../mappings/programs/${id}/program.json`, import.meta.url);
  const definition = programSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  return { definition, centres: [], insurers: [], residenceAreas: [] };
}

export const fnmf = loadProgram('fnmf-prediabetes');

export const eligible: EligibilityVerdict = {
  program: 'fnmf-prediabetes',
  asOf: '2024-05-01',
  outcome: 'eligible',
  criteria: [
    {
      code: 'gp-in-centre',
      status: 'met',
      value: { type: 'Coding', system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre', code: 'CDS-MGEN-VAUGIRARD', display: 'Demo centre' },
      reason: 'The GP practises in a participating centre.',
      evidence: ['Patient/p1/_history/3', 'PractitionerRole/r1/_history/1'],
    },
    {
      code: 'age',
      status: 'met',
      value: { type: 'integer', value: 52 },
      reason: 'Aged 52, over 45.',
      evidence: ['Patient/p1/_history/3'],
    },
    {
      code: 'fasting-glucose',
      status: 'met',
      value: { type: 'Quantity', value: '1.10', unit: 'g/L', code: 'g/L' },
      reason: 'Fasting plasma glucose 1.10 g/L on 2024-03-02, within [1.10 ; 1.26] g/L.',
      evidence: ['Observation/g1/_history/1'],
    },
    {
      code: 'bmi',
      status: 'met',
      value: { type: 'Quantity', value: '27.4', unit: 'kg/m2', code: 'kg/m2' },
      reason: 'BMI 27.4 kg/m2 on 2024-03-02, 25 or more.',
      evidence: ['Observation/b1/_history/2'],
    },
    {
      code: 'no-diabetes',
      status: 'met',
      value: { type: 'boolean', value: false },
      reason: 'No active diagnosis of diabetes.',
      evidence: [],
    },
  ],
};

export const notEligible: EligibilityVerdict = {
  program: 'fnmf-prediabetes',
  asOf: '2024-05-01',
  outcome: 'not-eligible',
  criteria: [
    { code: 'age', status: 'met', value: { type: 'date', value: '1970-01-15' }, reason: 'Born 1970-01-15: over 45.', evidence: ['Patient/p2/_history/1'] },
    {
      code: 'fasting-glucose',
      status: 'not-met',
      value: { type: 'Quantity', value: '1.31', unit: 'g/L', code: 'g/L' },
      reason: 'Fasting plasma glucose 1.31 g/L on 2024-04-10, above 1.26 g/L.',
      evidence: ['Observation/g2/_history/1'],
      flags: ['above range: possible diabetes'],
    },
    { code: 'bmi', status: 'not-met', value: { type: 'string', value: 'normal' }, reason: 'BMI under 25.', evidence: ['Observation/b2/_history/1'] },
  ],
};

export const undetermined: EligibilityVerdict = {
  program: 'fnmf-prediabetes',
  asOf: '2024-05-01',
  outcome: 'undetermined',
  criteria: [
    { code: 'age', status: 'met', value: { type: 'integer', value: 47 }, reason: 'Aged 47, over 45.', evidence: ['Patient/p3/_history/1'] },
    {
      code: 'fasting-glucose',
      status: 'unknown',
      reason: 'No usable fasting plasma glucose within the last 12 months.',
      evidence: [],
      missing: [
        {
          type: 'Observation',
          codes: [
            { system: 'http://loinc.org', code: '1558-6', display: 'Fasting glucose [Mass/volume] in Serum or Plasma' },
            { system: 'http://loinc.org', code: '14771-0' },
          ],
          description: 'fasting plasma glucose within the last 12 months',
        },
      ],
      issues: [
        {
          severity: 'error',
          code: 'code-invalid',
          diagnostics: 'Unknown unit "mg/dl%" for a glucose value',
          resource: 'Observation/g3/_history/4',
          expression: 'Observation.valueQuantity.code',
        },
      ],
    },
    {
      code: 'bmi',
      status: 'unknown',
      reason: 'No BMI, nor weight and height, within the last 12 months.',
      evidence: [],
      missing: [
        { type: 'Observation', codes: [{ system: 'http://loinc.org', code: '39156-5' }], description: 'BMI within the last 12 months' },
        { type: 'Observation', codes: [{ system: 'http://loinc.org', code: '29463-7' }], description: 'body weight within the last 12 months' },
        // Same requirement as the first: appears once in dataRequirement.
        { type: 'Observation', codes: [{ system: 'http://loinc.org', code: '39156-5' }], description: 'BMI (again)' },
      ],
    },
    {
      code: 'consent',
      status: 'unknown',
      reason: 'No consent on file.',
      evidence: [],
      missing: [{ type: 'Consent', description: 'a signed membership consent' }],
      issues: [{ severity: 'warning', code: 'incomplete', diagnostics: 'Consent without a date' }],
    },
  ],
};

export const verdicts = { eligible, 'not-eligible': notEligible, undetermined } as const;
