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
 * Bulk screening's records are keyed (`addKeyed`, `forEachKeyedRecord`): `key '\t' json`, the
 * patient's id then the reduced resource as compact JSON (JSON.stringify escapes every
 * control character, and a FHIR id has no tab: neither ever holds a tab or a newline). The
 * reader groups records per patient from the key alone, and parses a patient's JSON only
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

  private encode(record: string): number {
    return encoder.encodeInto(record, this.bytes.subarray(this.used)).written;
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
  let at = 0;
  while (at < text.length) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    const tab = text.indexOf('\t', at);
    if (tab < 0 || tab >= end) throw new Error('a partition record has no key');
    record(text.slice(at, tab), text.slice(tab + 1, end));
    at = end + 1;
  }
}
