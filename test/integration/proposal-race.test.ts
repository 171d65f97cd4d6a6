/**
 * A `$decline` must never be undone by a queued evaluation (found by the report tests of
 * issue #5): the evaluation reads "no proposal Task", the GP declines, then the evaluation
 * wrote its `requested` Task over the refusal. The evaluation now reads, evaluates and writes
 * under the Redis lock `$decline` also takes, and creates the Task only if it was absent at
 * that read.
 *
 * The test takes that lock itself to hold the evaluation, puts a refusal on the FHIR server
 * meanwhile (what a `$decline` that slipped in would have written), then lets it go on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from '../../src/domain/ids.js';
import { FNMF, readResource, seedFnmfPatient, seedTeam, shift, SYSTEMS, today, type SeededTeam } from '../fixtures/enrolment.js';
import { LOINC, UCUM } from '../fixtures/resources.js';
import { eventually, startTestService, type TestService } from './harness.js';

let t: TestService;
let team: SeededTeam;

beforeAll(async () => {
  t = await startTestService();
  team = await seedTeam(t, 'proposal-race');
});

afterAll(async () => {
  await t?.stop();
});

const FNMF_URL = 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the GP proposal Task and $decline', () => {
  it('an evaluation held by the proposal lock does not put a declined proposal back to requested', async () => {
    // Not eligible at first (fasting glucose 1.40 g/L: above the range): no Task.
    const patientId = await seedFnmfPatient(t, team, 'race-1', { glucose: 1.4 });
    await t.drained();
    const taskId = deterministicUuid(FORFAIT_UUID_NAMESPACE, `Task|${FNMF_URL}|${patientId}`);
    const grId = deterministicUuid(FORFAIT_UUID_NAMESPACE, `GuidanceResponse|${FNMF_URL}|${patientId}`);
    expect((await fetch(`${t.fhirUrl}/Task/${taskId}`)).status).toBe(404);
    const verdictVersion = (await readResource<fhir4.GuidanceResponse>(t, 'GuidanceResponse', grId)).meta?.versionId;

    // Hold the proposal lock, then send a newer glucose in the range: the evaluation becomes eligible.
    const lockKey = `${t.prefix}:lock:proposal:${FNMF}:${patientId}`;
    expect(await t.redis.set(lockKey, 'test', 'PX', 60_000, 'NX')).toBe('OK');
    try {
      const pushed = await t.post('/fhir/Observation', {
        resourceType: 'Observation',
        identifier: [{ system: 'urn:test:observation', value: 'race-1-glu-2' }],
        status: 'final',
        code: { coding: [{ system: LOINC, code: '1558-6' }] },
        subject: { reference: `Patient/${patientId}` },
        effectiveDateTime: shift(today(), { days: -7 }),
        valueQuantity: { value: 1.15, unit: 'g/L', system: UCUM, code: 'g/L' },
      } satisfies fhir4.Observation);
      expect(pushed.status, JSON.stringify(pushed.body)).toBe(201);
      await eventually(async () => ((await t.evaluationQueue.getActiveCount()) > 0 ? true : undefined));
      // It waits for the lock: nothing written yet, the job still running.
      await sleep(1500);
      expect((await readResource<fhir4.GuidanceResponse>(t, 'GuidanceResponse', grId)).meta?.versionId, 'the evaluation waits for the lock').toBe(verdictVersion);
      expect(await t.evaluationQueue.getActiveCount()).toBeGreaterThan(0);

      // The refusal lands while the evaluation waits.
      const refusal: fhir4.Task = {
        resourceType: 'Task',
        id: taskId,
        status: 'rejected',
        intent: 'proposal',
        for: { reference: `Patient/${patientId}` },
        statusReason: { coding: [{ system: SYSTEMS.declineReason, code: 'distance' }] },
      };
      const put = await fetch(`${t.fhirUrl}/Task/${taskId}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(refusal) });
      expect(put.status).toBeLessThan(300);
    } finally {
      await t.redis.del(lockKey);
    }
    await t.drained();

    const task = await readResource<fhir4.Task>(t, 'Task', taskId);
    expect(task.status, 'the refusal stands').toBe('rejected');
    expect(task.statusReason?.coding?.[0]?.code).toBe('distance');
    // The verdict itself was written: eligible.
    const verdict = await readResource<fhir4.GuidanceResponse>(t, 'GuidanceResponse', grId);
    expect(verdict.meta?.versionId).not.toBe(verdictVersion);
    expect(verdict.status).toBe('success');
  });

  it('$decline waits for an evaluation creating the proposal, then rejects it', async () => {
    const patientId = await seedFnmfPatient(t, team, 'race-2');
    const lockKey = `${t.prefix}:lock:proposal:${FNMF}:${patientId}`;
    // Whatever the order the evaluation and the decline take the lock in, the end is one rejected Task.
    const decline = await t.post(`/fhir/Patient/${patientId}/$decline`, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: FNMF },
        { name: 'reason', valueCode: 'no-time' },
      ],
    });
    expect(decline.status, JSON.stringify(decline.body)).toBe(200);
    await t.drained();
    expect(await t.redis.exists(lockKey)).toBe(0);
    const taskId = deterministicUuid(FORFAIT_UUID_NAMESPACE, `Task|${FNMF_URL}|${patientId}`);
    const task = await readResource<fhir4.Task>(t, 'Task', taskId);
    expect(task.status).toBe('rejected');
    expect(task.statusReason?.coding?.[0]?.code).toBe('no-time');
  });
});
