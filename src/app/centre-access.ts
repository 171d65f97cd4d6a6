/**
 * Centre isolation (issue #6): a client is bound to one participating centre, and may only
 * push data for, read, screen, enrol and record sessions of patients whose GP practises in
 * that centre. A patient of another centre is answered exactly like a patient that does not
 * exist (404), so nothing is revealed.
 *
 * A patient's centres come from `Patient.generalPractitioner` looked up in the centre
 * directories of the programs: a PractitionerRole or an Organization of a participating
 * centre places the patient in that centre. A bare `Practitioner` does so only when every
 * active role it holds in a participating centre is in the same centre: a Practitioner shared
 * by several centres (given a role in a second centre) places the patient in none, so a centre
 * cannot pull another centre's patients by giving their GP a role in its own Organization.
 */
import { notFound, OperationOutcomeError, operationOutcome } from '../http/outcomes.js';
import type { CentreDirectoryCache } from '../fhir/centre-directory.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import type { ProgramCatalog } from '../programs/schema.js';
import { localId, localReference } from '../domain/references.js';
import type { CentreDirectory } from '../domain/types.js';

/** The caller, as authenticated (src/http/auth.ts); `centre` is `system|value` of a participating centre. */
export type { ClientIdentity } from '../http/auth.js';
import type { ClientIdentity } from '../http/auth.js';

const forbidden = (diagnostics: string): OperationOutcomeError => new OperationOutcomeError(403, operationOutcome([{ code: 'forbidden', diagnostics }]));

/** Directory members a GP reference may name (any base URL, any version, as read from the server of record). */
const MEMBER_TYPES = ['Organization', 'PractitionerRole', 'Practitioner'] as const;

export class CentreAccess {
  constructor(
    private readonly fhir: FhirServer,
    private readonly catalog: ProgramCatalog,
    private readonly directory: CentreDirectoryCache,
  ) {}

  /** Centres (`system|value`) in which any of these GP references practises. */
  async centresOfPractitioners(references: readonly (string | undefined)[]): Promise<Set<string>> {
    const keys = references.flatMap((reference) => localReference(reference, MEMBER_TYPES, { anyBase: true }) ?? []);
    const centres = new Set<string>();
    if (!keys.length) return centres;
    const directories = await this.directories();
    for (const key of keys) {
      if (key.type === 'Practitioner') {
        const own = await this.centresOfPractitioner(key.id, directories);
        if (own.size === 1) own.forEach((centre) => centres.add(centre));
        continue;
      }
      for (const directory of directories) {
        const member = directory.members.get(key.key);
        if (member) centres.add(member.centre);
      }
    }
    return centres;
  }

  /** The centre directories of the programs that have participating centres. */
  private async directories(): Promise<CentreDirectory[]> {
    const directories: CentreDirectory[] = [];
    for (const program of this.catalog.programs.values()) {
      if (program.centres.length) directories.push(await this.directory.get(program));
    }
    return directories;
  }

  /** Participating centres in which a Practitioner holds an active role (through the directories' PractitionerRoles). */
  private async centresOfPractitioner(practitionerId: string, directories: readonly CentreDirectory[]): Promise<Set<string>> {
    const roles = await this.fhir.searchAll<fhir4.PractitionerRole>('PractitionerRole', { practitioner: `Practitioner/${practitionerId}` });
    const centres = new Set<string>();
    for (const role of roles) {
      if (!role.id || role.active === false) continue;
      for (const directory of directories) {
        const member = directory.members.get(`PractitionerRole/${role.id}`);
        if (member) centres.add(member.centre);
      }
    }
    return centres;
  }

  /** The centres of a stored patient; undefined when the patient does not exist. */
  async centresOfPatient(patientId: string): Promise<Set<string> | undefined> {
    const patient = await this.fhir.readIfExists<fhir4.Patient>('Patient', patientId);
    if (!patient) return undefined;
    return this.centresOfPractitioners((patient.generalPractitioner ?? []).map((gp) => gp.reference));
  }

  /** Throws 404 (as for an unknown patient) unless the patient's GP is in the client's centre. */
  async assertPatient(client: ClientIdentity | undefined, patientId: string): Promise<void> {
    if (!client) return; // authentication disabled (development on loopback)
    const centres = await this.centresOfPatient(patientId);
    if (!client.centre || !centres?.has(client.centre)) throw notFound(`Patient/${patientId} not found`);
  }

  /** Same for an enrolment, through its patient. */
  async assertEpisode(client: ClientIdentity | undefined, episodeId: string): Promise<void> {
    if (!client) return;
    const episode = await this.fhir.readIfExists<fhir4.EpisodeOfCare>('EpisodeOfCare', episodeId);
    const patientId = localId(episode?.patient, 'Patient');
    if (!patientId) throw notFound(`EpisodeOfCare/${episodeId} not found`);
    try {
      await this.assertPatient(client, patientId);
    } catch {
      throw notFound(`EpisodeOfCare/${episodeId} not found`);
    }
  }

  /**
   * Checks a pushed resource: a Patient's GP must be in the client's centre; a resource about a
   * patient must be about one of the client's patients (or one created in the same Bundle); a
   * PractitionerRole must belong to the client's centre Organization, and an Organization may
   * only be the client's centre itself. `localPatients` are Patient fullUrls/ids of the Bundle
   * already checked.
   */
  async assertPushable(client: ClientIdentity | undefined, resource: fhir4.Resource, patientReference: string | undefined, localPatients: ReadonlySet<string> = new Set()): Promise<void> {
    if (!client) return;
    if (!client.centre) throw forbidden('This client is bound to no participating centre');
    if (resource.resourceType === 'Patient') {
      const centres = await this.centresOfPractitioners(((resource as fhir4.Patient).generalPractitioner ?? []).map((gp) => gp.reference));
      if (!centres.has(client.centre)) throw forbidden("A pushed Patient's general practitioner must practise in the client's centre");
      return;
    }
    if (resource.resourceType === 'Organization') {
      const identifiers = ((resource as fhir4.Organization).identifier ?? []).map((i) => `${i.system}|${i.value}`);
      if (!identifiers.includes(client.centre)) throw forbidden("An Organization may only be pushed by its own centre");
      return;
    }
    if (resource.resourceType === 'PractitionerRole') {
      const role = resource as fhir4.PractitionerRole;
      const centres = await this.centresOfPractitioners([role.organization?.reference]);
      if (!centres.has(client.centre)) throw forbidden("A PractitionerRole may only be pushed for the client's centre");
      // A Practitioner who already practises in another centre stays there: a role in this
      // centre would make that centre's patients (whose GP is the bare Practitioner) ambiguous.
      const practitionerId = localId(role.practitioner, 'Practitioner', { anyBase: true });
      if (practitionerId) {
        const elsewhere = [...(await this.centresOfPractitioner(practitionerId, await this.directories()))].some((centre) => centre !== client.centre);
        if (elsewhere) throw forbidden('This Practitioner holds a role in another centre; a PractitionerRole may only be pushed for a Practitioner of the client\'s centre');
      }
      return;
    }
    if (resource.resourceType === 'Practitioner') return;
    if (!patientReference) return;
    if (localPatients.has(patientReference)) return;
    const patientId = localId(patientReference, 'Patient');
    if (!patientId) throw forbidden('The patient reference cannot be checked against the client\'s centre');
    await this.assertPatient(client, patientId);
  }
}
