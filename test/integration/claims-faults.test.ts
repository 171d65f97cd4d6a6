/**
 * Exactly once (issue #4, "Exactly once, exactly right"), counted on what a real local insurer
 * gateway (test/fixtures/insurer-gateway.ts) received: re-sent events, two worker processes, a
 * gateway answering 503/429, down then up, accepting then timing out, refusing with a 4xx, and
 * answering `error` or `queued`. The service runs with a 1 s gateway timeout; retries wait a
 * pause of the claims queue (30 s and more) while the gateway is unavailable, or a backoff of
 * 30 s and more otherwise, so the tests lift the pause (or promote the delayed job) instead of waiting.
 *
 * Each patient here is a REDIAB patient enrolled on 2004-06-01 with a GP only: exactly one
 * forfait falls due (FEID, 178.36 EUR to the GP; the first follow-up year would start on
 * 2004-10-01, after the approval period's end 2004-08-23), generated and submitted by the
 * service on its own at enrolment. (FNMF claims cannot be generated at all: see the bug in
 * claims.test.ts, "enrolment records the centre as the managing organization".)
 */
import type { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  amount,
  bill,
  budget,
  claimResponsesOf,
  claimsIdle,
  claimsOf,
  claimsQueue,
  enrol,
  gatewayEnv,
  jobIn,
  keyOf,
  seedAssociation,
  seedRediabPatient2002,
  stripPractitionerIdentifiers,
  submissionTask,
  submitJobId,
  summary,
  taskWithStatus,
  times,
} from '../fixtures/billing.js';
import { enrolParameters, REDIAB, search, seedRediabTeam, type SeededTeam } from '../fixtures/enrolment.js';
import { InsurerGatewayFixture } from '../fixtures/insurer-gateway.js';
import { eventually, startTestService, type TestService } from './harness.js';

const START = '2004-06-01';
const FEID_GP = '178.36';

let gateway: InsurerGatewayFixture;
let t: TestService;
let queue: Queue;
let team: SeededTeam;
/** What the scenario claimed, to check `$budget` at the end. */
const ledger = { claims: 0, complete: 0 };

beforeAll(async () => {
  gateway = await InsurerGatewayFixture.start();
  t = await startTestService(gatewayEnv(gateway.baseUrl));
  queue = claimsQueue(t);
  team = await seedRediabTeam(t, 'faults', ['gp']);
  await seedAssociation(t);
});

afterAll(async () => {
  await queue?.close();
  await t?.stop();
  await gateway?.close();
});

interface Patient {
  patientId: string;
  episodeId?: string;
  consent: string;
}

async function seedPatient(label: string, on: SeededTeam = team): Promise<Patient> {
  const seeded = await seedRediabPatient2002(t, on, label);
  return { patientId: seeded.patientId, consent: seeded.consent };
}

async function enrolPatient(patient: Patient, on: SeededTeam = team): Promise<Patient> {
  const enrolled = await enrol(t, patient.patientId, { program: REDIAB, start: START, team: on.as(['gp']), consent: patient.consent });
  return { ...patient, episodeId: enrolled.episodeId };
}

/** The patient's one claim, once written (validated). */
async function theClaim(patientId: string): Promise<fhir4.Claim> {
  const claims = await eventually(async () => {
    const found = await search<fhir4.Claim>(t, 'Claim', { patient: `Patient/${patientId}` });
    return found.length ? found : undefined;
  });
  expect(claims).toHaveLength(1);
  const [claim] = await claimsOf(t, patientId);
  expect(summary(claim as fhir4.Claim)).toBe(`FEID ${START} ${team.member('gp').reference} ${FEID_GP}`);
  return claim as fhir4.Claim;
}

async function quiet(): Promise<void> {
  await claimsIdle(queue);
  await gateway.settled();
}

/** How the gateway answered each submission POST of a claim, in order. */
const submitAnswers = (key: string) => gateway.requests.filter((r) => r.key === key && r.route === 'submit').map((r) => r.answer);
const statusAnswers = (key: string) => gateway.requests.filter((r) => r.key === key && r.route === 'status').map((r) => r.answer);

/** The claim ended well: one complete ClaimResponse linked to it, its Task completed and pointing at it. */
async function expectComplete(claim: fhir4.Claim): Promise<fhir4.ClaimResponse> {
  const response = await eventually(async () => (await claimResponsesOf(t, claim.id as string)).find((r) => r.outcome === 'complete'));
  const responses = await claimResponsesOf(t, claim.id as string);
  expect(responses.map((r) => r.id)).toEqual([response.id]);
  expect(response.request?.reference).toBe(`Claim/${claim.id}`);
  expect(amount(response.payment?.amount)).toBe(FEID_GP);
  const task = await taskWithStatus(t, claim.id as string, 'completed');
  expect(task.output?.map((o) => o.valueReference?.reference)).toContain(`ClaimResponse/${response.id}`);
  return response;
}

describe('re-sent events', () => {
  it('two $bill at once (after bad data is fixed) write the claim once and submit it once', async () => {
    // A GP without an identifier: the claim is held back (payee-identifier-missing)...
    const noId = await seedRediabTeam(t, 'faults-noid', ['gp']);
    await stripPractitionerIdentifiers(t, noId.member('gp').practitionerId);
    const patient = await enrolPatient(await seedPatient('resent-bill', noId), noId);
    await quiet();
    expect(await claimsOf(t, patient.patientId)).toHaveLength(0);

    // ...until the identifier is recorded; then two sweeps run at once.
    const practitioner = (await t.fhirGet(`Practitioner/${noId.member('gp').practitionerId}`)) as fhir4.Practitioner;
    const { meta: _meta, ...rest } = practitioner;
    const put = await fetch(`${t.fhirUrl}/Practitioner/${practitioner.id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ ...rest, identifier: [{ system: 'urn:oid:1.2.250.1.71.4.2.1', value: '10000000123' }] }),
    });
    expect(put.status).toBe(200);
    const unique = gateway.uniqueClaims();
    const answers = await Promise.all([bill(t, START, REDIAB), bill(t, START, REDIAB), bill(t, START, REDIAB)]);
    await quiet();

    const claims = await claimsOf(t, patient.patientId);
    expect(claims.map(summary)).toEqual([`FEID ${START} ${noId.member('gp').reference} ${FEID_GP}`]);
    const claim = claims[0] as fhir4.Claim;
    for (const answer of answers) expect(answer.claimIds).toContain(claim.id);
    expect(answers.reduce((total, answer) => total + answer.created, 0)).toBe(1);
    expect(gateway.submissionsOf(keyOf(claim))).toBe(1);
    expect(gateway.uniqueClaims()).toBe(unique + 1);
    expect((await claimResponsesOf(t, claim.id as string)).map((r) => r.outcome)).toEqual(['complete']);
    ledger.claims += 1;
    ledger.complete += 1;
  });

  it('the same enrolment sent twice at once, then $bill and the daily sweep: one episode, one claim, submitted once', async () => {
    const patient = await seedPatient('resent-enrol');
    const body = { program: REDIAB, start: START, team: team.as(['gp']), consent: patient.consent };
    const responses = await Promise.all([1, 2].map(() => t.post(`/fhir/Patient/${patient.patientId}/$enroll`, enrolParameters(body))));
    expect(responses.map((r) => r.status).sort(), JSON.stringify(responses.map((r) => r.body))).toEqual([200, 201]);
    await quiet();
    const claim = await theClaim(patient.patientId);
    await expectComplete(claim);

    // The event again, the operator's trigger, and the daily job scheduler's sweep run now.
    const again = await t.post(`/fhir/Patient/${patient.patientId}/$enroll`, enrolParameters(body));
    expect(again.status).toBe(200);
    expect((await bill(t, START, REDIAB)).created).toBe(0);
    const sweep = (await queue.getDelayed()).find((job) => job.repeatJobKey !== undefined || String(job.id).startsWith('repeat:'));
    expect(sweep, 'the daily billing job scheduler has its next run scheduled').toBeDefined();
    await sweep?.promote();
    await eventually(async () => ((await queue.getJobState(sweep?.id as string)) === 'completed' ? true : undefined));
    await quiet();

    expect(await claimsOf(t, patient.patientId)).toHaveLength(1);
    expect(await search(t, 'EpisodeOfCare', { patient: `Patient/${patient.patientId}` })).toHaveLength(1);
    expect(gateway.submissionsOf(keyOf(claim))).toBe(1);
    ledger.claims += 1;
    ledger.complete += 1;
  });
});

describe('two worker processes', () => {
  it('a second process (ROLE=worker) on the same queue prefix and FHIR server: each claim submitted once', async () => {
    const worker = await startTestService(gatewayEnv(gateway.baseUrl, { ROLE: 'worker', QUEUE_PREFIX: t.prefix, FHIR_BASE_URL: t.fhirUrl }), { keepKeys: true });
    try {
      const unique = gateway.uniqueClaims();
      // Slow answers keep several submissions in flight across both processes.
      gateway.slow(150);
      const patients = await Promise.all([0, 1, 2, 3, 4, 5].map((n) => seedPatient(`two-workers-${n}`)));
      // Both processes are connected to the claims queue (each runs a claims worker).
      expect((await queue.getWorkers()).length).toBeGreaterThanOrEqual(2);
      const sweeps = Promise.all([bill(t, START, REDIAB), bill(t, START, REDIAB)]);
      const enrolled = await Promise.all(patients.map((p) => enrolPatient(p)));
      await sweeps;
      await bill(t, START, REDIAB);
      await quiet();
      gateway.slow(0);
      for (const patient of enrolled) {
        const claim = await theClaim(patient.patientId);
        expect(gateway.submissionsOf(keyOf(claim)), summary(claim)).toBe(1);
        await expectComplete(claim);
      }
      expect(gateway.uniqueClaims()).toBe(unique + 6);
      ledger.claims += 6;
      ledger.complete += 6;
    } finally {
      gateway.slow(0);
      await worker.stop();
    }
  });
});

describe('transient gateway failures', () => {
  /** The pause of the whole claims queue (ms left), set when a submission finds the gateway unavailable. */
  const pausedMs = (): Promise<number> => queue.getRateLimitTtl(Number.MAX_SAFE_INTEGER);
  /** The job was started, found the gateway unavailable and went back to the line, no attempt used, the queue paused. */
  async function pausedWaiting(jobId: string, started: number): Promise<Job> {
    return eventually(async () => {
      const job = await queue.getJob(jobId);
      if (!job || (await job.getState()) !== 'waiting' || job.attemptsStarted < started) return undefined;
      return (await pausedMs()) > 0 ? job : undefined;
    });
  }
  /** Lifts the pause now (as an operator could), instead of waiting 30 s and more. */
  const lift = async (): Promise<void> => {
    await queue.removeRateLimitKey();
  };

  it('503, then 429 with Retry-After, then OK: the queue pauses (Retry-After honoured), then completes; processed once (the refused attempts were never processed)', async () => {
    const patient = await seedPatient('transient-503');
    const unique = gateway.uniqueClaims();
    gateway.failNext(1, 503, undefined, 'submit');
    gateway.failNext(1, 429, 3600, 'submit');
    await enrolPatient(patient);
    const claim = await theClaim(patient.patientId);
    const key = keyOf(claim);
    const jobId = submitJobId(claim.id as string);

    // First attempt refused with 503: the queue pauses, the job waits at the head of the line
    // (no attempt used), the claim is kept, the Task says so.
    const first = await pausedWaiting(jobId, 1);
    expect(first.attemptsMade).toBe(0);
    expect((await queue.getDelayed()).map((job) => job.id)).not.toContain(jobId);
    expect((await submissionTask(t, claim.id as string))?.status).toBe('in-progress');
    expect(await claimResponsesOf(t, claim.id as string)).toHaveLength(0);
    await lift();

    // Second attempt refused with 429 and Retry-After: 3600: the pause is not shorter than that.
    const second = await pausedWaiting(jobId, 2);
    expect(second.attemptsMade).toBe(0);
    expect(await pausedMs()).toBeGreaterThan(3_600_000 - 60_000);
    await lift();

    await jobIn(queue, jobId, ['completed']);
    await quiet();
    expect(submitAnswers(key)).toEqual([503, 429, 200]);
    expect(gateway.submissionsOf(key)).toBe(3);
    expect(gateway.uniqueClaims()).toBe(unique + 1);
    expect(await pausedMs()).toBeLessThanOrEqual(0);
    await expectComplete(claim);
    ledger.claims += 1;
    ledger.complete += 1;
  });

  it('gateway down, then up: the queue pauses, the backlog waits in line and drains, every claim submitted once', async () => {
    const patients = await Promise.all([0, 1, 2].map((n) => seedPatient(`down-${n}`)));
    const unique = gateway.uniqueClaims();
    await gateway.down('refuse');
    const claims: fhir4.Claim[] = [];
    try {
      for (const patient of patients) {
        await enrolPatient(patient);
        // Generation shares the paused queue: lift the pause until the claim is written.
        claims.push(
          await eventually(async () => {
            await lift();
            const found = await search<fhir4.Claim>(t, 'Claim', { patient: `Patient/${patient.patientId}` });
            return found.length ? theClaim(patient.patientId) : undefined;
          }),
        );
      }
      // Each submission is tried, finds the gateway down, and waits in line, the queue paused;
      // lifted again while still down, it fails again: nothing is lost meanwhile, no attempt used.
      for (const claim of claims) {
        const jobId = submitJobId(claim.id as string);
        await eventually(async () => {
          const job = await queue.getJob(jobId);
          if (job && job.attemptsStarted >= 1) return true;
          await lift();
          return undefined;
        });
        const job = await pausedWaiting(jobId, 1);
        expect(job.attemptsMade).toBe(0);
        expect(await claimResponsesOf(t, claim.id as string)).toHaveLength(0);
        expect(await search(t, 'Claim', { _id: claim.id as string })).toHaveLength(1);
      }
      expect((await queue.getJobCounts('failed', 'delayed')).failed).toBe(0);
    } finally {
      await gateway.up();
    }
    await lift();
    await quiet();
    for (const claim of claims) {
      expect(gateway.submissionsOf(keyOf(claim))).toBe(1);
      await expectComplete(claim);
    }
    expect(gateway.uniqueClaims()).toBe(unique + 3);
    ledger.claims += 3;
    ledger.complete += 3;
  });

  it('accepted, then timed out: the queue pauses; the next attempt asks the status first and does not resubmit', async () => {
    const patient = await seedPatient('accept-timeout');
    const unique = gateway.uniqueClaims();
    gateway.acceptThenTimeout(3_000, 1);
    await enrolPatient(patient);
    const claim = await theClaim(patient.patientId);
    const key = keyOf(claim);
    const jobId = submitJobId(claim.id as string);

    const waiting = await pausedWaiting(jobId, 1);
    expect(waiting.attemptsMade).toBe(0);
    await gateway.settled();
    // The gateway has the claim; the adapter does not know it yet.
    expect(gateway.claims.has(key)).toBe(true);
    expect(submitAnswers(key)).toEqual(['dropped']);
    expect(await claimResponsesOf(t, claim.id as string)).toHaveLength(0);

    await lift();
    await jobIn(queue, jobId, ['completed']);
    await quiet();
    expect(gateway.submissionsOf(key)).toBe(1);
    expect(submitAnswers(key)).toEqual(['dropped']);
    expect(statusAnswers(key)).toEqual([200, 200]);
    expect(gateway.uniqueClaims()).toBe(unique + 1);
    await expectComplete(claim);
    ledger.claims += 1;
    ledger.complete += 1;
  });
  it('a claim that has waited longer than GATEWAY_RETRY_HOURS (48 h) when the gateway is still unavailable fails with its OperationOutcome, and does not pause the queue', async () => {
    const patient = await seedPatient('too-old');
    gateway.failNext(2, 503, undefined, 'submit');
    await enrolPatient(patient);
    const claim = await theClaim(patient.patientId);
    const key = keyOf(claim);
    const jobId = submitJobId(claim.id as string);

    // Under the limit: the queue pauses and the claim waits.
    await pausedWaiting(jobId, 1);
    // The claim fell due 48 h and a minute ago (BullMQ keeps when the job was added in its hash).
    await t.redis.hset(`${t.prefix}:claims:${jobId}`, 'timestamp', String(Date.now() - (48 * 60 + 1) * 60_000));
    await lift();

    const job = await jobIn(queue, jobId, ['failed']);
    expect(job.failedReason).toContain('GATEWAY_RETRY_HOURS');
    expect(job.failedReason).toContain('HTTP 503');
    const task = await taskWithStatus(t, claim.id as string, 'failed');
    const contained = task.contained?.find((r) => r.resourceType === 'OperationOutcome') as fhir4.OperationOutcome | undefined;
    expect(contained?.issue?.length).toBeGreaterThan(0);
    expect(task.output?.map((o) => o.valueReference?.reference)).toContain(`#${contained?.id}`);
    expect(await pausedMs()).toBeLessThanOrEqual(0);
    await quiet();
    expect(submitAnswers(key)).toEqual([503, 503]);
    expect(await claimResponsesOf(t, claim.id as string)).toHaveLength(0);
    ledger.claims += 1;
  });
});

describe('the gateway\'s answers', () => {
  it('a 4xx refusal fails the job at once (failed, attemptsMade 1); the Task is failed with the gateway\'s OperationOutcome; nothing resubmitted', async () => {
    const patient = await seedPatient('refused-422');
    const refusal: fhir4.OperationOutcome = {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'business-rule', diagnostics: 'Beneficiary unknown to the CPAM de Calais (test refusal)' }],
    };
    gateway.reject((_key, claim) => claim.patient.reference === `Patient/${patient.patientId}`, refusal, 422);
    const unique = gateway.uniqueClaims();
    await enrolPatient(patient);
    const claim = await theClaim(patient.patientId);
    const key = keyOf(claim);

    const job = await jobIn(queue, submitJobId(claim.id as string), ['failed']);
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toContain('HTTP 422');
    // The gateway's text may repeat patient data: it never reaches the job (Redis) or the logs...
    expect(job.failedReason).not.toContain('Beneficiary unknown to the CPAM de Calais');
    expect(job.failedReason).toMatch(/HTTP 422/);

    const task = await taskWithStatus(t, claim.id as string, 'failed');
    expect(task.focus?.reference).toBe(`Claim/${claim.id}`);
    const contained = task.contained?.find((r) => r.resourceType === 'OperationOutcome') as fhir4.OperationOutcome | undefined;
    expect(contained?.issue).toEqual(refusal.issue);
    expect(task.output?.map((o) => o.valueReference?.reference)).toContain(`#${contained?.id}`);
    // ...only the submission Task on the FHIR server keeps it, in the gateway's OperationOutcome.
    expect(JSON.stringify(task.contained)).toContain('Beneficiary unknown to the CPAM de Calais');
    expect(await claimResponsesOf(t, claim.id as string)).toHaveLength(0);

    // The refusal is final: billing again submits nothing.
    await bill(t, START, REDIAB);
    await quiet();
    expect(await queue.getJobState(submitJobId(claim.id as string))).toBe('failed');
    expect(gateway.submissionsOf(key)).toBe(1);
    expect(submitAnswers(key)).toEqual([422]);
    expect(gateway.uniqueClaims()).toBe(unique);
    ledger.claims += 1;
  });

  it('a ClaimResponse with outcome error: stored with its reasons, linked, visible; the Task completed', async () => {
    const patient = await seedPatient('outcome-error');
    const reasons: fhir4.ClaimResponseError[] = [
      { code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/adjudication-error', code: 'a002' }], text: 'Coverage not in force on the service date' } },
    ];
    gateway.respondOutcome((_key, claim) => claim.patient.reference === `Patient/${patient.patientId}`, 'error', reasons);
    await enrolPatient(patient);
    const claim = await theClaim(patient.patientId);
    await jobIn(queue, submitJobId(claim.id as string), ['completed']);
    await quiet();

    const responses = await claimResponsesOf(t, claim.id as string);
    expect(responses).toHaveLength(1);
    const response = responses[0] as fhir4.ClaimResponse;
    expect(response.outcome).toBe('error');
    expect(response.error).toEqual(reasons);
    expect(response.request?.reference).toBe(`Claim/${claim.id}`);
    expect(response.payment).toBeUndefined();
    // Visible to a user searching rejected claims.
    const rejected = await search<fhir4.ClaimResponse>(t, 'ClaimResponse', { outcome: 'error' });
    expect(rejected.map((r) => r.id)).toContain(response.id);
    const task = await taskWithStatus(t, claim.id as string, 'completed');
    expect(task.output?.map((o) => o.valueReference?.reference)).toContain(`ClaimResponse/${response.id}`);
    expect(gateway.submissionsOf(keyOf(claim))).toBe(1);
    ledger.claims += 1;
  });

  it('queued, then adjudicated: the poll job asks the status and the stored ClaimResponse becomes complete', async () => {
    const patient = await seedPatient('outcome-queued');
    gateway.respondOutcome((_key, claim) => claim.patient.reference === `Patient/${patient.patientId}`, 'queued');
    await enrolPatient(patient);
    const claim = await theClaim(patient.patientId);
    const key = keyOf(claim);
    await jobIn(queue, submitJobId(claim.id as string), ['completed']);

    const queued = await eventually(async () => (await claimResponsesOf(t, claim.id as string)).find((r) => r.outcome === 'queued'));
    expect(queued.request?.reference).toBe(`Claim/${claim.id}`);
    expect((await submissionTask(t, claim.id as string))?.status).toBe('in-progress');
    const poll = await eventually(async () => (await queue.getDelayed()).find((job) => job.name === 'poll' && (job.data as { claimId?: string }).claimId === claim.id));

    gateway.complete(key);
    await poll.promote();
    await jobIn(queue, poll.id as string, ['completed']);
    await quiet();

    const response = await expectComplete(claim);
    expect(response.id).toBe(queued.id);
    expect(response.meta?.versionId).not.toBe(queued.meta?.versionId);
    expect(gateway.submissionsOf(key)).toBe(1);
    ledger.claims += 1;
    ledger.complete += 1;
  });
});

describe('$budget after the scenario', () => {
  it('claimed counts every claim, accepted and paid only the completed ones, exactly', async () => {
    await quiet();
    const claims = await search<fhir4.Claim>(t, 'Claim', { identifier: 'http://forfait-fhir.org/fhir/PlanDefinition/rediab/claim|' });
    expect(claims).toHaveLength(ledger.claims);
    const report = await budget(t, REDIAB);
    expect(report).toMatchObject({
      program: REDIAB,
      claimed: times(ledger.claims, FEID_GP),
      accepted: times(ledger.complete, FEID_GP),
      paid: times(ledger.complete, FEID_GP),
    });
    expect([report.claimed, report.accepted]).toEqual(['3032.12', '2497.04']);
    expect(report.budget).toBeUndefined();
    expect(report.forfaits).toEqual([{ code: 'FEID', claims: ledger.claims, claimed: report.claimed, accepted: report.accepted, paid: report.paid }]);
  });
});
