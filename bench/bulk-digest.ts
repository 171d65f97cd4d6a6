/**
 * Whole-pipeline check of bulk screening (a development tool, not part of `npm run bench`):
 * screens a generated population plus a file of awkward lines (broken JSON, a non-resource,
 * resources without a patient, orphans, CRLF, empty lines, multi-byte text, a duplicate
 * Patient, an open EpisodeOfCare, a last line without newline) through `BulkScreening.run`,
 * against real Redis and the embedded FHIR server, with small partitions, and prints a
 * sha256 of the verdict file and of the error file, the counts and the Tasks written. Equal
 * lines before and after a change of the pipeline: the same output, byte for byte.
 *
 * `npx tsx bench/bulk-digest.ts [--patients 3000] [--workers N] [--keep]`
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { BulkScreening, type BulkScreeningDeps } from '../src/app/bulk-screening.js';
import { CentreDirectoryCache } from '../src/fhir/centre-directory.js';
import { HttpFhirServer } from '../src/fhir/fhir-server.adapter.js';
import { loadProgramCatalog } from '../src/programs/load-programs.js';
import { BENCH_AS_OF, BENCH_CENTRE, awkwardLines, generateBulk } from './bulk-generate.js';
import { startFhirChild } from './bulk-screening.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name: string): string | undefined => {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1] : undefined;
};
const patients = Number(arg('--patients') ?? 3000);
const workers = arg('--workers');

const dir = await mkdtemp(path.join(os.tmpdir(), 'bulk-digest-'));
const fhirChild = await startFhirChild();
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
const prefix = `bulk-digest-${randomUUID().slice(0, 8)}`;
try {
  const set = await generateBulk(path.join(dir, 'in'), patients, 7);
  const awkward = path.join(dir, 'in', 'Awkward.ndjson');
  await writeFile(awkward, awkwardLines(7));
  const catalog = loadProgramCatalog({ mappingsDir: path.join(ROOT, 'mappings'), profilesDir: path.join(ROOT, 'profiles') });
  const fhir = new HttpFhirServer({ baseUrl: fhirChild.baseUrl, timeoutMs: 60_000, maxAttempts: 4 });
  const deps: BulkScreeningDeps = {
    fhir,
    catalog,
    directory: new CentreDirectoryCache(fhir, 60_000),
    redis,
    prefix,
    inputDir: dir,
    outputDir: path.join(dir, 'out'),
    log: pino({ level: 'warn' }),
    partitionBytes: 64 * 1024,
    blockBytes: 16 * 1024,
    now: () => new Date('2026-11-01T09:00:00Z'),
    ...(workers ? { workers: Number(workers) } : {}),
  };
  const bulk = new BulkScreening(deps);
  const inputs = [...set.files.map((file) => ({ type: file.type, url: file.path })), { url: awkward }];
  for (const [index, centre] of [undefined, `${BENCH_CENTRE.system}|${BENCH_CENTRE.value}`].entries()) {
    const screenId = `digest-${index}`;
    const result = await bulk.run({ screenId, programId: 'fnmf-prediabetes', asOf: BENCH_AS_OF, inputs, ...(centre ? { centre } : {}) }, async () => undefined);
    const digests: string[] = [];
    for (const file of [...result.output, ...result.errors]) digests.push(`${file.file} ${createHash('sha256').update(await readFile(path.join(bulk.outputFolder(screenId), file.file))).digest('hex').slice(0, 16)}`);
    process.stdout.write(`${centre ? 'centre' : 'all'}: ${digests.join(', ')}; counts ${JSON.stringify(result.counts)}; patients ${result.patients}; resources ${result.resources}; tasks ${result.tasksWritten}\n`);
  }
} finally {
  const stream = redis.scanStream({ match: `${prefix}:*`, count: 500 });
  for await (const keys of stream as AsyncIterable<string[]>) if (keys.length) await redis.del(...keys);
  redis.disconnect();
  await fhirChild.stop();
  if (!process.argv.includes("--keep")) await rm(dir, { recursive: true, force: true });
  else process.stdout.write(`kept ${dir}\n`);
}
