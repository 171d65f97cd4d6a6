/**
 * Enrolment over HTTP (issue #3, point 1 and "Rules and bad input"): `POST
 * /fhir/Patient/{id}/$enroll` against the real service (Redis, embedded FHIR server). What the
 * adapter writes is read back from the FHIR server of record and validated against R4 and the
 * project's profiles; every refused request leaves the server as it was.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertValid } from '../../src/fhir/validation.js';
import {
  activitiesOfKind,
  carePlansOf,
  countAll,
  enrolParameters,
  EXTENSIONS,
  expectOutcome,
  FNMF,
  footprint,
  idOf,
  oneActivity,
  onePlan,
  parameters,
  planCodeOf,
  planEnd,
  PROFILES,
  readEnrolment,
  readResource,
  REDIAB,
  rediabConsent,
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

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let t: TestService;
let team: SeededTeam;
let rediabTeam: SeededTeam;

beforeAll(async () => {
  t = await startTestService();
  team = await seedTeam(t, 'enrol-fnmf');
  rediabTeam = await seedRediabTeam(t, 'enrol-rediab');
});

afterAll(async () => {
  await t?.stop();
});

function enroll(patientId: string, body: fhir4.Parameters) {
  return t.post(`/fhir/Patient/${patientId}/$enroll`, body);
}

/** Validates every resource of an enrolment against R4 and its profile; returns them. */
async function writtenResources(patientId: string, episodeId: string, careTeamId: string) {
  const episode = await readResource<fhir4.EpisodeOfCare>(t, 'EpisodeOfCare', episodeId);
  const careTeam = await readResource<fhir4.CareTeam>(t, 'CareTeam', careTeamId);
  const carePlans = await carePlansOf(t, patientId, episodeId);
  assertValid(episode, [PROFILES.episodeOfCare]);
  assertValid(careTeam, [PROFILES.careTeam]);
  for (const carePlan of carePlans) assertValid(carePlan, [PROFILES.carePlan]);
  return { episode, careTeam, carePlans };
}

describe('FNMF enrolment', () => {
  it('writes an active episode, the care team, an active intensive and a draft consolidation CarePlan, and answers with references to all', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-enrol-1');
    const start = shift(today(), { months: -1 });
    const response = await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as() }));
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    expect(response.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    const enrolment = readEnrolment(response);
    expect(enrolment.outcome).toBe('created');
    expect(enrolment.carePlanIds).toHaveLength(2);

    const { episode, careTeam, carePlans } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    expect(episode.status).toBe('active');
    expect(episode.patient.reference).toBe(`Patient/${patientId}`);
    expect(episode.period?.start).toBe(start);
    expect(episode.period?.end).toBeUndefined();
    expect(episode.type?.flatMap((type) => type.coding ?? [])).toContainEqual(expect.objectContaining({ system: SYSTEMS.program, code: FNMF }));
    expect(episode.team?.map((reference) => idOf(reference, 'CareTeam'))).toEqual([enrolment.careTeamId]);

    const members = (careTeam.participant ?? []).flatMap((participant) =>
      (participant.role ?? []).flatMap((role) => (role.coding ?? []).filter((c) => c.system === SYSTEMS.careTeamRole).map((c) => `${c.code}=${participant.member?.reference}`)),
    );
    expect(members.sort()).toEqual(team.as().map((m) => `${m.role}=${m.reference}`).sort());
    expect(careTeam.subject?.reference).toBe(`Patient/${patientId}`);

    expect(carePlans.map((plan) => plan.id).sort()).toEqual([...enrolment.carePlanIds].sort());
    const intensive = onePlan(carePlans, 'intensive');
    const consolidation = onePlan(carePlans, 'consolidation');
    expect(intensive.status).toBe('active');
    expect(intensive.period).toEqual({ start, end: planEnd(start, 4) });
    expect(consolidation.status).toBe('draft');
    expect(consolidation.period).toEqual({ start: shift(start, { months: 4 }), end: planEnd(start, 24) });
    for (const plan of carePlans) {
      expect(plan.subject.reference).toBe(`Patient/${patientId}`);
      expect(plan.intent).toBe('plan');
      expect(plan.careTeam?.map((reference) => idOf(reference, 'CareTeam'))).toEqual([enrolment.careTeamId]);
      const episodeLink = plan.extension?.find((e) => e.url === EXTENSIONS.episodeOfCare)?.valueReference;
      expect(idOf(episodeLink, 'EpisodeOfCare')).toBe(enrolment.episodeId);
    }

    // Standard protocol (no personalisation given): group APA, no individual APA, standard platform use.
    const apaGroup = oneActivity(intensive, 'apa-group');
    expect(apaGroup.detail?.scheduledTiming?.repeat?.count).toBe(16);
    expect(apaGroup.detail?.performer?.map((p) => p.reference)).toEqual([team.member('apa-teacher').reference]);
    expect(activitiesOfKind(intensive, 'apa-individual')).toHaveLength(0);
    expect(oneActivity(intensive, 'resource-platform').detail?.scheduledTiming?.repeat?.count).toBe(8);
    expect(oneActivity(intensive, 'nurse-coaching').detail?.scheduledTiming?.repeat?.count).toBe(4);
    expect(oneActivity(intensive, 'psychological').detail?.performer?.map((p) => p.reference)).toEqual([team.member('psychologist').reference]);
    expect(activitiesOfKind(consolidation, 'apa-individual')).toHaveLength(0);
  });

  it('applies the personalisation options: individual APA, reinforced coaching, intensive platform use', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-enrol-options');
    const start = shift(today(), { months: -1 });
    const response = await enroll(
      patientId,
      enrolParameters({ program: FNMF, start, team: team.as(), options: { personalisedApa: true, reinforcedCoaching: true, platformIntensity: 'intensive' } }),
    );
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const enrolment = readEnrolment(response);
    const { episode, carePlans } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    const intensive = onePlan(carePlans, 'intensive');
    const consolidation = onePlan(carePlans, 'consolidation');

    expect(oneActivity(intensive, 'apa-individual').detail?.scheduledTiming?.repeat?.count).toBe(8);
    expect(oneActivity(intensive, 'resource-platform').detail?.scheduledTiming?.repeat?.count).toBe(16);
    expect(oneActivity(intensive, 'nurse-coaching').detail?.scheduledTiming?.repeat?.count).toBe(8);
    expect(oneActivity(consolidation, 'apa-individual').detail?.scheduledTiming?.repeat?.count).toBe(10);
    expect(oneActivity(consolidation, 'resource-platform').detail?.scheduledTiming?.repeat?.count).toBe(20);

    // The options are recorded on the episode.
    const recorded = Object.fromEntries(
      (episode.extension ?? [])
        .filter((e) => e.url === EXTENSIONS.personalisation)
        .map((e) => {
          const name = e.extension?.find((part) => part.url === 'name')?.valueCode;
          const value = e.extension?.find((part) => part.url === 'value');
          return [name, value?.valueBoolean ?? value?.valueCode];
        }),
    );
    expect(recorded).toEqual({ personalisedApa: true, reinforcedCoaching: true, platformIntensity: 'intensive' });
  });

  it('a team without the optional roles gets no sessions for them', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-enrol-small-team');
    const response = await enroll(patientId, enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: team.as(['gp', 'apa-teacher']) }));
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const enrolment = readEnrolment(response);
    const { carePlans } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    const intensive = onePlan(carePlans, 'intensive');
    for (const kind of ['dietary', 'nurse-coaching', 'psychological']) expect(activitiesOfKind(intensive, kind)).toHaveLength(0);
    expect(activitiesOfKind(intensive, 'apa-group')).toHaveLength(1);
    expect(activitiesOfKind(intensive, 'gp-consultation')).toHaveLength(1);
  });

  it('the same request again answers 200 with the existing enrolment and writes nothing', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-enrol-again');
    const body = enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: team.as(), options: { personalisedApa: true } });
    const first = readEnrolment(await enroll(patientId, body));
    expect(first.status).toBe(201);
    const before = await footprint(t, patientId);
    const episodeVersion = (await readResource<fhir4.EpisodeOfCare>(t, 'EpisodeOfCare', first.episodeId)).meta?.versionId;

    const again = await enroll(patientId, body);
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    const second = readEnrolment(again);
    expect(second.outcome).toBe('existing');
    expect(second.episodeId).toBe(first.episodeId);
    expect(second.careTeamId).toBe(first.careTeamId);
    expect([...second.carePlanIds].sort()).toEqual([...first.carePlanIds].sort());
    expect(await footprint(t, patientId)).toEqual(before);
    expect(before).toMatchObject({ episodes: 1, careTeams: 1, carePlans: 2 });
    expect((await readResource<fhir4.EpisodeOfCare>(t, 'EpisodeOfCare', first.episodeId)).meta?.versionId).toBe(episodeVersion);
  });

  it('the same request twice at once: one 201, one 200, one enrolment', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-enrol-twice-at-once');
    const body = enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: team.as() });
    const answers = await Promise.all([enroll(patientId, body), enroll(patientId, body)]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 201]);
    const [a, b] = answers.map(readEnrolment) as [ReturnType<typeof readEnrolment>, ReturnType<typeof readEnrolment>];
    expect(a.episodeId).toBe(b.episodeId);
    expect(await footprint(t, patientId)).toMatchObject({ episodes: 1, careTeams: 1, carePlans: 2 });
  });

  it('a different enrolment while one is open is a 409 conflict, nothing written', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-enrol-conflict');
    const start = shift(today(), { months: -1 });
    readEnrolment(await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as() })));
    const before = await footprint(t, patientId);

    const otherStart = await enroll(patientId, enrolParameters({ program: FNMF, start: shift(start, { days: 3 }), team: team.as() }));
    expectOutcome(otherStart, 409);
    const otherTeam = await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as(['gp', 'apa-teacher']) }));
    expectOutcome(otherTeam, 409);
    const otherOptions = await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as(), options: { platformIntensity: 'light' } }));
    expectOutcome(otherOptions, 409);
    expect(await footprint(t, patientId)).toEqual(before);
  });

  it('a start in the future gives a planned episode and a draft intensive plan', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-enrol-future');
    const start = shift(today(), { months: 1 });
    const response = await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as() }));
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const enrolment = readEnrolment(response);
    const { episode, carePlans } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    expect(episode.status).toBe('planned');
    expect(onePlan(carePlans, 'intensive').status).toBe('draft');
    expect(onePlan(carePlans, 'consolidation').status).toBe('draft');
  });
});

describe('FNMF month ends and leap years', () => {
  it('4 months from 2026-01-31 end on 2026-05-30; the consolidation runs 2026-05-31 .. 2028-01-30', async () => {
    // Measured before the start, so the patient is eligible on 2026-01-31 (12-month look-back).
    const patientId = await seedFnmfPatient(t, team, 'fnmf-month-end', { measuredOn: '2026-01-15' });
    const response = await enroll(patientId, enrolParameters({ program: FNMF, start: '2026-01-31', team: team.as() }));
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const enrolment = readEnrolment(response);
    const { carePlans } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    const intensive = onePlan(carePlans, 'intensive');
    const consolidation = onePlan(carePlans, 'consolidation');
    expect(intensive.period).toEqual({ start: '2026-01-31', end: '2026-05-30' });
    expect(consolidation.period).toEqual({ start: '2026-05-31', end: '2028-01-30' });
    // Statuses on today's date.
    const now = today();
    expect(intensive.status).toBe(now > '2026-05-30' ? 'completed' : 'active');
    expect(consolidation.status).toBe(now > '2028-01-30' ? 'completed' : now >= '2026-05-31' ? 'active' : 'draft');
  });

  it('4 months from 2027-10-31 end on 2028-02-28; the consolidation starts on 2028-02-29', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-leap', { measuredOn: today() });
    const response = await enroll(
      patientId,
      // Measured today: inside the 12-month look-back of 2027-10-31, so eligible then.
      enrolParameters({ program: FNMF, start: '2027-10-31', team: team.as() }),
    );
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const enrolment = readEnrolment(response);
    const { carePlans } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    expect(onePlan(carePlans, 'intensive').period).toEqual({ start: '2027-10-31', end: '2028-02-28' });
    expect(onePlan(carePlans, 'consolidation').period).toEqual({ start: '2028-02-29', end: '2029-10-30' });
  });
});

describe('FNMF refusals (nothing written)', () => {
  it('not eligible at the start: 422 naming the failing criterion; with an override reason: 201 and the reason on the episode', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-not-eligible', { glucose: 1.4 });
    const start = shift(today(), { months: -1 });
    const episodesBefore = await countAll(t, 'EpisodeOfCare');
    const refused = await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as() }));
    const text = expectOutcome(refused, 422);
    expect(text).toContain('fasting-glucose');
    expect(await footprint(t, patientId)).toEqual({ episodes: 0, careTeams: 0, carePlans: 0, encounters: 0 });
    expect(await countAll(t, 'EpisodeOfCare')).toBe(episodesBefore);

    const reason = 'GP judgement: glucose measured after a festive meal, repeat test planned';
    const overridden = await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as(), overrideReason: reason }));
    expect(overridden.status, JSON.stringify(overridden.body)).toBe(201);
    const enrolment = readEnrolment(overridden);
    const { episode } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    expect(episode.extension?.find((e) => e.url === EXTENSIONS.overrideReason)?.valueString).toBe(reason);
  });

  it('a care team without a required role (apa-teacher) or with an unknown role: 422', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-bad-team');
    const start = shift(today(), { months: -1 });
    const missing = await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as(['gp', 'dietitian', 'nurse']) }));
    expect(expectOutcome(missing, 422)).toContain('apa-teacher');
    const noGp = await enroll(patientId, enrolParameters({ program: FNMF, start, team: team.as(['apa-teacher', 'nurse']) }));
    expect(expectOutcome(noGp, 422)).toMatch(/\bgp\b/);
    const unknown = await enroll(patientId, enrolParameters({ program: FNMF, start, team: [...team.as(), { reference: team.member('nurse').reference, role: 'surgeon' }] }));
    expect(expectOutcome(unknown, 422)).toContain('surgeon');
    expect(await footprint(t, patientId)).toEqual({ episodes: 0, careTeams: 0, carePlans: 0, encounters: 0 });
  });

  it('an unknown personalisation value: 422', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-bad-option');
    const refused = await enroll(patientId, enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: team.as(), options: { platformIntensity: 'extreme' } }));
    expect(expectOutcome(refused, 422)).toContain('platformIntensity');
    expect(await footprint(t, patientId)).toEqual({ episodes: 0, careTeams: 0, carePlans: 0, encounters: 0 });
  });

  it('malformed parameters: 400 (bad start date, no program)', async () => {
    const patientId = await seedFnmfPatient(t, team, 'fnmf-malformed');
    const badDate = await enroll(patientId, enrolParameters({ program: FNMF, start: '2026-02-30', team: team.as() }));
    expectOutcome(badDate, 400);
    const notADate = await enroll(patientId, enrolParameters({ program: FNMF, start: 'next monday', team: team.as() }));
    expectOutcome(notADate, 400);
    const withoutProgram = enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: team.as() });
    withoutProgram.parameter = withoutProgram.parameter?.filter((p) => p.name !== 'program');
    expectOutcome(await enroll(patientId, withoutProgram), 400);
    expectOutcome(await enroll(patientId, { resourceType: 'Patient' } as unknown as fhir4.Parameters), 400);
    expect(await footprint(t, patientId)).toEqual({ episodes: 0, careTeams: 0, carePlans: 0, encounters: 0 });
  });

  it('an unknown patient: 404', async () => {
    const episodesBefore = await countAll(t, 'EpisodeOfCare');
    const response = await enroll('does-not-exist-0001', enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: team.as() }));
    expectOutcome(response, 404);
    expect(await countAll(t, 'EpisodeOfCare')).toBe(episodesBefore);
  });
});

describe('REDIAB enrolment', () => {
  it('writes the initial-education plan (4 months) and the first follow-up year (draft); no podiatric plan without a podiatrist', async () => {
    const { patientId, consent } = await seedRediabPatient(t, rediabTeam, 'rediab-enrol-1');
    const start = shift(today(), { months: -1 });
    const response = await enroll(patientId, enrolParameters({ program: REDIAB, start, team: rediabTeam.as(['gp', 'nurse', 'sports-educator']), consent }));
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const enrolment = readEnrolment(response);
    expect(enrolment.outcome).toBe('created');
    const { episode, carePlans } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    expect(episode.status).toBe('active');
    expect(episode.type?.flatMap((type) => type.coding ?? [])).toContainEqual(expect.objectContaining({ system: SYSTEMS.program, code: REDIAB }));
    expect(carePlans.map(planCodeOf).sort()).toEqual(['follow-up', 'initial-education']);
    expect(enrolment.carePlanIds).toHaveLength(2);
    const initial = onePlan(carePlans, 'initial-education');
    expect(initial.status).toBe('active');
    expect(initial.period).toEqual({ start, end: planEnd(start, 4) });
    expect(oneActivity(initial, 'apa-group').detail?.performer?.map((p) => p.reference)).toEqual([rediabTeam.member('sports-educator').reference]);
    const followUp = onePlan(carePlans, 'follow-up');
    expect(followUp.status).toBe('draft');
    expect(followUp.period).toEqual({ start: shift(start, { months: 4 }), end: planEnd(start, 16) });
  });

  it('a team with a podiatrist also gets the podiatric follow-up plan (yearly, from the start)', async () => {
    const { patientId, consent } = await seedRediabPatient(t, rediabTeam, 'rediab-enrol-podiatry');
    const start = shift(today(), { months: -1 });
    const response = await enroll(patientId, enrolParameters({ program: REDIAB, start, team: rediabTeam.as(), consent }));
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    const enrolment = readEnrolment(response);
    const { carePlans } = await writtenResources(patientId, enrolment.episodeId, enrolment.careTeamId);
    expect(carePlans.map(planCodeOf).sort()).toEqual(['follow-up', 'initial-education', 'podiatric-follow-up']);
    const podiatric = onePlan(carePlans, 'podiatric-follow-up');
    expect(podiatric.status).toBe('active');
    expect(podiatric.period).toEqual({ start, end: planEnd(start, 12) });
    expect(oneActivity(podiatric, 'podiatry').detail?.scheduledTiming?.repeat?.count).toBe(6);
  });

  it('without the Consent, or with a Consent that is not active: 422, nothing written', async () => {
    const { patientId } = await seedRediabPatient(t, rediabTeam, 'rediab-no-consent');
    const start = shift(today(), { months: -1 });
    const missing = await enroll(patientId, enrolParameters({ program: REDIAB, start, team: rediabTeam.as(['gp', 'nurse']) }));
    expect(expectOutcome(missing, 422)).toMatch(/consent/i);

    const inactive = await t.post('/fhir/Consent', rediabConsent(patientId, 'rediab-no-consent-inactive', 'inactive'));
    expect(inactive.status).toBe(201);
    const notActive = await enroll(patientId, enrolParameters({ program: REDIAB, start, team: rediabTeam.as(['gp', 'nurse']), consent: `Consent/${inactive.body.id as string}` }));
    expect(expectOutcome(notActive, 422)).toMatch(/consent/i);

    const unknown = await enroll(patientId, enrolParameters({ program: REDIAB, start, team: rediabTeam.as(['gp', 'nurse']), consent: 'Consent/does-not-exist' }));
    expect([404, 422]).toContain(unknown.status);
    expect(await footprint(t, patientId)).toEqual({ episodes: 0, careTeams: 0, carePlans: 0, encounters: 0 });
  });

  it('an FNMF-only role in a REDIAB team is an unknown role: 422', async () => {
    const { patientId, consent } = await seedRediabPatient(t, rediabTeam, 'rediab-bad-role');
    const response = await enroll(
      patientId,
      enrolParameters({ program: REDIAB, start: shift(today(), { months: -1 }), team: [...rediabTeam.as(['gp']), { reference: team.member('apa-teacher').reference, role: 'apa-teacher' }], consent }),
    );
    expect(expectOutcome(response, 422)).toContain('apa-teacher');
    expect(await footprint(t, patientId)).toEqual({ episodes: 0, careTeams: 0, carePlans: 0, encounters: 0 });
  });
});

describe('FNMF capacity (SITE_DIR overlay with a capacity of 2)', () => {
  let site: TestService;
  let siteTeam: SeededTeam;
  let siteDir: string;

  beforeAll(async () => {
    siteDir = mkdtempSync(path.join(tmpdir(), 'forfait-capacity-'));
    const target = path.join(siteDir, 'programs', FNMF);
    mkdirSync(target, { recursive: true });
    const source = path.join(ROOT, 'mappings', 'programs', FNMF, 'enrolment.json');
    const enrolment = JSON.parse(readFileSync(source, 'utf8')) as { capacity?: number };
    enrolment.capacity = 2;
    writeFileSync(path.join(target, 'enrolment.json'), JSON.stringify(enrolment, null, 2));
    site = await startTestService({ SITE_DIR: siteDir });
    siteTeam = await seedTeam(site, 'capacity');
  });

  afterAll(async () => {
    await site?.stop();
    if (siteDir) rmSync(siteDir, { recursive: true, force: true });
  });

  it('the third enrolment is refused with 409 and writes nothing; an exit frees a place', async () => {
    const start = shift(today(), { months: -1 });
    const patients = [];
    for (const label of ['cap-1', 'cap-2', 'cap-3']) patients.push(await seedFnmfPatient(site, siteTeam, label));
    const [p1, p2, p3] = patients as [string, string, string];
    const body = enrolParameters({ program: FNMF, start, team: siteTeam.as() });

    const first = readEnrolment(await site.post(`/fhir/Patient/${p1}/$enroll`, body));
    expect(first.status).toBe(201);
    expect((await site.post(`/fhir/Patient/${p2}/$enroll`, body)).status).toBe(201);

    const episodesBefore = await countAll(site, 'EpisodeOfCare');
    const carePlansBefore = await countAll(site, 'CarePlan');
    const full = await site.post(`/fhir/Patient/${p3}/$enroll`, body);
    expect(expectOutcome(full, 409)).toMatch(/capacity|full|place/i);
    expect(await countAll(site, 'EpisodeOfCare')).toBe(episodesBefore);
    expect(await countAll(site, 'CarePlan')).toBe(carePlansBefore);

    // Re-sending an existing enrolment is still answered when the file is full.
    const again = await site.post(`/fhir/Patient/${p1}/$enroll`, body);
    expect(again.status, JSON.stringify(again.body)).toBe(200);

    const exit = await site.post(`/fhir/EpisodeOfCare/${first.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'moved-away' }));
    expect(exit.status, JSON.stringify(exit.body)).toBe(200);
    const third = await site.post(`/fhir/Patient/${p3}/$enroll`, body);
    expect(third.status, JSON.stringify(third.body)).toBe(201);
    expect((await search<fhir4.EpisodeOfCare>(site, 'EpisodeOfCare', { patient: `Patient/${p3}` })).map((e) => e.status)).toEqual(['active']);
  });

  it('three enrolments at once with one place left: exactly one more is accepted', async () => {
    // Two places are taken by the previous test (cap-2, cap-3); free one.
    const [open] = await search<fhir4.EpisodeOfCare>(site, 'EpisodeOfCare', { status: 'active' });
    expect(open).toBeDefined();
    expect((await site.post(`/fhir/EpisodeOfCare/${open?.id as string}/$exit`, parameters({ name: 'reason', valueCode: 'withdrew' }))).status).toBe(200);
    const start = shift(today(), { months: -1 });
    const patients: string[] = [];
    for (const label of ['cap-race-1', 'cap-race-2', 'cap-race-3']) patients.push(await seedFnmfPatient(site, siteTeam, label));
    const body = enrolParameters({ program: FNMF, start, team: siteTeam.as() });
    const answers = await Promise.all(patients.map((id) => site.post(`/fhir/Patient/${id}/$enroll`, body)));
    expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409]);
    const active = await search<fhir4.EpisodeOfCare>(site, 'EpisodeOfCare', { status: 'active' });
    expect(active).toHaveLength(2);
  });
});
