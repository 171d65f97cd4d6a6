/**
 * The queues, their job shapes and options. Job data holds references (program id, FHIR
 * server ids, versioned references), never patient data: BullMQ stores it in clear in Redis.
 */
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { backPressureLoader } from '../infra/one-batch-in-flight.js';
import { evaluationJobId } from './job-ids.js';

export const EVALUATION_QUEUE = 'eligibility';
export const SCREENING_QUEUE = 'screening';

export interface EvaluationJobData {
  /**
   * The programs to evaluate the patient for: every program a push concerns, in one job (one
   * job, one read and one write request for all of them). `$screen` children name one.
   */
  programIds?: string[];
  /** One program: `$screen` children, and jobs queued before `programIds` existed (still run). */
  programId?: string;
  patientId: string;
  /** Evaluation date; absent: today in the program's time zone when the job runs. */
  asOf?: string;
  /** Versioned references that caused the evaluation (for the job id and the audit trail). */
  trigger: string[];
  /** Set when the evaluation is part of a `$screen`. */
  screenId?: string;
}

/** What one program's evaluation recorded. */
export interface ProgramEvaluationResult {
  programId: string;
  outcome: 'eligible' | 'not-eligible' | 'undetermined' | 'error';
  guidanceResponse?: string;
  task?: string;
}

/** A job's result: one entry per program, in the job's order. */
export interface EvaluationJobResult {
  evaluations: ProgramEvaluationResult[];
}

/** The programs an evaluation job names (`programIds`, or the single `programId` of older and `$screen` jobs). */
export function programsOfJob(data: Pick<EvaluationJobData, 'programIds' | 'programId'>): string[] {
  return data.programIds ?? (data.programId ? [data.programId] : []);
}

export interface ScreeningJobData {
  screenId: string;
  programId: string;
  asOf: string;
  /** Explicit patient list; absent: every patient whose GP is in a participating centre. */
  patientIds?: string[];
  /** Only this centre's patients (the asking client's centre, `system|value`). */
  centre?: string;
  /** A screening of FHIR Bulk Data NDJSON (file paths or URLs, or an `$export` to start): no per-patient jobs. */
  bulk?: { inputs?: { type?: string; url: string }[]; source?: 'export'; request: string };
}

/**
 * Transient failures (FHIR server or Redis unavailable) are retried with exponential backoff:
 * 10 attempts from 2 s doubling cover about 17 minutes, long enough for a FHIR server restart.
 * Permanent failures throw UnrecoverableError and fail at once.
 */
export const EVALUATION_ATTEMPTS = 10;
const EVALUATION_BACKOFF_MS = 2_000;

export function evaluationJobOptions(jobId: string, completedRetentionSeconds: number): JobsOptions {
  return {
    jobId,
    attempts: EVALUATION_ATTEMPTS,
    backoff: { type: 'exponential', delay: EVALUATION_BACKOFF_MS },
    // Kept completed jobs make their deterministic ids deduplicate re-sent data.
    removeOnComplete: { age: completedRetentionSeconds },
    removeOnFail: { age: 30 * 24 * 3600 },
  };
}

export interface Queues {
  evaluation: Queue<EvaluationJobData, EvaluationJobResult>;
  screening: Queue<ScreeningJobData>;
  close(): Promise<void>;
}

/** How long the producer side waits for one Redis command before giving up. */
export const PRODUCER_COMMAND_TIMEOUT_MS = 5_000;

/**
 * Connection options for the producer side only (the Queue objects the API adds evaluations
 * with): fail fast while Redis is unreachable (no offline queue, a command timeout, one retry)
 * instead of waiting for it, so a push is answered 503 + Retry-After within seconds and the EHR
 * sends it again. Never for a Worker: it blocks on Redis and must wait (`maxRetriesPerRequest: null`).
 */
export function producerConnection<T extends { host: string; port: number }>(connection: T): Omit<T, 'maxRetriesPerRequest'> & { enableOfflineQueue: false; commandTimeout: number; maxRetriesPerRequest: number } {
  return { ...connection, enableOfflineQueue: false, commandTimeout: PRODUCER_COMMAND_TIMEOUT_MS, maxRetriesPerRequest: 1 };
}

export function createQueues(connection: ConnectionOptions, prefix: string, onError: (error: Error) => void): Queues {
  const evaluation = new Queue<EvaluationJobData, EvaluationJobResult>(EVALUATION_QUEUE, { connection, prefix });
  const screening = new Queue<ScreeningJobData>(SCREENING_QUEUE, { connection, prefix });
  evaluation.on('error', onError);
  screening.on('error', onError);
  return {
    evaluation,
    screening,
    close: async () => {
      await Promise.all([evaluation.close(), screening.close()]);
    },
  };
}

export interface EvaluationRequest {
  programIds: string[];
  patientId: string;
  trigger: string[];
}

/**
 * Adds one evaluation job per patient, for all its programs, and returns the job ids. A job
 * whose id already exists (same programs and trigger) is not added again: BullMQ returns the
 * existing one.
 */
export async function enqueueEvaluations(
  queue: Queue<EvaluationJobData, EvaluationJobResult>,
  requests: readonly EvaluationRequest[],
  completedRetentionSeconds: number,
): Promise<string[]> {
  if (requests.length === 0) return [];
  const jobs = requests.filter((request) => request.programIds.length > 0).map((request) => {
    const jobId = evaluationJobId(request.programIds, request.patientId, request.trigger);
    return {
      name: 'evaluate',
      data: { programIds: request.programIds, patientId: request.patientId, trigger: request.trigger },
      opts: evaluationJobOptions(jobId, completedRetentionSeconds),
    };
  });
  await queue.addBulk(jobs);
  return jobs.map((job) => job.opts.jobId as string);
}

/** At most this many evaluation jobs in one `addBulk` of the coalescing enqueuer. */
const ENQUEUE_BATCH_MAX = 500;

/**
 * `enqueueEvaluations` for concurrent callers (the HTTP API's pushes): the requests made while
 * the previous `addBulk` is in flight go to Redis together, in one `addBulk` (one pipeline, one
 * socket write), instead of one each (`oneBatchInFlight`: no timer, no wait at low load). Each
 * caller gets its own job ids, or the error of the `addBulk` its requests travelled in.
 */
export function evaluationEnqueuer(
  queue: Queue<EvaluationJobData, EvaluationJobResult>,
  completedRetentionSeconds: number,
): (requests: readonly EvaluationRequest[]) => Promise<string[]> {
  const loader = backPressureLoader<EvaluationRequest, string>((requests) => enqueueEvaluations(queue, requests, completedRetentionSeconds), ENQUEUE_BATCH_MAX);
  return (requests) => Promise.all(requests.filter((request) => request.programIds.length > 0).map((request) => loader.load(request)));
}
