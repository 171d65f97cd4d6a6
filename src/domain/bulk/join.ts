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

function criterionPart(code: string, status: string): string {
  const key = `${code}\u0000${status}`;
  let json = criterionJson.get(key);
  if (json === undefined) {
    json = JSON.stringify({ name: 'criterion', part: [{ name: 'code', valueCode: code }, { name: 'status', valueCode: status }] });
    if (criterionJson.size < 10_000) criterionJson.set(key, json);
  }
  return json;
}

/** The opening of every verdict line, up to the subject's reference (excluded). */
export const VERDICT_LINE_HEAD = '{"resourceType":"Parameters","parameter":[{"name":"subject","valueReference":{"reference":';

/**
 * A node of the tails' trie: the tail of the verdicts whose program, asOf, outcome and criteria
 * (code, status) so far lead here, and the nodes of one more criterion (by code, then status).
 */
interface TailNode {
  tail: string | undefined;
  next: Map<string, Map<string, TailNode>> | undefined;
}

/** Per program, then asOf, then outcome: the root of that verdict's criteria trie. */
const tailRoots = new Map<string, Map<string, Map<string, TailNode>>>();
let tailNodes = 0;
const MAX_TAIL_NODES = 10_000;

/**
 * What follows the subject's reference in a verdict line: `}},` program, asOf, outcome, each
 * criterion's code and status, `]}`. Verdicts of one screening share few distinct tails (the
 * criteria and their statuses), each built once and found again by Map lookups of its parts:
 * no string is built per patient. Bounded (the trie is dropped when it grows past
 * MAX_TAIL_NODES nodes).
 */
export function compactVerdictTail(verdict: EligibilityVerdict): string {
  if (tailNodes >= MAX_TAIL_NODES) {
    tailRoots.clear();
    tailNodes = 0;
  }
  let byAsOf = tailRoots.get(verdict.program);
  if (byAsOf === undefined) {
    byAsOf = new Map();
    tailRoots.set(verdict.program, byAsOf);
  }
  let byOutcome = byAsOf.get(verdict.asOf);
  if (byOutcome === undefined) {
    byOutcome = new Map();
    byAsOf.set(verdict.asOf, byOutcome);
  }
  let node = byOutcome.get(verdict.outcome);
  if (node === undefined) {
    node = { tail: undefined, next: undefined };
    byOutcome.set(verdict.outcome, node);
    tailNodes += 1;
  }
  for (const criterion of verdict.criteria) {
    node.next ??= new Map();
    let byStatus = node.next.get(criterion.code);
    if (byStatus === undefined) {
      byStatus = new Map();
      node.next.set(criterion.code, byStatus);
    }
    let child = byStatus.get(criterion.status);
    if (child === undefined) {
      child = { tail: undefined, next: undefined };
      byStatus.set(criterion.status, child);
      tailNodes += 1;
    }
    node = child;
  }
  if (node.tail === undefined) {
    let tail = `}},{"name":"program","valueString":${JSON.stringify(verdict.program)}},{"name":"asOf","valueDate":${JSON.stringify(verdict.asOf)}},{"name":"outcome","valueCode":${JSON.stringify(verdict.outcome)}}`;
    for (const criterion of verdict.criteria) tail += `,${criterionPart(criterion.code, criterion.status)}`;
    node.tail = `${tail}]}`;
  }
  return node.tail;
}

/**
 * `JSON.stringify(compactVerdict(patientId, verdict))`, byte for byte, without building the
 * Parameters first: `VERDICT_LINE_HEAD`, the subject's reference as a JSON string, then
 * `compactVerdictTail(verdict)`.
 */
export function compactVerdictLine(patientId: string, verdict: EligibilityVerdict): string {
  return `${VERDICT_LINE_HEAD}${JSON.stringify(`Patient/${patientId}`)}${compactVerdictTail(verdict)}`;
}
