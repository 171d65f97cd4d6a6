/**
 * Fault 1: `kill -9` of a worker process in the middle of 1,000 evaluations and 1,000 claims.
 *
 * Processes: the API (ROLE=api, embedded FHIR server of record), two workers (ROLE=worker,
 * FHIR_BASE_URL = the API's FHIR server, GATEWAY_BASE_URL = the gateway) and the insurer
 * gateway (test/faults/gateway-process.ts), all on the shared Redis with their own prefix.
 *
 * Two runs, each on its own stack (the embedded FHIR server of one API process serves
 * everything, single-threaded: evaluations and claims on one server would mostly measure it):
 * - evaluations: 500 patients each get one fasting glucose pushed through the API (batches of
 *   50): one evaluation per program, 1,000 in all, recorded as GuidanceResponses and (FNMF
 *   eligible) Tasks;
 * - claims: one REDIAB enrolment through `$enroll` (the service generates and submits its FEID
 *   claim by itself), then 999 copies of that Claim (own id and business identifier) written
 *   to the FHIR server and queued for submission as the service queues what it generates
 *   (one `submit.<claim id>` job each): 1,000 submissions to the gateway. (Generating 999
 *   claims from copied enrolments works too, but the embedded server's linear-scan CarePlan
 *   search makes it cost ~1 s per claim on this machine: see gateway-down and poison tests
 *   for generation from enrolments at a smaller scale.)
 * In the middle of each, worker1 is killed with SIGKILL, then started again. At the end every
 * evaluation and every claim is done; one GuidanceResponse per patient and program, no second
 * Task, one Claim per forfait, one submission Task per claim, and the gateway received each
 * claim exactly once.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { attemptsFor, submitJobId } from '../../src/queue/claims.js';
import { enrol, seedAssociation, seedRediabPatient2002 } from '../fixtures/billing.js';
import { REDIAB, seedRediabTeam, seedTeam } from '../fixtures/enrolment.js';
import { eventually, fhirAll, http, report, Scenario, type ServiceProcess } from './harness.js';
import { duplicates, glucose, PROGRAMS, putAll, seedPatients, writtenPerPatient } from './seed.js';
import { completedEvaluations, idle, pending, readJournal, startGateway, startStack, submissionsPerKey, type Stack } from './stack.js';

const PATIENTS = 500;
const CLAIMS = 1_000;
const CLAIM_SYSTEM = 'http://forfait-fhir.org/fhir/PlanDefinition/rediab/claim';
const SUBMIT_TASK_SYSTEM = 'http://forfait-fhir.org/fhir/submit-claim';

const evaluationsRun = new Scenario('kill-worker-evaluations');
const claimsRun = new Scenario('kill-worker-claims');

afterAll(async () => {
  await evaluationsRun.cleanup();
  await claimsRun.cleanup();
}, 60_000);

/** Kills worker1 with SIGKILL once `progress` says the work is under way, then starts it again; returns the progress at the kill. */
async function killInTheMiddle(stack: Stack, progress: () => Promise<number>, total: number, label: string): Promise<number> {
  await eventually(`${label} under way`, async () => ((await progress()) >= total / 10 ? true : undefined), 240_000, 100);
  const worker1 = stack.workers[0] as ServiceProcess;
  await worker1.kill9();
  const atKill = await progress();
  report(`${label} (at kill -9)`, { done: atKill, of: total });
  // Killed in the middle, not after the end.
  expect(atKill).toBeLessThan(total);
  await worker1.restart();
  return atKill;
}

describe('kill -9 of a worker process in the middle of the work', () => {
  it('1,000 evaluations: all complete after the restart, none lost, none duplicated', { timeout: 420_000 }, async () => {
    onTestFailed(() => {
      evaluationsRun.writeLogs();
    });
    const stack = await startStack(evaluationsRun, { workers: 2 });
    const { t, evaluations } = stack;
    const team = await seedTeam(t, `${evaluationsRun.prefix}-fnmf`, ['gp', 'apa-teacher']);
    const patientIds = await seedPatients(t.fhirUrl, team.member('gp').reference, PATIENTS, evaluationsRun.prefix);
    const total = PATIENTS * PROGRAMS.length;

    const pushing = (async () => {
      for (let i = 0; i < PATIENTS; i += 50) {
        const entry = patientIds.slice(i, i + 50).map((patientId, j) => ({
          resource: glucose(patientId, `${evaluationsRun.prefix}-glu-${i + j}`),
          request: { method: 'POST' as const, url: 'Observation' },
        }));
        const answer = await http('POST', `${t.url}/fhir`, { resourceType: 'Bundle', type: 'batch', entry });
        expect(answer.status, JSON.stringify(answer.body).slice(0, 500)).toBe(200);
        const statuses = ((answer.body as fhir4.Bundle).entry ?? []).map((e) => e.response?.status ?? '');
        expect(statuses.every((s) => s.startsWith('201')), statuses.join(',')).toBe(true);
      }
    })();
    await killInTheMiddle(stack, async () => (await completedEvaluations(evaluations)).evaluations, total, 'kill-worker evaluations');
    await pushing;

    await eventually(
      'all evaluations completed',
      async () => ((await completedEvaluations(evaluations)).evaluations >= total && (await pending(evaluations)) === 0 ? true : undefined),
      300_000,
      1000,
    );
    const evaluated = await completedEvaluations(evaluations);
    const failed = (await evaluations.getJobCounts('failed')).failed ?? 0;
    const lostEvaluations = patientIds.flatMap((id) => PROGRAMS.map((program) => `${program} ${id}`)).filter((key) => !evaluated.perPatientProgram.has(key)).length;
    const duplicatedEvaluations = duplicates(evaluated.perPatientProgram);
    const written = await writtenPerPatient(t.fhirUrl);
    const seeded = new Set(patientIds.map((id) => `Patient/${id}`));
    const responses = [...written.responses].filter(([key]) => seeded.has(key.split(' ')[0] as string));
    const lostResponses = total - responses.length;
    const duplicatedResponses = duplicates(new Map(responses));
    const duplicatedTasks = duplicates(written.tasks);
    // Jobs the killed worker was running: found stalled (lock expired), run again by a worker.
    const takenOver = (await evaluations.getJobs(['completed'], 0, -1)).filter((job) => job.stalledCounter > 0).length;
    report('kill-worker evaluations', {
      expected: total,
      completed: evaluated.evaluations,
      'taken over from the killed worker': takenOver,
      failed,
      lost: lostEvaluations + lostResponses,
      duplicated: duplicatedEvaluations + duplicatedResponses + duplicatedTasks,
    });
    expect(takenOver, 'the kill interrupted running evaluations (taken over after it)').toBeGreaterThan(0);
    expect(failed).toBe(0);
    expect(lostEvaluations, 'evaluations lost').toBe(0);
    expect(duplicatedEvaluations, 'evaluations run twice as separate jobs').toBe(0);
    expect(lostResponses, 'GuidanceResponses missing').toBe(0);
    expect(duplicatedResponses, 'duplicate GuidanceResponses').toBe(0);
    expect(duplicatedTasks, 'duplicate Tasks').toBe(0);
    expect(stack.workers[0]?.starts).toBe(2);
    await evaluationsRun.cleanup();
  });

  it('1,000 claims: every one submitted after the restart, none received twice', { timeout: 480_000 }, async () => {
    onTestFailed(() => {
      claimsRun.writeLogs();
    });
    const gateway = await startGateway(claimsRun);
    const stack = await startStack(claimsRun, { workers: 2, env: { GATEWAY_BASE_URL: gateway.url, GATEWAY_TIMEOUT_MS: '5000' } });
    const { t, claims } = stack;
    const team = await seedRediabTeam(t, `${claimsRun.prefix}-rediab`, ['gp']);
    await seedAssociation(t);
    const first = await seedRediabPatient2002(t, team, `${claimsRun.prefix}-R`);
    await enrol(t, first.patientId, { program: REDIAB, start: '2004-06-01', team: team.as(['gp']), consent: first.consent });
    // The service generates and submits the first claim by itself.
    await eventually('first claim accepted by the gateway', async () => (submissionsPerKey(readJournal(gateway)).accepted.size === 1 ? true : undefined), 60_000);
    // 999 more claims due, copies of the first (own id and business identifier), queued for
    // submission the way the service queues what it generates (one `submit.<claim id>` job each).
    const [original] = await fhirAll<fhir4.Claim>(t.fhirUrl, 'Claim', { patient: `Patient/${first.patientId}` });
    if (!original) throw new Error('the first claim was not generated');
    const { meta, ...template } = original;
    const copies = Array.from({ length: CLAIMS - 1 }, (_, i) => ({
      ...template,
      ...(meta?.profile ? { meta: { profile: meta.profile } } : {}),
      id: randomUUID(),
      identifier: [{ system: CLAIM_SYSTEM, value: `${original.identifier?.[0]?.value ?? ''}-copy${i}` }],
    }));
    await putAll(t.fhirUrl, copies);
    const attempts = attemptsFor(48);
    await claims.addBulk(
      copies.map((claim) => ({
        name: 'submit',
        data: { kind: 'submit', claimId: claim.id },
        opts: { jobId: submitJobId(claim.id), attempts, backoff: { type: 'custom' }, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } },
      })),
    );
    await killInTheMiddle(stack, async () => submissionsPerKey(readJournal(gateway)).accepted.size, CLAIMS, 'kill-worker claims');

    await eventually('every claim accepted by the gateway', async () => (submissionsPerKey(readJournal(gateway)).accepted.size >= CLAIMS ? true : undefined), 300_000, 1000);
    await idle(claims, 120_000);

    const storedClaims = await fhirAll<fhir4.Claim>(t.fhirUrl, 'Claim');
    const claimKeys = new Map<string, number>();
    for (const claim of storedClaims) {
      const identifier = claim.identifier?.[0];
      if (identifier?.system !== CLAIM_SYSTEM) continue;
      const key = `${identifier.system}|${identifier.value ?? ''}`;
      claimKeys.set(key, (claimKeys.get(key) ?? 0) + 1);
    }
    const submitTasks = (await fhirAll<fhir4.Task>(t.fhirUrl, 'Task')).filter((task) => task.identifier?.some((i) => i.system === SUBMIT_TASK_SYSTEM));
    const submitTaskPerClaim = new Map<string, number>();
    for (const task of submitTasks) {
      const claimRef = task.focus?.reference ?? '?';
      submitTaskPerClaim.set(claimRef, (submitTaskPerClaim.get(claimRef) ?? 0) + 1);
    }
    const gatewaySeen = submissionsPerKey(readJournal(gateway));
    const lostClaims = CLAIMS - claimKeys.size;
    const notSubmitted = [...claimKeys.keys()].filter((key) => !gatewaySeen.accepted.has(key)).length;
    const receivedTwice = duplicates(gatewaySeen.received);
    const failed = (await claims.getJobCounts('failed')).failed ?? 0;
    const takenOver = (await claims.getJobs(['completed'], 0, -1)).filter((job) => job.stalledCounter > 0).length;
    report('kill-worker claims', {
      expected: CLAIMS,
      'taken over from the killed worker': takenOver,
      'claims stored': claimKeys.size,
      'accepted by gateway': gatewaySeen.accepted.size,
      failed,
      lost: lostClaims + notSubmitted,
      duplicated: duplicates(claimKeys) + duplicates(submitTaskPerClaim) + receivedTwice,
    });
    expect(takenOver, 'the kill interrupted running submissions (taken over after it)').toBeGreaterThan(0);
    expect(failed).toBe(0);
    expect(lostClaims, 'claims never generated').toBe(0);
    expect(duplicates(claimKeys), 'duplicate Claims on the FHIR server').toBe(0);
    expect(notSubmitted, 'claims never accepted by the gateway').toBe(0);
    expect(receivedTwice, 'claims received twice by the gateway').toBe(0);
    expect(submitTaskPerClaim.size).toBe(CLAIMS);
    expect(duplicates(submitTaskPerClaim), 'duplicate submission Tasks').toBe(0);
    expect(submitTasks.every((task) => task.status === 'completed'), 'every submission Task completed').toBe(true);
    expect(stack.workers[0]?.starts).toBe(2);
    await claimsRun.cleanup();
  });
});
