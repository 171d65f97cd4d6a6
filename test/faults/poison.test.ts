/**
 * Fault 5: a poison job. One claim among 20 is one the insurer will never take (the gateway
 * process refuses it with 422 and an OperationOutcome, every time): its submission fails once
 * (no retry of a permanent refusal), the gateway's OperationOutcome is kept on the claim's
 * submission Task, the failed job is listed by the bull-board API under /admin/queues and
 * counted by /metrics, and it blocks nothing: the 19 other claims and 100 evaluations pushed
 * at the same time all complete. Likewise for an evaluation that can never run (an observation
 * about a patient the FHIR server does not have): its jobs fail once, each with its
 * OperationOutcome in the job's log (shown by /admin/queues), counted by /metrics.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { assertValid } from '../../src/fhir/validation.js';
import { enrol, seedAssociation, seedRediabPatient2002 } from '../fixtures/billing.js';
import { REDIAB, seedRediabTeam, seedTeam } from '../fixtures/enrolment.js';
import { eventually, fhirAll, http, metricValue, report, Scenario } from './harness.js';
import { cloneEnrolment, expectedJobIds, glucose, seedPatients } from './seed.js';
import { completedEvaluations, idle, pending, readJournal, startGateway, startStack, submissionsPerKey, type Gateway, type Stack } from './stack.js';

const CLAIMS = 20;
const PATIENTS = 50;
const CLAIM_SYSTEM = 'http://forfait-fhir.org/fhir/PlanDefinition/rediab/claim';
const SUBMIT_TASK_SYSTEM = 'http://forfait-fhir.org/fhir/submit-claim';

const scenario = new Scenario('poison');
/** The episode whose claim the insurer refuses (the Claim names it in `supportingInfo`). */
const poisonEpisode = randomUUID();
let gateway: Gateway;
let stack: Stack;

beforeAll(async () => {
  gateway = await startGateway(scenario, { reject: poisonEpisode });
  stack = await startStack(scenario, { workers: 1, env: { GATEWAY_BASE_URL: gateway.url, GATEWAY_TIMEOUT_MS: '5000' } });
}, 180_000);

afterAll(async () => {
  await scenario.cleanup();
}, 60_000);

describe('a poison job', () => {
  it('fails once with its OperationOutcome kept, shows in /admin/queues and /metrics, and blocks nothing', { timeout: 300_000 }, async () => {
    onTestFailed(() => {
      scenario.writeLogs();
    });
    const { t, claims, evaluations } = stack;
    const rediab = await seedRediabTeam(t, `${scenario.prefix}-rediab`, ['gp']);
    await seedAssociation(t);
    const first = await seedRediabPatient2002(t, rediab, `${scenario.prefix}-R`);
    const enrolled = await enrol(t, first.patientId, { program: REDIAB, start: '2004-06-01', team: rediab.as(['gp']), consent: first.consent });
    await eventually('first claim accepted', async () => (submissionsPerKey(readJournal(gateway)).accepted.size === 1 ? true : undefined), 60_000);

    // The poison first in the queue, the others behind it, and evaluations at the same time.
    const episodes = await cloneEnrolment(t, enrolled.episodeId, CLAIMS - 1, [poisonEpisode]);
    expect(episodes[0]).toBe(poisonEpisode);
    await claims.addBulk(
      episodes.map((episodeId) => ({
        name: 'generate',
        data: { kind: 'generate', episodeId },
        opts: { jobId: `generate.${episodeId}.faults`, attempts: 10, backoff: { type: 'custom' }, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } },
      })),
    );
    const fnmf = await seedTeam(t, `${scenario.prefix}-fnmf`, ['gp', 'apa-teacher']);
    const patientIds = await seedPatients(t.fhirUrl, fnmf.member('gp').reference, PATIENTS, scenario.prefix);
    // A second poison, for the evaluations: an observation about a patient the FHIR server does
    // not have (it can never be evaluated), pushed before the others.
    const ghost = await http('POST', `${t.url}/fhir/Observation`, glucose(randomUUID(), `${scenario.prefix}-ghost`));
    expect(ghost.status, JSON.stringify(ghost.body).slice(0, 300)).toBe(201);
    const ghostJobs = expectedJobIds(ghost.body as fhir4.Observation);
    const accepted: fhir4.Observation[] = [];
    for (const [i, patientId] of patientIds.entries()) {
      const answer = await http('POST', `${t.url}/fhir/Observation`, glucose(patientId, `${scenario.prefix}-glu-${i}`));
      expect(answer.status).toBe(201);
      accepted.push(answer.body as fhir4.Observation);
    }

    // Blocks nothing: every other claim accepted, every evaluation done.
    await eventually('the 19 other claims accepted', async () => (submissionsPerKey(readJournal(gateway)).accepted.size >= CLAIMS - 1 ? true : undefined), 180_000, 500);
    const expected = accepted.flatMap((observation) => expectedJobIds(observation));
    await eventually(
      'every evaluation completed',
      async () => {
        const done = (await completedEvaluations(evaluations)).ids;
        return expected.every((id) => done.has(id)) && (await pending(evaluations)) === 0 ? true : undefined;
      },
      180_000,
      500,
    );
    await idle(claims, 120_000);

    // The poison claim: stored, refused, its submission failed after one attempt.
    const stored = (await fhirAll<fhir4.Claim>(t.fhirUrl, 'Claim')).filter((claim) => claim.identifier?.[0]?.system === CLAIM_SYSTEM);
    const poison = stored.find((claim) => claim.supportingInfo?.some((info) => info.valueReference?.reference === `EpisodeOfCare/${poisonEpisode}`));
    expect(poison, 'the poison claim was generated').toBeDefined();
    const poisonId = poison?.id as string;
    const job = await claims.getJob(`submit.${poisonId}`);
    expect(await job?.getState()).toBe('failed');
    expect(job?.attemptsMade, 'a permanent refusal is not retried').toBe(1);
    const poisonKey = `${CLAIM_SYSTEM}|${poison?.identifier?.[0]?.value ?? ''}`;
    const seen = submissionsPerKey(readJournal(gateway));
    expect(seen.received.get(poisonKey), 'the gateway saw the poison claim once').toBe(1);

    // Its OperationOutcome is kept on the submission Task.
    const [task] = (await fhirAll<fhir4.Task>(t.fhirUrl, 'Task', { identifier: `${SUBMIT_TASK_SYSTEM}|${poisonId}` }));
    expect(task?.status).toBe('failed');
    const kept = task?.contained?.find((r): r is fhir4.OperationOutcome => r.resourceType === 'OperationOutcome');
    expect(kept?.issue?.[0]?.diagnostics).toMatch(/beneficiary unknown/);

    // Visible in the bull-board API and in /metrics.
    const board = await http('GET', `${stack.api.url}/admin/queues/api/queues?activeQueue=claims&status=failed&page=1&jobsPerPage=50`);
    expect(board.status).toBe(200);
    const claimsQueue = (board.body as { queues: { name: string; counts: Record<string, number>; jobs: { id: string; failedReason?: string; attemptsMade?: number }[] }[] }).queues.find((q) => q.name === 'claims');
    expect(claimsQueue?.counts['failed']).toBe(1);
    const listed = claimsQueue?.jobs.find((j) => j.id === `submit.${poisonId}`);
    expect(listed, 'the failed job is listed by /admin/queues').toBeDefined();
    expect(listed?.failedReason).toBeTruthy();
    const metrics = (await http('GET', `${stack.api.url}/metrics`)).body as string;
    expect(metricValue(metrics, 'forfait_queue_jobs', { queue: 'claims', state: 'failed' })).toBe(1);
    // The evaluation poison: both its jobs failed after one attempt, the OperationOutcome kept in
    // the job's log, listed under /admin/queues, counted by /metrics.
    for (const id of ghostJobs) {
      const ghostJob = await evaluations.getJob(id);
      expect(await ghostJob?.getState(), id).toBe('failed');
      expect(ghostJob?.attemptsMade, 'an evaluation that can never succeed is not retried').toBe(1);
      const logs = await http('GET', `${stack.api.url}/admin/queues/api/queues/eligibility/${encodeURIComponent(id)}/logs`);
      expect(logs.status).toBe(200);
      const outcome = JSON.parse((logs.body as string[])[0] ?? '{}') as fhir4.OperationOutcome;
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue[0]?.code).toBe('not-found');
      assertValid(outcome);
    }
    const evaluationBoard = await http('GET', `${stack.api.url}/admin/queues/api/queues?activeQueue=eligibility&status=failed&page=1&jobsPerPage=50`);
    const eligibilityQueue = (evaluationBoard.body as { queues: { name: string; counts: Record<string, number>; jobs: { id: string }[] }[] }).queues.find((q) => q.name === 'eligibility');
    expect(eligibilityQueue?.jobs.map((j) => j.id).sort()).toEqual([...ghostJobs].sort());
    expect(metricValue(metrics, 'forfait_queue_jobs', { queue: 'eligibility', state: 'failed' })).toBe(ghostJobs.length);
    const evaluationFailures = (await evaluations.getJobCounts('failed')).failed ?? 0;

    const otherClaims = stored.filter((claim) => claim.id !== poisonId);
    const notAccepted = otherClaims.filter((claim) => !seen.accepted.has(`${CLAIM_SYSTEM}|${claim.identifier?.[0]?.value ?? ''}`)).length;
    const duplicated = [...seen.received.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
    report('poison', {
      'poison attempts': job?.attemptsMade ?? 0,
      'failed jobs (claims)': claimsQueue?.counts['failed'] ?? 0,
      'other claims accepted': otherClaims.length - notAccepted,
      'evaluation poison jobs failed': evaluationFailures,
      'evaluations completed': expected.length,
      lost: notAccepted + (CLAIMS - stored.length),
      duplicated,
    });
    expect(stored).toHaveLength(CLAIMS);
    expect(notAccepted).toBe(0);
    expect(duplicated).toBe(0);
    expect(evaluationFailures, 'only the poison evaluations failed').toBe(ghostJobs.length);
  });
});
