/**
 * Bulk screening, step 2 (pure): the reduced resources of one partition grouped per patient
 * into the `PatientRecord` the criteria take, the centre directory completed from the input's
 * Organizations / PractitionerRoles, and one compact verdict per patient.
 */
import type { LoadedProgram } from '../../programs/schema.js';
import { referenceKey, versionedReference } from '../references.js';
import type { CentreDirectory, EligibilityVerdict, PatientRecord } from '../types.js';
import { patientIdOf } from './reduce.js';

/** What one patient's reduced resources are gathered into before evaluation. */
export interface PatientBucket {
  patient?: fhir4.Patient;
  observations: fhir4.Observation[];
  conditions: fhir4.Condition[];
  coverages: fhir4.Coverage[];
  consents: fhir4.Consent[];
  specimens: fhir4.Specimen[];
  episodes: fhir4.EpisodeOfCare[];
}

export const emptyBucket = (): PatientBucket => ({ observations: [], conditions: [], coverages: [], consents: [], specimens: [], episodes: [] });

/** Groups reduced resources per patient id (a Map in input order). Resources of no patient are skipped. */
export class PatientJoin {
  readonly buckets = new Map<string, PatientBucket>();

  add(resource: fhir4.Resource): void {
    const id = patientIdOf(resource);
    if (id === undefined) return;
    let bucket = this.buckets.get(id);
    if (!bucket) {
      bucket = emptyBucket();
      this.buckets.set(id, bucket);
    }
    addToBucket(bucket, resource);
  }
}

/**
 * Adds a resource already known to be of the bucket's patient (`patientIdOf(resource)` is its
 * id) to the bucket: what `PatientJoin.add` does once it has found the bucket.
 */
export function addToBucket(bucket: PatientBucket, resource: fhir4.Resource): void {
  switch (resource.resourceType) {
    case 'Patient':
      bucket.patient = resource as fhir4.Patient;
      break;
    case 'Observation':
      bucket.observations.push(resource as fhir4.Observation);
      break;
    case 'Condition':
      bucket.conditions.push(resource as fhir4.Condition);
      break;
    case 'Coverage':
      bucket.coverages.push(resource as fhir4.Coverage);
      break;
    case 'Consent':
      bucket.consents.push(resource as fhir4.Consent);
      break;
    case 'Specimen':
      bucket.specimens.push(resource as fhir4.Specimen);
      break;
    case 'EpisodeOfCare':
      bucket.episodes.push(resource as fhir4.EpisodeOfCare);
      break;
    default:
      break;
  }
}

/** The record of a bucket that has its Patient; payor Organizations come from the run's shared map. */
export function recordOf(bucket: PatientBucket & { patient: fhir4.Patient }, organizations: ReadonlyMap<string, fhir4.Organization>): PatientRecord {
  const payors: fhir4.Organization[] = [];
  for (const coverage of bucket.coverages) {
    for (const payor of coverage.payor ?? []) {
      const organization = organizations.get(referenceKey(payor.reference) ?? '');
      if (organization && !payors.includes(organization)) payors.push(organization);
    }
  }
  return {
    patient: bucket.patient,
    observations: bucket.observations,
    conditions: bucket.conditions,
    coverages: bucket.coverages,
    consents: bucket.consents,
    specimens: bucket.specimens,
    organizations: payors,
  };
}

const OPEN_EPISODE_STATUSES: ReadonlySet<string> = new Set(['planned', 'waitlist', 'active', 'onhold']);

/** Whether the input shows an open enrolment of the patient in the program (EpisodeOfCare.type coding). */
export function enrolledIn(bucket: PatientBucket, programId: string, programCodeSystem: string): boolean {
  return bucket.episodes.some(
    (episode) => OPEN_EPISODE_STATUSES.has(episode.status) && (episode.type ?? []).some((type) => type.coding?.some((c) => c.system === programCodeSystem && c.code === programId)),
  );
}

/**
 * The program's centre directory completed with the input's own Organizations (identified as
 * a participating centre), their active PractitionerRoles and those roles' Practitioners, so
 * that `gp-in-centre` (and centre isolation) need no request per patient. Entries already in
 * `base` (resolved on the FHIR server) win.
 */
export function directoryWithInput(
  program: LoadedProgram,
  base: CentreDirectory,
  organizations: Iterable<fhir4.Organization>,
  roles: Iterable<fhir4.PractitionerRole>,
): CentreDirectory {
  const members = new Map(base.members);
  const centreOf = new Map<string, { centre: string; evidence: string }>();
  for (const organization of organizations) {
    for (const identifier of organization.identifier ?? []) {
      const centre = program.centres.find((c) => c.identifier.system === identifier.system && c.identifier.value === identifier.value);
      if (centre && organization.id) {
        const label = `${centre.identifier.system}|${centre.identifier.value}`;
        const key = `Organization/${organization.id}`;
        centreOf.set(key, { centre: label, evidence: versionedReference(organization) });
        if (!members.has(key)) members.set(key, { centre: label, evidence: [versionedReference(organization)] });
      }
    }
  }
  for (const role of roles) {
    if (role.active === false || !role.id) continue;
    const organization = centreOf.get(referenceKey(role.organization) ?? '');
    if (!organization) continue;
    const evidence = [versionedReference(role), organization.evidence];
    const key = `PractitionerRole/${role.id}`;
    if (!members.has(key)) members.set(key, { centre: organization.centre, evidence });
    const practitioner = referenceKey(role.practitioner);
    if (practitioner?.startsWith('Practitioner/') && !members.has(practitioner)) members.set(practitioner, { centre: organization.centre, evidence });
  }
  return { members };
}

/** Centres of a patient's GPs in the directory. */
export function centresOfPatient(patient: fhir4.Patient, directory: CentreDirectory): Set<string> {
  const centres = new Set<string>();
  for (const gp of patient.generalPractitioner ?? []) {
    const member = directory.members.get(referenceKey(gp.reference) ?? '');
    if (member) centres.add(member.centre);
  }
  return centres;
}

/**
 * One output line: a `Parameters` with the patient reference (a server id, never a name or an
 * identifier value), program, asOf, outcome and each criterion's code and status.
 */
export function compactVerdict(patientId: string, verdict: EligibilityVerdict, proposal?: string): fhir4.Parameters {
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'subject', valueReference: { reference: `Patient/${patientId}` } },
      { name: 'program', valueString: verdict.program },
      { name: 'asOf', valueDate: verdict.asOf },
      { name: 'outcome', valueCode: verdict.outcome },
      ...verdict.criteria.map((criterion) => ({
        name: 'criterion',
        part: [
          { name: 'code', valueCode: criterion.code },
          { name: 'status', valueCode: criterion.status },
        ],
      })),
      ...(proposal ? [{ name: 'task', valueReference: { reference: proposal } }] : []),
    ],
  };
}

/** JSON of one criterion's part of a verdict line, by code and status (few distinct: built once each). */
const criterionJson = new Map<string, string>();

/**
 * `JSON.stringify(compactVerdict(patientId, verdict))`, byte for byte, without building the
 * Parameters first: the bulk output writes one per patient, and the criteria's parts repeat.
 */
export function compactVerdictLine(patientId: string, verdict: EligibilityVerdict): string {
  let line = `{"resourceType":"Parameters","parameter":[{"name":"subject","valueReference":{"reference":${JSON.stringify(`Patient/${patientId}`)}}},{"name":"program","valueString":${JSON.stringify(verdict.program)}},{"name":"asOf","valueDate":${JSON.stringify(verdict.asOf)}},{"name":"outcome","valueCode":${JSON.stringify(verdict.outcome)}}`;
  for (const criterion of verdict.criteria) {
    const key = `${criterion.code}\u0000${criterion.status}`;
    let json = criterionJson.get(key);
    if (json === undefined) {
      json = JSON.stringify({ name: 'criterion', part: [{ name: 'code', valueCode: criterion.code }, { name: 'status', valueCode: criterion.status }] });
      if (criterionJson.size < 10_000) criterionJson.set(key, json);
    }
    line += `,${json}`;
  }
  return `${line}]}`;
}
