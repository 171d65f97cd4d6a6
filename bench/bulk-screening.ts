/**
 * Benchmark 3 of issue 7: population screening from FHIR Bulk Data NDJSON.
 *
 * Generates 1,000,000 synthetic patients (100,000 with `--quick`) once (cached by seed and size
 * in the OS temp dir), then, in the same run:
 * - the screening itself through the service's job handler (`runBulkScreeningJob`, what the
 *   `screening` worker runs for a bulk `$screen`), against real Redis and the embedded FHIR
 *   server started in a child process (its stored Tasks do not count in our memory);
 * - then the baseline: a raw `JSON.parse` of every line of the same files, with the same line
 *   reader (after the screening, so that its garbage does not count in the screening's peak).
 * Reports total time, throughput as a ratio of the raw pass, peak resident memory (sampled
 * every 50 ms) and the Tasks written.
 *
 * Alone: `npx tsx bench/bulk-screening.ts [--quick] [--patients N] [--workers N] [--json]` (workers:
 * the screening's worker threads, default BULK_WORKERS' default, `os.availableParallelism()`).
 */
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { BulkScreening, ndjsonLines } from '../src/app/bulk-screening.js';
import { CentreDirectoryCache } from '../src/fhir/centre-directory.js';
import { HttpFhirServer } from '../src/fhir/fhir-server.adapter.js';
import { loadProgramCatalog } from '../src/programs/load-programs.js';
import { ScreeningStore } from '../src/queue/screening-store.js';
import { runBulkScreeningJob } from '../src/queue/workers.js';
import { BENCH_AS_OF, cachedBulk } from './bulk-generate.js';
import type { Bench, BenchRow } from './types.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PROGRAM = 'fnmf-prediabetes';

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const thousands = (n: number): string => Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ' ');

/** The raw baseline: every line of every file read and JSON.parse'd, nothing else. */
async function rawParsePass(files: readonly string[]): Promise<{ lines: number; seconds: number }> {
  const started = process.hrtime.bigint();
  let lines = 0;
  for (const file of files) {
    for await (const batch of ndjsonLines(createReadStream(file, { highWaterMark: 1024 * 1024 }))) {
      for (const line of batch) {
        if (line.length === 0) continue;
        JSON.parse(line);
        lines += 1;
      }
    }
  }
  return { lines, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

export async function startFhirChild(): Promise<{ baseUrl: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'bulk-fhir-child.ts')], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const first = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`FHIR child exited (${code})`)));
  });
  const { baseUrl } = JSON.parse(first) as { baseUrl: string };
  return {
    baseUrl,
    stop: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin.end();
      await exited;
    },
  };
}

export interface BulkBenchResult {
  patients: number;
  resources: number;
  rawSeconds: number;
  seconds: number;
  peakRss: number;
  /** RSS when the screening started (imports, program data, Redis and HTTP clients). */
  startRss: number;
  tasksWritten: number;
  counts: Record<string, number>;
  /** sha256 (first 16 hex digits) of the verdict file then the error file: equal digests, same output. */
  outputDigest: string;
}

export async function measure(patients: number, workers?: number): Promise<BulkBenchResult> {
  const set = await cachedBulk(patients, 42);

  const fhirChild = await startFhirChild();
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  const prefix = `bench-bulk-${randomUUID().slice(0, 8)}`;
  const outputDir = path.join(os.tmpdir(), `${prefix}-out`);
  try {
    const catalog = loadProgramCatalog({ mappingsDir: path.join(ROOT, 'mappings'), profilesDir: path.join(ROOT, 'profiles') });
    const fhir = new HttpFhirServer({ baseUrl: fhirChild.baseUrl, timeoutMs: 60_000, maxAttempts: 4 });
    const log = pino({ level: 'warn' });
    const bulk = new BulkScreening({ fhir, catalog, directory: new CentreDirectoryCache(fhir, 60_000), redis, prefix, inputDir: set.dir, outputDir, log, ...(workers ? { workers } : {}) });
    const screenings = new ScreeningStore(redis, prefix);
    const screenId = randomUUID();
    await screenings.create(screenId, PROGRAM, BENCH_AS_OF, new Date().toISOString(), undefined, 'bulk');

    global.gc?.();
    const startRss = process.memoryUsage.rss();
    let peakRss = startRss;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
    }, 50);
    const started = process.hrtime.bigint();
    try {
      await runBulkScreeningJob(
        { bulk, screenings, log },
        {
          data: { screenId, programId: PROGRAM, asOf: BENCH_AS_OF, bulk: { inputs: [{ url: pathToFileURL(set.manifest).toString() }], request: 'bench' } },
          attemptsMade: 0,
          opts: { attempts: 1 },
        },
      );
    } finally {
      clearInterval(sampler);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
    const status = await screenings.get(screenId);
    const result = status?.result;
    if (!result) throw new Error(`bulk screening did not complete: ${status?.error ?? status?.state}`);
    const digest = createHash('sha256');
    for (const file of [...result.output, ...result.errors]) digest.update(await readFile(path.join(bulk.outputFolder(screenId), file.file)));
    // The baseline after the screening, so that its garbage does not count in the screening's peak RSS.
    const raw = await rawParsePass(set.files.map((file) => file.path));
    return { patients: result.patients, resources: result.resources, rawSeconds: raw.seconds, seconds, peakRss, startRss, tasksWritten: result.tasksWritten, counts: result.counts, outputDigest: digest.digest('hex').slice(0, 16) };
  } finally {
    const stream = redis.scanStream({ match: `${prefix}:*`, count: 500 });
    for await (const keys of stream as AsyncIterable<string[]>) if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await fhirChild.stop();
    await rm(outputDir, { recursive: true, force: true });
  }
}

/**
 * V8 heap limit of the measuring process. Without one, V8 lets garbage pile up while memory is
 * plentiful (a 1M run peaked at 633 MB RSS uncapped, for a live set that fits in 192 MB): the
 * cap makes the peak RSS reflect what the screening keeps, and the run would fail if it kept
 * more. Deployments running bulk screenings set the same (NODE_OPTIONS, see the README).
 */
export const HEAP_LIMIT_MB = 384;

/**
 * The measurement in a child process of its own (heap capped), so that the peak resident
 * memory is the screening's, not that of the benchmarks run before it in the runner.
 */
export async function measureInChild(patients: number, workers?: number): Promise<BulkBenchResult> {
  const child = spawn(process.execPath, [`--max-old-space-size=${HEAP_LIMIT_MB}`, '--import', 'tsx', fileURLToPath(import.meta.url), '--json', '--patients', String(patients), ...(workers ? ['--workers', String(workers)] : [])], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const line = out.trim().split('\n').pop() ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`bulk screening benchmark failed (exit ${code})`);
  return JSON.parse(line) as BulkBenchResult;
}

export const run: Bench = async ({ quick }) => rows(await measureInChild(quick ? 100_000 : 1_000_000), !quick);

function rows(result: BulkBenchResult, full: boolean): BenchRow[] {
  const rawRate = result.resources / result.rawSeconds;
  const rate = result.resources / result.seconds;
  const ratio = rate / rawRate;
  const scale = `${thousands(result.patients)} patients, ${thousands(result.resources)} resources`;
  return [
    {
      name: `bulk screening: total time (${scale})`,
      value: `${result.seconds.toFixed(1)} s`,
      baseline: '',
      ratio: '',
      goal: full ? '< 5 min at 1M patients' : '',
      met: full ? result.seconds < 300 : null,
    },
    {
      name: 'bulk screening: throughput vs raw JSON.parse pass',
      value: `${thousands(rate)} resources/s`,
      baseline: `raw JSON.parse ${thousands(rawRate)} lines/s (${result.rawSeconds.toFixed(1)} s)`,
      ratio: `${(ratio * 100).toFixed(1)} %`,
      goal: '>= 50 %',
      met: ratio >= 0.5,
    },
    {
      name: `bulk screening: peak resident memory (V8 heap capped at ${HEAP_LIMIT_MB} MB)`,
      value: mb(result.peakRss),
      baseline: `${mb(result.startRss)} at the start of the screening`,
      ratio: '',
      goal: '< 512 MB',
      met: result.peakRss < 512 * 1024 * 1024,
    },
    {
      name: `bulk screening: Tasks written (eligible ${thousands(result.counts['eligible'] ?? 0)}, not eligible ${thousands(result.counts['not-eligible'] ?? 0)}, undetermined ${thousands(result.counts['undetermined'] ?? 0)})`,
      value: thousands(result.tasksWritten),
      baseline: '',
      ratio: '',
      goal: '',
      met: null,
    },
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  const index = process.argv.indexOf('--patients');
  const patients = index > 0 ? Number(process.argv[index + 1]) : quick ? 100_000 : 1_000_000;
  const workersAt = process.argv.indexOf('--workers');
  const workers = workersAt > 0 ? Number(process.argv[workersAt + 1]) : undefined;
  if (process.argv.includes('--json')) {
    const measured = await measure(patients, workers);
    process.stdout.write(`${JSON.stringify(measured)}\n`);
    process.exit(0);
  }
  const result = await measureInChild(patients, workers);
  for (const row of rows(result, patients >= 1_000_000)) {
    process.stdout.write(`${row.name}: ${row.value}${row.baseline ? ` | baseline ${row.baseline}` : ''}${row.ratio ? ` | ${row.ratio}` : ''}${row.goal ? ` | goal ${row.goal}: ${row.met ? 'met' : 'NOT met'}` : ''}\n`);
  }
  process.stdout.write(`bulk screening: output files sha256 ${result.outputDigest}\n`);
}
