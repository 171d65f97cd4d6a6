/**
 * Fault 4: the insurer gateway down for a while, then back. The gateway (its own process,
 * test/faults/gateway-process.ts) is stopped; 40 enrolments then fall due (the first through
 * `$enroll` before the stop, the others copies queued for generation one after the other);
 * the first submission finds the gateway unavailable (connection refused) and pauses the whole
 * claims queue (BullMQ manual rate limit): the backlog waits, in order, in the wait list. The
 * gateway is started again on the same port: the backlog drains, each claim received once, and
 * `/metrics` shows it (`forfait_gateway_paused` 1 and the claims waiting while down; 0 and
 * none waiting once drained; completed up).
 *
 * Order: submissions start in the order the claims fell due (generation order), up to the
 * claims worker's concurrency: a probe that meets the gateway still down puts its (at most 4)
 * claims back at the head of the line in the order they failed.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { enrol, seedAssociation, seedRediabPatient2002 } from '../fixtures/billing.js';
import { REDIAB, seedRediabTeam } from '../fixtures/enrolment.js';
import { eventually, fhirAll, http, metricValue, report, Scenario } from './harness.js';
import { cloneEnrolment } from './seed.js';
import { idle, readJournal, startGateway, startStack, submissionsPerKey, type Gateway, type Stack } from './stack.js';

const BACKLOG = 40;
const CLAIM_SYSTEM = 'http://forfait-fhir.org/fhir/PlanDefinition/rediab/claim';
/** The claims worker runs 4 jobs at once: claims within that window may pass each other. */
const CLAIMS_CONCURRENCY = 4;

const scenario = new Scenario('gateway-down');
let gateway: Gateway;
let stack: Stack;
/** Claim keys in the order their submission jobs were created (the order they fell due). */
let dueOrder: string[] = [];
/** Claim keys in the order their submission jobs last started (the attempt that succeeded). */
let startOrder: string[] = [];
/** Claim keys in the order the gateway accepted them once back. */
let drainOrder: string[] = [];

async function claimsMetrics(): Promise<{ delayed: number; waiting: number; completed: number; failed: number; paused: number; pausedSeconds: number }> {
  const text = (await http('GET', `${stack.api.url}/metrics`)).body as string;
  const of = (state: string): number => metricValue(text, 'forfait_queue_jobs', { queue: 'claims', state });
  return {
    delayed: of('delayed'),
    waiting: of('waiting'),
    completed: of('completed'),
    failed: of('failed'),
    paused: metricValue(text, 'forfait_gateway_paused'),
    pausedSeconds: metricValue(text, 'forfait_queue_paused_seconds', { queue: 'claims' }),
  };
}

beforeAll(async () => {
  gateway = await startGateway(scenario);
  stack = await startStack(scenario, { workers: 1, env: { GATEWAY_BASE_URL: gateway.url, GATEWAY_TIMEOUT_MS: '2000' } });
}, 180_000);

afterAll(async () => {
  await scenario.cleanup();
}, 60_000);

describe('insurer gateway down for a while, then back', () => {
  it('drains the backlog once it is back, each claim received once, and /metrics shows it', { timeout: 420_000 }, async () => {
    onTestFailed(() => {
      scenario.writeLogs();
    });
    const { t, claims } = stack;
    const team = await seedRediabTeam(t, `${scenario.prefix}-rediab`, ['gp']);
    await seedAssociation(t);
    const first = await seedRediabPatient2002(t, team, `${scenario.prefix}-R`);
    const enrolled = await enrol(t, first.patientId, { program: REDIAB, start: '2004-06-01', team: team.as(['gp']), consent: first.consent });
    await eventually('first claim accepted', async () => (submissionsPerKey(readJournal(gateway)).accepted.size === 1 ? true : undefined), 60_000);
    const firstKey = [...submissionsPerKey(readJournal(gateway)).accepted.keys()][0] as string;
    const before = await claimsMetrics();
    expect(before.paused).toBe(0);

    // Down: connection refused on the gateway's port.
    const stopped = await gateway.proc.stop();
    expect(stopped.code).toBe(0);
    const episodes = await cloneEnrolment(t, enrolled.episodeId, BACKLOG);
    // Queued in one go, in the order in which they fall due (generation jobs share the claims
    // queue: queued together, they all run before the first submission pauses the queue).
    await claims.addBulk(
      episodes.map((episodeId) => ({
        name: 'generate',
        data: { kind: 'generate' as const, episodeId },
        opts: { jobId: `generate.${episodeId}.faults`, attempts: 10, backoff: { type: 'custom' }, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } },
      })),
    );
    // The queue is paused and the whole backlog waits in line: not delayed per claim, no attempt used, none failed.
    const down = await eventually(
      'the whole backlog waiting for the gateway',
      async () => {
        const waiting = (await claims.getWaiting()).filter((job) => String(job.id).startsWith('submit.'));
        const metrics = await claimsMetrics();
        return waiting.length === BACKLOG && metrics.paused === 1 ? { metrics, waiting } : undefined;
      },
      120_000,
      500,
    );
    expect(down.waiting.every((job) => job.attemptsMade === 0), 'a pause uses no attempt').toBe(true);
    expect((await claims.getDelayed()).filter((job) => String(job.id).startsWith('submit.')), 'no submission delayed on its own').toEqual([]);
    expect(down.metrics.waiting, '/metrics: claims waiting while the gateway is down').toBeGreaterThanOrEqual(BACKLOG);
    expect(down.metrics.pausedSeconds, '/metrics: seconds left of the pause').toBeGreaterThan(0);
    expect(down.metrics.failed).toBe(0);

    // Back, on the same port.
    await gateway.proc.start(/gateway listening on/);
    await eventually('backlog drained', async () => (submissionsPerKey(readJournal(gateway)).accepted.size >= BACKLOG + 1 ? true : undefined), 300_000, 1000);
    await idle(claims, 120_000);
    const after = await claimsMetrics();

    const seen = submissionsPerKey(readJournal(gateway));
    const stored = (await fhirAll<fhir4.Claim>(t.fhirUrl, 'Claim')).filter((claim) => claim.identifier?.[0]?.system === CLAIM_SYSTEM);
    const keyOfClaim = new Map(stored.map((claim) => [claim.id as string, `${CLAIM_SYSTEM}|${claim.identifier?.[0]?.value ?? ''}`]));
    const jobs = await Promise.all([...keyOfClaim.keys()].map(async (id) => ({ key: keyOfClaim.get(id) as string, job: await claims.getJob(`submit.${id}`) })));
    const backlogJobs = jobs.filter(({ key, job }) => job !== undefined && key !== firstKey);
    dueOrder = [...backlogJobs].sort((a, b) => (a.job?.timestamp ?? 0) - (b.job?.timestamp ?? 0)).map(({ key }) => key);
    // Ties (same millisecond) keep the due order: nothing orders them.
    startOrder = [...backlogJobs]
      .sort((a, b) => (a.job?.processedOn ?? 0) - (b.job?.processedOn ?? 0) || dueOrder.indexOf(a.key) - dueOrder.indexOf(b.key))
      .map(({ key }) => key);
    // Started more than once: the backlog really waited for the gateway (at least the first probe).
    const restarted = backlogJobs.filter(({ job }) => (job?.attemptsStarted ?? 0) > 1).length;
    const backlogKeys = new Set(dueOrder);
    drainOrder = readJournal(gateway)
      .filter((entry) => entry.route === 'submit' && entry.status === 200 && entry.key && backlogKeys.has(entry.key))
      .map((entry) => entry.key as string);
    const lost = BACKLOG + 1 - seen.accepted.size;
    const duplicated = [...seen.received.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
    report('gateway-down (metrics)', {
      'paused before': before.paused,
      'paused while down': down.metrics.paused,
      'paused after': after.paused,
      'waiting while down': down.metrics.waiting,
      'waiting after': after.waiting,
      'delayed while down': down.metrics.delayed,
      'completed before': before.completed,
      'completed after': after.completed,
      'failed after': after.failed,
    });
    report('gateway-down', { backlog: BACKLOG, drained: drainOrder.length, 'submissions started more than once (paused)': restarted, lost, duplicated });

    expect(stored).toHaveLength(BACKLOG + 1);
    expect(lost).toBe(0);
    expect(duplicated, 'claims received twice').toBe(0);
    expect(dueOrder).toHaveLength(BACKLOG);
    expect(drainOrder).toHaveLength(BACKLOG);
    expect(restarted, 'submissions put back by the pause').toBeGreaterThanOrEqual(1);
    // /metrics: the pause is over, nothing waits, nothing left delayed but the daily scheduler's next run; the backlog completed.
    expect(after.paused).toBe(0);
    expect(after.waiting).toBe(0);
    expect(after.delayed).toBe(before.delayed);
    expect(after.failed).toBe(0);
    expect(after.completed - before.completed).toBeGreaterThanOrEqual(BACKLOG);
  });

  /**
   * Submissions start in the order their claims fell due, up to the worker's concurrency: a probe
   * that meets the gateway still down puts its (at most CLAIMS_CONCURRENCY) claims back at the
   * head of the line in the order they failed. The order the gateway receives them is reported
   * too: running at once, claims may also pass each other on the way (a slower FHIR read).
   */
  it('starts the backlog\'s submissions in the order the claims fell due (within the worker concurrency)', () => {
    expect(startOrder).toHaveLength(BACKLOG);
    const displacement = (order: string[]): number => Math.max(...order.map((key, index) => Math.abs(index - dueOrder.indexOf(key))));
    report('gateway-down (order)', { 'largest displacement, start': displacement(startOrder), 'largest displacement, received by the gateway': displacement(drainOrder), allowed: CLAIMS_CONCURRENCY - 1 });
    expect(displacement(startOrder)).toBeLessThan(CLAIMS_CONCURRENCY);
  });
});
