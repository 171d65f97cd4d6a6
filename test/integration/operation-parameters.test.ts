/**
 * Declared operation parameters and dot ids, over HTTP (issue #6, point 5). Every operation
 * checks its Parameters against its declaration before anything runs: an unknown name, a
 * value[x] of the wrong type, a repeated parameter, a null or unnamed entry is a 400
 * OperationOutcome whose `expression` names the parameter, and nothing is written or queued.
 * The ids `.` and `..` (URL dot-segments) are refused wherever a `Type/id` is read.
 */
import http from 'node:http';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLAIMS_QUEUE } from '../../src/queue/claims.js';
import { EVALUATION_QUEUE, SCREENING_QUEUE } from '../../src/queue/queues.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import { enrolParameters, FNMF, readEnrolment, seedFnmfPatient, seedTeam, sessionEncounter, shift, today, type SeededTeam } from '../fixtures/enrolment.js';
import { startTestService, type TestService } from './harness.js';

let t: TestService;
let team: SeededTeam;
let patientId: string;
let enrolled: { patientId: string; episodeId: string; start: string };
let queues: Queue[];
let writes = 0;

async function jobCount(): Promise<number> {
  const counts = await Promise.all(queues.map((queue) => queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized')));
  return counts.flatMap((c) => Object.values(c)).reduce((sum, n) => sum + n, 0);
}

/** POST with a raw path (no client-side normalisation of dot-segments). */
function rawPost(path: string, body: unknown): Promise<{ status: number; body: any }> {
  const url = new URL(t.url);
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method: 'POST', path, headers: { 'content-type': 'application/fhir+json', 'content-length': String(payload.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Runs `send`, expects a refusal with `status` (and an expression when given), and that nothing was written or queued. */
async function expectRefused(send: () => Promise<{ status: number; body: any }>, status: number, expression?: string): Promise<void> {
  const [writesBefore, jobsBefore] = [writes, await jobCount()];
  const answer = await send();
  expect(answer.status, JSON.stringify(answer.body)).toBe(status);
  expect(answer.body?.resourceType).toBe('OperationOutcome');
  if (expression !== undefined) expect(answer.body.issue[0].expression).toEqual([expression]);
  expect(writes - writesBefore, 'resources written').toBe(0);
  expect((await jobCount()) - jobsBefore, 'jobs queued').toBe(0);
}

const body = (...parameter: unknown[]): unknown => ({ resourceType: 'Parameters', parameter });
const named = (name: string): string => `Parameters.parameter.where(name='${name}')`;

beforeAll(async () => {
  t = await startTestService();
  const repository = t.service.embeddedFhir?.repository;
  if (!repository) throw new Error('this test needs the embedded FHIR server');
  const create = repository.createResource.bind(repository);
  repository.createResource = ((resource) => {
    if (resource.resourceType !== 'AuditEvent' && resource.resourceType !== 'Provenance') writes += 1;
    return create(resource);
  }) as typeof repository.createResource;
  const connection = redisOptionsFromUrl(t.service.redisUrl);
  queues = [EVALUATION_QUEUE, SCREENING_QUEUE, CLAIMS_QUEUE].map((name) => new Queue(name, { connection, prefix: t.prefix }));
  team = await seedTeam(t, 'op-params');
  patientId = await seedFnmfPatient(t, team, 'op-params-eligible');
  const enrolledPatient = await seedFnmfPatient(t, team, 'op-params-enrolled');
  const start = shift(today(), { months: -1 });
  const enrolment = readEnrolment(await t.post(`/fhir/Patient/${enrolledPatient}/$enroll`, enrolParameters({ program: FNMF, start, team: team.as() })));
  enrolled = { patientId: enrolledPatient, episodeId: enrolment.episodeId, start };
  await t.drained();
});

afterAll(async () => {
  await Promise.all((queues ?? []).map((queue) => queue.close()));
  await t?.stop();
});

describe('declared parameters', () => {
  const enrol = (...extra: unknown[]): unknown => {
    const base = enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: team.as() });
    return { ...base, parameter: [...(base.parameter ?? []), ...extra] };
  };

  it('$enroll: options come from the program data, with their types; anything else is a 400', async () => {
    const path = `/fhir/Patient/${patientId}/$enroll`;
    await expectRefused(() => t.post(path, enrol({ name: 'personalisedApa', valueCode: 'yes' })), 400, named('personalisedApa'));
    await expectRefused(() => t.post(path, enrol({ name: 'turboMode', valueBoolean: true })), 400, named('turboMode'));
    await expectRefused(() => t.post(path, enrol(null)), 400);
    await expectRefused(() => t.post(path, enrol({ valueBoolean: true })), 400);
    await expectRefused(() => t.post(path, enrol({ name: 'start', valueDate: today() })), 400, named('start'));
    await expectRefused(() => t.post(path, enrol({ name: 'careTeam', part: [{ name: 'member', valueReference: { reference: team.member('nurse').reference } }] })), 400, `${named('careTeam')}[${team.as().length}].part.where(name='role')`);
  });

  it('$decline, $exit, $add-plan, both $advance', async () => {
    const episode = `/fhir/EpisodeOfCare/${enrolled.episodeId}`;
    await expectRefused(() => t.post(`/fhir/Patient/${patientId}/$decline`, body({ name: 'program', valueString: FNMF })), 400, named('reason'));
    await expectRefused(() => t.post(`/fhir/Patient/${patientId}/$decline`, body({ name: 'program', valueString: FNMF }, { name: 'reason', valueCode: 'distance' }, { name: 'notes', valueString: 'x' })), 400, named('notes'));
    await expectRefused(() => t.post(`${episode}/$exit`, body({ name: 'reason', valueCode: 'withdrew' }, { name: 'reason', valueCode: 'other' })), 400, named('reason'));
    await expectRefused(() => t.post(`${episode}/$exit`, body({ name: 'reason', valueCode: 'withdrew' }, { name: 'date', valueString: today() })), 400, named('date'));
    await expectRefused(() => t.post(`${episode}/$add-plan`, body({ name: 'plan', valueBoolean: true })), 400, named('plan'));
    await expectRefused(() => t.post(`${episode}/$advance`, body({ name: 'asOf', valueDate: today() }, { name: 'program', valueString: FNMF })), 400, named('program'));
    await expectRefused(() => t.post('/fhir/$advance', body({ name: 'asOf', valueDate: today() }, null)), 400, 'Parameters.parameter[1]');
  });

  it('$evaluate-eligibility (POST and GET), $bill, $budget', async () => {
    await expectRefused(() => t.post(`/fhir/Patient/${patientId}/$evaluate-eligibility`, body({ name: 'program', valueString: FNMF }, { name: 'asof', valueDate: today() })), 400, named('asof'));
    await expectRefused(() => t.get(`/fhir/Patient/${patientId}/$evaluate-eligibility?program=${FNMF}&asOf=${today()}&asOf=${today()}`), 400, named('asOf'));
    await expectRefused(() => t.get(`/fhir/Patient/${patientId}/$evaluate-eligibility?program=${FNMF}&debug=1`), 400, named('debug'));
    await expectRefused(() => t.post('/fhir/$bill', body({ name: 'asOf', valueDate: today() }, { name: 'dryRun', valueBoolean: true })), 400, named('dryRun'));
    await expectRefused(() => t.get(`/fhir/$budget?program=${FNMF}&program=rediab`), 400, named('program'));
    await expectRefused(() => t.get(`/fhir/$budget?program=${FNMF}&centre=Organization/..`), 400, named('centre'));
    await expectRefused(() => t.get(`/fhir/$budget?program=${FNMF}&centre=${encodeURIComponent(`Organization/${team.organizationId},Organization/x`)}`), 400, named('centre'));
  });

  it('valid Parameters still run (the GET query typed by the declaration)', async () => {
    const answer = await t.get(`/fhir/Patient/${patientId}/$evaluate-eligibility?program=${FNMF}&asOf=${today()}&_format=json`);
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.resourceType).toBe('Parameters');
  });
});

describe('dot ids', () => {
  it.each(['.', '..', '%2e', '%2E%2E'])('the id %j in an operation path is a 400 (never the type or the base)', async (id) => {
    await expectRefused(() => rawPost(`/fhir/EpisodeOfCare/${id}/$exit`, body({ name: 'reason', valueCode: 'withdrew' })), 400);
    await expectRefused(() => rawPost(`/fhir/Patient/${id}/$evaluate-eligibility`, body({ name: 'program', valueString: FNMF })), 400);
  });

  it('a care-team member, a consent or a session episode `Type/..` is refused, never read', async () => {
    const path = `/fhir/Patient/${patientId}/$enroll`;
    const start = shift(today(), { months: -1 });
    const dotted = [...team.as().filter((m) => m.role !== 'nurse'), { reference: 'PractitionerRole/..', role: 'nurse' }];
    await expectRefused(() => t.post(path, enrolParameters({ program: FNMF, start, team: dotted })), 422);
    await expectRefused(() => t.post(path, enrolParameters({ program: FNMF, start, team: team.as(), consent: 'Consent/..' })), 422);
    const session = sessionEncounter({ patientId: enrolled.patientId, episodeId: '..', kind: 'apa-group', date: shift(enrolled.start, { days: 7 }), member: { reference: team.member('apa-teacher').reference, role: 'apa-teacher' }, identifier: 'op-params-dot-session' });
    const answer = await t.post('/fhir/Encounter', session);
    expect(answer.status, JSON.stringify(answer.body)).toBeGreaterThanOrEqual(400);
    expect(answer.status).toBeLessThan(500);
  });
});
