/**
 * The audit queue (issue #6, point 4): AuditEvents and Provenances travel through BullMQ to
 * the FHIR server, so recording them never slows down nor fails the request or job that
 * caused them, and a FHIR server outage delays them without losing them.
 *
 * Job data is the resource itself. It holds no patient data (src/domain/audit.ts: references,
 * ids, codes, instants), so it may sit in clear in Redis like every other job. Writes are
 * PUTs with the resource's own id (a random UUID for an AuditEvent, derived from the targets
 * for a Provenance): a job retried after a timeout, or a Provenance recorded twice, writes
 * one resource. Transient failures are retried with exponential backoff (12 attempts from
 * 5 s: about 5.7 hours); a permanent refusal (4xx) fails the job at once and keeps it, with
 * its data, for 30 days. Completed jobs are removed after an hour.
 *
 * The worker writes in batches (`AuditBatchWriter`): the records of the jobs it runs at once go
 * to the FHIR server as one batch Bundle of PUTs, so a busy audit queue costs one request per
 * batch rather than one per record (the push benchmark counted 1.8 audit writes per push).
 * Each record still succeeds or fails with its own entry.
 *
 * The records queued while the previous ones are being added to Redis (a push's AuditEvent,
 * the Provenances of the evaluations running at the same time) travel as one job (`{ records }`):
 * one job's Redis traffic instead of one per record, which the push benchmark measured as a
 * fifth of the adapter's CPU. A lone record is a job of its own, as before (data: the resource).
 */
import { Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job, type JobsOptions } from 'bullmq';
import { createHash } from 'node:crypto';
import DataLoader from 'dataloader';
import type { Logger } from 'pino';
import { backPressureLoader } from '../infra/one-batch-in-flight.js';
import { FhirServerError, isTransientEntryStatus, type FhirServer } from '../fhir/fhir-server.port.js';

export const AUDIT_QUEUE = 'audit';

/** What the queue carries: the resource to write, or several (records queued together). */
export type AuditResource = fhir4.AuditEvent | fhir4.Provenance;
export type AuditJobData = AuditResource | AuditRecords;
export interface AuditRecords {
  records: AuditResource[];
}

export const AUDIT_ATTEMPTS = 12;
const AUDIT_BACKOFF_MS = 5_000;
/** Completed jobs: kept an hour (a re-recorded Provenance within the hour is deduplicated by its job id). */
const COMPLETED_RETENTION = { age: 3600, count: 10_000 };
const FAILED_RETENTION = { age: 30 * 24 * 3600 };

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

export function isAuditResource(value: unknown): value is AuditResource & { id: string } {
  const resource = value as { resourceType?: unknown; id?: unknown } | null;
  return (
    typeof resource === 'object' &&
    resource !== null &&
    (resource.resourceType === 'AuditEvent' || resource.resourceType === 'Provenance') &&
    typeof resource.id === 'string' &&
    FHIR_ID.test(resource.id)
  );
}

/** `ae.<id>` / `pv.<id>`: no `:` (BullMQ forbids it), never an integer. */
export function auditJobId(resource: AuditResource): string {
  return `${resource.resourceType === 'AuditEvent' ? 'ae' : 'pv'}.${resource.id ?? ''}`;
}

/** `ab.<digest of the records' job ids>`: the same records queued again are one job. */
export function auditRecordsJobId(records: readonly AuditResource[]): string {
  return `ab.${createHash('sha256').update(records.map(auditJobId).sort().join('\n')).digest('base64url').slice(0, 22)}`;
}

export function isAuditRecords(value: unknown): value is AuditRecords {
  const records = (value as { records?: unknown } | null)?.records;
  return Array.isArray(records) && records.length > 0;
}

export function auditJobOptions(resource: AuditResource): JobsOptions {
  return auditOptions(auditJobId(resource));
}

function auditOptions(jobId: string): JobsOptions {
  return {
    jobId,
    attempts: AUDIT_ATTEMPTS,
    backoff: { type: 'exponential', delay: AUDIT_BACKOFF_MS },
    removeOnComplete: COMPLETED_RETENTION,
    removeOnFail: FAILED_RETENTION,
  };
}

export interface AuditQueue {
  queue: Queue<AuditJobData>;
  /** Queues one resource (resolves once Redis has it). Throws on a resource without a valid id. */
  add(resource: AuditResource): Promise<void>;
  close(): Promise<void>;
}

/** Writes one queued resource to the FHIR server; exported for tests. */
export async function writeAuditResource(fhir: FhirServer, data: unknown): Promise<string> {
  if (!isAuditResource(data)) throw new UnrecoverableError('audit job: the data is not an AuditEvent or Provenance with an id');
  try {
    await fhir.update(data);
  } catch (error) {
    if (error instanceof FhirServerError && !error.transient) throw new UnrecoverableError(error.message);
    throw error;
  }
  return `${data.resourceType}/${data.id}`;
}

/** At most this many records in one batch Bundle, and in one job. */
export const AUDIT_BATCH_MAX = 50;
/** How long a batch waits for more records once its first one arrived. */
const AUDIT_BATCH_WINDOW_MS = 5;

/**
 * Coalesces the writes of concurrent audit jobs (dataloader: the records that arrive within
 * `windowMs` of the first, up to `maxBatch`) into one batch Bundle of PUTs, and settles each
 * job with its own entry: 2xx written; 408/429/5xx or no answer retried (the job throws a
 * transient error); another 4xx failed at once (UnrecoverableError). A batch the server refuses
 * as a whole (a server without batch support, a Bundle one record makes invalid) is written
 * again one record at a time, so one bad record never fails the others.
 */
export class AuditBatchWriter {
  private readonly loader: DataLoader<AuditResource & { id: string }, string>;

  constructor(
    private readonly fhir: FhirServer,
    options: { maxBatch?: number; windowMs?: number } = {},
  ) {
    const windowMs = options.windowMs ?? AUDIT_BATCH_WINDOW_MS;
    this.loader = new DataLoader((resources) => this.writeBatch(resources), {
      // Writes, not reads: nothing is cached, a record written twice is written twice (same id: one resource).
      cache: false,
      maxBatchSize: options.maxBatch ?? AUDIT_BATCH_MAX,
      batchScheduleFn: (callback) => setTimeout(callback, windowMs),
    });
  }

  /** Writes one queued record (the job's data); resolves with its reference. */
  write(data: unknown): Promise<string> {
    if (!isAuditResource(data)) return Promise.reject(new UnrecoverableError('audit job: the data is not an AuditEvent or Provenance with an id'));
    return this.loader.load(data);
  }

  private async writeBatch(resources: readonly (AuditResource & { id: string })[]): Promise<(string | Error)[]> {
    const oneByOne = (): Promise<(string | Error)[]> => Promise.all(resources.map((resource) => writeAuditResource(this.fhir, resource).catch((error: unknown) => error as Error)));
    if (resources.length === 1) return oneByOne();
    let response: fhir4.Bundle;
    try {
      response = await this.fhir.batch({
        resourceType: 'Bundle',
        type: 'batch',
        entry: resources.map((resource) => ({ resource, request: { method: 'PUT' as const, url: `${resource.resourceType}/${resource.id}` } })),
      });
    } catch (error) {
      if (error instanceof FhirServerError && !error.transient) return oneByOne();
      // Not written (or not known to be): every job of the batch is retried with its backoff.
      return resources.map(() => (error instanceof Error ? error : new Error(String(error))));
    }
    return resources.map((resource, index) => {
      const entry = response.entry?.[index];
      const status = Number.parseInt(entry?.response?.status ?? '', 10) || 0;
      if (status >= 200 && status < 300) return `${resource.resourceType}/${resource.id}`;
      const message = `FHIR batch: PUT ${resource.resourceType} answered ${entry?.response?.status ?? 'nothing'}`;
      return isTransientEntryStatus(status)
        ? new FhirServerError(message, status, entry?.response?.outcome as fhir4.OperationOutcome | undefined, true)
        : new UnrecoverableError(message);
    });
  }
}

/** The jobs that carry records queued together: a lone record as its own job, several as one `{ records }` job. */
export function auditJobs(resources: readonly AuditResource[]): { name: string; data: AuditJobData; opts: JobsOptions }[] {
  const [only] = resources;
  if (resources.length === 1 && only) return [{ name: only.resourceType, data: only, opts: auditJobOptions(only) }];
  const jobs: { name: string; data: AuditJobData; opts: JobsOptions }[] = [];
  for (let i = 0; i < resources.length; i += AUDIT_BATCH_MAX) {
    const records = resources.slice(i, i + AUDIT_BATCH_MAX);
    jobs.push({ name: 'records', data: { records }, opts: auditOptions(auditRecordsJobId(records)) });
  }
  return jobs;
}

/**
 * One audit job: its record, or each of its records, written (through the batch writer). When
 * some records of a job fail, the job keeps only those (`updateData`) and is retried while one
 * failure is transient, or fails at once (kept 30 days with them) when all are permanent: the
 * records written are not written again.
 */
export async function runAuditJob(writer: Pick<AuditBatchWriter, 'write'>, job: Pick<Job<AuditJobData>, 'data' | 'updateData'>): Promise<string | string[]> {
  if (!isAuditRecords(job.data)) return writer.write(job.data);
  const records = job.data.records;
  const settled = await Promise.allSettled(records.map((record) => writer.write(record)));
  const failed = records.filter((_, index) => settled[index]?.status === 'rejected');
  if (failed.length === 0) return settled.map((result) => (result as PromiseFulfilledResult<string>).value);
  const errors = settled.flatMap((result) => (result.status === 'rejected' ? [result.reason instanceof Error ? result.reason : new Error(String(result.reason))] : []));
  // A failed update only means the written records are written again (PUTs of the same ids).
  if (failed.length < records.length) await job.updateData({ records: failed }).catch(() => undefined);
  const transient = errors.find((error) => !(error instanceof UnrecoverableError));
  if (transient) throw transient;
  throw new UnrecoverableError(`${failed.length} of ${records.length} audit records refused: ${errors.map((error) => error.message).join('; ')}`);
}

export async function startAudit(deps: {
  connection: ConnectionOptions;
  prefix: string;
  fhir: FhirServer;
  log: Logger;
  /** Only worker processes write; every process may queue. */
  runWorker: boolean;
  /** Jobs run at once, hence the largest batch. @defaultValue AUDIT_BATCH_MAX */
  concurrency?: number;
}): Promise<AuditQueue> {
  const queue = new Queue<AuditJobData>(AUDIT_QUEUE, { connection: deps.connection, prefix: deps.prefix });
  queue.on('error', (error) => deps.log.error({ err: { name: error.name, message: error.message } }, 'audit queue error'));

  let worker: Worker<AuditJobData> | undefined;
  if (deps.runWorker) {
    const concurrency = deps.concurrency ?? AUDIT_BATCH_MAX;
    const writer = new AuditBatchWriter(deps.fhir, { maxBatch: concurrency });
    worker = new Worker<AuditJobData>(AUDIT_QUEUE, (job: Job<AuditJobData>) => runAuditJob(writer, job), {
      connection: deps.connection,
      prefix: deps.prefix,
      concurrency,
    });
    worker.on('error', (error) => deps.log.error({ err: { name: error.name, message: error.message } }, 'audit worker error'));
    // Job id and error only: the id names the AuditEvent/Provenance, the message a status.
    worker.on('failed', (job, error) =>
      deps.log.warn({ jobId: job?.id, attemptsMade: job?.attemptsMade, err: { name: error.name, message: error.message } }, 'audit record not written yet'),
    );
  }

  // The records queued while the previous addBulk was in flight (a push's AuditEvent, the
  // Provenances of concurrent evaluations) go to Redis in one addBulk, as one job: one round
  // trip, one job. A lone record goes at once.
  const adds = backPressureLoader<AuditResource, true>(async (resources) => {
    await queue.addBulk(auditJobs(resources));
    return resources.map(() => true as const);
  }, AUDIT_BATCH_MAX);

  return {
    queue,
    async add(resource) {
      if (!isAuditResource(resource)) throw new TypeError('audit: only an AuditEvent or Provenance with a FHIR id can be queued');
      await adds.load(resource);
    },
    async close() {
      await worker?.close();
      await queue.close();
    },
  };
}
