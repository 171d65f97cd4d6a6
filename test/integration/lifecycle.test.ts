/**
 * How an enrolment moves through time and ends, over HTTP (issue #3, points 3, 5 and 6):
 * `$advance` (idempotent, to any date, so no test waits on the clock), `$exit`, `$add-plan`
 * (REDIAB complementary education) and `$decline`. Every resource the adapter rewrites is read
 * back from the FHIR server and validated against R4 and its profile.
 *
 * `$advance` moves every open enrolment of the service; each test enrols its own patients
 * with dates relative to today, and statuses never move backwards, so the tests do not
 * depend on their order.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertValid } from '../../src/fhir/validation.js';
import {
  carePlansOf,
  enrolParameters,
  exitReasonOf,
  expectOutcome,
  FNMF,
  footprint,
  idOf,
  oneActivity,
  onePlan,
  paramNamed,
  parameters,
  planEnd,
  plansWithCode,
  PROFILES,
  readEnrolment,
  readResource,
  REDIAB,
  search,
  seedFnmfPatient,
  seedRediabPatient,
  seedRediabTeam,
  seedTeam,
  shift,
  SYSTEMS,
  today,
  type SeededTeam,
} from '../fixtures/enrolment.js';
import { startTestService, type TestService } from './harness.js';

let t: TestService;
let team: SeededTeam;
let rediabTeam: SeededTeam;

beforeAll(async () => {
  t = await startTestService();
  team = await seedTeam(t, 'lifecycle-fnmf');
  rediabTeam = await seedRediabTeam(t, 'lifecycle-rediab');
});

afterAll(async () => {
  await t?.stop();
});

interface Enrolled {
  patientId: string;
  episodeId: string;
  careTeamId: string;
  start: string;
}

async function enrolFnmf(label: string, start = shift(today(), { months: -1 })): Promise<Enrolled> {
  const patientId = await seedFnmfPatient(t, team, label);
  const response = await t.post(`/fhir/Patient/${patientId}/$enroll`, enrolParameters({ program: FNMF, start, team: team.as() }));
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  const enrolment = readEnrolment(response);
  return { patientId, episodeId: enrolment.episodeId, careTeamId: enrolment.careTeamId, start };
}

async function enrolRediab(label: string, roles?: readonly string[]): Promise<Enrolled> {
  const { patientId, consent } = await seedRediabPatient(t, rediabTeam, label);
  const start = shift(today(), { months: -1 });
  const response = await t.post(`/fhir/Patient/${patientId}/$enroll`, enrolParameters({ program: REDIAB, start, team: rediabTeam.as(roles), consent }));
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  const enrolment = readEnrolment(response);
  return { patientId, episodeId: enrolment.episodeId, careTeamId: enrolment.careTeamId, start };
}

async function advance(asOf: string, program?: string): Promise<{ episodes: number; carePlansWritten: number }> {
  const response = await t.post('/fhir/$advance', parameters({ name: 'asOf', valueDate: asOf }, ...(program ? [{ name: 'program', valueString: program }] : [])));
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  expect(response.body.resourceType).toBe('Parameters');
  const episodes = paramNamed(response.body, 'episodes')?.valueInteger ?? paramNamed(response.body, 'episodes')?.valueUnsignedInt;
  const carePlansWritten = paramNamed(response.body, 'carePlansWritten')?.valueInteger ?? paramNamed(response.body, 'carePlansWritten')?.valueUnsignedInt;
  expect(typeof episodes, JSON.stringify(response.body)).toBe('number');
  expect(typeof carePlansWritten, JSON.stringify(response.body)).toBe('number');
  return { episodes: episodes as number, carePlansWritten: carePlansWritten as number };
}

/** The episode and its CarePlans, each validated against R4 and its profile. */
async function state(enrolled: Enrolled): Promise<{ episode: fhir4.EpisodeOfCare; careTeam: fhir4.CareTeam; carePlans: fhir4.CarePlan[] }> {
  const episode = await readResource<fhir4.EpisodeOfCare>(t, 'EpisodeOfCare', enrolled.episodeId);
  const careTeam = await readResource<fhir4.CareTeam>(t, 'CareTeam', enrolled.careTeamId);
  const carePlans = await carePlansOf(t, enrolled.patientId, enrolled.episodeId);
  assertValid(episode, [PROFILES.episodeOfCare]);
  assertValid(careTeam, [PROFILES.careTeam]);
  for (const carePlan of carePlans) assertValid(carePlan, [PROFILES.carePlan]);
  return { episode, careTeam, carePlans };
}

describe('$advance', () => {
  it('FNMF: on the intensive end date nothing moves; the day after, intensive completed and consolidation active; the same asOf again writes nothing', async () => {
    const enrolled = await enrolFnmf('advance-fnmf-phase');
    const intensiveEnd = planEnd(enrolled.start, 4);

    await advance(intensiveEnd, FNMF);
    let current = await state(enrolled);
    expect(onePlan(current.carePlans, 'intensive').status).toBe('active');
    expect(onePlan(current.carePlans, 'consolidation').status).toBe('draft');

    const dayAfter = shift(intensiveEnd, { days: 1 });
    const first = await advance(dayAfter, FNMF);
    expect(first.episodes).toBeGreaterThanOrEqual(1);
    expect(first.carePlansWritten).toBeGreaterThanOrEqual(2);
    current = await state(enrolled);
    const intensive = onePlan(current.carePlans, 'intensive');
    const consolidation = onePlan(current.carePlans, 'consolidation');
    expect(intensive.status).toBe('completed');
    // No session was recorded: the activities were never started.
    expect(oneActivity(intensive, 'apa-group').detail?.status).toBe('cancelled');
    expect(consolidation.status).toBe('active');
    expect(consolidation.period?.start).toBe(dayAfter);
    expect(current.episode.status).toBe('active');
    const versions = current.carePlans.map((plan) => `${plan.id}@${plan.meta?.versionId}`).sort();

    const second = await advance(dayAfter, FNMF);
    expect(second.carePlansWritten).toBe(0);
    expect((await state(enrolled)).carePlans.map((plan) => `${plan.id}@${plan.meta?.versionId}`).sort()).toEqual(versions);

    // An earlier date never moves anything back.
    const earlier = await advance(enrolled.start, FNMF);
    expect(earlier.carePlansWritten).toBe(0);
    expect(onePlan((await state(enrolled)).carePlans, 'consolidation').status).toBe('active');
  });

  it('a planned episode becomes active on its start date', async () => {
    const enrolled = await enrolFnmf('advance-planned', shift(today(), { days: 10 }));
    expect((await state(enrolled)).episode.status).toBe('planned');
    await advance(shift(enrolled.start, { days: -1 }), FNMF);
    expect((await state(enrolled)).episode.status).toBe('planned');
    await advance(enrolled.start, FNMF);
    const current = await state(enrolled);
    expect(current.episode.status).toBe('active');
    expect(onePlan(current.carePlans, 'intensive').status).toBe('active');
    expect(onePlan(current.carePlans, 'consolidation').status).toBe('draft');
  });

  it('REDIAB: past the first follow-up year, the second year CarePlan exists (podiatric follow-up too)', async () => {
    const enrolled = await enrolRediab('advance-rediab');
    let current = await state(enrolled);
    expect(plansWithCode(current.carePlans, 'follow-up')).toHaveLength(1);
    const year1End = planEnd(enrolled.start, 16);

    // Inside the first follow-up year: initial education over, year 1 active, no year 2 yet.
    await advance(shift(enrolled.start, { months: 5 }), REDIAB);
    current = await state(enrolled);
    expect(onePlan(current.carePlans, 'initial-education').status).toBe('completed');
    expect(onePlan(current.carePlans, 'follow-up').status).toBe('active');
    expect(plansWithCode(current.carePlans, 'podiatric-follow-up')).toHaveLength(1);

    const year2Start = shift(year1End, { days: 1 });
    await advance(year2Start, REDIAB);
    current = await state(enrolled);
    const followUps = plansWithCode(current.carePlans, 'follow-up');
    expect(followUps.map((plan) => plan.period)).toEqual([
      { start: shift(enrolled.start, { months: 4 }), end: year1End },
      { start: year2Start, end: planEnd(enrolled.start, 28) },
    ]);
    expect(followUps.map((plan) => plan.status)).toEqual(['completed', 'active']);
    const podiatric = plansWithCode(current.carePlans, 'podiatric-follow-up');
    expect(podiatric.map((plan) => plan.period)).toEqual([
      { start: enrolled.start, end: planEnd(enrolled.start, 12) },
      { start: shift(enrolled.start, { months: 12 }), end: planEnd(enrolled.start, 24) },
    ]);
    expect(podiatric.map((plan) => plan.status)).toEqual(['completed', 'active']);
    // The new year's plan has its activities, in the same episode and team.
    const year2 = followUps[1] as fhir4.CarePlan;
    expect(oneActivity(year2, 'gp-consultation').detail?.scheduledTiming?.repeat?.count).toBe(4);
    expect(year2.careTeam?.map((reference) => idOf(reference, 'CareTeam'))).toEqual([enrolled.careTeamId]);
    expect(current.episode.status).toBe('active');

    const again = await advance(year2Start, REDIAB);
    expect(again.carePlansWritten).toBe(0);
    expect(plansWithCode((await state(enrolled)).carePlans, 'follow-up')).toHaveLength(2);
  });

  it('several $advance at once (operators and the daily job) both succeed and write each new period once', async () => {
    const enrolled = await enrolRediab('advance-concurrent', ['gp', 'nurse', 'sports-educator']);
    const year2Start = shift(planEnd(enrolled.start, 16), { days: 1 });
    const answers = await Promise.all(
      [1, 2, 3].map(() => t.post('/fhir/$advance', parameters({ name: 'asOf', valueDate: year2Start }, { name: 'program', valueString: REDIAB }))),
    );
    const current = await state(enrolled);
    expect(plansWithCode(current.carePlans, 'follow-up').map((plan) => plan.status)).toEqual(['completed', 'active']);
    expect(onePlan(current.carePlans, 'initial-education').status).toBe('completed');
    expect(answers.map((a) => a.status), JSON.stringify(answers.map((a) => a.body))).toEqual([200, 200, 200]);
  });

  it('FNMF past 24 months: the episode is finished with exit reason completed, every plan completed', async () => {
    const enrolled = await enrolFnmf('advance-fnmf-end');
    const end = planEnd(enrolled.start, 24);
    await advance(end, FNMF);
    expect((await state(enrolled)).episode.status).toBe('active');

    await advance(shift(end, { days: 1 }), FNMF);
    const current = await state(enrolled);
    expect(current.episode.status).toBe('finished');
    expect(current.episode.period?.end).toBeTruthy();
    expect(exitReasonOf(current.episode)?.coding).toContainEqual(expect.objectContaining({ system: SYSTEMS.exitReason, code: 'completed' }));
    expect(current.carePlans.map((plan) => plan.status)).toEqual(['completed', 'completed']);

    const again = await advance(shift(end, { days: 1 }), FNMF);
    expect(again.carePlansWritten).toBe(0);
    expect((await readResource<fhir4.EpisodeOfCare>(t, 'EpisodeOfCare', enrolled.episodeId)).meta?.versionId).toBe(current.episode.meta?.versionId);
  });
});

describe('$exit', () => {
  it('withdrew: episode finished with period.end and the reason, active and draft plans revoked; the same exit again: 200, no change', async () => {
    const enrolled = await enrolFnmf('exit-withdrew');
    const date = today();
    const response = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'withdrew' }, { name: 'date', valueDate: date }));
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body.resourceType).toBe('Parameters');
    const referenced = (response.body.parameter as fhir4.ParametersParameter[]).map((p) => p.valueReference?.reference ?? '');
    expect(referenced.some((r) => r.includes(`EpisodeOfCare/${enrolled.episodeId}`))).toBe(true);

    const current = await state(enrolled);
    expect(current.episode.status).toBe('finished');
    expect(current.episode.period).toEqual({ start: enrolled.start, end: date });
    expect(exitReasonOf(current.episode)?.coding).toContainEqual(expect.objectContaining({ system: SYSTEMS.exitReason, code: 'withdrew' }));
    expect(onePlan(current.carePlans, 'intensive').status).toBe('revoked');
    expect(onePlan(current.carePlans, 'consolidation').status).toBe('revoked');
    const versions = [current.episode, ...current.carePlans].map((r) => `${r.id}@${r.meta?.versionId}`).sort();

    const again = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'withdrew' }, { name: 'date', valueDate: date }));
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    const after = await state(enrolled);
    expect([after.episode, ...after.carePlans].map((r) => `${r.id}@${r.meta?.versionId}`).sort()).toEqual(versions);

    // Nothing stays scheduled: advancing past every date leaves the exited enrolment as it is.
    await advance(shift(enrolled.start, { months: 30 }), FNMF);
    const later = await state(enrolled);
    expect([later.episode, ...later.carePlans].map((r) => `${r.id}@${r.meta?.versionId}`).sort()).toEqual(versions);
  });

  it('a different exit of an ended episode is a 409 conflict; an unknown episode is 404', async () => {
    const enrolled = await enrolFnmf('exit-conflict');
    expect((await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'withdrew' }))).status).toBe(200);
    const before = await state(enrolled);
    const other = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'deceased' }));
    expectOutcome(other, 409);
    expect(exitReasonOf((await state(enrolled)).episode)?.coding?.[0]?.code).toBe('withdrew');
    expect((await state(enrolled)).episode.meta?.versionId).toBe(before.episode.meta?.versionId);
    expectOutcome(await t.post('/fhir/EpisodeOfCare/no-such-episode/$exit', parameters({ name: 'reason', valueCode: 'withdrew' })), 404);
  });

  it('without a date the exit is dated today', async () => {
    const enrolled = await enrolFnmf('exit-today');
    const response = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'moved-away' }));
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect((await state(enrolled)).episode.period?.end).toBe(today());
  });

  it('completed: the active plan is completed, the draft one revoked', async () => {
    const enrolled = await enrolFnmf('exit-completed');
    const response = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'completed' }));
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const current = await state(enrolled);
    expect(current.episode.status).toBe('finished');
    expect(onePlan(current.carePlans, 'intensive').status).toBe('completed');
    expect(onePlan(current.carePlans, 'consolidation').status).toBe('revoked');
  });

  it('other needs a text: 422 without it, 200 with it (the text recorded)', async () => {
    const enrolled = await enrolFnmf('exit-other');
    const before = await state(enrolled);
    const refused = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'other' }));
    expect(expectOutcome(refused, 422)).toMatch(/text/i);
    expect((await readResource<fhir4.EpisodeOfCare>(t, 'EpisodeOfCare', enrolled.episodeId)).meta?.versionId).toBe(before.episode.meta?.versionId);

    const accepted = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'other' }, { name: 'text', valueString: 'Joined another prevention program' }));
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
    const reason = exitReasonOf((await state(enrolled)).episode);
    expect(reason?.coding?.[0]?.code).toBe('other');
    expect(reason?.text).toBe('Joined another prevention program');
  });

  it('an unknown reason: 422, nothing changed', async () => {
    const enrolled = await enrolFnmf('exit-unknown');
    const before = await state(enrolled);
    const refused = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'bored' }));
    expect(expectOutcome(refused, 422)).toContain('bored');
    const after = await state(enrolled);
    expect(after.episode.status).toBe('active');
    expect([after.episode, ...after.carePlans].map((r) => r.meta?.versionId)).toEqual([before.episode, ...before.carePlans].map((r) => r.meta?.versionId));
  });

  it('an exited patient can be enrolled again (a new episode)', async () => {
    const enrolled = await enrolFnmf('exit-reenrol');
    expect((await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'lost-to-follow-up' }))).status).toBe(200);
    const again = await t.post(`/fhir/Patient/${enrolled.patientId}/$enroll`, enrolParameters({ program: FNMF, start: today(), team: team.as() }));
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(readEnrolment(again).episodeId).not.toBe(enrolled.episodeId);
    expect((await footprint(t, enrolled.patientId)).episodes).toBe(2);
  });
});

describe('$add-plan (REDIAB complementary education)', () => {
  it('opens a 6-month plan (201); a second one while it is open: 409; nothing duplicated', async () => {
    const enrolled = await enrolRediab('add-plan', ['gp', 'nurse', 'sports-educator', 'dietitian']);
    const start = today();
    const response = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$add-plan`, parameters({ name: 'plan', valueCode: 'complementary-education' }, { name: 'start', valueDate: start }));
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const carePlanId = idOf(paramNamed(response.body, 'carePlan')?.valueReference, 'CarePlan');
    const carePlan = await readResource<fhir4.CarePlan>(t, 'CarePlan', carePlanId);
    assertValid(carePlan, [PROFILES.carePlan]);
    expect(carePlan.status).toBe('active');
    expect(carePlan.period).toEqual({ start, end: planEnd(start, 6) });
    expect(carePlan.category?.flatMap((c) => c.coding ?? [])).toContainEqual(expect.objectContaining({ system: SYSTEMS.planCode, code: 'complementary-education' }));
    expect(carePlan.subject.reference).toBe(`Patient/${enrolled.patientId}`);
    expect(oneActivity(carePlan, 'education-workshop').detail?.performer?.map((p) => p.reference)).toEqual([rediabTeam.member('dietitian').reference]);
    const plansBefore = (await footprint(t, enrolled.patientId)).carePlans;

    const second = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$add-plan`, parameters({ name: 'plan', valueCode: 'complementary-education' }, { name: 'start', valueDate: shift(start, { days: 7 }) }));
    expectOutcome(second, 409);
    expect((await footprint(t, enrolled.patientId)).carePlans).toBe(plansBefore);

    // The identical request again (a retry) never opens a second plan either.
    const retry = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$add-plan`, parameters({ name: 'plan', valueCode: 'complementary-education' }, { name: 'start', valueDate: start }));
    expect([200, 409]).toContain(retry.status);
    expect((await footprint(t, enrolled.patientId)).carePlans).toBe(plansBefore);
  });

  it('the complementary-education code on an FNMF episode: 422, nothing written', async () => {
    const enrolled = await enrolFnmf('add-plan-fnmf');
    const before = await footprint(t, enrolled.patientId);
    const response = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$add-plan`, parameters({ name: 'plan', valueCode: 'complementary-education' }));
    expect(expectOutcome(response, 422)).toContain('complementary-education');
    expect(await footprint(t, enrolled.patientId)).toEqual(before);
  });
});

describe('$decline', () => {
  it('an eligible patient declines: the proposal Task is rejected with the coded reason', async () => {
    const patientId = await seedFnmfPatient(t, team, 'decline-1');
    await t.drained();
    const [proposal] = await search<fhir4.Task>(t, 'Task', { subject: `Patient/${patientId}` });
    expect(proposal?.status, 'the screening proposed enrolment to the GP').toBe('requested');

    const response = await t.post(
      `/fhir/Patient/${patientId}/$decline`,
      parameters({ name: 'program', valueString: FNMF }, { name: 'reason', valueCode: 'distance' }, { name: 'text', valueString: 'Centre too far from home' }),
    );
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const taskId = idOf(paramNamed(response.body, 'task')?.valueReference, 'Task');
    expect(taskId).toBe(proposal?.id);
    const task = await readResource<fhir4.Task>(t, 'Task', taskId);
    assertValid(task, [PROFILES.task]);
    expect(task.status).toBe('rejected');
    expect(task.statusReason?.coding).toContainEqual(expect.objectContaining({ system: SYSTEMS.declineReason, code: 'distance' }));
    expect(await search(t, 'Task', { subject: `Patient/${patientId}` })).toHaveLength(1);
    expect((await footprint(t, patientId)).episodes).toBe(0);
  });

  it('the same decline again: 200, the Task unchanged', async () => {
    const patientId = await seedFnmfPatient(t, team, 'decline-again');
    await t.drained();
    const body = parameters({ name: 'program', valueString: FNMF }, { name: 'reason', valueCode: 'not-interested' });
    const first = await t.post(`/fhir/Patient/${patientId}/$decline`, body);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    const taskId = idOf(paramNamed(first.body, 'task')?.valueReference, 'Task');
    const version = (await readResource<fhir4.Task>(t, 'Task', taskId)).meta?.versionId;
    const again = await t.post(`/fhir/Patient/${patientId}/$decline`, body);
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect((await readResource<fhir4.Task>(t, 'Task', taskId)).meta?.versionId).toBe(version);
  });

  it('a patient who is not eligible and has no proposal: 422', async () => {
    const patientId = await seedFnmfPatient(t, team, 'decline-not-eligible', { glucose: 1.4 });
    await t.drained();
    expect(await search(t, 'Task', { subject: `Patient/${patientId}` })).toHaveLength(0);
    const response = await t.post(`/fhir/Patient/${patientId}/$decline`, parameters({ name: 'program', valueString: FNMF }, { name: 'reason', valueCode: 'no-time' }));
    expectOutcome(response, 422);
    expect(await search(t, 'Task', { subject: `Patient/${patientId}` })).toHaveLength(0);
  });
});
