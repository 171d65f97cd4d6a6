/**
 * Care sessions over HTTP (issue #3, point 4): `POST /fhir/Encounter` and batch Bundles for an
 * enrolled patient. A session is checked against the enrolment (active episode, date inside an
 * active phase, participant in the care team, known kind planned in the phase), stored, linked
 * from the matching CarePlan activity (`outcomeReference`) and counted (session-count
 * extension); a re-sent session (same identifier) is counted once; concurrent sessions are all
 * counted. Refused sessions write nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertValid } from '../../src/fhir/validation.js';
import {
  carePlansOf,
  enrolParameters,
  expectOutcome,
  FNMF,
  footprint,
  idOf,
  oneActivity,
  onePlan,
  outcomeReferences,
  parameters,
  PROFILES,
  readEnrolment,
  readResource,
  search,
  seedFnmfPatient,
  seedTeam,
  sessionCount,
  sessionEncounter,
  shift,
  today,
  type SeededTeam,
  type SessionInput,
} from '../fixtures/enrolment.js';
import { startTestService, type TestService } from './harness.js';

let t: TestService;
let team: SeededTeam;

beforeAll(async () => {
  t = await startTestService();
  // The FNMF team, plus an APA teacher of the centre who is in no patient's team.
  team = await seedTeam(t, 'sessions', ['gp', 'apa-teacher', 'dietitian', 'nurse', 'psychologist', 'outsider']);
});

afterAll(async () => {
  await t?.stop();
});

const FNMF_TEAM = ['gp', 'apa-teacher', 'dietitian', 'nurse', 'psychologist'];

interface Enrolled {
  patientId: string;
  episodeId: string;
  start: string;
}

/** An FNMF patient enrolled a month ago (intensive phase active, consolidation draft). */
async function enrolledPatient(label: string): Promise<Enrolled> {
  const patientId = await seedFnmfPatient(t, team, label);
  const start = shift(today(), { months: -1 });
  const response = await t.post(`/fhir/Patient/${patientId}/$enroll`, enrolParameters({ program: FNMF, start, team: team.as(FNMF_TEAM) }));
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return { patientId, episodeId: readEnrolment(response).episodeId, start };
}

function session(enrolled: Enrolled, identifier: string, overrides: Partial<SessionInput> = {}): fhir4.Encounter {
  return sessionEncounter({
    patientId: enrolled.patientId,
    episodeId: enrolled.episodeId,
    kind: 'apa-group',
    date: shift(enrolled.start, { days: 7 }),
    member: { reference: team.member('apa-teacher').reference, role: 'apa-teacher' },
    identifier,
    ...overrides,
  });
}

async function intensivePlan(enrolled: Enrolled): Promise<fhir4.CarePlan> {
  return onePlan(await carePlansOf(t, enrolled.patientId, enrolled.episodeId), 'intensive');
}

/** Session count and outcome references of an activity of the intensive plan. */
async function recorded(enrolled: Enrolled, kind: string): Promise<{ count: number | undefined; references: string[] }> {
  const activity = oneActivity(await intensivePlan(enrolled), kind);
  return { count: sessionCount(activity), references: outcomeReferences(activity) };
}

describe('POST /fhir/Encounter', () => {
  it('records a session: 201 with the stored Encounter, linked from the apa-group activity, count 1; re-sent: 200, count stays 1', async () => {
    const enrolled = await enrolledPatient('session-1');
    expect(await recorded(enrolled, 'apa-group')).toEqual({ count: 0, references: [] });

    const first = await t.post('/fhir/Encounter', session(enrolled, 'session-1-a'));
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    const encounter = first.body as fhir4.Encounter;
    expect(encounter.resourceType).toBe('Encounter');
    expect(encounter.id).toBeTruthy();
    const encounterId = encounter.id as string;
    const stored = await readResource<fhir4.Encounter>(t, 'Encounter', encounterId);
    assertValid(stored, [PROFILES.encounter]);
    expect(stored.identifier?.[0]?.value).toBe('session-1-a');

    const afterFirst = await recorded(enrolled, 'apa-group');
    expect(afterFirst.count).toBe(1);
    expect(afterFirst.references.map((r) => idOf(r, 'Encounter'))).toEqual([encounterId]);
    const plan = await intensivePlan(enrolled);
    assertValid(plan, [PROFILES.carePlan]);
    expect(oneActivity(plan, 'apa-group').detail?.status).toBe('in-progress');
    expect(sessionCount(oneActivity(plan, 'dietary'))).toBe(0);

    const again = await t.post('/fhir/Encounter', session(enrolled, 'session-1-a'));
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body.id).toBe(encounterId);
    expect((await recorded(enrolled, 'apa-group')).count).toBe(1);
    expect((await footprint(t, enrolled.patientId)).encounters).toBe(1);
    expect((await intensivePlan(enrolled)).meta?.versionId).toBe(plan.meta?.versionId);
  });

  it('a session by a PractitionerRole of the team for its other activity kind (resource platform, APA teacher) counts there', async () => {
    const enrolled = await enrolledPatient('session-platform');
    const response = await t.post('/fhir/Encounter', session(enrolled, 'session-platform-1', { kind: 'resource-platform' }));
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect((await recorded(enrolled, 'resource-platform')).count).toBe(1);
    expect((await recorded(enrolled, 'apa-group')).count).toBe(0);
  });
});

describe('session dates and re-sending', () => {
  it('the session day is the local date in Europe/Paris: 23:30 UTC the evening before the start is the start day', async () => {
    const enrolled = await enrolledPatient('session-zone');
    const encounter = session(enrolled, 'session-zone-1');
    encounter.period = { start: `${shift(enrolled.start, { days: -1 })}T23:30:00Z` };
    const response = await t.post('/fhir/Encounter', encounter);
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect((await recorded(enrolled, 'apa-group')).count).toBe(1);

    const dayBefore = session(enrolled, 'session-zone-2');
    dayBefore.period = { start: `${shift(enrolled.start, { days: -1 })}T20:00:00Z` };
    expectOutcome(await t.post('/fhir/Encounter', dayBefore), 422);
    expect((await recorded(enrolled, 'apa-group')).count).toBe(1);
  });

  it('a recorded session re-sent after the patient exited: 200, still counted once', async () => {
    const enrolled = await enrolledPatient('session-resent-after-exit');
    const first = await t.post('/fhir/Encounter', session(enrolled, 'resent-after-exit'));
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const exit = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'withdrew' }));
    expect(exit.status, JSON.stringify(exit.body)).toBe(200);
    const again = await t.post('/fhir/Encounter', session(enrolled, 'resent-after-exit'));
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    expect((await recorded(enrolled, 'apa-group')).count).toBe(1);
    expect((await footprint(t, enrolled.patientId)).encounters).toBe(1);
  });
});

describe('refused sessions (422, nothing written, counts unchanged)', () => {
  let enrolled: Enrolled;

  beforeAll(async () => {
    enrolled = await enrolledPatient('session-refused');
    // One recorded session, so "unchanged" is 1, not only 0.
    const first = await t.post('/fhir/Encounter', session(enrolled, 'session-refused-ok'));
    expect(first.status, JSON.stringify(first.body)).toBe(201);
  });

  async function expectRefused(encounter: fhir4.Encounter, pattern: RegExp): Promise<void> {
    const before = await footprint(t, enrolled.patientId);
    const planBefore = await intensivePlan(enrolled);
    const response = await t.post('/fhir/Encounter', encounter);
    expect(expectOutcome(response, 422)).toMatch(pattern);
    expect(await footprint(t, enrolled.patientId)).toEqual(before);
    const identifier = encounter.identifier?.[0]?.value as string;
    expect(await search(t, 'Encounter', { identifier: `urn:test:care-session|${identifier}` })).toHaveLength(0);
    const planAfter = await intensivePlan(enrolled);
    expect(planAfter.meta?.versionId).toBe(planBefore.meta?.versionId);
    expect(sessionCount(oneActivity(planAfter, 'apa-group'))).toBe(1);
  }

  it('a date in the consolidation phase while it is still draft', async () => {
    await expectRefused(session(enrolled, 'session-refused-consolidation', { date: shift(enrolled.start, { months: 5 }) }), /phase|outside/i);
  });

  it('a date before the enrolment', async () => {
    await expectRefused(session(enrolled, 'session-refused-before', { date: shift(enrolled.start, { days: -1 }) }), /phase|outside/i);
  });

  it('a participant who is not in the care team', async () => {
    const outsider = { reference: team.member('outsider').reference, role: 'apa-teacher' };
    await expectRefused(session(enrolled, 'session-refused-outsider', { member: outsider }), new RegExp(`${team.member('outsider').practitionerRoleId}|team`, 'i'));
  });

  it('a team member in a role the team does not give them', async () => {
    const dietitianAsTeacher = { reference: team.member('dietitian').reference, role: 'apa-teacher' };
    await expectRefused(session(enrolled, 'session-refused-wrong-role', { member: dietitianAsTeacher }), /team/i);
  });

  it('an unknown session kind', async () => {
    await expectRefused(session(enrolled, 'session-refused-kind', { kind: 'yoga' }), /yoga/);
  });

  it('a kind the plan does not have (podiatry in FNMF)', async () => {
    await expectRefused(session(enrolled, 'session-refused-podiatry', { kind: 'podiatry' }), /podiatry/);
  });

  it('a session without identifier', async () => {
    const encounter = session(enrolled, 'session-refused-no-id');
    delete encounter.identifier;
    const before = await footprint(t, enrolled.patientId);
    const response = await t.post('/fhir/Encounter', encounter);
    expect([400, 422]).toContain(response.status);
    expect(response.body.resourceType).toBe('OperationOutcome');
    expect(await footprint(t, enrolled.patientId)).toEqual(before);
  });

  it('a session for a patient who has exited', async () => {
    const exited = await enrolledPatient('session-exited');
    const exit = await t.post(`/fhir/EpisodeOfCare/${exited.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'withdrew' }));
    expect(exit.status, JSON.stringify(exit.body)).toBe(200);
    const before = await footprint(t, exited.patientId);
    const response = await t.post('/fhir/Encounter', session(exited, 'session-exited-1'));
    expectOutcome(response, 422);
    expect(await footprint(t, exited.patientId)).toEqual(before);
    expect(before.encounters).toBe(0);
    expect(sessionCount(oneActivity(await intensivePlan(exited), 'apa-group'))).toBe(0);
  });
});

describe('batches and concurrency', () => {
  it('a batch Bundle of 3 sessions: each counted once; the same batch again: counts unchanged', async () => {
    const enrolled = await enrolledPatient('session-batch');
    const day = (n: number) => shift(enrolled.start, { days: n });
    const batch: fhir4.Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        session(enrolled, 'batch-apa', { date: day(2) }),
        session(enrolled, 'batch-diet', { kind: 'dietary', date: day(3), member: { reference: team.member('dietitian').reference, role: 'dietitian' } }),
        session(enrolled, 'batch-gp', { kind: 'gp-consultation', date: day(4), member: { reference: team.member('gp').reference, role: 'gp' } }),
      ].map((resource) => ({ resource, request: { method: 'POST', url: 'Encounter' } })),
    };
    const first = await t.post('/fhir', batch);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    const statuses = ((first.body as fhir4.Bundle).entry ?? []).map((e) => e.response?.status ?? '');
    expect(statuses.map((s) => s.slice(0, 3)), JSON.stringify(first.body)).toEqual(['201', '201', '201']);

    const counts = async () => ({
      apa: (await recorded(enrolled, 'apa-group')).count,
      dietary: (await recorded(enrolled, 'dietary')).count,
      gp: (await recorded(enrolled, 'gp-consultation')).count,
    });
    expect(await counts()).toEqual({ apa: 1, dietary: 1, gp: 1 });
    const plan = await intensivePlan(enrolled);
    assertValid(plan, [PROFILES.carePlan]);
    const encounters = await search<fhir4.Encounter>(t, 'Encounter', { subject: `Patient/${enrolled.patientId}` });
    expect(encounters).toHaveLength(3);
    for (const encounter of encounters) assertValid(encounter, [PROFILES.encounter]);

    const again = await t.post('/fhir', batch);
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    const againStatuses = ((again.body as fhir4.Bundle).entry ?? []).map((e) => (e.response?.status ?? '').slice(0, 3));
    expect(againStatuses, JSON.stringify(again.body)).toEqual(['200', '200', '200']);
    expect(await counts()).toEqual({ apa: 1, dietary: 1, gp: 1 });
    expect(await search(t, 'Encounter', { subject: `Patient/${enrolled.patientId}` })).toHaveLength(3);
    expect((await intensivePlan(enrolled)).meta?.versionId).toBe(plan.meta?.versionId);
  });

  it('a batch with one refused session: that entry fails, the others are counted', async () => {
    const enrolled = await enrolledPatient('session-batch-mixed');
    const batch: fhir4.Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        session(enrolled, 'mixed-ok', { date: shift(enrolled.start, { days: 2 }) }),
        session(enrolled, 'mixed-bad', { kind: 'yoga' }),
      ].map((resource) => ({ resource, request: { method: 'POST', url: 'Encounter' } })),
    };
    const response = await t.post('/fhir', batch);
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const statuses = ((response.body as fhir4.Bundle).entry ?? []).map((e) => (e.response?.status ?? '').slice(0, 3));
    expect(statuses).toEqual(['201', '422']);
    expect((await recorded(enrolled, 'apa-group')).count).toBe(1);
    expect(await search(t, 'Encounter', { subject: `Patient/${enrolled.patientId}` })).toHaveLength(1);
  });

  it('two different sessions of the same activity at once are both counted (no lost update)', async () => {
    const enrolled = await enrolledPatient('session-concurrent');
    const [a, b] = await Promise.all([
      t.post('/fhir/Encounter', session(enrolled, 'concurrent-a', { date: shift(enrolled.start, { days: 1 }) })),
      t.post('/fhir/Encounter', session(enrolled, 'concurrent-b', { date: shift(enrolled.start, { days: 2 }) })),
    ]);
    const { count, references } = await recorded(enrolled, 'apa-group');
    expect(count).toBe(2);
    expect(references.map((r) => idOf(r, 'Encounter')).sort()).toEqual([a.body.id as string, b.body.id as string].sort());
    // Both are new sessions: 201 each, whichever had to be redone after a concurrent CarePlan write.
    expect(a.status, JSON.stringify(a.body)).toBe(201);
    expect(b.status, JSON.stringify(b.body)).toBe(201);
  });

  it('many sessions of one activity at once are all counted', async () => {
    const enrolled = await enrolledPatient('session-concurrent-many');
    const responses = await Promise.all(
      Array.from({ length: 6 }, (_, n) => t.post('/fhir/Encounter', session(enrolled, `many-${n}`, { date: shift(enrolled.start, { days: n + 1 }) }))),
    );
    const { count, references } = await recorded(enrolled, 'apa-group');
    expect(count).toBe(6);
    expect(new Set(references).size).toBe(6);
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201, 201, 201, 201]);
  });
});

// Last: `$advance` moves every enrolment of this service past the intensive phase.
describe('after the phase change', () => {
  it('a session in the consolidation phase counts there; one dated in the completed intensive phase is refused', async () => {
    const enrolled = await enrolledPatient('session-consolidation');
    const intensiveSession = await t.post('/fhir/Encounter', session(enrolled, 'consolidation-early'));
    expect(intensiveSession.status, JSON.stringify(intensiveSession.body)).toBe(201);
    const consolidationStart = shift(enrolled.start, { months: 4 });
    const advanced = await t.post('/fhir/$advance', parameters({ name: 'asOf', valueDate: consolidationStart }, { name: 'program', valueString: FNMF }));
    expect(advanced.status, JSON.stringify(advanced.body)).toBe(200);

    const later = await t.post('/fhir/Encounter', session(enrolled, 'consolidation-1', { date: consolidationStart }));
    expect(later.status, JSON.stringify(later.body)).toBe(201);
    const plans = await carePlansOf(t, enrolled.patientId, enrolled.episodeId);
    const consolidation = onePlan(plans, 'consolidation');
    assertValid(consolidation, [PROFILES.carePlan]);
    expect(consolidation.status).toBe('active');
    expect(sessionCount(oneActivity(consolidation, 'apa-group'))).toBe(1);
    expect(outcomeReferences(oneActivity(consolidation, 'apa-group')).map((r) => idOf(r, 'Encounter'))).toEqual([later.body.id as string]);
    const intensive = onePlan(plans, 'intensive');
    expect(intensive.status).toBe('completed');
    expect(sessionCount(oneActivity(intensive, 'apa-group'))).toBe(1);
    // The intensive activity with a session is completed, the others (never started) cancelled.
    expect(oneActivity(intensive, 'apa-group').detail?.status).toBe('completed');
    expect(oneActivity(intensive, 'dietary').detail?.status).toBe('cancelled');

    const late = await t.post('/fhir/Encounter', session(enrolled, 'consolidation-late-intensive', { date: shift(enrolled.start, { days: 20 }) }));
    expectOutcome(late, 422);
    expect(sessionCount(oneActivity(onePlan(await carePlansOf(t, enrolled.patientId, enrolled.episodeId), 'intensive'), 'apa-group'))).toBe(1);
  });
});
