/**
 * Resolves a program's participating centres (identifiers in program data) to the FHIR
 * resources that practise there: the centre Organizations, their PractitionerRoles and
 * those roles' Practitioners. `gp-in-centre` then follows Patient.generalPractitioner
 * through this map with no request per patient.
 *
 * Cached per program for `ttlMs`. Every process (API and workers) also compares a shared
 * generation (a Redis counter the adapter increments whenever it stores an Organization,
 * PractitionerRole or Practitioner) so a GP pushed through one process counts at once in all.
 */
import type { CentreDirectory } from '../domain/types.js';
import type { LoadedProgram } from '../programs/schema.js';
import type { FhirServer } from './fhir-server.port.js';

const versioned = (resource: fhir4.Resource): string =>
  resource.meta?.versionId ? `${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}` : `${resource.resourceType}/${resource.id}`;

export async function resolveCentreDirectory(fhir: FhirServer, program: LoadedProgram): Promise<CentreDirectory> {
  const members = new Map<string, { centre: string; evidence: string[] }>();
  for (const centre of program.centres) {
    const label = `${centre.identifier.system}|${centre.identifier.value}`;
    const organizations = await fhir.searchAll<fhir4.Organization>('Organization', { identifier: label });
    for (const organization of organizations) {
      const orgEvidence = versioned(organization);
      members.set(`Organization/${organization.id}`, { centre: label, evidence: [orgEvidence] });
      const roles = await fhir.searchAll<fhir4.PractitionerRole>('PractitionerRole', { organization: `Organization/${organization.id}` });
      for (const role of roles) {
        if (role.active === false) continue;
        const roleEvidence = [versioned(role), orgEvidence];
        members.set(`PractitionerRole/${role.id}`, { centre: label, evidence: roleEvidence });
        const practitioner = /(?:^|\/)Practitioner\/([^/]+)$/.exec(role.practitioner?.reference ?? '')?.[1];
        if (practitioner && !members.has(`Practitioner/${practitioner}`)) {
          members.set(`Practitioner/${practitioner}`, { centre: label, evidence: roleEvidence });
        }
      }
    }
  }
  return { members };
}

interface CacheEntry {
  at: number;
  generation: string | null;
  value: Promise<CentreDirectory>;
  /** The value has resolved (it may then serve while a refresh runs). */
  resolved: boolean;
  /** A refresh of this expired entry is under way. */
  refreshing: boolean;
}

export class CentreDirectoryCache {
  private readonly entries = new Map<string, CacheEntry>();
  /** The generation read about to be sent: the calls of the same tick share it (one Redis GET, not one each). */
  private generationRead: Promise<string | null> | undefined;

  constructor(
    private readonly fhir: FhirServer,
    private readonly ttlMs: number,
    /** Shared generation of the directory data; a change forces a refresh. */
    private readonly generation: () => Promise<string | null> = async () => null,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The program's directory. A change of the generation (a directory resource stored through
   * the adapter) is waited for: the next evaluation sees it. An entry merely older than the TTL
   * (changes made on the FHIR server behind the adapter's back) keeps serving while one refresh
   * runs in the background: every evaluation no longer waits for the directory's searches once a
   * minute (a latency spike the push benchmark's p99 caught).
   */
  async get(program: LoadedProgram): Promise<CentreDirectory> {
    const key = program.definition.id;
    const generation = await this.currentGeneration();
    const cached = this.entries.get(key);
    if (cached && cached.generation === generation) {
      if (this.now() - cached.at < this.ttlMs) return cached.value;
      if (cached.resolved) {
        if (!cached.refreshing) this.refresh(key, program, cached);
        return cached.value;
      }
    }
    return this.load(key, program, generation);
  }

  private load(key: string, program: LoadedProgram, generation: string | null): Promise<CentreDirectory> {
    const value = resolveCentreDirectory(this.fhir, program);
    const entry: CacheEntry = { at: this.now(), generation, value, resolved: false, refreshing: false };
    this.entries.set(key, entry);
    value.then(
      () => {
        entry.resolved = true;
      },
      () => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
      },
    );
    return value;
  }

  /** Resolves the directory again and replaces `stale` with it, unless something newer replaced it first; a failure keeps `stale` (tried again at the next call). */
  private refresh(key: string, program: LoadedProgram, stale: CacheEntry): void {
    stale.refreshing = true;
    const value = resolveCentreDirectory(this.fhir, program);
    value.then(
      () => {
        if (this.entries.get(key) === stale) this.entries.set(key, { at: this.now(), generation: stale.generation, value, resolved: true, refreshing: false });
      },
      () => {
        stale.refreshing = false;
      },
    );
  }

  /**
   * The shared generation. Calls made in the same tick (the programs of one evaluation job)
   * share one GET, sent after the last of them: each call still reads a value Redis gave after
   * the call was made, so a change counted before it is always seen.
   */
  private currentGeneration(): Promise<string | null> {
    if (this.generationRead) return this.generationRead;
    const read = new Promise<void>((resolve) => process.nextTick(resolve)).then(() => {
      // Sent now: later calls wait for a read of their own.
      this.generationRead = undefined;
      return this.generation();
    });
    this.generationRead = read;
    return read;
  }
}
