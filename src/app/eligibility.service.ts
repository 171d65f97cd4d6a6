/**
 * Application service around the pure eligibility rules: fetch a patient's data, evaluate,
 * and (for queued evaluations) record the verdict on the FHIR server as a GuidanceResponse
 * updated in place and, for an eligible patient not enrolled, one Task for the GP.
 *
 * Writes use client-assigned deterministic ids (`PUT Type/{uuidv5}`): the strongest guard
 * against duplicates under retries and concurrent workers (LIBRARIES.md, "Conditional writes
 * are not race-proof everywhere").
 */
import { dayInZone } from '../domain/dates.js';
import { evaluateEligibility, observationCodesOfInterest } from '../domain/evaluate.js';
import type { CalendarDate, EligibilityVerdict } from '../domain/types.js';
import { enrolmentProposalTask, enrolmentProposalTaskId, guidanceResponseId, verdictToGuidanceResponse } from '../domain/verdict-fhir.js';
import type { CentreDirectoryCache } from '../fhir/centre-directory.js';
import { FhirServerError, isTransientEntryStatus, type FhirServer } from '../fhir/fhir-server.port.js';
import { fetchPatientRecord } from '../fhir/patient-record.js';
import type { LoadedProgram, ProgramCatalog } from '../programs/schema.js';
import { writtenReferences, type ProvenanceWriter } from './audit.service.js';
import { proposalLockName, type Locks } from '../infra/redis-lock.js';

/** EpisodeOfCare.type coding that marks an enrolment in a program (written by the enrolment feature). */
export const PROGRAM_CODE_SYSTEM = 'http://forfait-fhir.org/fhir/CodeSystem/program';
const OPEN_EPISODE_STATUSES = 'planned,waitlist,active,onhold';

export class UnknownProgramError extends Error {
  override name = 'UnknownProgramError';
}

export interface RecordedVerdict {
  verdict: EligibilityVerdict;
  guidanceResponse: string;
  guidanceResponseWritten: boolean;
  task?: string;
  taskWritten: boolean;
}

/** What one read-evaluate-write did: the recorded verdict and what was written, for its Provenance. */
interface Evaluated {
  recorded: RecordedVerdict;
  evidence: string[];
  responseRefs?: string[];
  taskRefs?: string[];
  responseActivity: 'CREATE' | 'UPDATE';
  error?: FhirServerError;
}

function verdictOf(response: fhir4.GuidanceResponse | undefined): fhir4.Parameters | undefined {
  return response?.contained?.find((r): r is fhir4.Parameters => r.resourceType === 'Parameters');
}

export class EligibilityService {
  private readonly observationCodes: { system: string; code: string }[];
  /** Records where what this service writes comes from (set by the composition root). */
  provenance?: ProvenanceWriter;

  constructor(
    private readonly fhir: FhirServer,
    private readonly catalog: ProgramCatalog,
    private readonly directory: CentreDirectoryCache,
    /** Serialises the creation of a proposal Task with `$decline` (see `evaluateAndRecord`). */
    private readonly locks?: Locks,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.observationCodes = observationCodesOfInterest(catalog.programs.values(), catalog);
  }

  get programIds(): string[] {
    return [...this.catalog.programs.keys()];
  }

  program(programId: string): LoadedProgram {
    const program = this.catalog.programs.get(programId);
    if (!program) throw new UnknownProgramError(`Unknown program "${programId}"; this adapter runs: ${this.programIds.join(', ')}`);
    return program;
  }

  /** Today in the program's time zone (the default `asOf`). */
  today(programId: string): CalendarDate {
    return dayInZone(this.now(), this.program(programId).definition.timeZone);
  }

  /** Synchronous evaluation: reads, evaluates, writes nothing. */
  async evaluate(programId: string, patientId: string, asOf?: CalendarDate): Promise<EligibilityVerdict> {
    const program = this.program(programId);
    const [{ record }, directory] = await Promise.all([
      fetchPatientRecord(this.fhir, { patientId, observationCodes: this.observationCodes }),
      this.directory.get(program),
    ]);
    return evaluateEligibility(program, this.catalog, record, directory, asOf ?? this.today(programId));
  }

  /**
   * Queued evaluation: evaluates and records the verdict; idempotent. One read (a batch) and at
   * most one write (an update, or a batch of PUTs) per evaluation.
   *
   * The whole read-evaluate-write runs under the Redis lock `$decline` takes: a proposal Task is
   * created only if it was absent at the read, and no `$decline` can come between the read and
   * the write and be undone by it (found by the report tests of issue #5). Holding the lock
   * from the read costs two Redis commands and saves re-reading the Task before writing it.
   */
  async evaluateAndRecord(programId: string, patientId: string, asOf?: CalendarDate): Promise<RecordedVerdict> {
    const program = this.program(programId);
    const run = (): Promise<Evaluated> => this.readEvaluateWrite(program, patientId, asOf);
    const { recorded, evidence, responseRefs, taskRefs, responseActivity, error } = this.locks
      ? await this.locks.withLock(proposalLockName(programId, patientId), run)
      : await run();
    if (responseRefs && taskRefs && responseActivity === 'CREATE') {
      // One Provenance for what one evaluation created.
      await this.provenance?.record([...responseRefs, ...taskRefs], evidence, 'CREATE');
    } else {
      // Also when the other entry of the batch failed: what was written has its Provenance.
      if (responseRefs) await this.provenance?.record(responseRefs, evidence, responseActivity);
      if (taskRefs) await this.provenance?.record(taskRefs, evidence, 'CREATE');
    }
    if (error) throw error;
    return recorded;
  }

  private async readEvaluateWrite(program: LoadedProgram, patientId: string, asOf?: CalendarDate): Promise<Evaluated> {
    const programId = program.definition.id;
    const grId = guidanceResponseId(program, patientId);
    const taskId = enrolmentProposalTaskId(program, patientId);
    const [{ record, extras }, directory] = await Promise.all([
      fetchPatientRecord(this.fhir, { patientId, observationCodes: this.observationCodes }, [
        `GuidanceResponse/${grId}`,
        `Task/${taskId}`,
        `EpisodeOfCare?${new URLSearchParams({ patient: `Patient/${patientId}`, status: OPEN_EPISODE_STATUSES, _count: '100' }).toString()}`,
      ]),
      this.directory.get(program),
    ]);
    const [existingResponse, existingTask, episodes] = extras as [fhir4.GuidanceResponse | undefined, fhir4.Task | undefined, fhir4.Bundle | undefined];
    const verdict = evaluateEligibility(program, this.catalog, record, directory, asOf ?? this.today(programId));
    const occurrence = this.now().toISOString();

    const response = verdictToGuidanceResponse(verdict, program, patientId, {
      id: grId,
      occurrenceDateTime: occurrence,
      requestIdentifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${grId}` },
    });
    const previous = verdictOf(existingResponse);
    const previousAsOf = previous?.parameter?.find((p) => p.name === 'asOf')?.valueDate;
    // Same verdict: no new version. An older replay (earlier asOf) never overwrites a newer verdict.
    const unchanged = previous !== undefined && JSON.stringify(previous) === JSON.stringify(verdictOf(response));
    const stale = previousAsOf !== undefined && previousAsOf > verdict.asOf;
    const writeResponse = !unchanged && !stale;
    const evidence = verdict.criteria.flatMap((criterion) => criterion.evidence);

    let task: string | undefined = existingTask ? `Task/${taskId}` : undefined;
    const enrolled = (episodes?.entry ?? []).some((entry) =>
      (entry.resource as fhir4.EpisodeOfCare | undefined)?.type?.some((type) =>
        type.coding?.some((coding) => coding.system === PROGRAM_CODE_SYSTEM && coding.code === programId),
      ),
    );
    let proposal: (fhir4.Task & { id: string }) | undefined;
    if (verdict.outcome === 'eligible' && !enrolled && !existingTask) {
      const gp = record.patient.generalPractitioner?.[0];
      proposal = {
        ...enrolmentProposalTask(verdict, program, patientId, {
          id: taskId,
          authoredOn: occurrence,
          ...(gp?.reference ? { owner: { reference: gp.reference } } : {}),
        }),
        id: taskId,
      };
      task = `Task/${taskId}`;
    }

    // At most one write request per evaluation: the GuidanceResponse, the Task, or both in one
    // batch of PUTs (deterministic ids: a retried job writes the same resources again).
    const responseActivity = existingResponse ? 'UPDATE' : 'CREATE';
    const { written, error } = await this.write([...(writeResponse ? [{ ...response, id: grId }] : []), ...(proposal ? [proposal] : [])]);
    const responseRefs = writeResponse ? written[0] : undefined;
    const taskRefs = proposal ? written[writeResponse ? 1 : 0] : undefined;
    return {
      recorded: { verdict, guidanceResponse: `GuidanceResponse/${grId}`, guidanceResponseWritten: writeResponse, ...(task ? { task } : {}), taskWritten: proposal !== undefined },
      evidence,
      ...(responseRefs ? { responseRefs } : {}),
      ...(taskRefs ? { taskRefs } : {}),
      responseActivity,
      ...(error ? { error } : {}),
    };
  }

  /**
   * PUTs the resources in one batch request (one PUT alone too: concurrent evaluations' batches
   * may then travel together): each one's versioned references, undefined for an entry the
   * server refused (then `error` says why).
   */
  private async write(resources: readonly (fhir4.Resource & { id: string })[]): Promise<{ written: (string[] | undefined)[]; error?: FhirServerError }> {
    if (resources.length === 0) return { written: [] };
    const response = await this.fhir.batch({
      resourceType: 'Bundle',
      type: 'batch',
      entry: resources.map((resource) => ({ resource, request: { method: 'PUT' as const, url: `${resource.resourceType}/${resource.id}` } })),
    });
    let error: FhirServerError | undefined;
    const written = resources.map((resource, index) => {
      const entry = response.entry?.[index];
      const status = Number.parseInt(entry?.response?.status ?? '', 10) || 0;
      if (status < 200 || status >= 300) {
        // 408/429/5xx or no answer: retried with the job; another 4xx will not change.
        error ??= new FhirServerError(`FHIR batch: PUT ${resource.resourceType} answered ${entry?.response?.status ?? 'nothing'}`, status, entry?.response?.outcome as fhir4.OperationOutcome | undefined, isTransientEntryStatus(status));
        return undefined;
      }
      const fromResource = writtenReferences(entry?.resource);
      return fromResource.length ? fromResource : writtenReferences({ resourceType: 'Bundle', type: 'batch-response', entry: [entry as fhir4.BundleEntry] } as fhir4.Bundle);
    });
    return { written, ...(error ? { error } : {}) };
  }
}
