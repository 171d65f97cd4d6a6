/**
 * Bulk screening's parallel plumbing, pure parts: blocks of whole lines cut from a byte
 * stream (what the main thread hands to the workers), the runs of a partition file and their
 * input order, and the verdict line written without building its Parameters.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ndjsonBlocks, ndjsonLines } from '../../../src/app/bulk-screening.js';
import { VERDICT_LINE_HEAD, compactVerdict, compactVerdictLine, compactVerdictTail } from '../../../src/domain/bulk/join.js';
import { PartitionRunWriter, RUN_HEADER_BYTES, forEachKeyedRecord, readRuns, runHeader, runsInInputOrder } from '../../../src/domain/bulk/partition-codec.js';
import { evaluateEligibility } from '../../../src/domain/evaluate.js';
import type { EligibilityVerdict, PatientRecord } from '../../../src/domain/types.js';
import { loadProgramCatalog } from '../../../src/programs/load-programs.js';
import { BENCH_AS_OF, generateBulk } from '../../../bench/bulk-generate.js';

const ROOT = path.resolve(__dirname, '../../..');
const utf8 = new TextDecoder();

async function* chunksOf(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

async function blocksOf(text: string, chunk: number, block: number): Promise<Uint8Array[]> {
  const blocks: Uint8Array[] = [];
  for await (const piece of ndjsonBlocks(chunksOf(Buffer.from(text), chunk), block)) blocks.push(piece);
  return blocks;
}

describe('ndjsonBlocks', () => {
  const text = ['{"a":"é"}', '', '{"b":"血糖 🩸"}', '{"c":3}\r', '{"d":"ünïcødé ✓"}', '{"e":5}'].join('\n');

  it('cuts after newlines only, whatever the chunk and block sizes, and loses nothing', async () => {
    for (const chunk of [1, 3, 7, 64, 4096]) {
      for (const block of [4, 9, 16, 1024]) {
        const blocks = await blocksOf(text, chunk, block);
        expect(utf8.decode(Buffer.concat(blocks)), `chunk ${chunk} block ${block}`).toBe(text);
        for (const piece of blocks.slice(0, -1)) expect(piece[piece.length - 1], 'a block ends with a newline').toBe(0x0a);
        // Each block decodes alone: no multi-byte character straddles two blocks.
        for (const piece of blocks) expect(utf8.decode(piece)).not.toContain('\ufffd');
      }
    }
  });

  it('gives every block an ArrayBuffer of its own (it is transferred to a worker)', async () => {
    const blocks = await blocksOf(text, 5, 8);
    expect(new Set(blocks.map((piece) => piece.buffer)).size).toBe(blocks.length);
    for (const piece of blocks) expect(piece.byteOffset).toBe(0);
  });

  it('grows a block for a line longer than it, keeps the last line without a newline, and yields nothing for no input', async () => {
    const long = `{"x":"${'y'.repeat(100)}"}`;
    const blocks = (await blocksOf(`${long}\n{"z":1}\n${'{"w":2}\n'.repeat(10)}{"v":3}`, 16, 8)).map((piece) => utf8.decode(piece));
    expect(blocks[0]?.startsWith(`${long}\n`)).toBe(true);
    expect(blocks.join('')).toBe(`${long}\n{"z":1}\n${'{"w":2}\n'.repeat(10)}{"v":3}`);
    expect(blocks.at(-1)?.endsWith('{"v":3}')).toBe(true);
    // Back to the normal size after the long line.
    expect(blocks.slice(1).every((piece) => piece.length <= 16)).toBe(true);
    expect(await blocksOf('', 16, 8)).toEqual([]);
  });

  it('splits into the same lines as the line reader', async () => {
    const lines: string[] = [];
    for await (const batch of ndjsonLines(chunksOf(Buffer.from(text), 5))) lines.push(...batch);
    const fromBlocks = (await blocksOf(text, 5, 8)).flatMap((piece) => utf8.decode(piece).replace(/\n$/, '').split('\n'));
    expect(fromBlocks).toEqual(lines);
  });

  it('refuses a line longer than 16 MiB instead of buffering it', async () => {
    const huge = Buffer.alloc(17 * 1024 * 1024, 0x78);
    const read = async (): Promise<void> => {
      for await (const piece of ndjsonBlocks(chunksOf(huge, 1024 * 1024), 1024 * 1024)) void piece;
    };
    await expect(read()).rejects.toThrow(/longer than/);
  });
});

describe('partition runs', () => {
  const run = (block: number, payload: string): Uint8Array => {
    const bytes = Buffer.from(payload);
    return Buffer.concat([runHeader(block, bytes.length), bytes]);
  };

  it('reads back the runs written, payloads intact (unicode, empty, the largest block number)', () => {
    const file = Buffer.concat([run(0, '{"id":"é血"}'), run(7, ''), run(0xffff_ffff, '{"a":1}\n{"b":2}')]);
    const runs = readRuns(file);
    expect(runs.map((r) => [r.block, utf8.decode(r.bytes.subarray(r.start, r.end))])).toEqual([
      [0, '{"id":"é血"}'],
      [7, ''],
      [0xffff_ffff, '{"a":1}\n{"b":2}'],
    ]);
    expect(readRuns(new Uint8Array(0))).toEqual([]);
  });

  it('refuses block numbers and lengths a header cannot hold', () => {
    expect(() => runHeader(-1, 0)).toThrow(RangeError);
    expect(() => runHeader(2 ** 32, 0)).toThrow(RangeError);
    expect(() => runHeader(0, 2 ** 32)).toThrow(RangeError);
    expect(() => runHeader(1.5, 0)).toThrow(RangeError);
    expect(runHeader(0, 2 ** 32 - 1)).toHaveLength(RUN_HEADER_BYTES);
  });

  it('throws on a truncated file instead of returning fewer records', () => {
    const file = run(3, '{"a":1}');
    expect(() => readRuns(file.subarray(0, file.length - 1))).toThrow(/truncated/);
    expect(() => readRuns(file.subarray(0, 5))).toThrow(/truncated/);
  });

  it('puts the runs of several workers back in input order', () => {
    const first = Buffer.concat([run(0, 'a'), run(3, 'd'), run(4, 'e')]);
    const second = Buffer.concat([run(1, 'b'), run(2, 'c'), run(9, 'f')]);
    const order = (files: Uint8Array[]): string => runsInInputOrder(files).map((r) => utf8.decode(r.bytes.subarray(r.start, r.end))).join('');
    expect(order([first, second])).toBe('abcdef');
    expect(order([second, first])).toBe('abcdef');
  });
});

describe('PartitionRunWriter', () => {
  /** Writes records of blocks through a writer of `capacity` bytes; the file it produced and how many times it was flushed. */
  function write(capacity: number, records: [number, string][]): { file: Uint8Array; sinks: number } {
    const parts: Buffer[] = [];
    let sinks = 0;
    const writer = new PartitionRunWriter(capacity, (bytes) => {
      sinks += 1;
      parts.push(Buffer.from(bytes)); // copied: the writer reuses its buffer
    });
    for (const [block, record] of records) writer.add(block, record);
    writer.flush();
    return { file: Buffer.concat(parts), sinks };
  }
  const decoded = (file: Uint8Array): [number, string][] =>
    runsInInputOrder([file]).flatMap((run) => utf8.decode(run.bytes.subarray(run.start, run.end)).split('\n').map((record): [number, string] => [run.block, record]));

  const records: [number, string][] = [
    [0, '{"resourceType":"Patient","id":"p1"}'],
    [0, '{"resourceType":"Observation","id":"ö1","subject":{"reference":"Patient/p1"}}'],
    [2, '{"id":"血糖-🩸"}'],
    [2, '{"id":"x"}'],
    [5, `{"big":"${'z'.repeat(500)}"}`],
    [5, '{"after":"big"}'],
    [9, '{}'],
  ];

  it('gives back every record in order, with its block, whatever the buffer size (runs split when it fills, big records alone)', () => {
    for (const capacity of [0, 16, 40, 80, 200, 4096]) {
      const { file } = write(capacity, records);
      expect(decoded(file), `capacity ${capacity}`).toEqual(records);
    }
  });

  it('writes keyed records (key, tab, JSON) that come back as written, with their block, whatever the buffer size, mixed with plain ones', () => {
    const keyed: [number, string, string][] = [
      [0, 'p1', '{"resourceType":"Patient","id":"p1"}'],
      [0, 'p-2.x', JSON.stringify({ text: 'tab\there, newline\nthere, 血糖 🩸' })],
      [3, 'p1', `{"big":"${'z'.repeat(500)}"}`],
      [3, 'p3', '{}'],
      [7, 'p1', '{"after":"big"}'],
    ];
    for (const capacity of [0, 16, 40, 80, 200, 4096]) {
      const parts: Buffer[] = [];
      const writer = new PartitionRunWriter(capacity, (bytes) => parts.push(Buffer.from(bytes)));
      for (const [block, key, json] of keyed) writer.addKeyed(block, key, json);
      writer.flush();
      const back: [number, string, string][] = [];
      for (const run of runsInInputOrder([Buffer.concat(parts)])) {
        forEachKeyedRecord(utf8.decode(run.bytes.subarray(run.start, run.end)), (key, json) => back.push([run.block, key, json]));
      }
      expect(back, `capacity ${capacity}`).toEqual(keyed);
      for (const [, , json] of back) expect(() => JSON.parse(json)).not.toThrow();
    }
    expect(() => forEachKeyedRecord('no tab here', () => undefined)).toThrow(/no key/);
    expect(() => forEachKeyedRecord('a\t{}\nno tab', () => undefined)).toThrow(/no key/);
  });

  it('hands its buffer to the sink only when full or flushed', () => {
    expect(write(4096, records).sinks).toBe(1);
    expect(write(80, records).sinks).toBeGreaterThan(3);
    expect(write(4096, []).sinks).toBe(0);
  });
});

describe('compactVerdictLine', () => {
  const catalog = loadProgramCatalog({ mappingsDir: path.join(ROOT, 'mappings'), profilesDir: path.join(ROOT, 'profiles') });
  let dir: string;
  const verdicts: { id: string; verdict: EligibilityVerdict }[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bulk-verdict-'));
    const set = await generateBulk(dir, 150, 5);
    const patients = readFileSync(set.files.find((file) => file.type === 'Patient')!.path, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as fhir4.Patient);
    for (const program of catalog.programs.values()) {
      for (const patient of patients) {
        const record: PatientRecord = { patient, observations: [], conditions: [], coverages: [], consents: [], specimens: [], organizations: [] };
        verdicts.push({ id: patient.id!, verdict: evaluateEligibility(program, catalog, record, { members: new Map() }, BENCH_AS_OF) });
      }
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is JSON.stringify(compactVerdict(...)) byte for byte, for every program and outcome', () => {
    expect(new Set(verdicts.map((v) => v.verdict.program)).size).toBeGreaterThan(1);
    for (const { id, verdict } of verdicts) expect(compactVerdictLine(id, verdict)).toBe(JSON.stringify(compactVerdict(id, verdict)));
  });

  it('is the head, the subject reference and the tail, the tail the same for the same program, asOf, outcome and statuses, even once its cache is full', () => {
    const statuses = ['met', 'not-met', 'unknown'] as const;
    // 3^9 = 19,683 distinct tails with 9 criteria: more than the cache keeps (it is dropped and rebuilt).
    for (let round = 0; round < 2; round += 1) {
      for (let n = 0; n < 3 ** 9; n += 7) {
        const criteria = Array.from({ length: 9 }, (_, i) => ({ code: `c${i}`, status: statuses[Math.floor(n / 3 ** i) % 3]!, reason: '', evidence: [] }));
        const verdict: EligibilityVerdict = { program: `p${n % 2}`, asOf: n % 3 === 0 ? '2026-01-01' : '2026-11-01', outcome: 'undetermined', criteria };
        const line = compactVerdictLine(`id-${n}`, verdict);
        expect(line).toBe(JSON.stringify(compactVerdict(`id-${n}`, verdict)));
        expect(line).toBe(`${VERDICT_LINE_HEAD}${JSON.stringify(`Patient/id-${n}`)}${compactVerdictTail(verdict)}`);
      }
    }
  });

  it('escapes what JSON needs escaped, and a verdict without criteria', () => {
    const verdict: EligibilityVerdict = { program: 'p"rog\\é', asOf: '2026-01-01', outcome: 'undetermined', criteria: [{ code: 'c\n1', status: 'unknown', reason: '', evidence: [] }] };
    expect(compactVerdictLine('a.b-C9', verdict)).toBe(JSON.stringify(compactVerdict('a.b-C9', verdict)));
    const none: EligibilityVerdict = { program: 'x', asOf: '2026-01-01', outcome: 'eligible', criteria: [] };
    expect(compactVerdictLine('p', none)).toBe(JSON.stringify(compactVerdict('p', none)));
  });
});
