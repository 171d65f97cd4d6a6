import { describe, expect, it } from 'vitest';
import { buildEnrolment } from '../../../src/domain/enrolment/enrolment-resources.js';
import { advancePlans, exitEnrolment } from '../../../src/domain/enrolment/lifecycle.js';
import { matchSession, recordedCount, recordSession, withdrawSession, type SessionContext } from '../../../src/domain/enrolment/sessions.js';
import { ENROLMENT_EXTENSIONS, ENROLMENT_PROFILES, type EnrolmentRule } from '../../../src/domain/enrolment/types.js';
import { assertValid } from '../../../src/fhir/validation.js';
import { fnmfContext, fnmfRequest, session, SESSION_KINDS } from './fixtures.js';

// FNMF enrolment from 2026-01-31, as of 2026-02-15: intensive phase active until 2026-05-30,
// consolidation draft from 2026-05-31.
const built = buildEnrolment(fnmfContext, fnmfRequest({ options: { reinforcedCoaching: true } }), '2026-02-15');
const context: SessionContext = { episode: built.episode, careTeam: built.careTeam, carePlans: built.carePlans, sessionKinds: SESSION_KINDS, zone: 'Europe/Paris' };
const intensive = built.carePlans[0] as fhir4.CarePlan;
const episodeRef = [{ reference: `EpisodeOfCare/${built.episode.id}` }];
const sessionOf = (overrides: Parameters<typeof session>[0] = {}) => session({ episodeOfCare: episodeRef, ...overrides });
const activityKinds = (intensive.activity ?? []).map((a) => a.detail?.code?.coding?.[0]?.code);

const rulesOf = (result: ReturnType<typeof matchSession>): EnrolmentRule[] => (result.ok ? [] : result.issues.map((issue) => issue.rule));

describe('matchSession: a session that counts', () => {
  it.each<[string, Parameters<typeof session>[0], string]>([
    ['an APA group session', {}, 'apa-group'],
    ['a nurse coaching contact by a Practitioner member', { kind: 'nurse-coaching', individual: 'Practitioner/nurse-1', role: 'nurse' }, 'nurse-coaching'],
    ['on the first day of the phase', { start: '2026-01-31' }, 'apa-group'],
    ['on the last day, late evening Paris time', { start: '2026-05-30T23:30:00+02:00' }, 'apa-group'],
    ['on the last day, as a UTC instant that is still 30 May in Paris', { start: '2026-05-30T21:59:00Z' }, 'apa-group'],
    ['with an absolute, versioned participant reference', { individual: 'https://ehr.example/fhir/PractitionerRole/apa-1/_history/3' }, 'apa-group'],
    ['a participant without a role', { participant: [{ individual: { reference: 'PractitionerRole/gp-1' } }], kind: 'gp-consultation' }, 'gp-consultation'],
    [
      'a related person also present (not checked)',
      { participant: [{ individual: { reference: 'PractitionerRole/apa-1' } }, { individual: { reference: 'RelatedPerson/rp-1' } }] },
      'apa-group',
    ],
  ])('%s', (_label, overrides, kind) => {
    const result = matchSession(sessionOf(overrides), context);
    expect(result).toEqual({ ok: true, carePlanId: intensive.id, activityIndex: activityKinds.indexOf(kind), alreadyRecorded: false });
  });
});

describe('matchSession: a session that does not count', () => {
  const finished = exitEnrolment({ episode: built.episode, carePlans: built.carePlans, reason: 'withdrew', date: '2026-03-01' });
  const exitedEpisode = finished.ok ? finished.episode : built.episode;
  it.each<[string, Parameters<typeof session>[0], Partial<SessionContext>, EnrolmentRule[]]>([
    ['the day before the start', { start: '2026-01-30' }, {}, ['outside-active-phase']],
    ['in the consolidation phase, not active yet', { start: '2026-06-02' }, {}, ['outside-active-phase']],
    ['the first day of consolidation, as a UTC instant that is 31 May in Paris', { start: '2026-05-30T22:30:00Z' }, {}, ['outside-active-phase']],
    ['a kind the active phase does not plan', { kind: 'psychological', individual: 'Practitioner/nurse-1', role: 'nurse' }, {}, ['kind-not-in-plan']],
    ['an unknown kind', { kind: 'yoga' }, {}, ['session-kind-unknown']],
    ['no session kind', { type: [{ text: 'APA' }] }, {}, ['session-kind-missing']],
    ['a practitioner outside the team', { individual: 'PractitionerRole/apa-9' }, {}, ['participant-not-in-team']],
    ['a member with a role they do not hold in the team', { individual: 'PractitionerRole/apa-1', role: 'dietitian' }, {}, ['participant-not-in-team']],
    [
      'the Practitioner of a PractitionerRole member (strict reference match)',
      { individual: 'Practitioner/apa-1' },
      {},
      ['participant-not-in-team'],
    ],
    ['no practitioner at all', { participant: [{ individual: { reference: 'RelatedPerson/rp-1' } }] }, {}, ['participant-missing']],
    ['no participant', { participant: [] }, {}, ['participant-missing']],
    ['no period', { period: {} }, {}, ['session-date-invalid']],
    ['a month only', { start: '2026-02' }, {}, ['session-date-invalid']],
    ['a cancelled session', { status: 'cancelled' }, {}, ['session-not-held']],
    ['a planned session', { status: 'planned' }, {}, ['session-not-held']],
    ['another episode', { episodeOfCare: [{ reference: 'EpisodeOfCare/other' }] }, {}, ['encounter-other-episode']],
    ['another patient', { subject: { reference: 'Patient/p9' } }, {}, ['encounter-other-patient']],
    ['an exited patient', { start: '2026-02-20' }, { episode: exitedEpisode }, ['episode-not-active']],
    ['a planned episode', {}, { episode: { ...built.episode, status: 'planned' } }, ['episode-not-active']],
    [
      'several problems at once',
      { kind: 'yoga', individual: 'PractitionerRole/x', subject: { reference: 'Patient/p9' } },
      {},
      ['encounter-other-patient', 'session-kind-unknown', 'participant-not-in-team'],
    ],
  ])('%s: %j', (_label, overrides, patch, expected) => {
    expect(rulesOf(matchSession(sessionOf(overrides), { ...context, ...patch }))).toEqual(expected);
  });

  it('issues point at the Encounter element', () => {
    const result = matchSession(sessionOf({ start: '2026-01-30' }), context);
    expect(result).toEqual({
      ok: false,
      issues: [{ rule: 'outside-active-phase', code: 'business-rule', diagnostics: 'No active phase of the enrolment covers 2026-01-30.', expression: 'Encounter.period.start' }],
    });
  });
});

describe('recordSession', () => {
  const apaIndex = activityKinds.indexOf('apa-group');

  it('adds the reference once, counts it, and starts the activity', () => {
    const once = recordSession(intensive, apaIndex, 'Encounter/e1');
    expect(once).not.toBe(intensive);
    expect(intensive.activity?.[apaIndex]?.outcomeReference).toBeUndefined(); // input untouched
    const activity = once.activity?.[apaIndex];
    expect(activity?.outcomeReference).toEqual([{ reference: 'Encounter/e1' }]);
    expect(activity?.detail?.status).toBe('in-progress');
    expect(activity?.detail?.extension).toContainEqual({ url: ENROLMENT_EXTENSIONS.sessionCount, valueUnsignedInt: 1 });
    expect(activity?.detail?.extension?.filter((e) => e.url === ENROLMENT_EXTENSIONS.sessionCount)).toHaveLength(1);
    assertValid(once);
  }, 30_000);

  it.each(['Encounter/e1', 'https://fhir.example/Encounter/e1', 'Encounter/e1/_history/2'])('is idempotent: %s again returns the same object', (again) => {
    const once = recordSession(intensive, apaIndex, 'Encounter/e1');
    expect(recordSession(once, apaIndex, again)).toBe(once);
  });

  it('counts distinct sessions', () => {
    let plan = intensive;
    for (const id of ['e1', 'e2', 'e3', 'e2']) plan = recordSession(plan, apaIndex, `Encounter/${id}`);
    expect(recordedCount(plan.activity?.[apaIndex] as fhir4.CarePlanActivity)).toBe(3);
    expect(plan.activity?.[apaIndex]?.detail?.extension).toContainEqual({ url: ENROLMENT_EXTENSIONS.sessionCount, valueUnsignedInt: 3 });
    assertValid(plan);
  });

  it('refuses a bad index or a non-Encounter reference', () => {
    expect(() => recordSession(intensive, 99, 'Encounter/e1')).toThrow(RangeError);
    expect(() => recordSession(intensive, apaIndex, 'Observation/o1')).toThrow(RangeError);
  });

  it('a re-sent Encounter matches where it was recorded, even after the phase ended', () => {
    const recorded = recordSession(intensive, apaIndex, 'Encounter/e1');
    const later = advancePlans(fnmfContext, { episode: built.episode, careTeam: built.careTeam, carePlans: [recorded, built.carePlans[1] as fhir4.CarePlan], asOf: '2026-06-10' });
    const plans = [later.carePlans.find((cp) => cp.id === intensive.id) as fhir4.CarePlan, built.carePlans[1] as fhir4.CarePlan];
    expect(plans[0]?.status).toBe('completed');
    expect(matchSession(sessionOf(), { ...context, carePlans: plans })).toEqual({ ok: true, carePlanId: intensive.id, activityIndex: apaIndex, alreadyRecorded: true });
    // A new session on the same date is refused: the phase is closed.
    expect(rulesOf(matchSession(sessionOf({ id: 'e2' }), { ...context, carePlans: plans }))).toEqual(['outside-active-phase']);
  });

  it('withdrawSession removes it again (an Encounter entered in error)', () => {
    const two = recordSession(recordSession(intensive, apaIndex, 'Encounter/e1'), apaIndex, 'Encounter/e2');
    const one = withdrawSession(two, 'Encounter/e1');
    expect(one.activity?.[apaIndex]?.outcomeReference).toEqual([{ reference: 'Encounter/e2' }]);
    expect(one.activity?.[apaIndex]?.detail?.extension).toContainEqual({ url: ENROLMENT_EXTENSIONS.sessionCount, valueUnsignedInt: 1 });
    const none = withdrawSession(one, 'Encounter/e2');
    expect(none.activity?.[apaIndex]?.outcomeReference).toBeUndefined();
    expect(withdrawSession(none, 'Encounter/e2')).toBe(none);
    assertValid(none);
  });
});

describe('matchSession: choice among activities of the same kind', () => {
  // Two actions of one kind (e.g. group sessions led by two roles): the first not yet full.
  const plan = structuredClone(intensive);
  const apa = plan.activity?.find((a) => a.detail?.code?.coding?.[0]?.code === 'apa-group') as fhir4.CarePlanActivity;
  const second = structuredClone(apa);
  (second.detail as fhir4.CarePlanActivityDetail).scheduledTiming = { repeat: { count: 4 } };
  plan.activity?.push(second);
  const first = activityKinds.indexOf('apa-group');
  const secondIndex = (plan.activity?.length ?? 0) - 1;
  (apa.detail as fhir4.CarePlanActivityDetail).scheduledTiming = { repeat: { count: 2 } };

  it.each([
    [0, first],
    [1, first],
    [2, secondIndex],
  ])('with %i sessions in the first activity, the next goes to activity %i', (recorded, expected) => {
    let current: fhir4.CarePlan = plan;
    for (let i = 0; i < recorded; i += 1) current = recordSession(current, first, `Encounter/x${i}`);
    expect(matchSession(sessionOf(), { ...context, carePlans: [current] })).toMatchObject({ ok: true, activityIndex: expected });
  });
});

describe('the session Encounter profile', () => {
  it('a session as the EHRs send it validates', () => {
    assertValid(sessionOf({ meta: { profile: [ENROLMENT_PROFILES.encounter] } }));
  });

  it.each<[string, Partial<fhir4.Encounter>, string]>([
    ['no identifier', { identifier: [] }, 'identifier'],
    ['no session kind', { type: [{ coding: [{ system: 'http://snomed.info/sct', code: '11429006' }] }] }, 'cse-1'],
    ['no episode', { episodeOfCare: [] }, 'episodeOfCare'],
    ['no practitioner', { participant: [{ individual: { reference: 'RelatedPerson/r' } }] }, 'cse-3'],
    ['no period start', { period: { end: '2026-02-10' } }, 'cse-2'],
  ])('%s is invalid', (_label, patch, expected) => {
    const encounter = { ...sessionOf({ meta: { profile: [ENROLMENT_PROFILES.encounter] } }), ...patch };
    if (patch.identifier?.length === 0) delete encounter.identifier;
    if (patch.episodeOfCare?.length === 0) delete encounter.episodeOfCare;
    expect(() => assertValid(encounter)).toThrow(expected);
  });
});
