/**
 * Population screening from FHIR Bulk Data NDJSON: the handler of a bulk `$screen` job.
 *
 * 1. Inputs: files under BULK_INPUT_DIR (`file://` URLs or paths; anything outside is refused),
 *    http(s) files on the FHIR server's own origin (no other host: no SSRF), an `$export`
 *    output manifest, or an `$export` this handler starts itself on the FHIR server.
 * 2. Partition: the main thread cuts the inputs into blocks of whole lines and hands them to
 *    worker threads (src/app/bulk-worker.ts, BULK_WORKERS of them). Each line is parsed once,
 *    keyed by its patient, reduced to what the program's criteria read
 *    (src/domain/bulk/reduce.ts) and appended to one of P partition files of its worker,
 *    chosen by a hash of the patient id, in runs tagged with the block number
 *    (src/domain/bulk/partition-codec.ts). Answers are taken in block order: line numbers in
 *    errors and the directory are as if one thread had read. Directory resources
 *    (Organization, PractitionerRole) are few and stay in memory.
 * 3. Evaluate: the workers take one partition each at a time, read its runs back from every
 *    worker's file in input order, group them per patient and judge them by the pure rules
 *    (`evaluateEligibility`) with no FHIR request per patient. Answers are taken in partition
 *    order, so the output is the same byte for byte whatever the number of workers. Memory
 *    holds one partition per worker (about 1/P of the reduced input), whatever the
 *    population size.
 * 4. Output: one compact verdict per line (Parameters NDJSON), input problems as
 *    OperationOutcome NDJSON, and a Task for each newly eligible patient (see `TaskWriter`).
 *
 * Nothing here logs or stores patient data: counts, file names, line numbers and server ids.
 */
import { mkdir, open, readFile, realpath, rm, stat, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { directoryWithInput } from '../domain/bulk/join.js';
import { emptyCounts, inputIssue, inputsOfManifest, type BulkInput, type OutputFile, type ScreeningCounts } from '../domain/bulk/manifest.js';
import { PATIENT_TYPES } from '../domain/bulk/reduce.js';
import type { CalendarDate, EligibilityVerdict } from '../domain/types.js';
import { enrolmentProposalTask, enrolmentProposalTaskId } from '../domain/verdict-fhir.js';
import { proposalLockName, tryLockMany } from '../infra/redis-lock.js';
import type { CentreDirectoryCache } from '../fhir/centre-directory.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import type { LoadedProgram, ProgramCatalog } from '../programs/schema.js';
import { PROGRAM_CODE_SYSTEM } from './eligibility.service.js';
import { BulkWorker, LINE_PROBLEM, type BlockAnswer, type BulkAnswer, type PartitionAnswer } from './bulk-pool.js';

/** An input this adapter refuses (outside BULK_INPUT_DIR, a foreign host, not NDJSON...): a 400 at the request. */
export class BulkInputError extends Error {
  override name = 'BulkInputError';
}

export interface BulkScreeningJob {
  screenId: string;
  programId: string;
  asOf: CalendarDate;
  /** Only this centre's patients (`system|value`). */
  centre?: string;
  inputs?: BulkInput[];
  /** Start an `$export` on the FHIR server and screen its output. */
  source?: 'export';
}

export interface BulkProgress {
  phase: 'exporting' | 'reading' | 'evaluating' | 'writing-tasks';
  /** Input lines read. */
  resources: number;
  /** Patients evaluated so far / in all (known once the input is read). */
  evaluated: number;
  patients?: number;
  counts: ScreeningCounts;
  /** The FHIR server's X-Progress while an `$export` runs (no patient data). */
  exportProgress?: string;
}

export interface BulkResult {
  transactionTime: string;
  output: OutputFile[];
  errors: OutputFile[];
  counts: ScreeningCounts;
  patients: number;
  resources: number;
  tasksWritten: number;
}

export interface BulkScreeningDeps {
  fhir: FhirServer;
  catalog: ProgramCatalog;
  directory: CentreDirectoryCache;
  redis: Redis;
  prefix: string;
  /** Root of the files a `$screen` may read; undefined: no file input. */
  inputDir?: string;
  /** Where each screening's results go (`<outputDir>/<screenId>/`). */
  outputDir: string;
  log: Logger;
  /** An access token for the FHIR server's files and `$export`, when it needs one. */
  accessToken?: () => Promise<string>;
  fetch?: typeof fetch;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
  /** Reduced bytes per partition (tests use a small value to get several partitions). */
  partitionBytes?: number;
  /** Input bytes per block given to a worker (tests use a small value to get many blocks). */
  blockBytes?: number;
  /**
   * Worker threads that parse and evaluate (config BULK_WORKERS).
   * @defaultValue `os.availableParallelism()`
   */
  workers?: number;
}

const OUTPUT_FILE = 'Parameters.ndjson';
const ERROR_FILE = 'OperationOutcome.ndjson';
/** Input bytes per partition: a partition (reduced) is then a few tens of MB in memory. */
const DEFAULT_PARTITION_BYTES = 8 * 1024 * 1024;
const FLUSH_BYTES = 256 * 1024;
/** Open partition files at most (one descriptor each); beyond ~8 GB of input the partitions grow instead. */
const MAX_PARTITIONS = 1000;
const PARTITION_BUFFERS_BYTES = 32 * 1024 * 1024;
const TASK_BATCH = 250;
/** Input bytes per block handed to a worker (whole lines; a block is transferred, not copied). */
const BLOCK_BYTES = 2 * 1024 * 1024;
/** Blocks or partitions a worker is given ahead: it never waits for the next, memory stays bounded. */
const TASKS_IN_FLIGHT_PER_WORKER = 2;
/**
 * V8 heap limit of each worker thread, for partitions of DEFAULT_PARTITION_BYTES of input (a
 * worker holds one partition at a time); larger in proportion when partitions grow (inputs
 * beyond MAX_PARTITIONS × DEFAULT_PARTITION_BYTES).
 */
const WORKER_HEAP_MB = 96;
/** Redis set of the patients already proposed for a program by an earlier screening. */
export const proposedKey = (prefix: string, programId: string): string => `${prefix}:bulk:proposed:${programId}`;

const missingPatient = (name: string, lineNumber: number, type: string): string => `${name} line ${lineNumber}: ${type} without a Patient/{id} ${type === 'Patient' ? 'id' : 'reference'}`;

/**
 * Where an input is, checked: a local file (inside `inputDir`) or a URL on the FHIR server's
 * origin. Checks the text only; `openInput` checks the real path again (symbolic links).
 * @throws BulkInputError
 */
export function locateInput(url: string, options: { inputDir?: string; fhirBaseUrl: string; relativeTo?: string }): { kind: 'file'; path: string } | { kind: 'http'; url: URL } {
  if (/^https?:\/\//i.test(url)) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new BulkInputError('an input URL cannot be parsed');
    }
    if (parsed.origin !== new URL(options.fhirBaseUrl).origin || parsed.username || parsed.password) {
      throw new BulkInputError(`input URLs must be on the FHIR server's origin (${new URL(options.fhirBaseUrl).origin}); other hosts are not fetched`);
    }
    return { kind: 'http', url: parsed };
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(url) && !url.startsWith('file:')) throw new BulkInputError('input URLs are file:// paths or http(s) URLs of the FHIR server');
  if (!options.inputDir) throw new BulkInputError('file inputs are not accepted: BULK_INPUT_DIR is not configured');
  let local: string;
  try {
    local = url.startsWith('file:') ? fileURLToPath(url) : url;
  } catch {
    throw new BulkInputError('an input file URL cannot be parsed');
  }
  const root = path.resolve(options.inputDir);
  const resolved = path.resolve(options.relativeTo ?? root, local);
  if (resolved !== root && !resolved.startsWith(root + path.sep)) throw new BulkInputError('input files must be inside BULK_INPUT_DIR');
  return { kind: 'file', path: resolved };
}

const MAX_LINE_CHARS = 16 * 1024 * 1024;

/** Splits a stream of text chunks into complete lines, one array per chunk. */
export async function* ndjsonLines(chunks: AsyncIterable<string | Buffer | Uint8Array>): AsyncGenerator<string[]> {
  let rest = '';
  // A UTF-8 character may straddle two chunks: the decoder keeps its first bytes for the next.
  const decoder = new StringDecoder('utf8');
  for await (const chunk of chunks) {
    const text = rest + (typeof chunk === 'string' ? chunk : decoder.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)));
    const lines = text.split('\n');
    rest = lines.pop() ?? '';
    // One resource per line: a "line" this long is not NDJSON, and must not fill the memory.
    if (rest.length > MAX_LINE_CHARS) throw new BulkInputError(`an input line is longer than ${MAX_LINE_CHARS} characters`);
    yield lines;
  }
  rest += decoder.end();
  if (rest.length > 0) yield [rest];
}

/**
 * Cuts a stream of bytes into blocks of whole lines (about `blockBytes`, cut after a newline:
 * a multi-byte UTF-8 character never straddles two blocks), each block in an ArrayBuffer of
 * its own so that it can be transferred to a worker thread (`allocate` gives a new or
 * recycled one, at least as long as asked, at offset 0). The last block may end without a
 * newline. A line longer than MAX_LINE_CHARS bytes is refused instead of buffered. A chunk is
 * copied before the next is asked for: the source may reuse its buffer.
 */
export async function* ndjsonBlocks(chunks: AsyncIterable<Uint8Array>, blockBytes = BLOCK_BYTES, allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(new ArrayBuffer(bytes))): AsyncGenerator<Uint8Array> {
  let block = allocate(blockBytes);
  let filled = 0;
  for await (const chunk of chunks) {
    let taken = 0;
    while (taken < chunk.length) {
      const room = block.length - filled;
      const part = Math.min(room, chunk.length - taken);
      block.set(chunk.subarray(taken, taken + part), filled);
      filled += part;
      taken += part;
      if (filled < block.length) continue;
      const cut = block.lastIndexOf(0x0a) + 1;
      if (cut === 0) {
        // No newline in a full block: one long line, grown up to the limit.
        if (block.length >= MAX_LINE_CHARS) throw new BulkInputError(`an input line is longer than ${MAX_LINE_CHARS} bytes`);
        const grown = allocate(Math.min(MAX_LINE_CHARS + 1, block.length * 2));
        grown.set(block);
        block = grown;
        continue;
      }
      const next = allocate(Math.max(blockBytes, filled - cut));
      next.set(block.subarray(cut, filled));
      yield block.subarray(0, cut);
      block = next;
      filled -= cut;
    }
  }
  if (filled > 0) yield block.subarray(0, filled);
}

/** A file's bytes, read into one reused buffer (each chunk is valid until the next is asked for). */
async function* readChunks(file: string, chunkBytes = 1024 * 1024): AsyncGenerator<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const buffer = new Uint8Array(chunkBytes);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/** Appends text to a file through a buffer (one write per FLUSH_BYTES). */
class BufferedFile {
  private parts: string[] = [];
  private size = 0;
  count = 0;
  private constructor(
    private readonly handle: FileHandle,
    private readonly flushBytes: number,
  ) {}

  static async create(file: string, flushBytes = FLUSH_BYTES): Promise<BufferedFile> {
    return new BufferedFile(await open(file, 'w'), flushBytes);
  }

  /** A promise only when the buffer is written out: hot loops await it only then (no microtask per line). */
  line(text: string): Promise<void> | undefined {
    this.parts.push(text, '\n');
    this.size += text.length + 1;
    this.count += 1;
    return this.size >= this.flushBytes ? this.flush() : undefined;
  }

  /** `count` lines already encoded (UTF-8, each ending with a newline), written after what is buffered. */
  async bytes(data: Uint8Array, count: number): Promise<void> {
    if (count === 0) return;
    await this.flush();
    this.count += count;
    let written = 0;
    while (written < data.length) written += (await this.handle.write(data, written, data.length - written)).bytesWritten;
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const text = this.parts.join('');
    this.parts = [];
    this.size = 0;
    await this.handle.write(text);
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle.close();
  }
}

export class BulkScreening {
  private readonly fetch: typeof fetch;
  private readonly now: () => Date;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly deps: BulkScreeningDeps) {
    this.fetch = deps.fetch ?? fetch;
    this.now = deps.now ?? (() => new Date());
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** The folder of a screening's results. */
  outputFolder(screenId: string): string {
    return path.join(this.deps.outputDir, screenId);
  }

  /** Checks a request's inputs before it is queued. @throws BulkInputError */
  checkInputs(inputs: readonly BulkInput[]): void {
    for (const input of inputs) locateInput(input.url, { fhirBaseUrl: this.deps.fhir.baseUrl, ...(this.deps.inputDir ? { inputDir: this.deps.inputDir } : {}) });
  }

  async run(job: BulkScreeningJob, onProgress: (progress: BulkProgress) => Promise<void>): Promise<BulkResult> {
    const { deps } = this;
    const program = deps.catalog.programs.get(job.programId);
    if (!program) throw new BulkInputError(`Unknown program "${job.programId}"`);
    const transactionTime = this.now().toISOString();
    const folder = this.outputFolder(job.screenId);
    // A re-run of the job (worker killed) starts again from nothing: outputs are rewritten.
    await rm(folder, { recursive: true, force: true });
    const partitionsDir = path.join(folder, '.partitions');
    await mkdir(partitionsDir, { recursive: true });

    const counts = emptyCounts();
    const progress: BulkProgress = { phase: 'reading', resources: 0, evaluated: 0, counts };
    let lastReport = 0;
    const report = async (force = false): Promise<void> => {
      const at = Date.now();
      if (!force && at - lastReport < 500) return;
      lastReport = at;
      await onProgress({ ...progress, counts: { ...counts } });
    };

    const errors = await BufferedFile.create(path.join(folder, ERROR_FILE));
    const output = await BufferedFile.create(path.join(folder, OUTPUT_FILE));
    let pool: BulkWorker[] = [];
    try {
      let inputs = job.inputs ?? [];
      if (job.source === 'export') {
        progress.phase = 'exporting';
        await report(true);
        inputs = await this.runExport(async (text) => {
          progress.exportProgress = text;
          await report(true); // once per poll: the server's Retry-After paces it
        });
        progress.phase = 'reading';
      }
      inputs = await this.expandManifests(inputs);
      const estimated = await this.estimateBytes(inputs);
      const partitions = Math.min(MAX_PARTITIONS, Math.max(4, Math.ceil(estimated / (deps.partitionBytes ?? DEFAULT_PARTITION_BYTES))));
      const workers = Math.max(1, Math.floor(deps.workers ?? os.availableParallelism()));
      // All partition buffers of all workers together stay under PARTITION_BUFFERS_BYTES.
      const flushBytes = Math.max(16 * 1024, Math.min(FLUSH_BYTES, Math.floor(PARTITION_BUFFERS_BYTES / partitions / workers)));
      const shared = { valueSets: deps.catalog.valueSets, units: deps.catalog.units };
      const heapMb = Math.min(1024, Math.max(WORKER_HEAP_MB, Math.ceil((WORKER_HEAP_MB * estimated) / partitions / DEFAULT_PARTITION_BYTES)));
      pool = Array.from({ length: workers }, (_, worker) => new BulkWorker({ worker, program, shared, partitions, partitionsDir, flushBytes }, heapMb));
      const inFlightLimit = workers * TASKS_IN_FLIGHT_PER_WORKER;
      const leastBusy = (): BulkWorker => pool.reduce((best, worker) => (worker.busy < best.busy ? worker : best));

      // Reading: blocks of whole lines go to the workers; their answers are taken in block order,
      // so that line numbers, the error file and the directory are as if read by one thread.
      const organizations = new Map<string, fhir4.Organization>();
      const roles: fhir4.PractitionerRole[] = [];
      let skipped = 0;
      const reading: { input: number; name: string; answer: Promise<BulkAnswer> }[] = [];
      let linesBefore = 0;
      let lastInput = -1;
      const takeBlock = async (): Promise<void> => {
        const next = reading.shift();
        if (!next) return;
        const answer = (await next.answer) as BlockAnswer;
        if (next.input !== lastInput) {
          lastInput = next.input;
          linesBefore = 0;
        }
        for (let i = 0; i < answer.problemLines.length; i += 1) {
          const lineNumber = linesBefore + (answer.problemLines[i] as number);
          const where = `${next.name}:${lineNumber}`;
          const code = answer.problemCodes[i] as number;
          const issue =
            code === LINE_PROBLEM.notJson
              ? inputIssue('structure', `${next.name} line ${lineNumber}: not valid JSON`, where)
              : code === LINE_PROBLEM.notResource
                ? inputIssue('structure', `${next.name} line ${lineNumber}: not a FHIR resource`, where)
                : inputIssue('required', missingPatient(next.name, lineNumber, PATIENT_TYPES[code - LINE_PROBLEM.noPatient] ?? 'resource'), where);
          await errors.line(JSON.stringify(issue));
        }
        linesBefore += answer.lines;
        progress.resources += answer.resources;
        skipped += answer.skipped;
        for (const organization of answer.organizations) organizations.set(`Organization/${organization.id}`, organization);
        for (const role of answer.roles) roles.push(role);
        if (freeBlocks.length <= inFlightLimit) freeBlocks.push(answer.bytes.buffer as ArrayBuffer);
        await report();
      };
      // Block buffers come back with their answers and are reused: no garbage per block.
      const freeBlocks: ArrayBuffer[] = [];
      const allocate = (bytes: number): Uint8Array => {
        const index = freeBlocks.findIndex((buffer) => buffer.byteLength >= bytes);
        return new Uint8Array(index >= 0 ? (freeBlocks.splice(index, 1)[0] as ArrayBuffer) : new ArrayBuffer(bytes));
      };
      let block = 0;
      for (const [index, input] of inputs.entries()) {
        const name = this.describe(input);
        for await (const bytes of ndjsonBlocks(await this.openInput(input), deps.blockBytes ?? BLOCK_BYTES, allocate)) {
          while (reading.length >= inFlightLimit) await takeBlock();
          const answer = leastBusy().ask({ kind: 'block', block, bytes }, [bytes.buffer as ArrayBuffer]);
          answer.catch(() => undefined); // awaited in order by takeBlock; a failure is thrown there
          reading.push({ input: index, name, answer });
          block += 1;
        }
      }
      while (reading.length > 0) await takeBlock();
      await Promise.all(pool.map((worker) => worker.ask({ kind: 'end-read' })));

      const directory = directoryWithInput(program, await deps.directory.get(program), organizations.values(), roles);
      progress.phase = 'evaluating';
      await report(true);
      await Promise.all(pool.map((worker) => worker.ask({ kind: 'evaluate-setup', directory, organizations, asOf: job.asOf, programCodeSystem: PROGRAM_CODE_SYSTEM, ...(job.centre ? { centre: job.centre } : {}) })));

      // Evaluating: partitions go to the workers, their answers are taken in partition order
      // (the output file and the Tasks in the same order whatever the number of workers).
      const tasks = new TaskWriter(deps, program, this.now);
      let orphans = 0;
      let patients = 0;
      const evaluating: Promise<BulkAnswer>[] = [];
      const takePartition = async (): Promise<void> => {
        const next = evaluating.shift();
        if (!next) return;
        const answer = (await next) as PartitionAnswer;
        await output.bytes(answer.output, answer.outputLines);
        for (const line of answer.errors) await errors.line(line);
        for (const outcome of Object.keys(counts) as (keyof ScreeningCounts)[]) counts[outcome] += answer.counts[outcome];
        orphans += answer.orphans;
        patients += answer.patients;
        progress.evaluated += answer.outputLines;
        for (const candidate of answer.candidates) await tasks.propose(candidate.patientId, candidate.verdict, candidate.gp);
        await report();
      };
      for (let partition = 0; partition < partitions; partition += 1) {
        while (evaluating.length >= inFlightLimit) await takePartition();
        const answer = leastBusy().ask({ kind: 'partition', partition, workers });
        answer.catch(() => undefined); // awaited in order by takePartition
        evaluating.push(answer);
      }
      while (evaluating.length > 0) await takePartition();
      await Promise.all(pool.splice(0).map((worker) => worker.stop()));

      progress.phase = 'writing-tasks';
      progress.patients = patients;
      await report(true);
      await tasks.flush();
      if (orphans > 0) await errors.line(JSON.stringify(inputIssue('not-found', `${orphans} patient(s) referenced by input resources have no Patient resource in the input; their resources were not screened`)));
      if (skipped > 0) deps.log.info({ screenId: job.screenId, skipped }, 'bulk screening: resources of types no criterion reads were skipped');
      await output.close();
      await errors.close();
      await rm(partitionsDir, { recursive: true, force: true });
      return {
        transactionTime,
        output: [{ type: 'Parameters', file: OUTPUT_FILE, count: output.count }],
        errors: [{ type: 'OperationOutcome', file: ERROR_FILE, count: errors.count }],
        counts,
        patients,
        resources: progress.resources,
        tasksWritten: tasks.written,
      };
    } catch (error) {
      await Promise.all(pool.splice(0).map((worker) => worker.stop()));
      await output.close().catch(() => undefined);
      await errors.close().catch(() => undefined);
      await rm(partitionsDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** `Patient.ndjson` or the URL path: how errors name an input (never its content). */
  private describe(input: BulkInput): string {
    if (/^https?:/i.test(input.url)) return new URL(input.url).pathname.split('/').pop() || input.url;
    return path.basename(input.url);
  }

  private headers(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    return (async () => ({ ...extra, ...(this.deps.accessToken ? { Authorization: `Bearer ${await this.deps.accessToken()}` } : {}) }))();
  }

  private async openInput(input: BulkInput): Promise<AsyncIterable<Uint8Array>> {
    const location = locateInput(input.url, { fhirBaseUrl: this.deps.fhir.baseUrl, ...(this.deps.inputDir ? { inputDir: this.deps.inputDir } : {}) });
    if (location.kind === 'file') {
      await this.assertRealPathInside(location.path);
      return readChunks(location.path);
    }
    const response = await this.fetch(location.url, { headers: await this.headers({ Accept: 'application/fhir+ndjson' }), redirect: 'error' });
    if (!response.ok || !response.body) throw new BulkInputError(`an input file answered HTTP ${response.status}`);
    return response.body as unknown as AsyncIterable<Buffer>;
  }

  private async assertRealPathInside(file: string): Promise<void> {
    const root = await realpath(path.resolve(this.deps.inputDir ?? '/nonexistent')).catch(() => undefined);
    const real = await realpath(file).catch(() => undefined);
    if (!root || !real) throw new BulkInputError(`input file ${path.basename(file)} does not exist`);
    if (real !== root && !real.startsWith(root + path.sep)) throw new BulkInputError('input files must be inside BULK_INPUT_DIR');
  }

  private async estimateBytes(inputs: readonly BulkInput[]): Promise<number> {
    let total = 0;
    for (const input of inputs) {
      const location = locateInput(input.url, { fhirBaseUrl: this.deps.fhir.baseUrl, ...(this.deps.inputDir ? { inputDir: this.deps.inputDir } : {}) });
      if (location.kind === 'file') total += (await stat(location.path).catch(() => ({ size: 0 }))).size;
      else total += 64 * 1024 * 1024;
    }
    return total;
  }

  /** Inputs that are `$export` manifests (`.json`, or type `manifest`) replaced by their files. */
  private async expandManifests(inputs: readonly BulkInput[]): Promise<BulkInput[]> {
    const expanded: BulkInput[] = [];
    for (const input of inputs) {
      const isManifest = input.type === 'manifest' || (input.type === undefined && /\.json$/i.test(input.url.split('?')[0] ?? ''));
      if (!isManifest) {
        expanded.push(input);
        continue;
      }
      const location = locateInput(input.url, { fhirBaseUrl: this.deps.fhir.baseUrl, ...(this.deps.inputDir ? { inputDir: this.deps.inputDir } : {}) });
      let body: unknown;
      try {
        if (location.kind === 'file') {
          await this.assertRealPathInside(location.path);
          body = JSON.parse(await readFile(location.path, 'utf8'));
        } else {
          const response = await this.fetch(location.url, { headers: await this.headers({ Accept: 'application/json' }), redirect: 'error' });
          if (!response.ok) throw new BulkInputError(`the manifest answered HTTP ${response.status}`);
          body = await response.json();
        }
      } catch (error) {
        if (error instanceof BulkInputError) throw error;
        throw new BulkInputError('the manifest is not valid JSON');
      }
      const read = inputsOfManifest(body);
      if (!read.ok) throw new BulkInputError(read.reason);
      for (const file of read.inputs) {
        // Relative file paths in a local manifest are relative to the manifest's folder.
        const url = location.kind === 'file' && !/^[a-z][a-z0-9+.-]*:/i.test(file.url) ? path.resolve(path.dirname(location.path), file.url) : file.url;
        this.checkInputs([{ url }]);
        expanded.push({ ...file, url });
      }
    }
    return expanded;
  }

  /**
   * Starts a system-level `$export` on the FHIR server (if its CapabilityStatement declares
   * one) and waits for it (Bulk Data async pattern: 202 + Content-Location, polled honouring
   * Retry-After), then returns the manifest's files.
   */
  /** Whether the FHIR server's CapabilityStatement declares a system-level `$export`. */
  async exportSupported(): Promise<boolean> {
    const base = this.deps.fhir.baseUrl.replace(/\/$/, '');
    const metadata = await this.fetch(`${base}/metadata`, { headers: await this.headers({ Accept: 'application/fhir+json' }), redirect: 'error' });
    const capability = (metadata.ok ? await metadata.json() : undefined) as fhir4.CapabilityStatement | undefined;
    return (capability?.rest ?? []).some((rest) => (rest.operation ?? []).some((op) => op.name === 'export'));
  }

  private async runExport(onProgress: (text: string) => Promise<void>): Promise<BulkInput[]> {
    const base = this.deps.fhir.baseUrl.replace(/\/$/, '');
    if (!(await this.exportSupported())) throw new BulkInputError('the FHIR server does not declare $export in its CapabilityStatement');
    const types = [...PATIENT_TYPES, 'Organization', 'PractitionerRole'].join(',');
    const kickOff = await this.fetch(`${base}/$export?_outputFormat=${encodeURIComponent('application/fhir+ndjson')}&_type=${types}`, {
      headers: await this.headers({ Accept: 'application/fhir+json', Prefer: 'respond-async' }),
      redirect: 'error',
    });
    const statusUrl = kickOff.headers.get('content-location');
    if (kickOff.status !== 202 || !statusUrl) throw new BulkInputError(`$export kick-off answered HTTP ${kickOff.status}`);
    const poll = locateInput(new URL(statusUrl, base).toString(), { fhirBaseUrl: base });
    for (let attempt = 0; attempt < 100_000; attempt += 1) {
      const status = await this.fetch(poll.kind === 'http' ? poll.url : statusUrl, { headers: await this.headers({ Accept: 'application/json' }), redirect: 'error' });
      if (status.status === 202) {
        const progress = status.headers.get('x-progress');
        if (progress) await onProgress(progress.slice(0, 100));
        const retryAfter = Number.parseInt(status.headers.get('retry-after') ?? '', 10);
        await status.body?.cancel();
        await this.sleep(Math.min(120, Math.max(1, Number.isFinite(retryAfter) ? retryAfter : 2)) * 1000);
        continue;
      }
      if (status.status !== 200) throw new BulkInputError(`$export status answered HTTP ${status.status}`);
      const read = inputsOfManifest(await status.json());
      if (!read.ok) throw new BulkInputError(read.reason);
      this.checkInputs(read.inputs);
      return read.inputs;
    }
    throw new BulkInputError('$export did not complete');
  }
}

/**
 * Writes the GP's enrolment-proposal Task for newly eligible patients only, in batches.
 *
 * "Newly": a Redis set per program holds the patients already proposed by a bulk screening
 * (about 40 bytes per eligible patient; membership checked with SMISMEMBER, 250 at a time),
 * so a second screening sends nothing for them. For the others, one batch reads
 * `Task/{deterministic id}` (the id the queued evaluation uses too) and one batch PUTs the
 * absent ones: the same id whichever path writes it, so a Task is never duplicated, and an
 * existing one (possibly declined since) is never overwritten. A Redis set rather than reading
 * every existing Task: it costs no FHIR request for the patients already proposed, and the
 * batch read covers Tasks written by push-mode evaluations or a lost set.
 */
class TaskWriter {
  written = 0;
  private pending: { patientId: string; verdict: EligibilityVerdict; gp?: string }[] = [];
  /** Batches sent and not yet answered: evaluation goes on meanwhile (the FHIR server is another process). */
  private inFlight: Promise<void>[] = [];
  private static readonly MAX_IN_FLIGHT = 2;

  constructor(
    private readonly deps: BulkScreeningDeps,
    private readonly program: LoadedProgram,
    private readonly now: () => Date,
  ) {}

  async propose(patientId: string, verdict: EligibilityVerdict, gp: string | undefined): Promise<void> {
    this.pending.push({ patientId, verdict, ...(gp ? { gp } : {}) });
    if (this.pending.length < TASK_BATCH) return;
    const batch = this.pending;
    this.pending = [];
    if (this.inFlight.length >= TaskWriter.MAX_IN_FLIGHT) await this.inFlight.shift();
    const sending = this.send(batch);
    // Kept (and awaited later) so that a failure is thrown by `flush`, never unhandled.
    sending.catch(() => undefined);
    this.inFlight.push(sending);
  }

  /** Sends what is pending and waits for every batch; throws the first failure. */
  async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    const all = [...this.inFlight, this.send(batch)];
    this.inFlight = [];
    await Promise.all(all);
  }

  private async send(batch: { patientId: string; verdict: EligibilityVerdict; gp?: string }[]): Promise<void> {
    if (batch.length === 0) return;
    const key = proposedKey(this.deps.prefix, this.program.definition.id);
    const known = (await this.deps.redis.smismember(key, ...batch.map((c) => c.patientId))) as number[];
    const unknown = batch.filter((_, index) => known[index] !== 1);
    if (unknown.length === 0) return;
    // The proposal locks the queued evaluation and `$decline` take: a patient whose lock is held
    // is left to its holder (an evaluation creates the Task, a decline rejects it), so a
    // refusal is never overwritten by a Task read as absent just before.
    const locks = await tryLockMany(this.deps.redis, this.deps.prefix, unknown.map((c) => proposalLockName(this.program.definition.id, c.patientId)));
    try {
      await this.sendLocked(key, unknown.filter((c) => locks.taken.has(proposalLockName(this.program.definition.id, c.patientId))));
    } finally {
      await locks.release();
    }
  }

  private async sendLocked(key: string, fresh: { patientId: string; verdict: EligibilityVerdict; gp?: string }[]): Promise<void> {
    if (fresh.length === 0) return;
    const ids = fresh.map((candidate) => enrolmentProposalTaskId(this.program, candidate.patientId));
    const reads = await this.deps.fhir.batch({ resourceType: 'Bundle', type: 'batch', entry: ids.map((id) => ({ request: { method: 'GET', url: `Task/${id}` } })) });
    const statusOf = (index: number): string => reads.entry?.[index]?.response?.status ?? '';
    // Each with its Task id (a hash: computed once per candidate).
    const absent = fresh.flatMap((candidate, index) => (statusOf(index).startsWith('404') || statusOf(index).startsWith('410') ? [{ ...candidate, id: ids[index] as string }] : []));
    const authoredOn = this.now().toISOString();
    // Already there (written by the queued evaluation or an earlier run): remembered, not rewritten.
    const done: string[] = fresh.filter((_, index) => statusOf(index).startsWith('2')).map((c) => c.patientId);
    if (absent.length > 0) {
      const entries = absent.map((candidate) => {
        const { id } = candidate;
        const task = enrolmentProposalTask(candidate.verdict, this.program, candidate.patientId, { id, authoredOn, ...(candidate.gp ? { owner: { reference: candidate.gp } } : {}) });
        return { resource: task, request: { method: 'PUT' as const, url: `Task/${id}` } };
      });
      const response = await this.deps.fhir.batch({ resourceType: 'Bundle', type: 'batch', entry: entries });
      absent.forEach((candidate, index) => {
        if ((response.entry?.[index]?.response?.status ?? '').startsWith('2')) {
          this.written += 1;
          done.push(candidate.patientId);
        }
      });
    }
    if (done.length > 0) await this.deps.redis.sadd(key, ...done);
  }
}
