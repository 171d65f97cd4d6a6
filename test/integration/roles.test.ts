/**
 * Roles: an API-only service queues work it never runs; worker-only services, started
 * against the same FHIR server and queue prefix, run it. Workers scale out: two worker
 * processes share the queue and every evaluation is recorded once.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { SCREENING_QUEUE } from '../../src/queue/queues.js';
import { redisOptionsFromUrl, startService, type RunningService } from '../../src/service.js';
import { centreBundle, patient, quantityObservation } from '../fixtures/resources.js';
import { completedEvaluationCount, eventually, startTestService, type TestService } from './harness.js';

const PROGRAMS = ['fnmf-prediabetes', 'rediab'];

let api: TestService;
let screeningQueue: Queue;
const workers: RunningService[] = [];
let gpRoleId: string;
let centreOrganizationId: string;
let practitionerId: string;

/**
 * A worker-only service on the API's FHIR server and queue prefix. The harness cannot start
 * it: it always picks its own prefix and assumes an HTTP url.
 */
async function startWorker(env: Record<string, string> = {}): Promise<RunningService> {
  const config = loadConfig({
    ...env,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    ROLE: 'worker',
    FHIR_BASE_URL: api.fhirUrl,
    QUEUE_PREFIX: api.prefix,
    LOG_LEVEL: 'silent',
    WORKER_CONCURRENCY: '2',
  });
  const worker = await startService(config, pino({ level: 'silent' }));
  workers.push(worker);
  return worker;
}

async function guidanceResponses(patientId: string): Promise<fhir4.GuidanceResponse[]> {
  const bundle = (await api.fhirGet(`GuidanceResponse?subject=Patient/${patientId}`)) as fhir4.Bundle;
  return (bundle.entry ?? []).map((e) => e.resource as fhir4.GuidanceResponse);
}

beforeAll(async () => {
  api = await startTestService({ ROLE: 'api' });
  screeningQueue = new Queue(SCREENING_QUEUE, { connection: redisOptionsFromUrl(api.service.redisUrl), prefix: api.prefix });
  const centre = await api.post('/fhir', centreBundle());
  expect(centre.status).toBe(200);
  const roleEntry = (centre.body.entry as fhir4.BundleEntry[]).find((e) => e.response?.location?.startsWith('PractitionerRole/'));
  gpRoleId = /PractitionerRole\/([^/]+)/.exec(roleEntry?.response?.location ?? '')?.[1] as string;
  expect(gpRoleId).toBeTruthy();
  const locations = (centre.body.entry as fhir4.BundleEntry[]).map((e) => e.response?.location ?? '');
  centreOrganizationId = /Organization\/([^/]+)/.exec(locations.find((l) => l.startsWith('Organization/')) ?? '')?.[1] as string;
  practitionerId = /Practitioner\/([^/]+)/.exec(locations.find((l) => l.startsWith('Practitioner/')) ?? '')?.[1] as string;
  expect(centreOrganizationId).toBeTruthy();
  expect(practitionerId).toBeTruthy();
});

function criterionStatus(response: fhir4.GuidanceResponse | fhir4.Parameters | undefined, code: string): string | undefined {
  const verdict =
    response?.resourceType === 'GuidanceResponse' ? response.contained?.find((r): r is fhir4.Parameters => r.resourceType === 'Parameters') : response;
  const criterion = verdict?.parameter?.find((p) => p.name === 'criterion' && p.part?.some((q) => q.name === 'code' && q.valueCode === code));
  return criterion?.part?.find((p) => p.name === 'status')?.valueCode;
}

afterAll(async () => {
  // Workers first: they use the API's embedded FHIR server and its Redis keys.
  for (const worker of workers) await worker.stop();
  await screeningQueue?.close();
  await api?.stop();
});

describe('ROLE=api and ROLE=worker', () => {
  it('the API alone queues and runs nothing; worker processes on the same prefix record every verdict once', async () => {
    expect(api.service.url).toBe(api.url);
    const today = new Date().toISOString().slice(0, 10);
    const patientIds: string[] = [];
    for (let n = 0; n < 3; n++) {
      const tag = `roles-${n}-${randomUUID().slice(0, 8)}`;
      const created = await api.post('/fhir/Patient', patient(tag, { birthDate: '1970-01-10', gp: `PractitionerRole/${gpRoleId}` }));
      expect(created.status).toBe(201);
      patientIds.push(created.body.id as string);
      expect((await api.post('/fhir/Observation', quantityObservation(created.body.id, '1558-6', 1.15, 'g/L', today, `${tag}-glu`))).status).toBe(201);
    }
    const screen = await api.post('/fhir/$screen', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: 'fnmf-prediabetes' }] });
    expect(screen.status).toBe(202);
    const location = screen.headers.get('content-location') as string;

    // API only: everything waits, nothing runs, nothing is recorded.
    const waiting = await api.evaluationQueue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
    expect(waiting.waiting).toBeGreaterThan(0);
    // A Patient and an Observation per patient, each evaluated for every program by one job.
    expect(waiting.waiting).toBe(patientIds.length * 2);
    expect({ ...waiting, waiting: 0 }).toEqual({ waiting: 0, active: 0, completed: 0, failed: 0, delayed: 0 });
    expect((await screeningQueue.getJobCounts('waiting')).waiting).toBe(1);
    for (const id of patientIds) expect(await guidanceResponses(id)).toHaveLength(0);
    const pending = await api.get(new URL(location).pathname);
    expect(pending.status).toBe(202);
    expect(pending.body.parameter.find((p: fhir4.ParametersParameter) => p.name === 'state').valueCode).toBe('queued');

    // Two worker processes on the same FHIR server and prefix.
    const first = await startWorker();
    const second = await startWorker();
    expect(first.url).toBeUndefined();
    expect(second.url).toBeUndefined();
    expect(first.embeddedFhir).toBeUndefined();
    expect(first.fhirBaseUrl).toBe(api.fhirUrl);

    const finished = await eventually(async () => {
      const response = await api.get(new URL(location).pathname);
      return response.status === 200 ? (response.body as fhir4.Parameters) : undefined;
    }, 30_000);
    expect(finished.parameter?.find((p) => p.name === 'state')?.valueCode).toBe('completed');
    expect(finished.parameter?.find((p) => p.name === 'total')?.valueInteger).toBe(patientIds.length);
    await api.drained();

    const counts = await api.evaluationQueue.getJobCounts('completed', 'failed');
    expect(counts.failed).toBe(0);
    expect(counts.completed).toBe((waiting.waiting ?? 0) + patientIds.length);
    expect(await completedEvaluationCount(api.evaluationQueue)).toBe(patientIds.length * 2 * PROGRAMS.length + patientIds.length);
    for (const id of patientIds) {
      const responses = await guidanceResponses(id);
      expect(responses.map((r) => r.moduleUri?.split('/').pop()).sort()).toEqual([...PROGRAMS].sort());
      const fnmf = responses.find((r) => r.moduleUri?.endsWith('fnmf-prediabetes'));
      expect(fnmf?.status).toBe('data-required');
    }
  });

  it('a worker-only service with METRICS_PORT serves /healthz, /readyz and its own /metrics, and nothing else', async () => {
    // This worker alone takes the jobs: its registry then counts the evaluations it ran.
    for (const running of workers.splice(0)) await running.stop();
    const worker = await startWorker({ METRICS_PORT: '0' });
    expect(worker.url).toBeUndefined();
    const ops = worker.opsUrl as string;
    expect(ops).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const tag = `roles-metrics-${randomUUID().slice(0, 8)}`;
    const created = await api.post('/fhir/Patient', patient(tag, { birthDate: '1970-01-10', gp: `PractitionerRole/${gpRoleId}` }));
    expect(created.status).toBe(201);
    await eventually(async () => ((await guidanceResponses(created.body.id as string)).length === PROGRAMS.length ? true : undefined), 30_000);

    expect(await (await fetch(`${ops}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${ops}/readyz`)).json()).toMatchObject({ status: 'ready', redis: 'ok', fhir: 'ok' });
    const metrics = await (await fetch(`${ops}/metrics`)).text();
    for (const program of PROGRAMS) expect(metrics).toMatch(new RegExp(`^forfait_evaluations_total\\{program="${program}",outcome="[a-z-]+"\\} [1-9]`, 'm'));
    const other = await fetch(`${ops}/fhir/metadata`);
    expect(other.status).toBe(404);
    expect(other.headers.get('content-type')).toContain('application/fhir+json');
    expect(((await other.json()) as fhir4.OperationOutcome).issue[0]?.code).toBe('not-found');
    await worker.stop();
    workers.splice(workers.indexOf(worker), 1);
    await expect(fetch(`${ops}/healthz`)).rejects.toThrow();
  });

  it('a worker-only service stops cleanly while the API keeps answering', async () => {
    const worker = await startWorker();
    await worker.stop();
    workers.splice(workers.indexOf(worker), 1);
    const ready = await api.get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ redis: 'ok', fhir: 'ok' });
  });

  // BUG (src/service.ts + src/app/ingestion.service.ts: the CentreDirectoryCache is per
  // process, 60 s TTL, and `invalidate()` is only called by the ingesting process). With
  // ROLE=api and ROLE=worker (or several replicas), a GP (PractitionerRole) pushed through
  // the API does not invalidate the workers' cached centre directory: for up to 60 s, the
  // worker records the GP's patients with gp-in-centre not met (not-eligible), and that
  // GuidanceResponse stays until new data arrives for the patient. Suggested fix: keep a
  // directory generation counter in Redis (INCR on directory ingestion, compared by the
  // cache on `get`) or publish invalidations on a Redis channel the workers subscribe to.
  it('a GP pushed through the API counts at once in the worker process', async () => {
    for (const worker of workers.splice(0)) await worker.stop();
    await startWorker();
    // Warm the (only) worker's centre directory with one evaluation.
    const warm = await api.post('/fhir/Patient', patient(`roles-warm-${randomUUID().slice(0, 8)}`, { gp: `PractitionerRole/${gpRoleId}` }));
    expect(warm.status).toBe(201);
    await api.drained();
    expect(await guidanceResponses(warm.body.id)).toHaveLength(PROGRAMS.length);

    // A new GP of the centre, then one of their patients, both through the API.
    const role = await api.post('/fhir/PractitionerRole', {
      resourceType: 'PractitionerRole',
      identifier: [{ system: 'urn:test:role', value: `gp-new-${randomUUID().slice(0, 8)}` }],
      active: true,
      practitioner: { reference: `Practitioner/${practitionerId}` },
      organization: { reference: `Organization/${centreOrganizationId}` },
    });
    expect(role.status).toBe(201);
    const created = await api.post('/fhir/Patient', patient(`roles-new-gp-${randomUUID().slice(0, 8)}`, { gp: `PractitionerRole/${role.body.id}` }));
    expect(created.status).toBe(201);
    await api.drained();

    // The API process (whose cache the push invalidated) sees the GP in the centre...
    const synchronous = await api.get(`/fhir/Patient/${created.body.id}/$evaluate-eligibility?program=fnmf-prediabetes`);
    expect(synchronous.status).toBe(200);
    expect(criterionStatus(synchronous.body as fhir4.Parameters, 'gp-in-centre')).toBe('met');
    // ...and so should the verdict the worker recorded.
    const recorded = (await guidanceResponses(created.body.id)).find((r) => r.moduleUri?.endsWith('fnmf-prediabetes'));
    expect(criterionStatus(recorded, 'gp-in-centre')).toBe('met');
  });
});
