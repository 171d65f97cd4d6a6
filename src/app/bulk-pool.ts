/**
 * The worker threads of a bulk screening (src/app/bulk-worker.ts) and the messages they take.
 *
 * Plain `node:worker_threads`, no pool library: a screening starts its workers, gives each a
 * bounded number of tasks at a time (input blocks, then partitions) and stops them at the end;
 * a worker answers its tasks in the order it got them, so a FIFO of pending answers per worker
 * is all the bookkeeping there is. Any failure of a worker (an exception, an exit, its heap
 * limit) rejects what it was asked, and the screening stops its workers and fails (the job is
 * retried from the start like any other failure).
 */
import { Worker } from 'node:worker_threads';
import type { LoadedProgram } from '../programs/schema.js';
import type { SharedProgramData } from '../domain/criteria/context.js';
import type { CalendarDate, CentreDirectory, EligibilityVerdict } from '../domain/types.js';
import type { ScreeningCounts } from '../domain/bulk/manifest.js';

/** What every worker of a screening is started with. */
export interface BulkWorkerData {
  /** This worker's number: its partition files are `<partitionsDir>/<worker>-<partition>.bin`. */
  worker: number;
  program: LoadedProgram;
  shared: SharedProgramData;
  partitions: number;
  partitionsDir: string;
  /** Bytes a partition's runs are buffered up to before they are appended to its file. */
  flushBytes: number;
}

/** An input problem found by a worker: line within its block, and what is wrong. */
export const LINE_PROBLEM = {
  notJson: 0,
  notResource: 1,
  /** Plus the index of the type in PATIENT_TYPES: a patient-type resource without a patient id or reference. */
  noPatient: 2,
} as const;

export type BulkTask =
  | { kind: 'block'; block: number; bytes: Uint8Array }
  | { kind: 'end-read' }
  | { kind: 'evaluate-setup'; directory: CentreDirectory; organizations: Map<string, fhir4.Organization>; asOf: CalendarDate; centre?: string; programCodeSystem: string }
  | { kind: 'partition'; partition: number; workers: number };

export interface BlockAnswer {
  kind: 'block';
  block: number;
  /** Lines in the block (empty ones included: they count in line numbers). */
  lines: number;
  /** Non-empty lines: resources read. */
  resources: number;
  skipped: number;
  /** Per problem: its line (1-based, within the block) and code (LINE_PROBLEM, plus the type index for NoPatient). */
  problemLines: Int32Array;
  problemCodes: Int32Array;
  organizations: fhir4.Organization[];
  roles: fhir4.PractitionerRole[];
  /** The block's bytes, given back (transferred) for the next block to reuse. */
  bytes: Uint8Array;
}

export interface ProposalCandidate {
  patientId: string;
  verdict: EligibilityVerdict;
  gp?: string;
}

export interface PartitionAnswer {
  kind: 'partition';
  partition: number;
  /** The verdict lines of the partition in UTF-8, each ending with a newline (its buffer is transferred). */
  output: Uint8Array;
  outputLines: number;
  counts: ScreeningCounts;
  /** Error-file lines (evaluation failures, by patient server id and error class only). */
  errors: string[];
  orphans: number;
  patients: number;
  candidates: ProposalCandidate[];
}

export type BulkAnswer = BlockAnswer | PartitionAnswer | { kind: 'done' } | { kind: 'failed'; name: string; message: string };

/** A worker thread and its unanswered tasks, answered in order. */
export class BulkWorker {
  private readonly pending: { resolve: (answer: BulkAnswer) => void; reject: (error: Error) => void }[] = [];
  private failure: Error | undefined;
  private readonly thread: Worker;

  constructor(data: BulkWorkerData, heapMb: number) {
    this.thread = spawnBulkWorker(data, heapMb);
    this.thread.on('message', (answer: BulkAnswer) => {
      const waiting = this.pending.shift();
      if (!waiting) return;
      if (answer.kind === 'failed') {
        const error = new Error(answer.message);
        error.name = answer.name;
        waiting.reject(error);
      } else waiting.resolve(answer);
    });
    this.thread.on('error', (error) => this.fail(error));
    this.thread.on('exit', (code) => this.fail(new Error(`a bulk screening worker exited (code ${code})`)));
  }

  /** Tasks sent and not yet answered. */
  get busy(): number {
    return this.pending.length;
  }

  ask(task: BulkTask, transfer: ArrayBuffer[] = []): Promise<BulkAnswer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<BulkAnswer>((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.thread.postMessage(task, transfer);
    });
  }

  async stop(): Promise<void> {
    this.failure ??= new Error('the bulk screening worker was stopped');
    await this.thread.terminate();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiting of this.pending.splice(0)) waiting.reject(this.failure);
  }
}

/**
 * The compiled worker (`.js` next to this module, from `npm run build`), or in development and
 * tests, where this module is TypeScript run by tsx, the `.ts` one: tsx's loader is registered
 * inside the new thread first (a worker does not inherit the loader hooks, and
 * `execArgv: ['--import', 'tsx']` does not register them in a worker on Node 20).
 */
function spawnBulkWorker(workerData: BulkWorkerData, heapMb: number): Worker {
  const self = new URL(import.meta.url);
  const typescript = self.pathname.endsWith('.ts');
  const url = new URL(typescript ? './bulk-worker.ts' : './bulk-worker.js', self);
  const options = { workerData, resourceLimits: { maxOldGenerationSizeMb: heapMb }, stdout: false, stderr: false };
  if (!typescript) return new Worker(url, options);
  // 'tsx/esm/api' is resolved from the working directory (the project's, in development and tests).
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(bootstrap, { ...options, eval: true });
}
