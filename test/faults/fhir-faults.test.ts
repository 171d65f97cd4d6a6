/**
 * Fault 3: the FHIR server answering 30 % of requests with 500, 503 or 429 (both with
 * Retry-After: 1) or timing out. Two worker processes reach the API's embedded FHIR server
 * each through its own fault-injecting proxy (test/faults/fault-proxy.ts, seeded PRNG) with a 1 s
 * request timeout; the proxy holds a "timed out" answer for 2.5 s after the server processed
 * the request (the write happened, the client does not know). The API stores the pushes
 * directly. All evaluations complete, the proxy never saw a request repeated before the
 * Retry-After it asked for, and nothing is written twice.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { seedTeam } from '../fixtures/enrolment.js';
import { eventually, http, report, Scenario } from './harness.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { duplicates, expectedJobIds, glucose, PROGRAMS, seedPatients, writtenPerPatient } from './seed.js';
import { completedEvaluations, pending, startStack, type Stack } from './stack.js';

const PATIENTS = 150;
const SEED = 20261122;

const scenario = new Scenario('fhir-faults');
let stack: Stack;
/** One proxy per worker process (its own seed): a repeat seen by a proxy comes from one process. */
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  stack = await startStack(scenario, {
    workers: 2,
    workerEnv: { FHIR_TIMEOUT_MS: '1000', WORKER_CONCURRENCY: '8' },
    workerFhirUrl: async (fhirUrl, worker) => {
      const proxy = await startFaultProxy({ target: fhirUrl, seed: SEED + worker, rate: 0.3, retryAfterSeconds: 1, holdMs: 2_500 });
      // Faults start with the work, not while the workers start.
      proxy.enable(false);
      proxies.push(proxy);
      return proxy.url;
    },
  });
}, 180_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.close()));
  await scenario.cleanup();
}, 60_000);

/** The proxies' counts added up. */
function totals(): FaultProxy['counts'] {
  const sum: FaultProxy['counts'] = { requests: 0, forwarded: 0, faults: { '500': 0, '503': 0, '429': 0, timeout: 0 }, retryAfterGiven: 0, retryAfterRepeats: 0, retryAfterViolations: 0 };
  for (const { counts } of proxies) {
    sum.requests += counts.requests;
    sum.forwarded += counts.forwarded;
    for (const kind of ['500', '503', '429', 'timeout'] as const) sum.faults[kind] += counts.faults[kind];
    sum.retryAfterGiven += counts.retryAfterGiven;
    sum.retryAfterRepeats += counts.retryAfterRepeats;
    sum.retryAfterViolations += counts.retryAfterViolations;
  }
  return sum;
}

describe('FHIR server answering 30 % of requests with 500/503/429 or timing out', () => {
  it('completes all work, honours Retry-After, duplicates nothing', { timeout: 420_000 }, async () => {
    onTestFailed(() => {
      scenario.writeLogs();
    });
    const { t, evaluations } = stack;
    const team = await seedTeam(t, `${scenario.prefix}-team`, ['gp', 'apa-teacher']);
    const patientIds = await seedPatients(t.fhirUrl, team.member('gp').reference, PATIENTS, scenario.prefix);

    for (const proxy of proxies) proxy.enable(true);
    const accepted: fhir4.Observation[] = [];
    for (let i = 0; i < PATIENTS; i += 8) {
      const answers = await Promise.all(
        patientIds.slice(i, i + 8).map((patientId, j) => http('POST', `${t.url}/fhir/Observation`, glucose(patientId, `${scenario.prefix}-glu-${i + j}`))),
      );
      for (const answer of answers) {
        expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(201);
        accepted.push(answer.body as fhir4.Observation);
      }
    }
    const expected = accepted.flatMap((observation) => expectedJobIds(observation));
    await eventually(
      'every evaluation completed through the faults',
      async () => {
        const done = (await completedEvaluations(evaluations)).ids;
        return expected.every((id) => done.has(id)) && (await pending(evaluations)) === 0 ? true : undefined;
      },
      300_000,
      1000,
    );
    for (const proxy of proxies) proxy.enable(false);

    const done = await completedEvaluations(evaluations);
    const failed = (await evaluations.getJobCounts('failed')).failed ?? 0;
    const written = await writtenPerPatient(t.fhirUrl);
    const pushed = new Set(patientIds.map((id) => `Patient/${id}`));
    const responses = [...written.responses].filter(([key]) => pushed.has(key.split(' ')[0] as string));
    const lost = expected.filter((id) => !done.ids.has(id)).length + (PATIENTS * PROGRAMS.length - responses.length);
    const duplicated = duplicates(done.perPatientProgram) + duplicates(new Map(responses)) + duplicates(written.tasks);
    const counts = totals();
    report('fhir-faults (proxy)', {
      requests: counts.requests,
      'HTTP 500': counts.faults['500'],
      'HTTP 503': counts.faults['503'],
      'HTTP 429': counts.faults['429'],
      timeouts: counts.faults.timeout,
      'Retry-After given': counts.retryAfterGiven,
      'repeats checked': counts.retryAfterRepeats,
      'Retry-After violated': counts.retryAfterViolations,
    });
    report('fhir-faults', { evaluations: expected.length * PROGRAMS.length, completed: done.evaluations, failed, lost, duplicated });

    // The faults did happen, at about the rate asked.
    expect(counts.faults['500']).toBeGreaterThan(0);
    expect(counts.faults['503']).toBeGreaterThan(0);
    expect(counts.faults['429']).toBeGreaterThan(0);
    expect(counts.faults.timeout).toBeGreaterThan(0);
    expect(counts.retryAfterRepeats).toBeGreaterThan(0);
    expect(counts.retryAfterViolations, `requests repeated before their Retry-After: ${proxies.flatMap((p) => p.violations).join('; ')}`).toBe(0);
    expect(failed, 'evaluations given up').toBe(0);
    expect(lost).toBe(0);
    expect(duplicated).toBe(0);
  });
});
