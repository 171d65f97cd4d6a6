/**
 * Bulk screening, step 1 (pure): what of a FHIR Bulk Data resource a program's criteria can
 * use. Bulk NDJSON comes one file per resource type, not grouped by patient; each resource is
 * keyed by its patient (for the join) and reduced to the elements the criteria read, or
 * dropped when no criterion of the program could use it (an Observation of another code, a
 * Condition outside the program's value sets, a Coverage when no criterion reads coverages).
 *
 * Names, identifiers, telecom, narrative and the like never survive the reduction: the
 * partition files hold only what the rules judge, and they are deleted after the run.
 */
import type { LoadedProgram, ValueSetData } from '../../programs/schema.js';
import { valueSetById, type SharedProgramData } from '../criteria/context.js';
import { isFhirId, referenceKey } from '../references.js';
import { findCoding } from '../value-sets.js';

/** Resource types that belong to one patient and are joined per patient. */
export const PATIENT_TYPES = ['Patient', 'Observation', 'Condition', 'Coverage', 'Consent', 'Specimen', 'EpisodeOfCare'] as const;
export type PatientResourceType = (typeof PATIENT_TYPES)[number];

/** Resource types kept in memory for the whole run (few: the centre directory and payors). */
export const SHARED_TYPES = ['Organization', 'PractitionerRole', 'Practitioner'] as const;

/** What one program's criteria can use. */
export interface ReductionPlan {
  observationValueSets: ValueSetData[];
  conditionValueSets: ValueSetData[];
  coverages: boolean;
  consents: boolean;
  specimens: boolean;
  address: boolean;
}

export function reductionPlan(program: LoadedProgram, shared: SharedProgramData): ReductionPlan {
  const observation = new Set<string>();
  const condition = new Set<string>();
  const plan = { coverages: false, consents: false, specimens: false, address: false };
  for (const criterion of program.definition.criteria) {
    switch (criterion.kind) {
      case 'latest-observation-in-range':
        for (const id of [...criterion.valueSets, ...criterion.qualifiedValueSets]) observation.add(id);
        if (criterion.qualifiedValueSets.length > 0) plan.specimens = true;
        break;
      case 'body-mass-index':
        for (const id of [criterion.bmiValueSet, criterion.weightValueSet, criterion.heightValueSet]) observation.add(id);
        break;
      case 'no-active-condition':
      case 'active-condition':
        condition.add(criterion.valueSet);
        break;
      case 'age':
        for (const rule of criterion.rules) if (rule.when?.conditionValueSet) condition.add(rule.when.conditionValueSet);
        break;
      case 'coverage-payor-accepted':
        plan.coverages = true;
        break;
      case 'active-consent':
        plan.consents = true;
        break;
      case 'residence-in-area':
        plan.address = true;
        break;
      case 'general-practitioner-in-centre':
        break;
      default: {
        const unhandled: never = criterion;
        throw new Error(`Unhandled criterion kind ${JSON.stringify(unhandled)}`);
      }
    }
  }
  return {
    observationValueSets: [...observation].map((id) => valueSetById(shared, id)),
    conditionValueSets: [...condition].map((id) => valueSetById(shared, id)),
    ...plan,
  };
}

/** The id of the patient a resource belongs to (`Patient/{id}` references only); undefined otherwise. */
function patientOf(reference: fhir4.Reference | undefined): string | undefined {
  // The common form, `Patient/{id}` exactly: what referenceKey would find, without its regex.
  const text = reference?.reference;
  if (typeof text === 'string' && text.startsWith('Patient/')) {
    const id = text.slice(8);
    if (isFhirId(id)) return id;
  }
  const key = referenceKey(reference);
  return key?.startsWith('Patient/') ? key.slice('Patient/'.length) : undefined;
}

export function patientIdOf(resource: fhir4.Resource): string | undefined {
  switch (resource.resourceType) {
    case 'Patient':
      return isFhirId(resource.id) ? resource.id : undefined;
    case 'Observation':
    case 'Condition':
    case 'Specimen':
      return patientOf((resource as fhir4.Observation).subject);
    case 'Coverage':
      return patientOf((resource as fhir4.Coverage).beneficiary);
    case 'Consent':
    case 'EpisodeOfCare':
      return patientOf((resource as fhir4.Consent).patient);
    default:
      return undefined;
  }
}

const versionOnly = (meta: fhir4.Meta | undefined): { meta?: fhir4.Meta } => (meta?.versionId ? { meta: { versionId: meta.versionId } } : {});

/** Elements never read by a criterion, dropped from every kept non-Patient resource (`meta` is reduced to its versionId). */
const DROPPED: ReadonlySet<string> = new Set(['meta', 'text', 'identifier', 'performer', 'note', 'interpretation', 'referenceRange', 'encounter', 'basedOn', 'partOf', 'hasMember', 'derivedFrom', 'device', 'bodySite', 'asserter', 'recorder', 'evidence', 'stage', 'subscriber', 'policyHolder', 'costToBeneficiary', 'contract', 'extension', 'modifierExtension', 'implicitRules', 'language']);

/**
 * `code` without its codings' `display`: criteria match codes by system and code only
 * (`findCoding`, `matchingCode`), and reasons name codes, never displays. Anything that is
 * not a CodeableConcept with a `coding` array is kept as it is.
 */
function codeWithoutDisplay(concept: unknown): unknown {
  const coding = (concept as fhir4.CodeableConcept | null | undefined)?.coding;
  if (!Array.isArray(coding) || !coding.some((c) => typeof c === 'object' && c !== null && 'display' in c)) return concept;
  return {
    ...(concept as fhir4.CodeableConcept),
    coding: coding.map((c: unknown) => {
      if (typeof c !== 'object' || c === null || !('display' in c)) return c;
      const copy: Record<string, unknown> = {};
      for (const key in c) if (key !== 'display') copy[key] = (c as Record<string, unknown>)[key];
      return copy;
    }),
  };
}

/**
 * A copy without the DROPPED elements (built key by key: `delete` would make a slow dictionary-mode object).
 * `lean` (Observations and Conditions): also without `category` (Observation.category: no criterion
 * reads it; Consent.category, which one does, is never lean) and without the `display` of `code`'s codings.
 */
function withoutDropped<T extends fhir4.Resource>(resource: T, keepExtensions: boolean, lean = false): T {
  const source = resource as unknown as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const key in source) {
    if (DROPPED.has(key) && !(keepExtensions && key === 'extension')) continue;
    if (lean) {
      if (key === 'category') continue;
      if (key === 'code') {
        copy[key] = codeWithoutDisplay(source[key]);
        continue;
      }
    }
    copy[key] = source[key];
  }
  if (resource.meta?.versionId) copy['meta'] = { versionId: resource.meta.versionId };
  return copy as unknown as T;
}

/**
 * The resource as the program's criteria need it, or undefined when they cannot use it.
 * Patient: gender, birth date, GP, deceased and (only for a residence criterion) the
 * postal code, use and period of its addresses. Others: everything but the elements no
 * criterion reads (the Observation keeps `extension`: a fasting-status qualifier may be one;
 * Observations and Conditions lose `category` and their code's displays as well).
 */
export function reduceResource(resource: fhir4.Resource, plan: ReductionPlan): fhir4.Resource | undefined {
  switch (resource.resourceType) {
    case 'Patient': {
      const patient = resource as fhir4.Patient;
      const reduced: fhir4.Patient = { resourceType: 'Patient', ...(patient.id ? { id: patient.id } : {}), ...versionOnly(patient.meta) };
      if (patient.active !== undefined) reduced.active = patient.active;
      if (patient.gender !== undefined) reduced.gender = patient.gender;
      if (patient.birthDate !== undefined) reduced.birthDate = patient.birthDate;
      if (patient.deceasedBoolean !== undefined) reduced.deceasedBoolean = patient.deceasedBoolean;
      if (patient.deceasedDateTime !== undefined) reduced.deceasedDateTime = patient.deceasedDateTime;
      if (patient.generalPractitioner) reduced.generalPractitioner = patient.generalPractitioner.map((gp) => (gp.reference ? { reference: gp.reference } : {}));
      if (plan.address && patient.address) {
        reduced.address = patient.address.map((address) => ({
          ...(address.use ? { use: address.use } : {}),
          ...(address.postalCode ? { postalCode: address.postalCode } : {}),
          ...(address.period ? { period: address.period } : {}),
        }));
      }
      return reduced;
    }
    case 'Observation':
      return findCoding((resource as fhir4.Observation).code, plan.observationValueSets) ? withoutDropped(resource, true, true) : undefined;
    case 'Condition':
      return findCoding((resource as fhir4.Condition).code, plan.conditionValueSets) ? withoutDropped(resource, false, true) : undefined;
    case 'Coverage':
      return plan.coverages ? withoutDropped(resource, false) : undefined;
    case 'Consent':
      return plan.consents ? withoutDropped(resource, false) : undefined;
    case 'Specimen':
      return plan.specimens ? withoutDropped(resource, false) : undefined;
    case 'EpisodeOfCare': {
      const episode = resource as fhir4.EpisodeOfCare;
      return { resourceType: 'EpisodeOfCare', ...(episode.id ? { id: episode.id } : {}), status: episode.status, patient: episode.patient, ...(episode.type ? { type: episode.type } : {}) } as fhir4.EpisodeOfCare;
    }
    default:
      return undefined;
  }
}

/** FNV-1a (32 bits) of a patient id: its partition, stable across runs and processes. */
export function partitionOf(patientId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < patientId.length; i += 1) {
    hash ^= patientId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}
