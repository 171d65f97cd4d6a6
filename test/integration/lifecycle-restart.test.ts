/**
 * Phases move by themselves, durably: the daily job scheduler lives in Redis, so it survives
 * a restart of the process between an enrolment and its phase change; two worker processes
 * running the advance at once duplicate nothing. The FHIR server here is a standalone
 * embedded one, so its data outlives the adapter processes.
 */
import { Queue } from 'bullmq';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoBundle } from '../../src/demo/demo-data.js';
import { startEmbeddedFhirServer, type EmbeddedFhirServer } from '../../src/fhir-server/embedded-server.js';
import { assertValid } from '../../src/fhir/validation.js';
import { DAILY_ADVANCE_SCHEDULER, LIFECYCLE_QUEUE } from '../../src/queue/lifecycle.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import { deleteKeys, eventually, startTestService, type TestService } from './harness.js';

const PREFIX = `lc${Date.now().toString(36)}`;
let fhir: EmbeddedFhirServer;
let patientId: string;
let episode: string;
const start = DateTime.now().setZone('Europe/Paris').minus({ months: 1 }).toISODate() as string;

async function carePlans(): Promise<fhir4.CarePlan[]> {
  const response = await fetch(`${fhir.baseUrl}/CarePlan?subject=Patient/${patientId}`);
  const bundle = (await response.json()) as fhir4.Bundle;
  return (bundle.entry ?? []).map((entry) => entry.resource as fhir4.CarePlan);
}

const phase = (plans: fhir4.CarePlan[], code: string) => plans.find((plan) => plan.category?.[0]?.coding?.[0]?.code === code);

beforeAll(async () => {
  fhir = await startEmbeddedFhirServer();
});

afterAll(async () => {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisOptionsFromUrl(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'));
  await deleteKeys(redis, PREFIX);
  redis.disconnect();
  await fhir?.close();
});

describe('phase lifecycle across restarts and workers', () => {
  it('enrols through a first process, which then stops', async () => {
    const first: TestService = await startTestService({ FHIR_BASE_URL: fhir.baseUrl, QUEUE_PREFIX: PREFIX }, { keepKeys: true });
    try {
      const seeded = await first.post('/fhir', demoBundle(DateTime.now().toISODate() as string));
      expect(seeded.status).toBe(200);
      const locations = (seeded.body.entry as fhir4.BundleEntry[]).map((entry) => (entry.response?.location ?? '').split('/_history')[0] as string);
      const gpRole = locations.find((l) => l.startsWith('PractitionerRole/')) as string;
      const organization = locations.find((l) => l.startsWith('Organization/')) as string;
      const practitioner = locations.find((l) => l.startsWith('Practitioner/')) as string;
      patientId = (locations.find((l) => l.startsWith('Patient/')) as string).split('/')[1] as string;
      const apa = await first.post('/fhir/PractitionerRole', { resourceType: 'PractitionerRole', identifier: [{ system: 'urn:test:role', value: 'apa-lc' }], active: true, practitioner: { reference: practitioner }, organization: { reference: organization } });
      const enrolled = await first.post(`/fhir/Patient/${patientId}/$enroll`, {
        resourceType: 'Parameters',
        parameter: [
          { name: 'program', valueString: 'fnmf-prediabetes' },
          { name: 'start', valueDate: start },
          { name: 'careTeam', part: [{ name: 'member', valueReference: { reference: gpRole } }, { name: 'role', valueCode: 'gp' }] },
          { name: 'careTeam', part: [{ name: 'member', valueReference: { reference: `PractitionerRole/${apa.body.id}` } }, { name: 'role', valueCode: 'apa-teacher' }] },
        ],
      });
      expect(enrolled.status).toBe(201);
      episode = enrolled.body.parameter.find((p: fhir4.ParametersParameter) => p.name === 'episodeOfCare').valueReference.reference;
      const plans = await carePlans();
      expect(phase(plans, 'intensive')?.status).toBe('active');
      expect(phase(plans, 'consolidation')?.status).toBe('draft');
    } finally {
      await first.stop();
    }
  });

  it('the daily scheduler is still declared, once, after the process is gone', async () => {
    const queue = new Queue(LIFECYCLE_QUEUE, { connection: redisOptionsFromUrl(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'), prefix: PREFIX });
    try {
      const schedulers = await queue.getJobSchedulers();
      expect(schedulers.map((s) => s.key)).toEqual([DAILY_ADVANCE_SCHEDULER]);
      expect(schedulers[0]).toMatchObject({ pattern: '5 0 * * *', tz: 'Europe/Paris' });
    } finally {
      await queue.close();
    }
  });

  it('after a restart, two worker processes advancing at once move the phases once', async () => {
    const api = await startTestService({ FHIR_BASE_URL: fhir.baseUrl, QUEUE_PREFIX: PREFIX, ROLE: 'api' }, { keepKeys: true });
    const workers = await Promise.all([1, 2].map(() => startTestService({ FHIR_BASE_URL: fhir.baseUrl, QUEUE_PREFIX: PREFIX, ROLE: 'worker' }, { keepKeys: true })));
    const queue = new Queue(LIFECYCLE_QUEUE, { connection: redisOptionsFromUrl(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'), prefix: PREFIX });
    try {
      // Re-declared at every boot, still one scheduler.
      expect((await queue.getJobSchedulers()).length).toBe(1);
      const before = await carePlans();
      // What the scheduler does on the day after the intensive phase ends, fired twice at once.
      const dayAfter = DateTime.fromISO(phase(before, 'intensive')?.period?.end as string).plus({ days: 1 }).toISODate() as string;
      await queue.addBulk([1, 2].map((n) => ({ name: 'advance', data: { asOf: dayAfter }, opts: { jobId: `manual-${n}` } })));
      await eventually(async () => ((await queue.getJobCounts('completed')).completed === 2 ? true : undefined), 30_000);
      expect((await queue.getJobCounts('failed')).failed).toBe(0);

      const after = await carePlans();
      expect(after).toHaveLength(2);
      expect(phase(after, 'intensive')?.status).toBe('completed');
      expect(phase(after, 'consolidation')?.status).toBe('active');
      for (const plan of after) assertValid(plan);

      // Once more through the operator trigger: nothing left to write.
      const again = await api.post('/fhir/$advance', { resourceType: 'Parameters', parameter: [{ name: 'asOf', valueDate: dayAfter }] });
      expect(again.status).toBe(200);
      expect(again.body.parameter.find((p: fhir4.ParametersParameter) => p.name === 'carePlansWritten').valueInteger).toBe(0);
      const versions = (await carePlans()).map((plan) => plan.meta?.versionId).sort();
      expect(versions).toEqual(after.map((plan) => plan.meta?.versionId).sort());
      expect(episode).toMatch(/^EpisodeOfCare\//);
    } finally {
      await queue.close();
      for (const worker of workers) await worker.stop();
      await api.stop();
    }
  });
});
