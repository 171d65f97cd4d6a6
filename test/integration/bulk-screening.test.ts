/**
 * `$screen` on FHIR Bulk Data NDJSON, end to end: the real service (real Redis, BullMQ
 * worker, embedded FHIR server over HTTP) screens a few hundred generated patients
 * (bench/bulk-generate.ts) from files under BULK_INPUT_DIR.
 * - Bulk Data async pattern: 202 + Content-Location, 202 + X-Progress while running, 200 with
 *   an output manifest; the result files are served under our URL.
 * - Same verdicts as the synchronous `$evaluate-eligibility` for a sample of the same patients
 *   pushed to the FHIR server; counts per outcome equal to the result lines.
 * - Tasks only for newly eligible patients on a second run.
 * - Refusals: paths outside BULK_INPUT_DIR, foreign URLs, bad parameters, `$export` on a server
 *   without it; a bad NDJSON line goes to the manifest's error file.
 * - Centre isolation with authentication: each centre sees only its patients and screenings.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { BENCH_AS_OF, BENCH_CENTRE, awkwardLines, generateBulk, type GeneratedSet } from '../../bench/bulk-generate.js';
import { BulkScreening, type BulkProgress, type BulkResult } from '../../src/app/bulk-screening.js';
import { CentreDirectoryCache } from '../../src/fhir/centre-directory.js';
import { HttpFhirServer } from '../../src/fhir/fhir-server.adapter.js';
import { startEmbeddedFhirServer, type EmbeddedFhirServer } from '../../src/fhir-server/embedded-server.js';
import { loadProgramCatalog } from '../../src/programs/load-programs.js';
import { assertValid, validateResource } from '../../src/fhir/validation.js';
import { SCREENING_QUEUE } from '../../src/queue/queues.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import { CENTRE_CALAIS, CENTRE_VAUGIRARD } from '../fixtures/auth.js';
import { startAuthService, type AuthService } from '../fixtures/auth-service.js';
import { seedCentre } from '../fixtures/resources.js';
import { eventually, startTestService, type TestService } from './harness.js';

const PROGRAM = 'fnmf-prediabetes';
const TASK_PROFILE = 'http://forfait-fhir.org/fhir/StructureDefinition/enrolment-proposal-task';
const PATIENTS = 240;

type Verdict = { patient: string; outcome: string; criteria: Record<string, string> };

let root: string;
let inputDir: string;
let set: GeneratedSet;

function readLines(file: string): any[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

function screenBody(urls: { type?: string; url: string }[], extra: fhir4.ParametersParameter[] = []): fhir4.Parameters {
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'program', valueString: PROGRAM },
      { name: 'asOf', valueDate: BENCH_AS_OF },
      { name: 'inputFormat', valueString: 'application/fhir+ndjson' },
      ...urls.map(({ type, url }) => ({ name: 'input', part: [...(type ? [{ name: 'type', valueCode: type }] : []), { name: 'url', valueUrl: url }] })),
      ...extra,
    ],
  };
}

function verdictOf(line: fhir4.Parameters): Verdict {
  const parameter = line.parameter ?? [];
  return {
    patient: parameter.find((p) => p.name === 'subject')?.valueReference?.reference ?? '',
    outcome: parameter.find((p) => p.name === 'outcome')?.valueCode ?? '',
    criteria: Object.fromEntries(parameter.filter((p) => p.name === 'criterion').map((p) => [p.part?.[0]?.valueCode, p.part?.[1]?.valueCode])),
  };
}

/** Posts a bulk $screen and waits for the manifest, checking the async pattern on the way. */
async function screen(service: Pick<TestService, 'post' | 'get'>, body: unknown): Promise<{ id: string; manifest: any; sawRunning: boolean }> {
  const kickOff = await service.post('/fhir/$screen', body);
  expect(kickOff.status, JSON.stringify(kickOff.body)).toBe(202);
  const location = kickOff.headers.get('content-location') as string;
  const id = location.split('/').pop() as string;
  let sawRunning = false;
  const manifest = await eventually(async () => {
    const poll = await service.get(`/fhir/_async/${id}`);
    if (poll.status === 202) {
      expect(poll.headers.get('x-progress')).toMatch(/resources read, \d+ patients evaluated/);
      expect(poll.headers.get('retry-after')).toBe('2');
      sawRunning = true;
      return undefined;
    }
    expect(poll.status, JSON.stringify(poll.body)).toBe(200);
    expect(poll.headers.get('content-type')).toMatch(/^application\/json/);
    return poll.body;
  }, 120_000);
  return { id, manifest, sawRunning };
}

beforeAll(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'bulk-it-'));
  inputDir = path.join(root, 'in');
  set = await generateBulk(path.join(inputDir, 'run1'), PATIENTS, 11);
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('bulk $screen without authentication', () => {
  let t: TestService;
  let first: { id: string; manifest: any };
  let verdicts: Map<string, Verdict>;

  beforeAll(async () => {
    t = await startTestService({ BULK_INPUT_DIR: inputDir, BULK_OUTPUT_DIR: path.join(root, 'out') });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('answers the Bulk Data async pattern and a manifest of one verdict per patient', async () => {
    // Paths relative to BULK_INPUT_DIR and file:// URLs inside it are both accepted.
    const inputs = set.files.map((file, index) => ({ type: file.type, url: index % 2 === 0 ? path.relative(inputDir, file.path) : pathToFileURL(file.path).toString() }));
    first = await screen(t, screenBody(inputs));
    const { manifest } = first;
    expect(manifest.transactionTime).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    expect(manifest.request).toBe(`${t.url}/fhir/$screen`);
    expect(manifest.requiresAccessToken).toBe(false);
    expect(manifest.output).toEqual([{ type: 'Parameters', url: `${t.url}/fhir/_async/${first.id}/Parameters.ndjson`, count: PATIENTS }]);
    expect(manifest.error).toEqual([]);

    const file = await fetch(manifest.output[0].url);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toMatch(/application\/fhir\+ndjson/);
    const lines = (await file.text()).split('\n').filter(Boolean).map((line) => JSON.parse(line) as fhir4.Parameters);
    expect(lines).toHaveLength(PATIENTS);
    for (const line of lines.slice(0, 20)) expect(validateResource(line)).toEqual([]);
    verdicts = new Map(lines.map((line) => [verdictOf(line).patient, verdictOf(line)]));
    expect(verdicts.size).toBe(PATIENTS);

    const counts = { eligible: 0, 'not-eligible': 0, undetermined: 0, error: 0 } as Record<string, number>;
    for (const verdict of verdicts.values()) counts[verdict.outcome] = (counts[verdict.outcome] ?? 0) + 1;
    const figures = manifest.extension['http://forfait-fhir.org/fhir/StructureDefinition/bulk-screening'];
    expect(figures.counts).toEqual(counts);
    expect(counts['eligible']).toBeGreaterThan(0);
    expect(counts['not-eligible']).toBeGreaterThan(0);
    expect(counts['undetermined']).toBeGreaterThan(0);
    expect(counts['error']).toBe(0);
    // A Task for each eligible patient (none enrolled), and a valid one.
    expect(figures.tasksWritten).toBe(counts['eligible']);
    const eligible = [...verdicts.values()].find((v) => v.outcome === 'eligible') as Verdict;
    const tasks = (await t.fhirGet(`Task?subject=${eligible.patient}`)) as fhir4.Bundle;
    expect(tasks.entry).toHaveLength(1);
    assertValid(tasks.entry?.[0]?.resource as fhir4.Task, [TASK_PROFILE]);
    const notEligible = [...verdicts.values()].find((v) => v.outcome === 'not-eligible') as Verdict;
    expect(((await t.fhirGet(`Task?subject=${notEligible.patient}`)) as fhir4.Bundle).entry ?? []).toHaveLength(0);
  });

  it('gives the verdicts of the synchronous $evaluate-eligibility for the same patients pushed to the FHIR server', async () => {
    const { gpRoleId } = await seedCentre(t);
    const otherGp = await t.post('/fhir/Practitioner', { resourceType: 'Practitioner', identifier: [{ system: 'urn:oid:1.2.250.1.71.4.2.1', value: '10000000555' }] });
    expect(otherGp.status).toBe(201);
    const byPatient = new Map<string, fhir4.Resource[]>();
    for (const type of ['Observation', 'Condition']) {
      for (const resource of readLines(path.join(set.dir, `${type}.ndjson`))) {
        const id = (resource.subject.reference as string).slice('Patient/'.length);
        byPatient.set(id, [...(byPatient.get(id) ?? []), resource]);
      }
    }
    const patients = readLines(path.join(set.dir, 'Patient.ndjson')) as fhir4.Patient[];
    const sample = patients.filter((_, index) => index % 6 === 0);
    let compared = 0;
    for (const patient of sample) {
      // The same data on the server: the NDJSON GP role (in the centre or not) mapped to a server GP of the same kind.
      const role = Number(/role-(\d+)/.exec(patient.generalPractitioner?.[0]?.reference ?? '')?.[1]);
      const gp = role < 32 ? `PractitionerRole/${gpRoleId}` : `Practitioner/${otherGp.body.id}`;
      const fullUrl = `urn:uuid:00000000-0000-4000-8000-${String(compared).padStart(12, '0')}`;
      const { id: _id, meta: _meta, ...rest } = patient;
      const entries: fhir4.BundleEntry[] = [
        { fullUrl, resource: { ...rest, identifier: [{ system: 'urn:test:bulk-sample', value: `${patient.id}-${Date.now()}` }], generalPractitioner: [{ reference: gp }] } as fhir4.Patient, request: { method: 'POST', url: 'Patient' } },
        ...(byPatient.get(patient.id as string) ?? []).map((resource) => {
          const { id: _rid, meta: _rmeta, identifier: _identifier, ...body } = resource as fhir4.Observation;
          return { resource: { ...body, subject: { reference: fullUrl } } as fhir4.Resource, request: { method: 'POST' as const, url: resource.resourceType } };
        }),
      ];
      const pushed = await t.post('/fhir', { resourceType: 'Bundle', type: 'transaction', entry: entries });
      expect(pushed.status, JSON.stringify(pushed.body)).toBe(200);
      const serverId = /Patient\/([^/]+)/.exec(pushed.body.entry[0].response.location)?.[1];
      const sync = await t.get(`/fhir/Patient/${serverId}/$evaluate-eligibility?program=${PROGRAM}&asOf=${BENCH_AS_OF}`);
      expect(sync.status).toBe(200);
      const fromBulk = verdicts.get(`Patient/${patient.id}`) as Verdict;
      expect({ ...verdictOf(sync.body), patient: fromBulk.patient }).toEqual(fromBulk);
      compared += 1;
    }
    expect(compared).toBe(PATIENTS / 6);
  });

  it('writes Tasks only for newly eligible patients on a second run, and lists bad lines in the error file', async () => {
    // A patient kept out only by an above-range glucose gets a newer one in range.
    const glucoseDates = new Map(readLines(path.join(set.dir, 'Observation.ndjson')).filter((o) => o.code.coding[0].code === '1558-6').map((o) => [`Patient/${(o.subject.reference as string).slice(8)}`, o.effectiveDateTime as string]));
    const candidate = [...verdicts.values()].find(
      (v) => v.outcome === 'not-eligible' && Object.entries(v.criteria).every(([code, status]) => (code === 'fasting-glucose' ? status === 'not-met' : status === 'met')) && (glucoseDates.get(v.patient) ?? '') < BENCH_AS_OF,
    ) as Verdict;
    expect(candidate).toBeDefined();
    mkdirSync(path.join(inputDir, 'run2'), { recursive: true });
    const extra = path.join(inputDir, 'run2', 'Observation.ndjson');
    writeFileSync(
      extra,
      `${JSON.stringify({ resourceType: 'Observation', id: 'new-glu', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '1558-6' }] }, subject: { reference: candidate.patient }, effectiveDateTime: BENCH_AS_OF, valueQuantity: { value: 115, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' } })}\n{"resourceType": "Observation", broken\n`,
    );
    const second = await screen(t, screenBody([...set.files.map((file) => ({ type: file.type, url: file.path })), { type: 'Observation', url: extra }]));
    const figures = second.manifest.extension['http://forfait-fhir.org/fhir/StructureDefinition/bulk-screening'];
    const before = first.manifest.extension['http://forfait-fhir.org/fhir/StructureDefinition/bulk-screening'];
    expect(figures.counts.eligible).toBe(before.counts.eligible + 1);
    expect(figures.tasksWritten).toBe(1);
    expect(((await t.fhirGet(`Task?subject=${candidate.patient}`)) as fhir4.Bundle).entry).toHaveLength(1);

    expect(second.manifest.error).toEqual([{ type: 'OperationOutcome', url: `${t.url}/fhir/_async/${second.id}/OperationOutcome.ndjson`, count: 1 }]);
    const errors = await t.get(`/fhir/_async/${second.id}/OperationOutcome.ndjson`);
    expect(errors.status).toBe(200);
    // One line of NDJSON is also one JSON document: the harness may have parsed it already.
    const outcome = (typeof errors.body === 'string' ? JSON.parse(errors.body.trim()) : errors.body) as fhir4.OperationOutcome;
    expect(validateResource(outcome)).toEqual([]);
    expect(outcome.issue[0]?.diagnostics).toBe('Observation.ndjson line 2: not valid JSON');
  });

  it("leaves a patient whose proposal lock is held (an evaluation or a $decline at work) to that holder, and proposes it on a later run", async () => {
    const glucoseDates = new Map(readLines(path.join(set.dir, 'Observation.ndjson')).filter((o) => o.code.coding[0].code === '1558-6').map((o) => [`Patient/${(o.subject.reference as string).slice(8)}`, o.effectiveDateTime as string]));
    const candidates = [...verdicts.values()].filter(
      (v) => v.outcome === 'not-eligible' && Object.entries(v.criteria).every(([code, status]) => (code === 'fasting-glucose' ? status === 'not-met' : status === 'met')) && (glucoseDates.get(v.patient) ?? '') < BENCH_AS_OF,
    );
    // The first was made eligible by the previous test; take another one.
    const candidate = candidates[1] as Verdict;
    expect(candidate).toBeDefined();
    mkdirSync(path.join(inputDir, 'run3'), { recursive: true });
    const extra = path.join(inputDir, 'run3', 'Observation.ndjson');
    writeFileSync(
      extra,
      `${JSON.stringify({ resourceType: 'Observation', id: 'new-glu-3', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '1558-6' }] }, subject: { reference: candidate.patient }, effectiveDateTime: BENCH_AS_OF, valueQuantity: { value: 110, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' } })}\n`,
    );
    const files = [...set.files.map((file) => ({ type: file.type, url: file.path })), { type: 'Observation', url: extra }];
    const lockKey = `${t.prefix}:lock:proposal:${PROGRAM}:${candidate.patient.slice('Patient/'.length)}`;
    expect(await t.redis.set(lockKey, 'another-writer', 'PX', 120_000, 'NX')).toBe('OK');
    try {
      const held = await screen(t, screenBody(files));
      const figures = held.manifest.extension['http://forfait-fhir.org/fhir/StructureDefinition/bulk-screening'];
      expect(figures.tasksWritten, 'nothing written for the patient whose lock is held').toBe(0);
      expect(((await t.fhirGet(`Task?subject=${candidate.patient}`)) as fhir4.Bundle).entry ?? []).toHaveLength(0);
      expect(await t.redis.get(lockKey), 'the other writer keeps its lock').toBe('another-writer');
    } finally {
      await t.redis.del(lockKey);
    }
    const later = await screen(t, screenBody(files));
    expect(later.manifest.extension['http://forfait-fhir.org/fhir/StructureDefinition/bulk-screening'].tasksWritten).toBe(1);
    expect(((await t.fhirGet(`Task?subject=${candidate.patient}`)) as fhir4.Bundle).entry).toHaveLength(1);
  });

  it('accepts an $export output manifest as input, or as the body', async () => {
    const { manifest } = await screen(t, screenBody([{ url: path.relative(inputDir, set.manifest) }]));
    expect(manifest.output[0].count).toBe(PATIENTS);
    expect(manifest.extension['http://forfait-fhir.org/fhir/StructureDefinition/bulk-screening'].tasksWritten).toBe(0);
    const asBody = await screen(
      { post: (p, body) => t.post(`${p}?program=${PROGRAM}&asOf=${BENCH_AS_OF}`, body, { 'content-type': 'application/json' }), get: (p) => t.get(p) },
      JSON.parse(readFileSync(set.manifest, 'utf8')),
    );
    expect(asBody.manifest.output[0].count).toBe(PATIENTS);
  });

  it('answers 202 with X-Progress and Retry-After while the screening waits or runs', async () => {
    const queue = new Queue(SCREENING_QUEUE, { connection: redisOptionsFromUrl(t.service.redisUrl), prefix: t.prefix });
    await queue.pause();
    try {
      const kickOff = await t.post('/fhir/$screen', screenBody([{ url: path.relative(inputDir, set.manifest) }]));
      expect(kickOff.status).toBe(202);
      expect(kickOff.body.resourceType).toBe('OperationOutcome');
      const poll = await t.get(new URL(kickOff.headers.get('content-location') as string).pathname);
      expect(poll.status).toBe(202);
      expect(poll.headers.get('x-progress')).toBe('queued: 0 resources read, 0 patients evaluated (eligible 0, not-eligible 0, undetermined 0, error 0)');
      expect(poll.headers.get('retry-after')).toBe('2');
    } finally {
      await queue.resume();
      await queue.close();
    }
  });

  it.each([
    ['a path outside BULK_INPUT_DIR', '../outside/Patient.ndjson', /inside BULK_INPUT_DIR/],
    ['an absolute path elsewhere', '/etc/passwd', /inside BULK_INPUT_DIR/],
    ['a file:// URL elsewhere', 'file:///etc/passwd', /inside BULK_INPUT_DIR/],
    ['a foreign host', 'http://169.254.169.254/latest/meta-data', /FHIR server's origin/],
    ['another scheme', 'ftp://127.0.0.1/Patient.ndjson', /file:\/\/ paths or http\(s\) URLs/],
  ])('refuses %s with a 400 OperationOutcome', async (_label, url, message) => {
    const answer = await t.post('/fhir/$screen', screenBody([{ type: 'Patient', url }]));
    expect(answer.status).toBe(400);
    expect(answer.body.resourceType).toBe('OperationOutcome');
    expect(answer.body.issue[0].diagnostics).toMatch(message);
  });

  it('refuses bad parameters: another input format, an input without url, patients with input, ".." ids, source other than export', async () => {
    const wrongFormat = screenBody([{ url: 'run1/Patient.ndjson' }]);
    wrongFormat.parameter = wrongFormat.parameter!.map((p) => (p.name === 'inputFormat' ? { name: 'inputFormat', valueString: 'text/csv' } : p));
    expect((await t.post('/fhir/$screen', wrongFormat)).status).toBe(400);
    const noUrl = screenBody([]);
    noUrl.parameter!.push({ name: 'input', part: [{ name: 'type', valueCode: 'Patient' }] });
    expect((await t.post('/fhir/$screen', noUrl)).status).toBe(400);
    const both = screenBody([{ url: 'run1/Patient.ndjson' }], [{ name: 'patient', valueReference: { reference: 'Patient/x' } }]);
    expect((await t.post('/fhir/$screen', both)).status).toBe(400);
    for (const id of ['.', '..']) {
      const dots = await t.post('/fhir/$screen', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: PROGRAM }, { name: 'patient', valueReference: { reference: `Patient/${id}` } }] });
      expect(dots.status).toBe(400);
      expect(dots.body.resourceType).toBe('OperationOutcome');
    }
    const source = await t.post('/fhir/$screen', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: PROGRAM }, { name: 'source', valueCode: 'import' }] });
    expect(source.status).toBe(400);
  });

  it('ends a screening whose input file is missing with an OperationOutcome error status', async () => {
    const kickOff = await t.post('/fhir/$screen', screenBody([{ type: 'Patient', url: 'run1/Missing.ndjson' }]));
    expect(kickOff.status).toBe(202);
    const id = (kickOff.headers.get('content-location') as string).split('/').pop() as string;
    const failed = await eventually(async () => {
      const poll = await t.get(`/fhir/_async/${id}`);
      return poll.status === 202 ? undefined : poll;
    });
    expect(failed.status).toBe(500);
    expect(failed.body.resourceType).toBe('OperationOutcome');
    expect(failed.body.issue[0].diagnostics).toBe('Bulk screening failed: input file Missing.ndjson does not exist');
  });

  it('refuses source=export when the FHIR server does not declare $export (the embedded one does not)', async () => {
    const answer = await t.post('/fhir/$screen', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: PROGRAM }, { name: 'source', valueCode: 'export' }] });
    expect(answer.status).toBe(422);
    expect(answer.body.issue[0].code).toBe('not-supported');
  });

  it('serves only the files the manifest lists', async () => {
    for (const name of ['..%2F..%2Fetc%2Fpasswd', '.partitions', 'other.ndjson']) {
      const answer = await t.get(`/fhir/_async/${first.id}/${name}`);
      expect(answer.status).toBe(404);
      expect(answer.body.resourceType).toBe('OperationOutcome');
    }
  });
});

describe('bulk $screen with authentication: centre isolation', () => {
  let s: AuthService;
  let tokenA: string;
  let tokenB: string;

  beforeAll(async () => {
    s = await startAuthService({ BULK_INPUT_DIR: inputDir, BULK_OUTPUT_DIR: path.join(root, 'out-auth') });
    tokenA = await s.fixture.mintToken({ scopes: ['system/*.cruds'], centre: CENTRE_VAUGIRARD.claim });
    tokenB = await s.fixture.mintToken({ scopes: ['system/*.cruds'], centre: CENTRE_CALAIS.claim });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it("screens only the client's centre's patients, and hides its screening and files from another centre", async () => {
    const inCentre = (readLines(path.join(set.dir, 'Patient.ndjson')) as fhir4.Patient[]).filter((p) => Number(/role-(\d+)/.exec(p.generalPractitioner?.[0]?.reference ?? '')?.[1]) < 32).length;
    expect(inCentre).toBeGreaterThan(0);
    expect(inCentre).toBeLessThan(PATIENTS);
    const body = screenBody(set.files.map((file) => ({ type: file.type, url: file.path })));
    const a = await screen(s.as(tokenA), body);
    expect(a.manifest.requiresAccessToken).toBe(true);
    expect(a.manifest.output[0].count).toBe(inCentre);
    const b = await screen(s.as(tokenB), body);
    expect(b.manifest.output[0].count).toBe(0);

    const fileUrl = `/fhir/_async/${a.id}/Parameters.ndjson`;
    expect((await s.request('GET', fileUrl, { token: tokenA })).status).toBe(200);
    expect((await s.request('GET', fileUrl)).status).toBe(401);
    const asB = await s.request('GET', fileUrl, { token: tokenB });
    expect(asB.status).toBe(404);
    expect(asB.body.resourceType).toBe('OperationOutcome');
    expect((await s.request('GET', `/fhir/_async/${a.id}`, { token: tokenB })).status).toBe(404);
  });
});

describe('bulk screening on worker threads', () => {
  let fhirServer: EmbeddedFhirServer;
  let redis: Redis;
  const prefix = `bulk-threads-${Date.now().toString(36)}`;
  const catalog = loadProgramCatalog({ mappingsDir: path.join(__dirname, '../../mappings'), profilesDir: path.join(__dirname, '../../profiles') });

  beforeAll(async () => {
    fhirServer = await startEmbeddedFhirServer({ port: 0 });
    redis = new Redis(redisOptionsFromUrl(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'));
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    await fhirServer.close();
  });

  /** One screening of the generated set plus awkward lines, in many blocks and partitions, on `workers` threads. */
  async function screenWith(workers: number, screenId: string, centre?: string): Promise<{ result: BulkResult; files: Record<string, string> }> {
    const fhir = new HttpFhirServer({ baseUrl: fhirServer.baseUrl, timeoutMs: 30_000, maxAttempts: 2 });
    const bulk = new BulkScreening({
      fhir,
      catalog,
      directory: new CentreDirectoryCache(fhir, 60_000),
      redis,
      // A prefix per run: each run proposes its eligible patients afresh (Tasks already there are not rewritten).
      prefix: `${prefix}-${screenId}`,
      inputDir,
      outputDir: path.join(root, 'threads-out'),
      log: pino({ level: 'silent' }),
      partitionBytes: 16 * 1024,
      blockBytes: 8 * 1024,
      workers,
      now: () => new Date('2026-11-01T09:00:00Z'),
    });
    const awkward = path.join(inputDir, 'threads', 'Awkward.ndjson');
    mkdirSync(path.dirname(awkward), { recursive: true });
    // 300 good lines first: the awkward ones are in a later block (their line numbers count every block before).
    const filler = `${JSON.stringify({ resourceType: 'Coverage', id: 'filler', status: 'active', beneficiary: { reference: 'Patient/s11p0' }, payor: [{ reference: 'Organization/cpam' }] })}\n`;
    writeFileSync(awkward, filler.repeat(300) + awkwardLines(11));
    const inputs = [...set.files.map((file) => ({ type: file.type, url: file.path })), { url: awkward }];
    const progress: BulkProgress[] = [];
    const result = await bulk.run({ screenId, programId: PROGRAM, asOf: BENCH_AS_OF, inputs, ...(centre ? { centre } : {}) }, async (p) => {
      progress.push(p);
    });
    expect(progress.some((p) => p.phase === 'evaluating'), 'progress is reported').toBe(true);
    const files = Object.fromEntries([...result.output, ...result.errors].map((file) => [file.file, readFileSync(path.join(bulk.outputFolder(screenId), file.file), 'utf8')]));
    return { result, files };
  }

  it('gives the same output files, counts and Tasks on one thread and on three', async () => {
    const one = await screenWith(1, 'one');
    const three = await screenWith(3, 'three');
    expect(three.files).toEqual(one.files);
    // Same FHIR server: the second run finds the first one's Tasks (written 0) and remembers the same patients.
    expect({ ...three.result, tasksWritten: 0 }).toEqual({ ...one.result, tasksWritten: 0 });
    expect(one.result.tasksWritten).toBeGreaterThan(0);
    const proposed = async (screenId: string): Promise<string[]> => (await redis.smembers(`${prefix}-${screenId}:bulk:proposed:${PROGRAM}`)).sort();
    expect(await proposed('three')).toEqual(await proposed('one'));
    expect((await proposed('one')).length).toBe(one.result.tasksWritten);
    expect(one.result.patients).toBe(PATIENTS);
    const errors = one.files['OperationOutcome.ndjson']!.trim().split('\n').map((line) => JSON.parse(line) as fhir4.OperationOutcome);
    expect(errors.map((outcome) => outcome.issue[0]?.diagnostics)).toEqual([
      'Awkward.ndjson line 302: not valid JSON',
      'Awkward.ndjson line 304: not a FHIR resource',
      'Awkward.ndjson line 305: Observation without a Patient/{id} reference',
      'Awkward.ndjson line 306: Observation without a Patient/{id} reference',
      'Awkward.ndjson line 307: Patient without a Patient/{id} id',
      'Awkward.ndjson line 314: not valid JSON',
      '1 patient(s) referenced by input resources have no Patient resource in the input; their resources were not screened',
    ]);
  });

  it("gives the same centre's screening on two threads as on one", async () => {
    const centre = `${BENCH_CENTRE.system}|${BENCH_CENTRE.value}`;
    const one = await screenWith(1, 'centre-one', centre);
    const two = await screenWith(2, 'centre-two', centre);
    expect(two.files).toEqual(one.files);
    expect(one.result.patients).toBeLessThan(PATIENTS);
  });
});
