/**
 * Centre isolation (issue #6): a client is bound to one participating centre, and may only
 * push data for, read, screen, enrol and record sessions of patients whose GP practises in
 * that centre. A patient of another centre is answered exactly like a patient that does not
 * exist (404), so nothing is revealed.
 *
 * A patient's centres come from `Patient.generalPractitioner` looked up in the centre
 * directories of the programs (the same resolution as the `gp-in-centre` criterion).
 */
import { notFound, OperationOutcomeError, operationOutcome } from '../http/outcomes.js';
import type { CentreDirectoryCache } from '../fhir/centre-directory.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import type { ProgramCatalog } from '../programs/schema.js';

/** The caller, as authenticated (src/http/auth.ts); `centre` is `system|value` of a participating centre. */
export type { ClientIdentity } from '../http/auth.js';
import type { ClientIdentity } from '../http/auth.js';

const forbidden = (diagnostics: string): OperationOutcomeError => new OperationOutcomeError(403, operationOutcome([{ code: 'forbidden', diagnostics }]));

function referenceKey(reference: string | undefined): string | undefined {
  const match = /(?:^|\/)((?:Organization|PractitionerRole|Practitioner)\/[A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(reference ?? '');
  return match?.[1];
}

export class CentreAccess {
  constructor(
    private readonly fhir: FhirServer,
    private readonly catalog: ProgramCatalog,
    private readonly directory: CentreDirectoryCache,
  ) {}

  /** Centres (`system|value`) in which any of these GP references practises. */
  async centresOfPractitioners(references: readonly (string | undefined)[]): Promise<Set<string>> {
    const centres = new Set<string>();
    for (const program of this.catalog.programs.values()) {
      if (!program.centres.length) continue;
      const directory = await this.directory.get(program);
      for (const reference of references) {
        const member = directory.members.get(referenceKey(reference) ?? '');
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
    const patientId = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(episode?.patient.reference ?? '')?.[1];
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
      const organization = (resource as fhir4.PractitionerRole).organization?.reference;
      const centres = await this.centresOfPractitioners([organization]);
      if (!centres.has(client.centre)) throw forbidden("A PractitionerRole may only be pushed for the client's centre");
      return;
    }
    if (resource.resourceType === 'Practitioner') return;
    if (!patientReference) return;
    if (localPatients.has(patientReference)) return;
    const patientId = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(patientReference)?.[1];
    if (!patientId) throw forbidden('The patient reference cannot be checked against the client\'s centre');
    await this.assertPatient(client, patientId);
  }
}
