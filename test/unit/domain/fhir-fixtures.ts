/** Small FHIR R4 fixture builders for the domain tests. */
import { evaluateEligibility } from '../../../src/domain/evaluate.js';
import type { CalendarDate, CentreDirectory, CriterionResult, EligibilityVerdict, PatientRecord } from '../../../src/domain/types.js';
import type { LoadedProgram } from '../../../src/programs/schema.js';
import { catalog } from './program-fixtures.js';

export const LOINC = 'http://loinc.org';
export const SNOMED = 'http://snomed.info/sct';
export const ICD10 = 'http://hl7.org/fhir/sid/icd-10';
export const UCUM = 'http://unitsofmeasure.org';
export const V2_0916 = 'http://terminology.hl7.org/CodeSystem/v2-0916';
export const DEMO_LAB = 'http://forfait-fhir.org/fhir/CodeSystem/demo-lab';
export const INSURER_SYSTEM = 'http://forfait-fhir.org/fhir/NamingSystem/organisme-assurance-maladie';
export const REDIAB_POLICY = 'http://forfait-fhir.org/fhir/rediab/membership-contract';

export const ASOF = '2025-06-15';
export const PATIENT_ID = 'p1';

export function patient(fields: Partial<fhir4.Patient> = {}): fhir4.Patient {
  return {
    resourceType: 'Patient',
    id: PATIENT_ID,
    meta: { versionId: '1' },
    birthDate: '1970-01-01',
    gender: 'female',
    ...fields,
  };
}

export function record(fields: Partial<PatientRecord> = {}): PatientRecord {
  return {
    patient: patient(),
    observations: [],
    conditions: [],
    coverages: [],
    consents: [],
    specimens: [],
    organizations: [],
    ...fields,
  };
}

let counter = 0;
const nextId = (prefix: string) => `${prefix}${++counter}`;

export interface QuantityInput {
  value: number;
  /** UCUM code (system UCUM) unless `unitText`/`system` say otherwise. */
  code?: string;
  unit?: string;
  system?: string;
}

export function observation(
  coding: { system?: string; code: string },
  quantity: QuantityInput | undefined,
  date: string,
  fields: Partial<fhir4.Observation> = {},
): fhir4.Observation {
  const valueQuantity: fhir4.Quantity | undefined = quantity && {
    value: quantity.value,
    ...(quantity.unit === undefined ? {} : { unit: quantity.unit }),
    ...(quantity.code === undefined ? {} : { code: quantity.code, system: quantity.system ?? UCUM }),
    ...(quantity.code === undefined && quantity.system !== undefined ? { system: quantity.system } : {}),
  };
  return {
    resourceType: 'Observation',
    id: nextId('obs'),
    meta: { versionId: '1' },
    status: 'final',
    code: { coding: [{ system: coding.system ?? LOINC, code: coding.code }] },
    subject: { reference: `Patient/${PATIENT_ID}` },
    effectiveDateTime: date,
    ...(valueQuantity ? { valueQuantity } : {}),
    ...fields,
  };
}

/** A glucose Observation: `value unit` (UCUM code) of LOINC `code` (default fasting 1558-6) on `date`. */
export function glucose(value: number, unit: string, date: string, fields: Partial<fhir4.Observation> = {}, code = '1558-6'): fhir4.Observation {
  return observation({ code }, { value, code: unit, unit }, date, fields);
}

export const bmiObs = (value: number, date: string, fields: Partial<fhir4.Observation> = {}) =>
  observation({ code: '39156-5' }, { value, code: 'kg/m2', unit: 'kg/m2' }, date, fields);
export const weightObs = (value: number, unit: string, date: string) => observation({ code: '29463-7' }, { value, code: unit, unit }, date);
export const heightObs = (value: number, unit: string, date: string) => observation({ code: '8302-2' }, { value, code: unit, unit }, date);

export function specimen(id: string, fasting: string | undefined): fhir4.Specimen {
  return {
    resourceType: 'Specimen',
    id,
    meta: { versionId: '2' },
    ...(fasting === undefined ? {} : { collection: { fastingStatusCodeableConcept: { coding: [{ system: V2_0916, code: fasting }] } } }),
  };
}

export function condition(
  code: string,
  system: string,
  fields: Partial<fhir4.Condition> & { clinical?: string; verification?: string } = {},
): fhir4.Condition {
  const { clinical, verification, ...rest } = fields;
  return {
    resourceType: 'Condition',
    id: nextId('cond'),
    meta: { versionId: '3' },
    subject: { reference: `Patient/${PATIENT_ID}` },
    code: { coding: [{ system, code }] },
    ...(clinical === undefined
      ? {}
      : { clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: clinical }] } }),
    ...(verification === undefined
      ? {}
      : {
          verificationStatus: {
            coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: verification }],
          },
        }),
    ...rest,
  };
}

export function coverage(payor: fhir4.Reference[], fields: Partial<fhir4.Coverage> = {}): fhir4.Coverage {
  return {
    resourceType: 'Coverage',
    id: nextId('cov'),
    meta: { versionId: '1' },
    status: 'active',
    beneficiary: { reference: `Patient/${PATIENT_ID}` },
    payor,
    ...fields,
  };
}

export function organization(id: string, value: string | undefined): fhir4.Organization {
  return {
    resourceType: 'Organization',
    id,
    meta: { versionId: '4' },
    ...(value === undefined ? {} : { identifier: [{ system: INSURER_SYSTEM, value }] }),
  };
}

export function consent(fields: Partial<fhir4.Consent> = {}): fhir4.Consent {
  return {
    resourceType: 'Consent',
    id: nextId('consent'),
    meta: { versionId: '5' },
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'treatment' }] },
    category: [{ coding: [{ system: LOINC, code: '59284-0' }] }],
    patient: { reference: `Patient/${PATIENT_ID}` },
    dateTime: '2025-01-10T10:00:00+01:00',
    policy: [{ uri: REDIAB_POLICY }],
    ...fields,
  };
}

export const GP = 'Practitioner/gp1';
export const directory: CentreDirectory = {
  members: new Map([
    [
      GP,
      {
        centre: 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre|CDS-MGEN-VAUGIRARD',
        evidence: ['PractitionerRole/role1/_history/2', 'Organization/centre1/_history/1'],
      },
    ],
  ]),
};

export function evaluate(program: LoadedProgram, patientRecord: PatientRecord, asOf: CalendarDate = ASOF): EligibilityVerdict {
  return evaluateEligibility(program, catalog, patientRecord, directory, asOf);
}

/** The result of criterion `code` of `program` for `patientRecord`. */
export function criterion(program: LoadedProgram, code: string, patientRecord: PatientRecord, asOf: CalendarDate = ASOF): CriterionResult {
  const found = evaluate(program, patientRecord, asOf).criteria.find((result) => result.code === code);
  if (!found) throw new Error(`no result for ${code}`);
  return found;
}
