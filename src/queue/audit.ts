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
 */
import { Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job, type JobsOptions } from 'bullmq';
import type { Logger } from 'pino';
import { FhirServerError, type FhirServer } from '../fhir/fhir-server.port.js';

export const AUDIT_QUEUE = 'audit';

/** What the queue carries: the resource to write. */
export type AuditResource = fhir4.AuditEvent | fhir4.Provenance;
export type AuditJobData = AuditResource;

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

export function auditJobOptions(resource: AuditResource): JobsOptions {
  return {
    jobId: auditJobId(resource),
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

export async function startAudit(deps: {
  connection: ConnectionOptions;
  prefix: string;
  fhir: FhirServer;
  log: Logger;
  /** Only worker processes write; every process may queue. */
  runWorker: boolean;
  /** @defaultValue 4 */
  concurrency?: number;
}): Promise<AuditQueue> {
  const queue = new Queue<AuditJobData>(AUDIT_QUEUE, { connection: deps.connection, prefix: deps.prefix });
  queue.on('error', (error) => deps.log.error({ err: { name: error.name, message: error.message } }, 'audit queue error'));

  let worker: Worker<AuditJobData> | undefined;
  if (deps.runWorker) {
    worker = new Worker<AuditJobData>(AUDIT_QUEUE, (job: Job<AuditJobData>) => writeAuditResource(deps.fhir, job.data), {
      connection: deps.connection,
      prefix: deps.prefix,
      concurrency: deps.concurrency ?? 4,
    });
    worker.on('error', (error) => deps.log.error({ err: { name: error.name, message: error.message } }, 'audit worker error'));
    // Job id and error only: the id names the AuditEvent/Provenance, the message a status.
    worker.on('failed', (job, error) =>
      deps.log.warn({ jobId: job?.id, attemptsMade: job?.attemptsMade, err: { name: error.name, message: error.message } }, 'audit record not written yet'),
    );
  }

  return {
    queue,
    async add(resource) {
      if (!isAuditResource(resource)) throw new TypeError('audit: only an AuditEvent or Provenance with a FHIR id can be queued');
      await queue.add(resource.resourceType, resource, auditJobOptions(resource));
    },
    async close() {
      await worker?.close();
      await queue.close();
    },
  };
}
