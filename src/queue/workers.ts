/**
 * The queue workers: one processor per queue, thin around the application services.
 * Delivery is at least once (a killed worker's job runs again), so every processor is
 * idempotent: deterministic ids for what it writes, HSET for screening progress.
 */
import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { EligibilityService, UnknownProgramError } from '../app/eligibility.service.js';
import { PatientNotFoundError } from '../fhir/patient-record.js';
import { FhirServerError, type FhirServer } from '../fhir/fhir-server.port.js';
import type { CentreDirectoryCache } from '../fhir/centre-directory.js';
import type { Metrics } from '../infra/metrics.js';
import { screeningChildJobId } from './job-ids.js';
import {
  EVALUATION_QUEUE,
  SCREENING_QUEUE,
  evaluationJobOptions,
  programsOfJob,
  type EvaluationJobData,
  type ProgramEvaluationResult,
  type EvaluationJobResult,
  type Queues,
  type ScreeningJobData,
} from './queues.js';
import type { ScreeningStore } from './screening-store.js';
import { BulkInputError, type BulkScreening } from '../app/bulk-screening.js';

export interface WorkerDeps {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  completedRetentionSeconds: number;
  service: EligibilityService;
  fhir: FhirServer;
  directory: CentreDirectoryCache;
  queues: Queues;
  screenings: ScreeningStore;
  metrics: Metrics;
  log: Logger;
  /** Bulk Data screening (absent: bulk `$screen` jobs fail). */
  bulk?: BulkScreening;
}

/** The OperationOutcome of a failed evaluation: the FHIR server's own when it sent one. */
export function failureOutcome(error: unknown, classified: Error): fhir4.OperationOutcome {
  if (error instanceof FhirServerError && error.outcome) return error.outcome;
  const code = error instanceof PatientNotFoundError ? 'not-found' : classified instanceof UnrecoverableError ? 'processing' : 'transient';
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: classified.message }] };
}

/** The OperationOutcome of a failed job: each failed program's issues, named by program when the job had several. */
export function jobFailureOutcome(failures: readonly { programId: string; error: unknown; classified: Error }[], nameProgram: boolean): fhir4.OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: failures.flatMap((failure) =>
      failureOutcome(failure.error, failure.classified).issue.map((issue) => (nameProgram ? { ...issue, diagnostics: `${failure.programId}: ${issue.diagnostics ?? issue.details?.text ?? failure.classified.message}` } : issue)),
    ),
  };
}

/** Permanent errors fail the job at once; anything else is retried with backoff. */
function classify(error: unknown): Error {
  if (error instanceof PatientNotFoundError || error instanceof UnknownProgramError) return new UnrecoverableError(error.message);
  if (error instanceof FhirServerError && !error.transient) return new UnrecoverableError(error.message);
  return error instanceof Error ? error : new Error(String(error));
}

export function startWorkers(deps: WorkerDeps): { close(): Promise<void> } {
  const { log } = deps;

  const evaluation = new Worker<EvaluationJobData, EvaluationJobResult>(
    EVALUATION_QUEUE,
    (job: Job<EvaluationJobData, EvaluationJobResult>) => runEvaluationJob(deps, job),
    { connection: deps.connection, prefix: deps.prefix, concurrency: deps.concurrency },
  );

  const screening = new Worker<ScreeningJobData>(
    SCREENING_QUEUE,
    async (job) => {
      const { screenId, programId, asOf } = job.data;
      if (job.data.bulk) return runBulkScreeningJob(deps, job);
      try {
        await deps.screenings.setState(screenId, 'listing');
        const patientIds = job.data.patientIds ?? (await listPatientsInCentres(deps, programId, job.data.centre));
        await deps.screenings.setState(screenId, patientIds.length ? 'running' : 'completed', { total: patientIds.length });
        // Chunks keep each Redis round trip bounded; deterministic child ids make a re-run of this job a no-op.
        for (let i = 0; i < patientIds.length; i += 500) {
          const chunk = patientIds.slice(i, i + 500);
          await deps.queues.evaluation.addBulk(
            chunk.map((patientId) => ({
              name: 'evaluate',
              data: { programId, patientId, asOf, trigger: [`screen/${screenId}`], screenId },
              opts: evaluationJobOptions(screeningChildJobId(screenId, programId, patientId), deps.completedRetentionSeconds),
            })),
          );
          await job.updateProgress({ queued: Math.min(i + chunk.length, patientIds.length), total: patientIds.length });
        }
        return { total: patientIds.length };
      } catch (error) {
        const classified = classify(error);
        if (classified instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
          await deps.screenings.setState(screenId, 'failed', { error: classified.message });
        }
        throw classified;
      }
    },
    { connection: deps.connection, prefix: deps.prefix, concurrency: 1 },
  );

  for (const worker of [evaluation, screening]) {
    worker.on('error', (error) => log.error({ err: { name: error.name, message: error.message } }, 'worker error'));
  }
  return {
    // SIGTERM: stop taking jobs and let running ones finish (BullMQ going-to-production guide).
    close: async () => {
      await Promise.all([evaluation.close(), screening.close()]);
    },
  };
}

/**
 * One evaluation job: the patient evaluated for each program the job names, all at once. The
 * job succeeds when every program did; it is retried (all its programs: evaluations are
 * idempotent) while one failure is transient, and fails at once when every failure is permanent,
 * keeping an OperationOutcome per failed program in its log. Metrics count each program once,
 * when the job is settled for good.
 */
export async function runEvaluationJob(
  deps: Pick<WorkerDeps, 'service' | 'screenings' | 'metrics' | 'log'>,
  job: Pick<Job<EvaluationJobData, EvaluationJobResult>, 'id' | 'data' | 'attemptsMade' | 'opts' | 'log'>,
): Promise<EvaluationJobResult> {
  const { log, metrics } = deps;
  const { patientId, asOf, screenId } = job.data;
  const programIds = programsOfJob(job.data);
  const started = process.hrtime.bigint();
  // Every program at once: their reads and writes travel together (CoalescingFhirServer).
  const settled = await Promise.allSettled(programIds.map((programId) => deps.service.evaluateAndRecord(programId, patientId, asOf)));
  const evaluations: ProgramEvaluationResult[] = [];
  const failures: { programId: string; error: unknown; classified: Error }[] = [];
  settled.forEach((result, index) => {
    const programId = programIds[index] as string;
    if (result.status === 'fulfilled') {
      const recorded = result.value;
      evaluations.push({ programId, outcome: recorded.verdict.outcome, guidanceResponse: recorded.guidanceResponse, ...(recorded.task ? { task: recorded.task } : {}) });
    } else {
      failures.push({ programId, error: result.reason, classified: classify(result.reason) });
    }
  });
  if (programIds.length === 0) failures.push({ programId: '-', error: undefined, classified: new UnrecoverableError('evaluation job: no program named') });
  // Retried (every program again: evaluations are idempotent) unless every failure is permanent.
  const transient = failures.find((failure) => !(failure.classified instanceof UnrecoverableError));
  const lastAttempt = failures.length === 0 || !transient || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  if (lastAttempt) {
    // Counted once, when the job is settled for good (a retried job would count its successes twice).
    for (const result of evaluations) metrics.evaluations.inc({ program: result.programId, outcome: result.outcome });
    for (const failure of failures) metrics.evaluations.inc({ program: failure.programId, outcome: 'error' });
    metrics.evaluationSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (screenId) await deps.screenings.recordOutcome(screenId, patientId, failures.length ? 'error' : (evaluations[0]?.outcome ?? 'error'));
  }
  if (failures.length === 0) return { evaluations };
  const classified = transient?.classified ?? (failures[0] as (typeof failures)[number]).classified;
  if (lastAttempt) {
    // Kept with the failed job (job log, shown by /admin/queues): why, as an OperationOutcome, per program.
    const outcome = jobFailureOutcome(failures, programIds.length > 1);
    await job.log(JSON.stringify(outcome)).catch(() => undefined);
  }
  // Server ids and error classes only: no patient data in logs.
  log.warn({ jobId: job.id, programs: failures.map((failure) => failure.programId), err: { name: classified.name, message: classified.message }, lastAttempt }, 'evaluation failed');
  throw failures.length === 1 || transient ? classified : new UnrecoverableError(failures.map((failure) => `${failure.programId}: ${failure.classified.message}`).join('; '));
}

/**
 * The bulk `$screen` job: streams the NDJSON through the pure rules (src/app/bulk-screening.ts),
 * keeps progress counts in the screening store, and the result (file names, counts) for the
 * manifest. An input refused (BulkInputError) fails at once; anything else is retried (a re-run
 * starts again from the inputs: outputs are rewritten, Tasks are never duplicated).
 */
export async function runBulkScreeningJob(deps: Pick<WorkerDeps, 'bulk' | 'screenings' | 'log'>, job: Pick<Job<ScreeningJobData>, 'data' | 'attemptsMade' | 'opts'>): Promise<{ total: number }> {
  const { screenId, programId, asOf, centre, bulk } = job.data;
  try {
    if (!deps.bulk || !bulk) throw new UnrecoverableError('bulk screening is not configured in this worker');
    await deps.screenings.setState(screenId, 'running');
    const result = await deps.bulk.run(
      { screenId, programId, asOf, ...(centre ? { centre } : {}), ...(bulk.inputs ? { inputs: bulk.inputs } : {}), ...(bulk.source ? { source: bulk.source } : {}) },
      (progress) => deps.screenings.setBulkProgress(screenId, progress),
    );
    await deps.screenings.completeBulk(screenId, { ...result, request: bulk.request, counts: { ...result.counts } });
    deps.log.info({ screenId, patients: result.patients, resources: result.resources, counts: result.counts, tasksWritten: result.tasksWritten }, 'bulk screening completed');
    return { total: result.patients };
  } catch (error) {
    const refused = error instanceof BulkInputError || error instanceof UnknownProgramError;
    const classified = refused ? new UnrecoverableError((error as Error).message) : classify(error);
    if (classified instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
      await deps.screenings.setState(screenId, 'failed', { error: classified.message });
    }
    deps.log.warn({ screenId, err: { name: classified.name, message: classified.message } }, 'bulk screening failed');
    throw classified;
  }
}

/** Every patient whose GP (Practitioner, PractitionerRole or Organization) is in a participating centre. */
async function listPatientsInCentres(deps: WorkerDeps, programId: string, centre?: string): Promise<string[]> {
  const directory = await deps.directory.get(deps.service.program(programId));
  const ids = new Set<string>();
  for (const [member, entry] of directory.members) {
    if (centre && entry.centre !== centre) continue;
    const patients = await deps.fhir.searchAll<fhir4.Patient>('Patient', { 'general-practitioner': member, _elements: 'id', _count: '1000' });
    for (const patient of patients) if (patient.id) ids.add(patient.id);
  }
  return [...ids].sort();
}
