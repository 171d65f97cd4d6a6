/**
 * A worker thread of a bulk screening (started by src/app/bulk-pool.ts).
 *
 * Reading: each input block (whole NDJSON lines) is parsed line by line, each resource keyed
 * by its patient, reduced (src/domain/bulk/reduce.ts) and appended, as one run per block, to
 * this worker's file of the patient's partition. Directory resources go back to the main
 * thread, and so do the input problems, by line number within the block (the main thread
 * knows where the block starts).
 *
 * Evaluating: a partition's runs, from every worker's file, are read back in input order,
 * grouped per patient and judged by the pure rules; the answer holds the verdict lines, the
 * counts and the eligible patients to propose (the main thread writes the files and Tasks).
 *
 * Synchronous file I/O on purpose: this thread does nothing else meanwhile.
 * Nothing here logs; answers hold server ids, counts and verdicts, never names or values.
 */
import { closeSync, fstatSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { addToBucket, centresOfPatient, compactVerdictTail, emptyBucket, enrolledIn, recordOf, VERDICT_LINE_HEAD, type PatientBucket } from '../domain/bulk/join.js';
import { emptyCounts, inputIssue } from '../domain/bulk/manifest.js';
import { PartitionRunWriter, decodeResource, encodeResource, forEachKeyedRecordSpan, runsInInputOrder } from '../domain/bulk/partition-codec.js';
import { PATIENT_TYPES, partitionOf, patientIdOf, reduceResource, reductionPlan } from '../domain/bulk/reduce.js';
import { evaluateEligibility } from '../domain/evaluate.js';
import type { CalendarDate, CentreDirectory, EligibilityVerdict } from '../domain/types.js';
import { LINE_PROBLEM, type BlockAnswer, type BulkAnswer, type BulkTask, type BulkWorkerData, type PartitionAnswer, type ProposalCandidate } from './bulk-pool.js';

const data = workerData as BulkWorkerData;
const plan = reductionPlan(data.program, data.shared);
const partitions = data.partitions;
const fileOf = (worker: number, partition: number): string => path.join(data.partitionsDir, `${worker}-${partition}.bin`);

/** Appends bytes to this worker's file of a partition (opened for each append: P files, few appends each). */
function appendTo(partition: number, bytes: Uint8Array): void {
  const fd = openSync(fileOf(data.worker, partition), 'a');
  try {
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
  } finally {
    closeSync(fd);
  }
}

/** One buffer per partition, reused for the whole run (no garbage per block). */
const writers: PartitionRunWriter[] = Array.from({ length: partitions }, (_, partition) => new PartitionRunWriter(data.flushBytes, (bytes) => appendTo(partition, bytes)));

function readBlock(block: number, bytes: Uint8Array): BlockAnswer {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  const problemLines: number[] = [];
  const problemCodes: number[] = [];
  const organizations: fhir4.Organization[] = [];
  const roles: fhir4.PractitionerRole[] = [];
  let lines = 0;
  let resources = 0;
  let skipped = 0;
  let at = 0;
  while (at < text.length) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    const line = text.slice(at, end);
    at = end + 1;
    lines += 1;
    if (line.length === 0 || line === '\r') continue;
    resources += 1;
    let resource: fhir4.Resource;
    try {
      resource = JSON.parse(line) as fhir4.Resource;
    } catch {
      problemLines.push(lines);
      problemCodes.push(LINE_PROBLEM.notJson);
      continue;
    }
    if (typeof resource !== 'object' || resource === null || typeof resource.resourceType !== 'string') {
      problemLines.push(lines);
      problemCodes.push(LINE_PROBLEM.notResource);
      continue;
    }
    const type = resource.resourceType;
    if (type === 'Organization') {
      const organization = resource as fhir4.Organization;
      if (organization.id) organizations.push({ resourceType: 'Organization', id: organization.id, ...(organization.meta?.versionId ? { meta: { versionId: organization.meta.versionId } } : {}), ...(organization.identifier ? { identifier: organization.identifier } : {}) });
      continue;
    }
    if (type === 'PractitionerRole') {
      const role = resource as fhir4.PractitionerRole;
      roles.push({ resourceType: 'PractitionerRole', ...(role.id ? { id: role.id } : {}), ...(role.meta?.versionId ? { meta: { versionId: role.meta.versionId } } : {}), ...(role.active !== undefined ? { active: role.active } : {}), ...(role.organization ? { organization: role.organization } : {}), ...(role.practitioner ? { practitioner: role.practitioner } : {}) });
      continue;
    }
    const typeIndex = (PATIENT_TYPES as readonly string[]).indexOf(type);
    if (typeIndex < 0) {
      skipped += 1;
      continue;
    }
    const patientId = patientIdOf(resource);
    if (patientId === undefined) {
      problemLines.push(lines);
      problemCodes.push(LINE_PROBLEM.noPatient + typeIndex);
      continue;
    }
    const reduced = reduceResource(resource, plan);
    if (!reduced) continue;
    (writers[partitionOf(patientId, partitions)] as PartitionRunWriter).addKeyed(block, patientId, encodeResource(reduced));
  }
  return { kind: 'block', block, lines, resources, skipped, problemLines: Int32Array.from(problemLines), problemCodes: Int32Array.from(problemCodes), organizations, roles, bytes };
}

/** Read buffers, one per writing worker, reused from partition to partition (grown when needed). */
const readBuffers: Uint8Array[] = [];

/** A whole partition file in the reused buffer `slot`; undefined when that worker wrote none. */
function readWhole(file: string, slot: number): Uint8Array | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    let buffer = readBuffers[slot];
    if (!buffer || buffer.length < size) {
      buffer = new Uint8Array(Math.max(size, 2 * (buffer?.length ?? 0)));
      readBuffers[slot] = buffer;
    }
    let read = 0;
    while (read < size) {
      const got = readSync(fd, buffer, read, size - read, read);
      if (got === 0) throw new Error('a partition file ended early');
      read += got;
    }
    return buffer.subarray(0, size);
  } finally {
    closeSync(fd);
  }
}

const encoder = new TextEncoder();
const HEAD_BYTES = encoder.encode(VERDICT_LINE_HEAD);
/** UTF-8 of each verdict tail (few distinct: see compactVerdictTail), by the tail string itself. */
const tailBytes = new Map<string, Uint8Array>();
/** Size of the last partition's output: the next one's first guess. */
let outputGuess = 1024 * 1024;

/**
 * A partition's verdict lines, written as UTF-8 straight into one buffer that is then
 * transferred to the main thread (no string per line, nothing copied on the way).
 */
class VerdictLines {
  bytes = new Uint8Array(outputGuess);
  /** The same memory as a Buffer (`write` encodes in place without a view per line). */
  private buffer = Buffer.from(this.bytes.buffer, 0, this.bytes.byteLength);
  used = 0;
  count = 0;

  add(patientId: string, verdict: EligibilityVerdict): void {
    const tail = compactVerdictTail(verdict);
    let encodedTail = tailBytes.get(tail);
    if (encodedTail === undefined) {
      encodedTail = encoder.encode(tail);
      if (tailBytes.size >= 10_000) tailBytes.clear();
      tailBytes.set(tail, encodedTail);
    }
    const reference = JSON.stringify(`Patient/${patientId}`);
    // UTF-16 code unit → at most 3 UTF-8 bytes; one for the newline.
    this.reserve(HEAD_BYTES.length + reference.length * 3 + encodedTail.length + 1);
    this.bytes.set(HEAD_BYTES, this.used);
    this.used += HEAD_BYTES.length;
    this.used += this.buffer.write(reference, this.used, 'utf8');
    this.bytes.set(encodedTail, this.used);
    this.used += encodedTail.length;
    this.bytes[this.used] = 0x0a;
    this.used += 1;
    this.count += 1;
  }

  /** The lines written (the buffer is given away: this object is not used after). */
  take(): Uint8Array {
    outputGuess = Math.max(64 * 1024, this.used + (this.used >> 3));
    return this.bytes.subarray(0, this.used);
  }

  private reserve(bytes: number): void {
    if (this.used + bytes <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.used + bytes));
    grown.set(this.bytes.subarray(0, this.used));
    this.bytes = grown;
    this.buffer = Buffer.from(grown.buffer, 0, grown.byteLength);
  }
}

/**
 * Where each record of a partition is (run text, start, end of its payload) and the next record
 * of the same patient (-1: none), in typed arrays reused from partition to partition. For a
 * patient's first record, `last` holds the patient's last record so far (to append in order).
 */
class RecordSpans {
  text = new Int32Array(16 * 1024);
  start = new Int32Array(16 * 1024);
  end = new Int32Array(16 * 1024);
  next = new Int32Array(16 * 1024);
  last = new Int32Array(16 * 1024);
  private count = 0;

  /** Forgets every record (the arrays are kept for the next partition). */
  clear(): void {
    this.count = 0;
  }

  /** Adds a record after `previous` (the patient's last record, or -1); returns its number. */
  add(text: number, start: number, end: number, previous: number): number {
    if (this.count === this.text.length) this.grow();
    const record = this.count;
    this.count += 1;
    this.text[record] = text;
    this.start[record] = start;
    this.end[record] = end;
    this.next[record] = -1;
    this.last[record] = record;
    if (previous >= 0) this.next[previous] = record;
    return record;
  }

  private grow(): void {
    const grown = (from: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const to = new Int32Array(from.length * 2);
      to.set(from);
      return to;
    };
    this.text = grown(this.text);
    this.start = grown(this.start);
    this.end = grown(this.end);
    this.next = grown(this.next);
    this.last = grown(this.last);
  }
}

const records = new RecordSpans();

interface EvaluationSetup {
  directory: CentreDirectory;
  organizations: ReadonlyMap<string, fhir4.Organization>;
  asOf: CalendarDate;
  centre?: string;
  programCodeSystem: string;
}
let setup: EvaluationSetup | undefined;

function evaluatePartition(partition: number, workers: number): PartitionAnswer {
  if (!setup) throw new Error('evaluate-setup must come before partitions');
  const { directory, organizations, asOf, centre, programCodeSystem } = setup;
  const files: Uint8Array[] = [];
  for (let worker = 0; worker < workers; worker += 1) {
    const file = fileOf(worker, partition);
    const bytes = readWhole(file, worker);
    if (!bytes) continue;
    files.push(bytes);
    rmSync(file, { force: true });
  }
  // Each patient's records (payloads keyed by patient id in the file) in input order, patients in
  // the order of their first record; a patient's payloads are cut and read only when it is
  // evaluated. Where the records are is kept in typed arrays, a list per patient: what lives
  // through the whole partition is the run texts and one key per patient, not a string and an
  // array per record (their promotion by the young-generation GC cost more than reading them).
  const texts: string[] = [];
  records.clear();
  const firstRecordOf = new Map<string, number>();
  let text = 0;
  const group = (patientId: string, start: number, end: number): void => {
    const first = firstRecordOf.get(patientId);
    const record = records.add(text, start, end, first === undefined ? -1 : (records.last[first] as number));
    if (first === undefined) firstRecordOf.set(patientId, record);
    else records.last[first] = record;
  };
  for (const run of runsInInputOrder(files)) {
    texts.push(Buffer.from(run.bytes.buffer, run.bytes.byteOffset, run.bytes.byteLength).toString('utf8', run.start, run.end));
    forEachKeyedRecordSpan(texts[text] as string, group);
    text += 1;
  }
  const counts = emptyCounts();
  const output = new VerdictLines();
  const errors: string[] = [];
  const candidates: ProposalCandidate[] = [];
  let orphans = 0;
  let patients = 0;
  for (const [patientId, first] of firstRecordOf) {
    const bucket = emptyBucket();
    for (let record = first; record >= 0; record = records.next[record] as number) {
      addToBucket(bucket, decodeResource((texts[records.text[record] as number] as string).slice(records.start[record], records.end[record])));
    }
    if (!bucket.patient) {
      orphans += 1;
      continue;
    }
    if (centre && !centresOfPatient(bucket.patient, directory).has(centre)) continue;
    patients += 1;
    let verdict: EligibilityVerdict;
    try {
      verdict = evaluateEligibility(data.program, data.shared, recordOf(bucket as PatientBucket & { patient: fhir4.Patient }, organizations), directory, asOf);
    } catch (error) {
      counts.error += 1;
      errors.push(JSON.stringify(inputIssue('exception', `Patient/${patientId}: evaluation failed (${(error as Error).name})`)));
      continue;
    }
    counts[verdict.outcome] += 1;
    output.add(patientId, verdict);
    if (verdict.outcome === 'eligible' && !enrolledIn(bucket, data.program.definition.id, programCodeSystem)) {
      const gp = bucket.patient.generalPractitioner?.[0]?.reference;
      candidates.push({ patientId, verdict, ...(gp ? { gp } : {}) });
    }
  }
  return { kind: 'partition', partition, output: output.take(), outputLines: output.count, counts, errors, orphans, patients, candidates };
}

function handle(task: BulkTask): BulkAnswer {
  switch (task.kind) {
    case 'block':
      return readBlock(task.block, task.bytes);
    case 'end-read':
      for (const writer of writers) writer.flush();
      // Their buffers are not needed any more: the evaluation's memory is the partition's.
      writers.length = 0;
      return { kind: 'done' };
    case 'evaluate-setup':
      setup = { directory: task.directory, organizations: task.organizations, asOf: task.asOf, programCodeSystem: task.programCodeSystem, ...(task.centre ? { centre: task.centre } : {}) };
      return { kind: 'done' };
    case 'partition':
      return evaluatePartition(task.partition, task.workers);
    default: {
      const unhandled: never = task;
      throw new Error(`unknown bulk task ${JSON.stringify(unhandled)}`);
    }
  }
}

parentPort?.on('message', (task: BulkTask) => {
  let answer: BulkAnswer;
  try {
    answer = handle(task);
  } catch (error) {
    // Never a line of the input: a system error's message (a code, a file name) is kept, any
    // other error is told by its class only (a JSON.parse message quotes the text it read).
    const { name = 'Error', message = '', code } = error as NodeJS.ErrnoException;
    answer = { kind: 'failed', name, message: code ? message : `${name} in a bulk screening worker` };
  }
  const transfer = answer.kind === 'block' ? [answer.problemLines.buffer, answer.problemCodes.buffer, answer.bytes.buffer] : answer.kind === 'partition' ? [answer.output.buffer] : [];
  parentPort?.postMessage(answer, transfer as ArrayBuffer[]);
});
