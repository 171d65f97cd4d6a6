/**
 * `source=export`: the bulk screening starts a system-level `$export` on a FHIR server that
 * declares one, polls its status URL honouring Retry-After (and reporting X-Progress), then
 * screens the manifest's files. The FHIR server is an outside system: here a small HTTP server
 * speaking the Bulk Data kick-off / status / file protocol (the embedded server has no
 * `$export`). Real Redis holds the "already proposed" set.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BENCH_AS_OF, generateBulk, type GeneratedSet } from '../../bench/bulk-generate.js';
import { BulkInputError, BulkScreening, type BulkProgress } from '../../src/app/bulk-screening.js';
import { CentreDirectoryCache } from '../../src/fhir/centre-directory.js';
import { HttpFhirServer } from '../../src/fhir/fhir-server.adapter.js';
import { loadProgramCatalog } from '../../src/programs/load-programs.js';
import { deleteKeys } from './harness.js';

const ROOT = path.resolve(__dirname, '../..');
const catalog = loadProgramCatalog({ mappingsDir: path.join(ROOT, 'mappings'), profilesDir: path.join(ROOT, 'profiles') });

let dir: string;
let set: GeneratedSet;
let server: http.Server;
let base: string;
let redis: Redis;
const prefix = `tbulkexp${process.pid}`;
/** What the fake server saw, for the assertions. */
const seen = { kickOffs: [] as { prefer?: string; url: string }[], polls: 0, files: 0, tasksPut: 0 };
let declareExport = true;
let foreignFile = false;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bulk-export-'));
  set = await generateBulk(dir, 60, 5);
  redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', base);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/fhir+json', ...headers }).end(JSON.stringify(body));
    };
    if (url.pathname === '/fhir/metadata') {
      return json(200, { resourceType: 'CapabilityStatement', status: 'active', kind: 'instance', fhirVersion: '4.0.1', format: ['json'], date: '2026-01-01', rest: [{ mode: 'server', operation: declareExport ? [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' }] : [] }] });
    }
    if (url.pathname === '/fhir/$export') {
      seen.kickOffs.push({ url: req.url ?? '', ...(typeof req.headers['prefer'] === 'string' ? { prefer: req.headers['prefer'] } : {}) });
      return json(202, { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational' }] }, { 'Content-Location': `${base}/fhir/export-status/1` });
    }
    if (url.pathname === '/fhir/export-status/1') {
      seen.polls += 1;
      if (seen.polls < 3) return json(202, {}, { 'X-Progress': `step ${seen.polls} of 3`, 'Retry-After': '1' });
      const output = set.files.map((file) => ({ type: file.type, url: foreignFile ? `http://169.254.169.254/${file.type}.ndjson` : `${base}/files/${file.type}.ndjson`, count: file.count }));
      return json(200, { transactionTime: '2026-11-01T08:00:00Z', request: `${base}/fhir/$export`, requiresAccessToken: false, output, error: [] }, { 'Content-Type': 'application/json' });
    }
    if (url.pathname.startsWith('/files/')) {
      seen.files += 1;
      const type = url.pathname.slice('/files/'.length).replace('.ndjson', '');
      const file = set.files.find((f) => f.type === type);
      if (!file) return json(404, {});
      res.writeHead(200, { 'Content-Type': 'application/fhir+ndjson' }).end(readFileSync(file.path));
      return undefined;
    }
    if (url.pathname.startsWith('/fhir/Organization') || url.pathname.startsWith('/fhir/PractitionerRole')) {
      return json(200, { resourceType: 'Bundle', type: 'searchset', entry: [] });
    }
    if ((url.pathname === '/fhir' || url.pathname === '/fhir/') && req.method === 'POST') {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        const bundle = JSON.parse(body) as fhir4.Bundle;
        const entry = (bundle.entry ?? []).map((e) => {
          if (e.request?.method === 'GET') return { response: { status: '404 Not Found' } };
          seen.tasksPut += 1;
          return { response: { status: '201 Created', location: `${e.request?.url}/_history/1` } };
        });
        json(200, { resourceType: 'Bundle', type: 'batch-response', entry });
      });
      return undefined;
    }
    return json(404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await deleteKeys(redis, prefix);
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

function bulkScreening(sleeps: number[]): BulkScreening {
  const fhir = new HttpFhirServer({ baseUrl: `${base}/fhir`, timeoutMs: 10_000, maxAttempts: 1 });
  return new BulkScreening({
    fhir,
    catalog,
    directory: new CentreDirectoryCache(fhir, 60_000),
    redis,
    prefix,
    outputDir: path.join(dir, 'out'),
    log: pino({ level: 'silent' }),
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
}

describe('bulk screening with source=export', () => {
  it('kicks off $export with Prefer: respond-async, polls honouring Retry-After, and screens the files', async () => {
    const sleeps: number[] = [];
    const progress: BulkProgress[] = [];
    const bulk = bulkScreening(sleeps);
    expect(await bulk.exportSupported()).toBe(true);
    const result = await bulk.run({ screenId: 'export-1', programId: 'fnmf-prediabetes', asOf: BENCH_AS_OF, source: 'export' }, async (p) => {
      progress.push(p);
    });
    expect(seen.kickOffs).toHaveLength(1);
    expect(seen.kickOffs[0]?.prefer).toBe('respond-async');
    expect(seen.kickOffs[0]?.url).toContain('_outputFormat=application%2Ffhir%2Bndjson');
    expect(seen.polls).toBe(3);
    expect(sleeps).toEqual([1000, 1000]);
    expect(progress.some((p) => p.phase === 'exporting' && p.exportProgress === 'step 1 of 3')).toBe(true);
    expect(seen.files).toBe(set.files.length);
    expect(result.patients).toBe(60);
    expect(result.output[0]?.count).toBe(60);
    expect(result.counts.eligible + result.counts['not-eligible'] + result.counts.undetermined).toBe(60);
    expect(result.tasksWritten).toBe(result.counts.eligible);
    expect(seen.tasksPut).toBe(result.counts.eligible);
  });

  it('refuses an $export manifest whose files are on another host', async () => {
    foreignFile = true;
    seen.polls = 0;
    try {
      await expect(bulkScreening([]).run({ screenId: 'export-2', programId: 'fnmf-prediabetes', asOf: BENCH_AS_OF, source: 'export' }, async () => undefined)).rejects.toThrow(BulkInputError);
      expect(seen.files).toBe(set.files.length); // nothing more was fetched
    } finally {
      foreignFile = false;
    }
  });

  it('refuses a server whose CapabilityStatement does not declare $export', async () => {
    declareExport = false;
    try {
      const bulk = bulkScreening([]);
      expect(await bulk.exportSupported()).toBe(false);
      await expect(bulk.run({ screenId: 'export-3', programId: 'fnmf-prediabetes', asOf: BENCH_AS_OF, source: 'export' }, async () => undefined)).rejects.toThrow(/does not declare \$export/);
    } finally {
      declareExport = true;
    }
  });
});
