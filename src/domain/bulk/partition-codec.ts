/**
 * Bulk screening, the partition files' format (pure: bytes in, bytes out, no I/O).
 *
 * Several workers read blocks of the input at once, each appending the reduced resources it
 * keeps to partition files of its own. A partition file is a sequence of runs, one per input
 * block that had resources of that partition:
 *
 *     run    = block:u32le  length:u32le  payload[length]
 *     payload = record ('\n' record)*          (UTF-8 text without newlines)
 *
 * Bulk screening's records are keyed (`addKeyed`, `forEachKeyedRecord`): `key '\t' payload`,
 * the patient's id then the reduced resource (`encodeResource`: compact JSON, or the values
 * alone of a common shape; a FHIR id has no tab, and no payload ever holds a newline). The
 * reader groups records per patient from the key alone, and reads a patient's payloads only
 * when it evaluates that patient: its objects die young instead of living through the whole
 * partition (their copying by the young-generation GC was the costliest part of evaluating).
 *
 * The block number restores the input order when a partition is read back from the files of
 * every worker (runs sorted by block): patients come out in the order of their first resource
 * in the input and each patient's resources in input order, whatever the number of workers, so
 * the output is the same byte for byte.
 */

export const RUN_HEADER_BYTES = 8;

/** One run of a partition file: where its payload is and which input block it came from. */
export interface PartitionRun {
  block: number;
  bytes: Uint8Array;
  start: number;
  end: number;
}

/** The 8-byte header of a run of `length` payload bytes from input block `block`. */
export function runHeader(block: number, length: number): Uint8Array {
  if (!Number.isInteger(block) || block < 0 || block > 0xffff_ffff) throw new RangeError(`block ${block} is out of range`);
  if (!Number.isInteger(length) || length < 0 || length > 0xffff_ffff) throw new RangeError(`run length ${length} is out of range`);
  const header = new Uint8Array(RUN_HEADER_BYTES);
  const view = new DataView(header.buffer);
  view.setUint32(0, block, true);
  view.setUint32(4, length, true);
  return header;
}

/**
 * The runs of one partition file, appended to `into`.
 * @throws Error when the file is truncated (a run longer than what is left): never silently short.
 */
export function readRuns(bytes: Uint8Array, into: PartitionRun[] = []): PartitionRun[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at < bytes.length) {
    if (at + RUN_HEADER_BYTES > bytes.length) throw new Error('partition file truncated in a run header');
    const block = view.getUint32(at, true);
    const length = view.getUint32(at + 4, true);
    const start = at + RUN_HEADER_BYTES;
    const end = start + length;
    if (end > bytes.length) throw new Error('partition file truncated in a run');
    into.push({ block, bytes, start, end });
    at = end;
  }
  return into;
}

/**
 * The runs of every worker's file of one partition in input order. Two runs never share a
 * block (a block is read by one worker); the sort is stable anyway.
 */
export function runsInInputOrder(files: readonly Uint8Array[]): PartitionRun[] {
  const runs: PartitionRun[] = [];
  for (const file of files) readRuns(file, runs);
  return runs.sort((a, b) => a.block - b.block);
}

const encoder = new TextEncoder();

/**
 * One worker's buffer for one partition: records are appended as they come (so that their
 * text dies young), framed in runs of their input block, and the buffer is handed to `sink`
 * (which appends it to the partition file) when the next record might not fit, or on `flush`.
 * A block's records may span several runs when the buffer fills: they stay in order (same
 * file, same block). A record larger than the buffer becomes a run of its own. `sink` must
 * be done with the bytes when it returns (they are overwritten next).
 */
export class PartitionRunWriter {
  private readonly bytes: Uint8Array;
  /** The same memory as a Buffer: `write` encodes a string in place without a view per call. */
  private readonly buffer: Buffer;
  private readonly view: DataView;
  private used = 0;
  /** Where the open run's header is, and its block; -1: no open run. */
  private runStart = -1;
  private runBlock = -1;

  constructor(
    capacity: number,
    private readonly sink: (bytes: Uint8Array) => void,
  ) {
    this.bytes = new Uint8Array(Math.max(capacity, RUN_HEADER_BYTES + 64));
    this.buffer = Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Appends one record (a line of text without newline) read from input block `block`. */
  add(block: number, record: string): void {
    // UTF-16 code unit → at most 3 UTF-8 bytes: room checked for the worst case.
    const worst = record.length * 3 + 1;
    if (this.runBlock === block && this.used + worst <= this.bytes.length) {
      this.bytes[this.used] = 0x0a;
      this.used += 1;
      this.used += this.encode(record);
      return;
    }
    this.closeRun();
    if (this.used + RUN_HEADER_BYTES + worst > this.bytes.length) this.flush();
    if (RUN_HEADER_BYTES + worst > this.bytes.length) {
      const encoded = encoder.encode(record);
      this.sink(runHeader(block, encoded.length));
      this.sink(encoded);
      return;
    }
    this.runStart = this.used;
    this.runBlock = block;
    this.used += RUN_HEADER_BYTES;
    this.used += this.encode(record);
  }

  /**
   * Appends the record `key '\t' json` (see the file comment): `key` must hold no tab nor
   * newline, `json` no newline. Written in place, without building the joined string.
   */
  addKeyed(block: number, key: string, json: string): void {
    const worst = (key.length + 1 + json.length) * 3 + 1;
    if (!(this.runBlock === block && this.used + worst <= this.bytes.length) && RUN_HEADER_BYTES + worst > this.bytes.length) {
      // Larger than the buffer: a run of its own, through the general path.
      this.add(block, `${key}\t${json}`);
      return;
    }
    if (this.runBlock === block && this.used + worst <= this.bytes.length) {
      this.bytes[this.used] = 0x0a;
      this.used += 1;
    } else {
      this.closeRun();
      if (this.used + RUN_HEADER_BYTES + worst > this.bytes.length) this.flush();
      this.runStart = this.used;
      this.runBlock = block;
      this.used += RUN_HEADER_BYTES;
    }
    this.used += this.encode(key);
    this.bytes[this.used] = 0x09;
    this.used += 1;
    this.used += this.encode(json);
  }

  /** Hands what is buffered to the sink (the open run is closed first). */
  flush(): void {
    this.closeRun();
    if (this.used === 0) return;
    this.sink(this.bytes.subarray(0, this.used));
    this.used = 0;
  }

  /** UTF-8 of `record` at `used` (room checked by the caller; lone surrogates as U+FFFD, as TextEncoder writes them). */
  private encode(record: string): number {
    return this.buffer.write(record, this.used, 'utf8');
  }

  private closeRun(): void {
    if (this.runStart < 0) return;
    this.view.setUint32(this.runStart, this.runBlock, true);
    this.view.setUint32(this.runStart + 4, this.used - this.runStart - RUN_HEADER_BYTES, true);
    this.runStart = -1;
    this.runBlock = -1;
  }
}

/**
 * Calls `record(key, json)` for each keyed record (`key '\t' json`) of a run's text, in order.
 * `json` is a slice of `text` (not parsed).
 * @throws Error for a record without its tab (a file not written by `addKeyed`).
 */
export function forEachKeyedRecord(text: string, record: (key: string, json: string) => void): void {
  forEachKeyedRecordSpan(text, (key, start, end) => record(key, text.slice(start, end)));
}

/**
 * Calls `record(key, start, end)` for each keyed record of a run's text, in order: its payload
 * is `text.slice(start, end)`, left uncut (the caller cuts it when it reads it).
 * @throws Error for a record without its tab (a file not written by `addKeyed`).
 */
export function forEachKeyedRecordSpan(text: string, record: (key: string, start: number, end: number) => void): void {
  let at = 0;
  while (at < text.length) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    const tab = text.indexOf('\t', at);
    if (tab < 0 || tab >= end) throw new Error('a partition record has no key');
    record(text.slice(at, tab), tab + 1, end);
    at = end + 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Records' payloads: compact positional forms of the commonest reduced resources

/**
 * The payload of a keyed record: the reduced resource as compact JSON, or, for the commonest
 * shapes (an Observation with a coded code and a quantity, a Patient with one GP), its values
 * alone, tab-separated after a tag: reading them back builds the objects directly, without
 * parsing JSON (the evaluation read every patient's records with JSON.parse, its costliest step
 * after the rules). `decodeResource(encodeResource(r))` is `JSON.parse(JSON.stringify(r))`:
 * the same values, keys in the same order; anything that does not fit a form exactly (another
 * key, another type, a value holding a tab, a newline or a lone surrogate) is written as JSON.
 * JSON payloads start with `{`, positional ones with their tag.
 */
const OBSERVATION_TAG = 'O';
const PATIENT_TAG = 'P';

/** Observation keys a positional Observation may have, in this order only (each optional). */
const OBSERVATION_KEYS = ['id', 'status', 'code', 'subject', 'effectiveDateTime', 'issued', 'valueQuantity', 'meta'] as const;
/** Patient keys a positional Patient may have, in this order only (each optional). */
const PATIENT_KEYS = ['id', 'meta', 'active', 'gender', 'birthDate', 'deceasedBoolean', 'deceasedDateTime', 'generalPractitioner'] as const;

/**
 * Characters a positional payload cannot hold: newlines (records are lines) and lone surrogates
 * (UTF-8 would not keep them). Tested once on the whole payload (a tab separates two values, so
 * a surrogate pair is never made of two of them); each value is checked for tabs on its own.
 */
const UNSAFE_PAYLOAD = /[\n\ud800-\udfff]/u;

const isSafeText = (value: unknown): value is string => typeof value === 'string' && value.indexOf('\t') < 0;

/** Exactly `{ [key]: text }` for each key, in that order, and nothing else. */
function onlyTexts(value: unknown, keys: readonly string[]): value is Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  let index = 0;
  for (const key in value) {
    if (key !== keys[index] || !isSafeText((value as Record<string, unknown>)[key])) return false;
    index += 1;
  }
  return index === keys.length;
}

/** `{ coding: [{ system, code }] }` exactly: one coding with both texts. */
function isSimpleCode(value: unknown): value is { coding: [{ system: string; code: string }] } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  let keys = 0;
  for (const key in value) {
    if (key !== 'coding') return false;
    keys += 1;
  }
  const coding = (value as { coding?: unknown }).coding;
  return keys === 1 && Array.isArray(coding) && coding.length === 1 && onlyTexts(coding[0], ['system', 'code']);
}

/** `{ value, unit, system, code }` exactly: a finite number then three texts. */
function isSimpleQuantity(value: unknown): value is { value: number; unit: string; system: string; code: string } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const expected = ['value', 'unit', 'system', 'code'];
  let index = 0;
  for (const key in value) {
    if (key !== expected[index]) return false;
    const field = (value as Record<string, unknown>)[key];
    if (index === 0 ? !(typeof field === 'number' && Number.isFinite(field)) : !isSafeText(field)) return false;
    index += 1;
  }
  return index === expected.length;
}

/**
 * The presence mask and values of `source`'s keys when each is one of `keys`, in their order
 * (an own key out of order or unknown: undefined). `resourceType` must come first.
 */
function fieldsInOrder(source: Record<string, unknown>, keys: readonly string[]): number | undefined {
  let mask = 0;
  let next = 0;
  let first = true;
  for (const key in source) {
    if (first) {
      if (key !== 'resourceType') return undefined;
      first = false;
      continue;
    }
    const index = keys.indexOf(key, next);
    if (index < 0) return undefined;
    mask |= 1 << index;
    next = index + 1;
  }
  return first ? undefined : mask;
}

function encodeObservation(observation: Record<string, unknown>): string | undefined {
  const mask = fieldsInOrder(observation, OBSERVATION_KEYS);
  if (mask === undefined) return undefined;
  let payload = `${OBSERVATION_TAG}${mask}`;
  for (let index = 0; index < OBSERVATION_KEYS.length; index += 1) {
    if ((mask & (1 << index)) === 0) continue;
    const value = observation[OBSERVATION_KEYS[index] as string];
    switch (OBSERVATION_KEYS[index]) {
      case 'code':
        if (!isSimpleCode(value)) return undefined;
        payload += `\t${value.coding[0].system}\t${value.coding[0].code}`;
        break;
      case 'subject':
        if (!onlyTexts(value, ['reference'])) return undefined;
        payload += `\t${value['reference']}`;
        break;
      case 'valueQuantity':
        if (!isSimpleQuantity(value)) return undefined;
        payload += `\t${value.value}\t${value.unit}\t${value.system}\t${value.code}`;
        break;
      case 'meta':
        if (!onlyTexts(value, ['versionId'])) return undefined;
        payload += `\t${value['versionId']}`;
        break;
      default:
        if (!isSafeText(value)) return undefined;
        payload += `\t${value}`;
    }
  }
  return payload;
}

function encodePatient(patient: Record<string, unknown>): string | undefined {
  const mask = fieldsInOrder(patient, PATIENT_KEYS);
  if (mask === undefined) return undefined;
  let payload = `${PATIENT_TAG}${mask}`;
  for (let index = 0; index < PATIENT_KEYS.length; index += 1) {
    if ((mask & (1 << index)) === 0) continue;
    const value = patient[PATIENT_KEYS[index] as string];
    switch (PATIENT_KEYS[index]) {
      case 'meta':
        if (!onlyTexts(value, ['versionId'])) return undefined;
        payload += `\t${value['versionId']}`;
        break;
      case 'active':
      case 'deceasedBoolean':
        if (typeof value !== 'boolean') return undefined;
        payload += value ? '\t1' : '\t0';
        break;
      case 'generalPractitioner':
        if (!Array.isArray(value) || value.length !== 1 || !onlyTexts(value[0], ['reference'])) return undefined;
        payload += `\t${(value[0] as { reference: string }).reference}`;
        break;
      default:
        if (!isSafeText(value)) return undefined;
        payload += `\t${value}`;
    }
  }
  return payload;
}

/** The payload of a reduced resource (see above): never holds a newline. */
export function encodeResource(resource: fhir4.Resource): string {
  const source = resource as unknown as Record<string, unknown>;
  const positional = resource.resourceType === 'Observation' ? encodeObservation(source) : resource.resourceType === 'Patient' ? encodePatient(source) : undefined;
  return positional === undefined || UNSAFE_PAYLOAD.test(positional) ? JSON.stringify(resource) : positional;
}

/**
 * Values that repeat from record to record (statuses, systems, codes, units, versions,
 * genders): each field keeps the last few distinct values it read, and a value equal to
 * one of them is that string again, found without cutting a new one out of the payload (so
 * that nothing is allocated for it).
 */
const RECENT_VALUES = 8;

class RecentValues {
  readonly values: string[] = [];
  /** Where the last value found is (tried first). */
  hit = 0;
  private next = 0;

  remember(value: string): string {
    if (this.values.length < RECENT_VALUES) {
      this.hit = this.values.length;
      this.values.push(value);
    } else {
      this.hit = this.next;
      this.values[this.next] = value;
      this.next = (this.next + 1) % RECENT_VALUES;
    }
    return value;
  }
}

const observationStatus = new RecentValues();
const observationSystem = new RecentValues();
const observationCode = new RecentValues();
const quantityUnit = new RecentValues();
const quantitySystem = new RecentValues();
const quantityCode = new RecentValues();
const versionIds = new RecentValues();
const genders = new RecentValues();

/** Reads the tab-separated values of a positional payload, one at a time. */
class Fields {
  private at: number;
  constructor(
    private readonly text: string,
    from: number,
  ) {
    this.at = from;
  }

  next(): string {
    const start = this.at;
    let end = this.text.indexOf('\t', start);
    if (end < 0) end = this.text.length;
    this.at = end + 1;
    return this.text.slice(start, end);
  }

  /** The next value, as the same string as an equal recent one of `recent` when there is one. */
  nextOf(recent: RecentValues): string {
    const { text, at } = this;
    const { values } = recent;
    // The value found last time first: a field's values come in runs (one file per type, sorted input).
    for (let tried = 0, index = recent.hit; tried < values.length; tried += 1, index = index + 1 === values.length ? 0 : index + 1) {
      const value = values[index] as string;
      const end = at + value.length;
      if ((end === text.length || text.charCodeAt(end) === 0x09) && text.startsWith(value, at)) {
        this.at = end + 1;
        recent.hit = index;
        return value;
      }
    }
    return recent.remember(this.next());
  }
}

function decodeObservation(payload: string): fhir4.Observation {
  const tab = payload.indexOf('\t');
  const mask = Number(payload.slice(1, tab < 0 ? payload.length : tab));
  const fields = new Fields(payload, tab + 1);
  const observation: Record<string, unknown> = { resourceType: 'Observation' };
  if (mask & 1) observation['id'] = fields.next();
  if (mask & 2) observation['status'] = fields.nextOf(observationStatus);
  if (mask & 4) {
    const system = fields.nextOf(observationSystem);
    observation['code'] = { coding: [{ system, code: fields.nextOf(observationCode) }] };
  }
  if (mask & 8) observation['subject'] = { reference: fields.next() };
  if (mask & 16) observation['effectiveDateTime'] = fields.next();
  if (mask & 32) observation['issued'] = fields.next();
  if (mask & 64) {
    const value = Number(fields.next());
    const unit = fields.nextOf(quantityUnit);
    const system = fields.nextOf(quantitySystem);
    observation['valueQuantity'] = { value, unit, system, code: fields.nextOf(quantityCode) };
  }
  if (mask & 128) observation['meta'] = { versionId: fields.nextOf(versionIds) };
  return observation as unknown as fhir4.Observation;
}

function decodePatient(payload: string): fhir4.Patient {
  const tab = payload.indexOf('\t');
  const mask = Number(payload.slice(1, tab < 0 ? payload.length : tab));
  const fields = new Fields(payload, tab + 1);
  const patient: Record<string, unknown> = { resourceType: 'Patient' };
  if (mask & 1) patient['id'] = fields.next();
  if (mask & 2) patient['meta'] = { versionId: fields.nextOf(versionIds) };
  if (mask & 4) patient['active'] = fields.next() === '1';
  if (mask & 8) patient['gender'] = fields.nextOf(genders);
  if (mask & 16) patient['birthDate'] = fields.next();
  if (mask & 32) patient['deceasedBoolean'] = fields.next() === '1';
  if (mask & 64) patient['deceasedDateTime'] = fields.next();
  if (mask & 128) patient['generalPractitioner'] = [{ reference: fields.next() }];
  return patient as unknown as fhir4.Patient;
}

/** The resource of a payload written by `encodeResource`. */
export function decodeResource(payload: string): fhir4.Resource {
  switch (payload.charCodeAt(0)) {
    case 0x4f: // O
      return decodeObservation(payload);
    case 0x50: // P
      return decodePatient(payload);
    default:
      return JSON.parse(payload) as fhir4.Resource;
  }
}
