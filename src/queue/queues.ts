/**
 * The queues, their job shapes and options. Job data holds references (program id, FHIR
 * server ids, versioned references), never patient data: BullMQ stores it in clear in Redis.
 */
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { evaluationJobId } from './job-ids.js';

export const EVALUATION_QUEUE = 'eligibility';
export const SCREENING_QUEUE = 'screening';

export interface EvaluationJobData {
  programId: string;
  patientId: string;
  /** Evaluation date; absent: today in the program's time zone when the job runs. */
  asOf?: string;
  /** Versioned references that caused the evaluation (for the job id and the audit trail). */
  trigger: string[];
  /** Set when the evaluation is part of a `$screen`. */
  screenId?: string;
}

export interface EvaluationJobResult {
  outcome: 'eligible' | 'not-eligible' | 'undetermined' | 'error';
  guidanceResponse?: string;
  task?: string;
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
  programId: string;
  patientId: string;
  trigger: string[];
}

/**
 * Adds one evaluation per (program, patient) and returns the job ids. A job whose id already
 * exists (same trigger) is not added again: BullMQ returns the existing one.
 */
export async function enqueueEvaluations(
  queue: Queue<EvaluationJobData, EvaluationJobResult>,
  requests: readonly EvaluationRequest[],
  completedRetentionSeconds: number,
): Promise<string[]> {
  if (requests.length === 0) return [];
  const jobs = requests.map((request) => {
    const jobId = evaluationJobId(request.programId, request.patientId, request.trigger);
    return {
      name: 'evaluate',
      data: { programId: request.programId, patientId: request.patientId, trigger: request.trigger },
      opts: evaluationJobOptions(jobId, completedRetentionSeconds),
    };
  });
  await queue.addBulk(jobs);
  return jobs.map((job) => job.opts.jobId as string);
}
