import { describe, expect, it } from 'vitest';
import { buildEnrolment, carePlanId, type EnrolmentResources } from '../../../src/domain/enrolment/enrolment-resources.js';
import { advancePlans, exitEnrolment, openOnDemandPlan, planCodeOf, type AdvanceResult } from '../../../src/domain/enrolment/lifecycle.js';
import { recordSession } from '../../../src/domain/enrolment/sessions.js';
import { ENROLMENT_EXTENSIONS, type EnrolmentRule } from '../../../src/domain/enrolment/types.js';
import { assertValid } from '../../../src/fhir/validation.js';
import { fnmfContext, fnmfRequest, rediabContext, rediabRequest, rediabTeam } from './fixtures.js';

const summary = (carePlans: readonly fhir4.CarePlan[]) => carePlans.map((cp) => `${planCodeOf(cp)}:${cp.period?.start}:${cp.status}`);

/** Applies an AdvanceResult to the stored resources, as the adapter writes it. */
function apply(state: EnrolmentResources, result: AdvanceResult): EnrolmentResources {
  const byId = new Map(state.carePlans.map((cp) => [cp.id, cp]));
  for (const cp of result.carePlans) byId.set(cp.id, cp);
  return { episode: result.episode ?? state.episode, careTeam: state.careTeam, carePlans: [...byId.values()] };
}

function advance(context: typeof fnmfContext, state: EnrolmentResources, asOf: string, notAfter?: string): AdvanceResult {
  return advancePlans(context, { episode: state.episode, careTeam: state.careTeam, carePlans: state.carePlans, asOf, ...(notAfter ? { notAfter } : {}) });
}

describe('advancePlans: FNMF phases', () => {
  const enrolled = buildEnrolment(fnmfContext, fnmfRequest(), '2026-01-10'); // start 2026-01-31, episode planned

  it.each([
    // asOf,       episode,   written plans,                                                        sequenceComplete
    ['2026-01-30', undefined, [], false],
    ['2026-01-31', 'active', ['intensive:2026-01-31:active'], false],
    ['2026-05-30', 'active', ['intensive:2026-01-31:active'], false],
    ['2026-05-31', 'active', ['intensive:2026-01-31:completed', 'consolidation:2026-05-31:active'], false],
    ['2028-01-30', 'active', ['intensive:2026-01-31:completed', 'consolidation:2026-05-31:active'], false],
    ['2028-01-31', 'active', ['intensive:2026-01-31:completed', 'consolidation:2026-05-31:completed'], true],
  ])('from enrolment to %s: episode %s, writes %j', (asOf, episodeStatus, written, complete) => {
    const result = advance(fnmfContext, enrolled, asOf);
    expect(result.episode?.status).toBe(episodeStatus);
    expect(summary(result.carePlans)).toEqual(written);
    expect(result.sequenceComplete).toBe(complete);
  });

  it('is idempotent: the same asOf again writes nothing', () => {
    for (const asOf of ['2026-01-31', '2026-05-31', '2028-02-01']) {
      const once = apply(enrolled, advance(fnmfContext, enrolled, asOf));
      expect(advance(fnmfContext, once, asOf)).toMatchObject({ carePlans: [] });
      expect(advance(fnmfContext, once, asOf).episode).toBeUndefined();
    }
  });

  it('never moves backwards: an earlier asOf changes nothing', () => {
    const later = apply(enrolled, advance(fnmfContext, enrolled, '2026-06-01'));
    expect(advance(fnmfContext, later, '2026-02-01')).toEqual({ carePlans: [], sequenceComplete: false });
  });

  it('completing a phase closes its activities: held ones completed, the others cancelled', () => {
    const active = apply(enrolled, advance(fnmfContext, enrolled, '2026-02-01'));
    const intensive = active.carePlans[0] as fhir4.CarePlan;
    const withSession = { ...active, carePlans: [recordSession(intensive, 0, 'Encounter/e1'), ...active.carePlans.slice(1)] };
    const [completed] = advance(fnmfContext, withSession, '2026-06-01').carePlans;
    expect(completed?.activity?.map((a) => a.detail?.status)).toEqual(['completed', 'cancelled', 'cancelled', 'cancelled']);
    for (const cp of advance(fnmfContext, withSession, '2026-06-01').carePlans) assertValid(cp);
  }, 30_000);

  it('a run every day gives the same result as one run', () => {
    let daily = enrolled;
    for (const asOf of ['2026-01-31', '2026-03-01', '2026-05-30', '2026-05-31', '2027-01-01']) daily = apply(daily, advance(fnmfContext, daily, asOf));
    const once = apply(enrolled, advance(fnmfContext, enrolled, '2027-01-01'));
    expect(daily).toEqual(once);
  });
});

describe('advancePlans: REDIAB follow-up years roll over', () => {
  const team = [...rediabTeam, { reference: 'PractitionerRole/pod-1', role: 'podiatrist' }];
  const enrolled = buildEnrolment(rediabContext, rediabRequest({ careTeam: team }), '2026-03-15');

  it.each([
    ['2027-03-14', ['initial-education:2026-03-15:completed', 'follow-up:2026-07-15:active']],
    ['2027-03-15', ['initial-education:2026-03-15:completed', 'follow-up:2026-07-15:active', 'podiatric-follow-up:2026-03-15:completed', 'podiatric-follow-up:2027-03-15:active']],
    [
      '2028-08-01',
      [
        'initial-education:2026-03-15:completed',
        'follow-up:2026-07-15:completed',
        'podiatric-follow-up:2026-03-15:completed',
        'follow-up:2027-07-15:completed',
        'follow-up:2028-07-15:active',
        'podiatric-follow-up:2027-03-15:completed',
        'podiatric-follow-up:2028-03-15:active',
      ],
    ],
  ])('as of %s writes %j', (asOf, written) => {
    const result = advance(rediabContext, enrolled, asOf);
    expect(summary(result.carePlans)).toEqual(written);
    expect(result.sequenceComplete).toBe(false);
    for (const cp of result.carePlans) assertValid(cp);
  }, 30_000);

  it('gives the new years deterministic ids and the current team', () => {
    const joined = { ...enrolled, careTeam: { ...enrolled.careTeam, participant: [...(enrolled.careTeam.participant ?? []), { role: [{ coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/care-team-role', code: 'nurse' }] }], member: { reference: 'Practitioner/nurse-9' } }] } };
    const year2 = advance(rediabContext, joined, '2027-07-15').carePlans.find((cp) => cp.period?.start === '2027-07-15');
    expect(year2?.id).toBe(carePlanId(enrolled.episode.id as string, 'follow-up', 1));
    expect(year2?.title).toBe('REDIAB follow-up diabetes education (yearly): period 2');
    const nurse = year2?.activity?.find((a) => a.detail?.code?.coding?.[0]?.code === 'diabetes-education-individual');
    expect(nurse?.detail?.performer).toEqual([{ reference: 'PractitionerRole/nurse-2' }, { reference: 'Practitioner/nurse-9' }]);
  });

  it('is idempotent across years', () => {
    const once = apply(enrolled, advance(rediabContext, enrolled, '2029-01-01'));
    expect(advance(rediabContext, once, '2029-01-01').carePlans).toEqual([]);
  });

  it.each([
    ['the program end (notAfter)', '2027-07-14', ['follow-up:2026-07-15']],
    ['the day a year starts', '2027-07-15', ['follow-up:2026-07-15', 'follow-up:2027-07-15']],
  ])('never opens a year starting after %s', (_label, notAfter, followUps) => {
    const result = apply(enrolled, advance(rediabContext, enrolled, '2029-01-01', notAfter));
    expect(summary(result.carePlans.filter((cp) => planCodeOf(cp) === 'follow-up')).map((s) => s.split(':').slice(0, 2).join(':'))).toEqual(followUps);
  });

  it('opens nothing for an exited patient', () => {
    const exited = exitEnrolment({ episode: enrolled.episode, careTeam: enrolled.careTeam, carePlans: enrolled.carePlans, reason: 'moved-away', date: '2026-09-01' });
    if (!exited.ok) throw new Error('exit refused');
    const after = apply(enrolled, { episode: exited.episode, carePlans: exited.carePlans, sequenceComplete: false });
    expect(advance(rediabContext, after, '2030-01-01')).toEqual({ carePlans: [], sequenceComplete: false });
  });

  it("never opens a year starting after the episode's end", () => {
    const ended = { ...enrolled, episode: { ...enrolled.episode, period: { start: '2026-03-15', end: '2027-07-14' } } };
    const written = advance(rediabContext, ended, '2029-01-01').carePlans.filter((cp) => planCodeOf(cp) === 'follow-up');
    expect(written.map((cp) => cp.period?.start)).toEqual(['2026-07-15']);
  });
});

describe('exitEnrolment', () => {
  const base = buildEnrolment(rediabContext, rediabRequest(), '2026-03-15');
  const state = apply(base, advance(rediabContext, base, '2026-08-01')); // initial completed, follow-up year 0 active

  it.each([
    ['completed', 'finished', ['initial-education:2026-03-15:completed', 'follow-up:2026-07-15:completed']],
    ['withdrew', 'finished', ['initial-education:2026-03-15:completed', 'follow-up:2026-07-15:revoked']],
    ['deceased', 'finished', ['initial-education:2026-03-15:completed', 'follow-up:2026-07-15:revoked']],
  ])('reason %s: episode %s, plans %j', (reason, status, plans) => {
    const result = exitEnrolment({ episode: state.episode, careTeam: state.careTeam, carePlans: state.carePlans, reason, date: '2026-09-01' });
    if (!result.ok) throw new Error(JSON.stringify(result.issues));
    expect(result.episode.status).toBe(status);
    expect(result.episode.period).toEqual({ start: '2026-03-15', end: '2026-09-01' });
    expect(result.episode.extension).toContainEqual({
      url: ENROLMENT_EXTENSIONS.exitReason,
      valueCodeableConcept: { coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/exit-reason', code: reason }] },
    });
    // only open plans are written: the completed initial education is not
    expect(summary(result.carePlans)).toEqual(plans.slice(1));
    expect(result.careTeam).toMatchObject({ status: 'inactive', period: { start: '2026-03-15', end: '2026-09-01' } });
    for (const resource of [result.episode, result.careTeam as fhir4.CareTeam, ...result.carePlans]) assertValid(resource);
  }, 30_000);

  it('revokes plans not yet started and stops activities under way', () => {
    const fnmf = buildEnrolment(fnmfContext, fnmfRequest(), '2026-02-01');
    const withSession = [recordSession(fnmf.carePlans[0] as fhir4.CarePlan, 0, 'Encounter/e1'), fnmf.carePlans[1] as fhir4.CarePlan];
    const result = exitEnrolment({ episode: fnmf.episode, carePlans: withSession, reason: 'lost-to-follow-up', date: '2026-03-01' });
    if (!result.ok) throw new Error('refused');
    expect(summary(result.carePlans)).toEqual(['intensive:2026-01-31:revoked', 'consolidation:2026-05-31:revoked']);
    expect(result.carePlans[0]?.activity?.map((a) => a.detail?.status)).toEqual(['stopped', 'cancelled', 'cancelled', 'cancelled']);
    expect(result.carePlans[0]?.period).toEqual({ start: '2026-01-31', end: '2026-05-30' }); // planned period kept
    for (const cp of result.carePlans) assertValid(cp);
  });

  it('exiting before the start cancels the episode (no end date)', () => {
    const planned = buildEnrolment(fnmfContext, fnmfRequest(), '2026-01-10');
    const result = exitEnrolment({ episode: planned.episode, careTeam: planned.careTeam, carePlans: planned.carePlans, reason: 'other', text: 'Changed her mind', date: '2026-01-20' });
    if (!result.ok) throw new Error('refused');
    expect(result.episode.status).toBe('cancelled');
    expect(result.episode.period).toEqual({ start: '2026-01-31' });
    expect(summary(result.carePlans)).toEqual(['intensive:2026-01-31:revoked', 'consolidation:2026-05-31:revoked']);
    expect(result.careTeam?.period).toEqual({ start: '2026-01-31' });
    for (const resource of [result.episode, result.careTeam as fhir4.CareTeam, ...result.carePlans]) assertValid(resource);
  }, 30_000);

  it('the same exit again is a no-op; a different one conflicts', () => {
    const first = exitEnrolment({ episode: state.episode, carePlans: state.carePlans, reason: 'other', text: 'moved to a nursing home', date: '2026-09-01' });
    if (!first.ok) throw new Error('refused');
    const again = exitEnrolment({ episode: first.episode, carePlans: first.carePlans, reason: 'other', text: 'moved to a nursing home', date: '2026-09-01' });
    expect(again).toEqual({ ok: true, episode: first.episode, carePlans: [] });
    if (again.ok) expect(again.episode).toBe(first.episode);
    const other = exitEnrolment({ episode: first.episode, carePlans: first.carePlans, reason: 'deceased', date: '2026-09-02' });
    expect(other.ok ? [] : other.issues.map((i) => [i.rule, i.code])).toEqual([['already-exited', 'conflict']]);
  });

  it.each<[string, { reason: string; text?: string; date: string }, EnrolmentRule[]]>([
    ['an unknown reason', { reason: 'bored', date: '2026-09-01' }, ['exit-reason-unknown']],
    ['other without text', { reason: 'other', date: '2026-09-01' }, ['exit-text-missing']],
    ['other with blank text', { reason: 'other', text: '  ', date: '2026-09-01' }, ['exit-text-missing']],
    ['a bad date', { reason: 'withdrew', date: '01/09/2026' }, ['exit-date-invalid']],
  ])('%s is refused', (_label, input, expected) => {
    const result = exitEnrolment({ episode: state.episode, carePlans: state.carePlans, ...input });
    expect(result.ok ? [] : result.issues.map((i) => i.rule)).toEqual(expected);
  });

  it('the episode profile requires the exit reason of an ended episode', () => {
    expect(() => assertValid({ ...state.episode, status: 'finished', period: { start: '2026-03-15', end: '2026-09-01' } })).toThrow('eoc-4');
  });
});

describe('openOnDemandPlan (REDIAB $add-plan)', () => {
  const base = buildEnrolment(rediabContext, rediabRequest(), '2026-03-15');
  const input = (overrides: Partial<Parameters<typeof openOnDemandPlan>[1]> = {}) => ({
    episode: base.episode,
    careTeam: base.careTeam,
    carePlans: base.carePlans,
    planCode: 'complementary-education',
    start: '2026-09-01',
    asOf: '2026-09-01',
    ...overrides,
  });

  it('opens a 6-month plan with the PlanDefinition applied', () => {
    const result = openOnDemandPlan(rediabContext, input());
    if (!result.ok) throw new Error(JSON.stringify(result.issues));
    expect(result.created).toBe(true);
    expect(summary([result.carePlan])).toEqual(['complementary-education:2026-09-01:active']);
    expect(result.carePlan.period).toEqual({ start: '2026-09-01', end: '2027-02-28' });
    expect(result.carePlan.id).toBe(carePlanId(base.episode.id as string, 'complementary-education', 0));
    // no dietitian in the team: the workshop action is dropped, the GP one stays
    expect(result.carePlan.activity?.map((a) => a.detail?.code?.coding?.[0]?.code)).toEqual(['gp-consultation']);
    assertValid(result.carePlan);
  });

  const opened = openOnDemandPlan(rediabContext, input());
  const withOpen = opened.ok ? [...base.carePlans, opened.carePlan] : base.carePlans;

  it('the same request again returns the existing plan', () => {
    const again = openOnDemandPlan(rediabContext, input({ carePlans: withOpen }));
    expect(again).toMatchObject({ ok: true, created: false });
    if (again.ok && opened.ok) expect(again.carePlan).toBe(opened.carePlan);
  });

  it.each<[string, Partial<Parameters<typeof openOnDemandPlan>[1]>, EnrolmentRule[]]>([
    ['a second one while the first is open', { carePlans: withOpen, start: '2026-10-01', asOf: '2026-10-01' }, ['plan-max-open']],
    ['an unknown plan', { planCode: 'podiatric-follow-up' }, ['plan-unknown']],
    ['a start before the enrolment', { start: '2026-03-01' }, ['plan-outside-episode']],
    ['a bad start', { start: 'soon' }, ['start-invalid']],
    ['an ended episode', { episode: { ...base.episode, status: 'finished' } }, ['episode-not-active']],
  ])('%s is refused', (_label, overrides, expected) => {
    const result = openOnDemandPlan(rediabContext, input(overrides));
    expect(result.ok ? [] : result.issues.map((i) => i.rule)).toEqual(expected);
  });

  it('a second one may open once the first has ended', () => {
    const result = openOnDemandPlan(rediabContext, input({ carePlans: withOpen, start: '2027-03-01', asOf: '2027-03-01' }));
    if (!result.ok) throw new Error(JSON.stringify(result.issues));
    expect(result.carePlan.id).toBe(carePlanId(base.episode.id as string, 'complementary-education', 1));
    expect(result.carePlan.period).toEqual({ start: '2027-03-01', end: '2027-08-31' });
  });

  it('advancePlans completes it at its end', () => {
    const state = { ...base, carePlans: withOpen };
    const written = advance(rediabContext, state, '2027-03-01').carePlans.filter((cp) => planCodeOf(cp) === 'complementary-education');
    expect(written.map((cp) => cp.status)).toEqual(['completed']);
  });
});
