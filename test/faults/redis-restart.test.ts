/**
 * Fault 2: Redis restarted during processing. The scenario runs its own redis-server (AOF on,
 * appendfsync always, in a temp dir, on a free port: the machine's Redis is never touched),
 * an API process and a worker process on it. EHR pushes (one Observation per request, eight
 * at a time) run while Redis is killed with SIGKILL and started again on the same port and
 * data. While Redis is down a push does not wait for it: the API's queue connection fails
 * fast and the push is answered 503 with an OperationOutcome and Retry-After (the Observation
 * may already be stored). The test sends each such push again after its Retry-After, as an EHR
 * does; the conditional create answers the stored resource and queues its evaluations then.
 * Every accepted push (201/200) must lead to its evaluations (one per program, the job id is
 * derived from the Observation's version): none lost, none run twice.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { seedTeam } from '../fixtures/enrolment.js';
import { eventually, http, report, Scenario, sleep, type RedisProcess } from './harness.js';
import { duplicates, expectedJobIds, glucose, PROGRAMS, seedPatients, writtenPerPatient } from './seed.js';
import { completedEvaluations, pending, startStack, type Stack } from './stack.js';

const PUSHES = 400;
const PARALLEL = 8;

let redis: RedisProcess;
let scenario: Scenario;
let stack: Stack;

beforeAll(async () => {
  const bootstrap = new Scenario('redis-restart-bootstrap');
  redis = bootstrap.redisServer();
  await redis.start();
  scenario = new Scenario('redis-restart', redis.url);
  scenario.redisServers.push(...bootstrap.redisServers);
  stack = await startStack(scenario, { workers: 1 });
}, 180_000);

afterAll(async () => {
  await scenario?.cleanup();
}, 60_000);

describe('Redis killed and restarted (AOF, appendfsync always) during processing', () => {
  it('loses no accepted observation', { timeout: 420_000 }, async () => {
    onTestFailed(() => {
      scenario.writeLogs();
    });
    const { t, evaluations } = stack;
    const team = await seedTeam(t, `${scenario.prefix}-team`, ['gp', 'apa-teacher']);
    const patientIds = await seedPatients(t.fhirUrl, team.member('gp').reference, PUSHES, scenario.prefix);

    const accepted: fhir4.Observation[] = [];
    let refused = 0;
    /** Pushes answered 503 (Redis down), and the other refusals (there should be none). */
    const unavailable = new Set<number>();
    const otherRefusals: string[] = [];
    let acceptedAfter503 = 0;
    let next = 0;
    const pushOne = async (i: number): Promise<void> => {
      const body = glucose(patientIds[i] as string, `${scenario.prefix}-glu-${i}`);
      for (let attempt = 1; ; attempt++) {
        let status = 0;
        try {
          const answer = await http('POST', `${t.url}/fhir/Observation`, body);
          status = answer.status;
          if (status === 201 || status === 200) {
            accepted.push(answer.body as fhir4.Observation);
            if (unavailable.has(i)) acceptedAfter503 += 1;
            return;
          }
          if (status === 503) {
            unavailable.add(i);
            refused += 1;
            const outcome = answer.body as fhir4.OperationOutcome;
            if (outcome?.resourceType !== 'OperationOutcome' || outcome.issue?.[0]?.code !== 'transient') otherRefusals.push(`503 without a transient OperationOutcome`);
            const retryAfter = Number(answer.headers.get('retry-after'));
            if (!(retryAfter > 0)) otherRefusals.push(`503 without Retry-After`);
            if (attempt >= 60) throw new Error(`push ${i} refused ${attempt} times (last HTTP 503)`);
            await sleep(Math.min(retryAfter > 0 ? retryAfter : 1, 10) * 1000);
            continue;
          }
        } catch {
          status = 0;
        }
        refused += 1;
        otherRefusals.push(`HTTP ${status}`);
        if (attempt >= 60) throw new Error(`push ${i} refused ${attempt} times (last HTTP ${status})`);
        await sleep(500);
      }
    };
    const pusher = async (): Promise<void> => {
      while (next < PUSHES) await pushOne(next++);
    };
    const pushing = Promise.all(Array.from({ length: PARALLEL }, pusher));

    // Restart Redis in the middle of the pushes and of the processing.
    await eventually('a quarter pushed', async () => (accepted.length >= PUSHES / 4 ? true : undefined), 120_000, 50);
    const acceptedBefore = accepted.length;
    await redis.kill9();
    await sleep(3_000);
    await redis.start();
    await pushing;
    report('redis-restart (restart)', {
      'accepted before the kill': acceptedBefore,
      'pushes answered 503': unavailable.size,
      '503 answers in all': refused - otherRefusals.filter((r) => r.startsWith('HTTP')).length,
      're-sent and accepted': acceptedAfter503,
      'other refusals': otherRefusals.length,
    });
    expect(acceptedBefore, 'Redis restarted in the middle of the pushes').toBeLessThan(PUSHES);
    // While Redis was down, pushes were answered 503 + OperationOutcome + Retry-After (not held open), nothing else.
    expect(otherRefusals).toEqual([]);
    expect(unavailable.size, 'pushes answered 503 while Redis was down').toBeGreaterThan(0);
    expect(acceptedAfter503, 'every push answered 503 was accepted when sent again').toBe(unavailable.size);

    // Every accepted observation's evaluations complete.
    const expected = accepted.flatMap((observation) => expectedJobIds(observation));
    await eventually(
      'every evaluation of an accepted observation completed',
      async () => {
        const done = (await completedEvaluations(evaluations)).ids;
        return expected.every((id) => done.has(id)) && (await pending(evaluations)) === 0 ? true : undefined;
      },
      240_000,
      1000,
    );
    const done = await completedEvaluations(evaluations);
    const lost = expected.filter((id) => !done.ids.has(id)).length;
    const written = await writtenPerPatient(t.fhirUrl);
    const responsesOfPushed = [...written.responses].filter(([key]) => patientIds.includes((key.split(' ')[0] as string).replace('Patient/', '')));
    const failed = (await evaluations.getJobCounts('failed')).failed ?? 0;
    report('redis-restart', {
      accepted: accepted.length,
      'evaluations expected': expected.length * PROGRAMS.length,
      completed: done.evaluations,
      failed,
      lost,
      duplicated: duplicates(done.perPatientProgram) + duplicates(new Map(responsesOfPushed)) + duplicates(written.tasks),
    });
    expect(accepted).toHaveLength(PUSHES);
    expect(lost, 'accepted observations whose evaluation was lost').toBe(0);
    expect(failed).toBe(0);
    expect(duplicates(done.perPatientProgram), 'evaluations run twice').toBe(0);
    expect(responsesOfPushed).toHaveLength(PUSHES * PROGRAMS.length);
    expect(duplicates(new Map(responsesOfPushed)), 'duplicate GuidanceResponses').toBe(0);
    expect(duplicates(written.tasks), 'duplicate Tasks').toBe(0);
  });
});
