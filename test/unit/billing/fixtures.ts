/**
 * Fixtures for the billing domain: the real program data (`mappings/programs/<id>/billing.json`
 * parsed with its zod schema), the real tariffs (`profiles/ChargeItemDefinition-*.json`), and
 * enrolments built with the enrolment domain itself (test/unit/enrolment/fixtures.ts), so the
 * CarePlans billed are exactly those the adapter writes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DueClaimsInput } from '../../../src/domain/billing/due.js';
import { buildEnrolment, type EnrolmentResources } from '../../../src/domain/enrolment/enrolment-resources.js';
import { exitEnrolment, openOnDemandPlan } from '../../../src/domain/enrolment/lifecycle.js';
import type { CareTeamMember } from '../../../src/domain/enrolment/types.js';
import { billingSchema, type BillingData } from '../../../src/programs/billing-schema.js';
import { fnmfContext, fnmfEnrolment, fnmfProgram, fnmfRequest, rediabContext, rediabEnrolment, rediabProgram, rediabRequest } from '../enrolment/fixtures.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');
export const PROFILES_DIR = join(ROOT, 'profiles');

function readBilling(programId: string): BillingData {
  return billingSchema.parse(JSON.parse(readFileSync(join(ROOT, 'mappings/programs', programId, 'billing.json'), 'utf8')));
}

export const fnmfBilling = readBilling('fnmf-prediabetes');
export const rediabBilling = readBilling('rediab');

export const chargeItemDefinitionFiles = readdirSync(PROFILES_DIR).filter((name) => /^ChargeItemDefinition-.+\.json$/.test(name)).sort();

/** Every ChargeItemDefinition of profiles/, all versions, by url (as the loader builds it). */
export function loadChargeItemDefinitions(): Map<string, fhir4.ChargeItemDefinition[]> {
  const byUrl = new Map<string, fhir4.ChargeItemDefinition[]>();
  for (const name of chargeItemDefinitionFiles) {
    const definition = JSON.parse(readFileSync(join(PROFILES_DIR, name), 'utf8')) as fhir4.ChargeItemDefinition;
    byUrl.set(definition.url, [...(byUrl.get(definition.url) ?? []), definition]);
  }
  return byUrl;
}

export const chargeItemDefinitions = loadChargeItemDefinitions();

export const CID = 'http://forfait-fhir.org/fhir/ChargeItemDefinition';
export const ASSOCIATION = 'Organization/rediab-association';
export const CENTRE = 'Organization/centre-1';

export const GP = 'PractitionerRole/gp-2';
export const NURSE = 'PractitionerRole/nurse-2';
export const EDUCATOR = 'Practitioner/educ-2';
export const PODIATRIST = 'PractitionerRole/podo-2';

export const rediabFullTeam: CareTeamMember[] = [
  { reference: GP, role: 'gp' },
  { reference: NURSE, role: 'nurse' },
  { reference: EDUCATOR, role: 'sports-educator' },
];

/** A REDIAB enrolment built as the adapter builds it, optionally exited (`$exit`) and with a complementary-education plan opened. */
export function rediabEnrolmentAt(options: {
  start: string;
  asOf: string;
  careTeam?: CareTeamMember[];
  patientId?: string;
  exit?: { date: string; reason?: string };
  complementaryEducation?: string;
}): EnrolmentResources {
  // Resources as they stand when the patient leaves: later yearly periods were never opened.
  const builtAsOf = options.exit && options.exit.date < options.asOf ? options.exit.date : options.asOf;
  const built = buildEnrolment(rediabContext, rediabRequest({ start: options.start, careTeam: options.careTeam ?? rediabFullTeam, patientId: options.patientId ?? 'p2' }), builtAsOf);
  let { episode, carePlans } = built;
  if (options.complementaryEducation) {
    const opened = openOnDemandPlan(rediabContext, {
      episode: { ...episode, status: 'active' },
      careTeam: built.careTeam,
      carePlans,
      planCode: 'complementary-education',
      start: options.complementaryEducation,
      asOf: builtAsOf,
    });
    if (!opened.ok) throw new Error(opened.issues.map((issue) => issue.diagnostics).join(' '));
    carePlans = [...carePlans, opened.carePlan];
  }
  if (options.exit) {
    const exited = exitEnrolment({ episode, careTeam: built.careTeam, carePlans, reason: options.exit.reason ?? 'withdrew', date: options.exit.date });
    if (!exited.ok) throw new Error(exited.issues.map((issue) => issue.diagnostics).join(' '));
    episode = exited.episode;
    const changed = new Map(exited.carePlans.map((carePlan) => [carePlan.id, carePlan]));
    carePlans = carePlans.map((carePlan) => changed.get(carePlan.id) ?? carePlan);
  }
  return { episode, careTeam: built.careTeam, carePlans };
}

export function fnmfEnrolmentAt(options: { start: string; asOf: string; patientId?: string }): EnrolmentResources {
  return buildEnrolment(fnmfContext, fnmfRequest({ start: options.start, patientId: options.patientId ?? 'p1' }), options.asOf);
}

/** The `dueClaims` input of an enrolment. */
export function rediabInput(resources: EnrolmentResources, asOf: string, overrides: Partial<DueClaimsInput> = {}): DueClaimsInput {
  return {
    program: { id: rediabProgram.id, url: rediabProgram.url },
    billing: rediabBilling,
    enrolment: rediabEnrolment,
    chargeItemDefinitions,
    episode: resources.episode,
    careTeam: resources.careTeam,
    carePlans: resources.carePlans,
    patientId: resources.episode.patient.reference?.split('/')[1] as string,
    associationRef: ASSOCIATION,
    asOf,
    ...overrides,
  };
}

export function fnmfInput(resources: EnrolmentResources, asOf: string, overrides: Partial<DueClaimsInput> = {}): DueClaimsInput {
  return {
    program: { id: fnmfProgram.id, url: fnmfProgram.url },
    billing: fnmfBilling,
    enrolment: fnmfEnrolment,
    chargeItemDefinitions,
    episode: resources.episode,
    careTeam: resources.careTeam,
    carePlans: resources.carePlans,
    patientId: resources.episode.patient.reference?.split('/')[1] as string,
    centreRef: CENTRE,
    asOf,
    ...overrides,
  };
}

export const CPAM_CALAIS_IDENTIFIER = { system: 'http://forfait-fhir.org/fhir/NamingSystem/organisme-assurance-maladie', value: 'CPAM-CALAIS' };

/** The patient's Coverage with the CPAM of Calais as payor (by identifier and literal reference). */
export function coverage(patientId: string, overrides: Partial<fhir4.Coverage> = {}): fhir4.Coverage {
  return {
    resourceType: 'Coverage',
    id: `cov-${patientId}`,
    status: 'active',
    beneficiary: { reference: `Patient/${patientId}` },
    payor: [{ reference: 'Organization/cpam-calais', identifier: CPAM_CALAIS_IDENTIFIER }],
    ...overrides,
  };
}

export const cpamCalais: fhir4.Organization = { resourceType: 'Organization', id: 'cpam-calais', identifier: [CPAM_CALAIS_IDENTIFIER], name: 'CPAM de Calais' };

export { fnmfProgram, rediabProgram };
