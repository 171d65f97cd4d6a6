/**
 * Fixtures for the report kinds: small FHIR resources in the adapter's resource model
 * (src/domain/enrolment/types.ts, src/domain/billing/types.ts), the real value sets and units
 * of mappings/, and a KindContext for a period.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadProgramCatalog } from '../../../src/programs/load-programs.js';
import { CATEGORY_EXTENSION, FORFAIT_CODE_SYSTEM } from '../../../src/programs/billing-schema.js';
import { CARE_TEAM_ROLE_SYSTEM, DECLINE_REASON_SYSTEM, EXIT_REASON_SYSTEM, PLAN_CODE_SYSTEM, PROGRAM_CODE_SYSTEM, SESSION_KIND_SYSTEM } from '../../../src/programs/enrolment-schema.js';
import { ENROLMENT_EXTENSIONS } from '../../../src/domain/enrolment/types.js';
import { ELIGIBILITY_OUTCOME_SYSTEM } from '../../../src/domain/verdict-fhir.js';
import { EMPTY_DATA, type KindContext, type ReportData } from '../../../src/domain/reports/types.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');
export const catalog = loadProgramCatalog({ mappingsDir: join(ROOT, 'mappings'), profilesDir: join(ROOT, 'profiles') });

export const FNMF: KindContext['program'] = { id: 'fnmf-prediabetes', url: 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes', timeZone: 'Europe/Paris', capacity: 140, budget: '96684.00' };
export const REDIAB: KindContext['program'] = { id: 'rediab', url: 'http://forfait-fhir.org/fhir/PlanDefinition/rediab', timeZone: 'Europe/Paris' };

export function context(start: string, end: string, program: KindContext['program'] = FNMF): KindContext {
  return { program, period: { start, end }, valueSets: catalog.valueSets, units: catalog.units };
}

export const data = (parts: Partial<ReportData>): ReportData => ({ ...EMPTY_DATA, ...parts });

export interface EpisodeInput {
  id: string;
  patient: string;
  start: string;
  end?: string;
  status?: fhir4.EpisodeOfCare['status'];
  reason?: string;
  program?: string;
  organization?: string;
  team?: string;
}

export function episode(input: EpisodeInput): fhir4.EpisodeOfCare {
  return {
    resourceType: 'EpisodeOfCare',
    id: input.id,
    ...(input.reason ? { extension: [{ url: ENROLMENT_EXTENSIONS.exitReason, valueCodeableConcept: { coding: [{ system: EXIT_REASON_SYSTEM, code: input.reason }] } }] } : {}),
    status: input.status ?? (input.end ? 'finished' : 'active'),
    type: [{ coding: [{ system: PROGRAM_CODE_SYSTEM, code: input.program ?? FNMF.id }] }],
    patient: { reference: `Patient/${input.patient}` },
    ...(input.organization ? { managingOrganization: { reference: input.organization } } : {}),
    period: { start: input.start, ...(input.end ? { end: input.end } : {}) },
    ...(input.team ? { team: [{ reference: `CareTeam/${input.team}` }] } : {}),
  };
}

export function carePlan(id: string, episodeId: string, plan: string, start: string, end: string, status: fhir4.CarePlan['status'] = 'active'): fhir4.CarePlan {
  return {
    resourceType: 'CarePlan',
    id,
    extension: [{ url: ENROLMENT_EXTENSIONS.episodeOfCare, valueReference: { reference: `EpisodeOfCare/${episodeId}` } }],
    status,
    intent: 'plan',
    category: [{ coding: [{ system: PLAN_CODE_SYSTEM, code: plan }] }],
    subject: { reference: 'Patient/x' },
    period: { start, end },
  };
}

export function careTeam(id: string, members: [string, ...string[]][]): fhir4.CareTeam {
  return {
    resourceType: 'CareTeam',
    id,
    participant: members.map(([member, ...roles]) => ({ member: { reference: member }, role: roles.map((role) => ({ coding: [{ system: CARE_TEAM_ROLE_SYSTEM, code: role }] })) })),
  };
}

export function session(id: string, episodeId: string, day: string, kind: string, categories: string[], status: fhir4.Encounter['status'] = 'finished'): fhir4.Encounter {
  return {
    resourceType: 'Encounter',
    id,
    status,
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    type: [{ coding: [{ system: SESSION_KIND_SYSTEM, code: kind }] }],
    subject: { reference: 'Patient/x' },
    episodeOfCare: [{ reference: `EpisodeOfCare/${episodeId}` }],
    period: { start: day },
    participant: categories.map((category) => ({ type: [{ coding: [{ system: CARE_TEAM_ROLE_SYSTEM, code: category }] }], individual: { reference: `PractitionerRole/${category}` } })),
  };
}

export interface ClaimLine {
  forfait: string;
  amount: number;
  category?: string;
}

export function claim(id: string, episodeId: string, created: string, lines: ClaimLine[], program = FNMF, status: fhir4.Claim['status'] = 'active'): fhir4.Claim {
  return {
    resourceType: 'Claim',
    id,
    identifier: [{ system: `${program.url}/claim`, value: id }],
    status,
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
    use: 'claim',
    patient: { reference: 'Patient/x' },
    created,
    provider: { reference: 'Organization/c' },
    priority: { coding: [{ code: 'normal' }] },
    insurance: [{ sequence: 1, focal: true, coverage: { reference: 'Coverage/x' } }],
    supportingInfo: [{ sequence: 1, category: { coding: [{ code: 'info' }] }, valueReference: { reference: `EpisodeOfCare/${episodeId}` } }],
    item: lines.map((line, index) => ({
      sequence: index + 1,
      ...(line.category ? { extension: [{ url: CATEGORY_EXTENSION, valueCode: line.category }] } : {}),
      productOrService: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: line.forfait }] },
      net: { value: line.amount, currency: 'EUR' },
    })),
  };
}

export function invoice(id: string, date: string, member: string, line: ClaimLine, program = REDIAB): fhir4.Invoice {
  return {
    resourceType: 'Invoice',
    id,
    identifier: [{ system: `${program.url}/invoice`, value: id }],
    status: 'issued',
    date,
    participant: [{ actor: { reference: member } }],
    lineItem: [
      {
        ...(line.category ? { extension: [{ url: CATEGORY_EXTENSION, valueCode: line.category }] } : {}),
        chargeItemCodeableConcept: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: line.forfait }] },
        priceComponent: [{ type: 'base', amount: { value: line.amount, currency: 'EUR' } }],
      },
    ],
  };
}

export function declined(id: string, patient: string, lastModified: string, reason: string, program = FNMF): fhir4.Task {
  return {
    resourceType: 'Task',
    id,
    identifier: [{ system: `${program.url}/enrolment-proposal`, value: patient }],
    status: 'rejected',
    intent: 'proposal',
    statusReason: { coding: [{ system: DECLINE_REASON_SYSTEM, code: reason }] },
    for: { reference: `Patient/${patient}` },
    lastModified,
  };
}

export function verdict(id: string, patient: string, occurrence: string, outcome: string, program = FNMF): fhir4.GuidanceResponse {
  return {
    resourceType: 'GuidanceResponse',
    id,
    identifier: [{ system: `${program.url}/guidance-response`, value: patient }],
    moduleUri: program.url,
    status: 'success',
    subject: { reference: `Patient/${patient}` },
    occurrenceDateTime: occurrence,
    reasonCode: [{ coding: [{ system: ELIGIBILITY_OUTCOME_SYSTEM, code: outcome }] }],
  };
}

export function observation(id: string, patient: string, loinc: string, day: string, quantity: fhir4.Quantity, status: fhir4.Observation['status'] = 'final'): fhir4.Observation {
  return {
    resourceType: 'Observation',
    id,
    status,
    code: { coding: [{ system: 'http://loinc.org', code: loinc }] },
    subject: { reference: `Patient/${patient}` },
    effectiveDateTime: day,
    valueQuantity: quantity,
  };
}

export const ucum = (value: number, code: string): fhir4.Quantity => ({ value, unit: code, system: 'http://unitsofmeasure.org', code });

export function condition(id: string, patient: string, snomed: string, onset: string, verification?: string): fhir4.Condition {
  return {
    resourceType: 'Condition',
    id,
    code: { coding: [{ system: 'http://snomed.info/sct', code: snomed }] },
    subject: { reference: `Patient/${patient}` },
    onsetDateTime: onset,
    ...(verification ? { verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: verification }] } } : {}),
  };
}
