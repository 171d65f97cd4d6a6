/**
 * Test fixtures for the enrolment domain: the real program data of `mappings/` (parsed with the
 * zod schema), small PlanDefinitions of our own at the programs' canonical URLs (so these tests
 * do not depend on the protocol in profiles/), and a tiny condition evaluator standing in for
 * FHIRPath.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EnrolmentContext } from '../../../src/domain/enrolment/enrolment-resources.js';
import type { CareTeamMember, ConditionEvaluator, EnrolmentRequest, ProgramRef } from '../../../src/domain/enrolment/types.js';
import { CARE_TEAM_ROLE_SYSTEM, enrolmentSchema, SESSION_KIND_SYSTEM, type EnrolmentData } from '../../../src/programs/enrolment-schema.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');

function readEnrolment(programId: string): EnrolmentData {
  return enrolmentSchema.parse(JSON.parse(readFileSync(join(ROOT, 'mappings/programs', programId, 'enrolment.json'), 'utf8')));
}

export const fnmfEnrolment = readEnrolment('fnmf-prediabetes');
export const rediabEnrolment = readEnrolment('rediab');

export const fnmfProgram: ProgramRef = {
  id: 'fnmf-prediabetes',
  title: 'FNMF prediabetes prevention',
  url: 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes',
};
export const rediabProgram: ProgramRef = {
  id: 'rediab',
  title: 'REDIAB Nord - Pas-de-Calais',
  url: 'http://forfait-fhir.org/fhir/PlanDefinition/rediab',
};

/**
 * A stand-in for FHIRPath over the forms the PlanDefinitions use: `%name`, `%name = true|false`
 * and `%name = 'code'`. Anything else throws, so a test never passes on an expression it did not
 * understand.
 */
export const tinyEvaluate: ConditionEvaluator = (expression, variables) => {
  const match = /^%([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*(true|false|'[^']*'))?$/.exec(expression.trim());
  if (!match) throw new Error(`tiny evaluator: unsupported expression ${expression}`);
  const value = variables[match[1] as string];
  const literal = match[2];
  if (literal === undefined) return value === true;
  const expected = literal === 'true' ? true : literal === 'false' ? false : literal.slice(1, -1);
  return value === expected;
};

export interface ActionSpec {
  id: string;
  kind: string;
  role: string;
  count: number;
  condition?: string;
}

export function planDefinition(url: string, actions: ActionSpec[]): fhir4.PlanDefinition {
  return {
    resourceType: 'PlanDefinition',
    url,
    status: 'active',
    action: actions.map((spec) => ({
      id: spec.id,
      title: `${spec.kind} sessions`,
      code: [{ coding: [{ system: SESSION_KIND_SYSTEM, code: spec.kind }] }],
      definitionCanonical: `http://forfait-fhir.org/fhir/ActivityDefinition/${spec.kind}`,
      ...(spec.condition
        ? { condition: [{ kind: 'applicability' as const, expression: { language: 'text/fhirpath', expression: spec.condition } }] }
        : {}),
      timingTiming: { repeat: { count: spec.count, frequency: 1, period: 1, periodUnit: 'wk' as const } },
      participant: [{ type: 'practitioner' as const, role: { coding: [{ system: CARE_TEAM_ROLE_SYSTEM, code: spec.role }] } }],
    })),
  };
}

const PD = 'http://forfait-fhir.org/fhir/PlanDefinition';

export const planDefinitions: ReadonlyMap<string, fhir4.PlanDefinition> = new Map(
  [
    planDefinition(`${PD}/fnmf-intensive-phase`, [
      { id: 'apa-group', kind: 'apa-group', role: 'apa-teacher', count: 16 },
      { id: 'apa-individual', kind: 'apa-individual', role: 'apa-teacher', count: 8, condition: '%personalisedApa = true' },
      { id: 'dietary', kind: 'dietary', role: 'dietitian', count: 4 },
      { id: 'nurse', kind: 'nurse-coaching', role: 'nurse', count: 4, condition: '%reinforcedCoaching = false' },
      { id: 'nurse-reinforced', kind: 'nurse-coaching', role: 'nurse', count: 8, condition: '%reinforcedCoaching = true' },
      { id: 'platform-intensive', kind: 'resource-platform', role: 'apa-teacher', count: 16, condition: "%platformIntensity = 'intensive'" },
      { id: 'gp', kind: 'gp-consultation', role: 'gp', count: 2 },
    ]),
    planDefinition(`${PD}/fnmf-consolidation-phase`, [
      { id: 'apa-group', kind: 'apa-group', role: 'apa-teacher', count: 20 },
      { id: 'gp', kind: 'gp-consultation', role: 'gp', count: 3 },
    ]),
    planDefinition(`${PD}/rediab-initial-education`, [
      { id: 'gp', kind: 'gp-consultation', role: 'gp', count: 3 },
      { id: 'nurse', kind: 'diabetes-education-individual', role: 'nurse', count: 4 },
      { id: 'apa', kind: 'apa-group', role: 'sports-educator', count: 8 },
    ]),
    planDefinition(`${PD}/rediab-follow-up-education`, [
      { id: 'gp', kind: 'gp-consultation', role: 'gp', count: 2 },
      { id: 'nurse', kind: 'diabetes-education-individual', role: 'nurse', count: 2 },
    ]),
    planDefinition(`${PD}/rediab-podiatric-follow-up`, [{ id: 'podiatry', kind: 'podiatry', role: 'podiatrist', count: 6 }]),
    planDefinition(`${PD}/rediab-complementary-education`, [
      { id: 'workshop', kind: 'education-workshop', role: 'dietitian', count: 4 },
      { id: 'gp', kind: 'gp-consultation', role: 'gp', count: 1 },
    ]),
  ].map((pd) => [pd.url as string, pd]),
);

export const SESSION_KINDS: ReadonlySet<string> = new Set([
  'apa-group',
  'apa-individual',
  'dietary',
  'psychological',
  'nurse-coaching',
  'gp-consultation',
  'podiatry',
  'education-workshop',
  'resource-platform',
  'diabetes-education-individual',
]);

export const fnmfContext: EnrolmentContext = { program: fnmfProgram, enrolment: fnmfEnrolment, planDefinitions, evaluate: tinyEvaluate };
export const rediabContext: EnrolmentContext = { program: rediabProgram, enrolment: rediabEnrolment, planDefinitions, evaluate: tinyEvaluate };

export const fnmfTeam: CareTeamMember[] = [
  { reference: 'PractitionerRole/gp-1', role: 'gp' },
  { reference: 'PractitionerRole/apa-1', role: 'apa-teacher' },
  { reference: 'Practitioner/nurse-1', role: 'nurse' },
  { reference: 'PractitionerRole/diet-1', role: 'dietitian' },
];

export const rediabTeam: CareTeamMember[] = [
  { reference: 'PractitionerRole/gp-2', role: 'gp' },
  { reference: 'PractitionerRole/nurse-2', role: 'nurse' },
  { reference: 'Practitioner/educ-2', role: 'sports-educator' },
];

export function fnmfRequest(overrides: Partial<EnrolmentRequest> = {}): EnrolmentRequest {
  return { programId: 'fnmf-prediabetes', patientId: 'p1', start: '2026-01-31', careTeam: fnmfTeam, options: {}, ...overrides };
}

export function rediabRequest(overrides: Partial<EnrolmentRequest> = {}): EnrolmentRequest {
  return {
    programId: 'rediab',
    patientId: 'p2',
    start: '2026-03-15',
    careTeam: rediabTeam,
    consent: 'Consent/c1',
    options: {},
    ...overrides,
  };
}

export const REDIAB_POLICY = 'http://forfait-fhir.org/fhir/rediab/membership-contract';

export function consent(overrides: Partial<fhir4.Consent> = {}): fhir4.Consent {
  return {
    resourceType: 'Consent',
    id: 'c1',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'treatment' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: 'Patient/p2' },
    dateTime: '2026-03-01',
    policy: [{ uri: REDIAB_POLICY }],
    ...overrides,
  };
}

/** A care-session Encounter of the care-session-encounter profile. */
export function session(overrides: Partial<fhir4.Encounter> & { kind?: string; start?: string; individual?: string; role?: string } = {}): fhir4.Encounter {
  const { kind = 'apa-group', start = '2026-02-10T10:00:00+01:00', individual = 'PractitionerRole/apa-1', role = 'apa-teacher', ...rest } = overrides;
  return {
    resourceType: 'Encounter',
    id: 'e1',
    identifier: [{ system: 'urn:ehr:centre-1:encounter', value: 'E-0001' }],
    status: 'finished',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    type: [{ coding: [{ system: SESSION_KIND_SYSTEM, code: kind }] }],
    subject: { reference: 'Patient/p1' },
    participant: [{ type: [{ coding: [{ system: CARE_TEAM_ROLE_SYSTEM, code: role }] }], individual: { reference: individual } }],
    period: { start },
    ...rest,
  };
}
