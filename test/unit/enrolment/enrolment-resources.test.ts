import { describe, expect, it } from 'vitest';
import {
  buildEnrolment,
  careTeamMembers,
  carePlanId,
  checkEnrolmentRequest,
  episodeOfCareId,
  personalisationOf,
  sameEnrolment,
  type EnrolmentRequestCheck,
} from '../../../src/domain/enrolment/enrolment-resources.js';
import { ENROLMENT_EXTENSIONS, ENROLMENT_PROFILES, type EnrolmentRequest, type EnrolmentRule } from '../../../src/domain/enrolment/types.js';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from '../../../src/domain/ids.js';
import { assertValid } from '../../../src/fhir/validation.js';
import {
  consent,
  fnmfContext,
  fnmfEnrolment,
  fnmfProgram,
  fnmfRequest,
  fnmfTeam,
  REDIAB_POLICY,
  rediabContext,
  rediabEnrolment,
  rediabRequest,
  rediabTeam,
} from './fixtures.js';

const summary = (carePlans: fhir4.CarePlan[]) =>
  carePlans.map((cp) => `${cp.category?.[0]?.coding?.[0]?.code}:${cp.period?.start}..${cp.period?.end}:${cp.status}`);

describe('buildEnrolment: FNMF', () => {
  const request = fnmfRequest({ options: { reinforcedCoaching: true }, overrideReason: 'BMI measured at 24.8 last week; GP judges the patient at risk' });

  it.each([
    // asOf, episode status, plans
    ['2026-01-15', 'planned', ['intensive:2026-01-31..2026-05-30:draft', 'consolidation:2026-05-31..2028-01-30:draft']],
    ['2026-01-31', 'active', ['intensive:2026-01-31..2026-05-30:active', 'consolidation:2026-05-31..2028-01-30:draft']],
    ['2026-05-31', 'active', ['intensive:2026-01-31..2026-05-30:completed', 'consolidation:2026-05-31..2028-01-30:active']],
  ])('as of %s: episode %s, plans %j', (asOf, status, plans) => {
    const { episode, carePlans } = buildEnrolment(fnmfContext, request, asOf);
    expect(episode.status).toBe(status);
    expect(summary(carePlans)).toEqual(plans);
  });

  const { episode, careTeam, carePlans } = buildEnrolment(fnmfContext, request, '2026-01-20');

  it('derives every id from a stable key (UUIDv5)', () => {
    const episodeId = deterministicUuid(FORFAIT_UUID_NAMESPACE, `EpisodeOfCare|${fnmfProgram.url}|p1|2026-01-31`);
    expect(episode.id).toBe(episodeId);
    expect(episodeOfCareId(fnmfProgram.url, 'p1', '2026-01-31')).toBe(episodeId);
    expect(careTeam.id).toBe(deterministicUuid(FORFAIT_UUID_NAMESPACE, `CareTeam|${episodeId}`));
    expect(carePlans.map((cp) => cp.id)).toEqual([carePlanId(episodeId, 'intensive', 0), carePlanId(episodeId, 'consolidation', 0)]);
    expect(buildEnrolment(fnmfContext, request, '2026-01-20')).toEqual({ episode, careTeam, carePlans });
    expect(buildEnrolment(fnmfContext, fnmfRequest({ patientId: 'p9' }), '2026-01-20').episode.id).not.toBe(episodeId);
  });

  it('writes the episode of the resource model', () => {
    expect(episode).toMatchObject({
      meta: { profile: [ENROLMENT_PROFILES.episodeOfCare] },
      identifier: [{ system: `${fnmfProgram.url}/enrolment`, value: 'p1|2026-01-31' }],
      type: [{ coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/program', code: 'fnmf-prediabetes' }] }],
      patient: { reference: 'Patient/p1' },
      period: { start: '2026-01-31' },
      team: [{ reference: `CareTeam/${careTeam.id}` }],
      careManager: { reference: 'PractitionerRole/gp-1' },
    });
    expect(episode.extension?.[0]).toEqual({ url: ENROLMENT_EXTENSIONS.overrideReason, valueString: request.overrideReason });
    // Every option recorded, defaults included, so later plans are built with the same values.
    expect(personalisationOf(episode)).toEqual({ personalisedApa: false, reinforcedCoaching: true, platformIntensity: 'standard' });
  });

  it('writes the care team with the role codings', () => {
    expect(careTeamMembers(careTeam)).toEqual(fnmfTeam);
    expect(careTeam.participant?.[0]).toEqual({
      role: [{ coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/care-team-role', code: 'gp', display: 'General practitioner (médecin traitant)' }] }],
      member: { reference: 'PractitionerRole/gp-1' },
    });
  });

  it('writes phase CarePlans linked to the episode, the team and the PlanDefinition', () => {
    const [first] = carePlans;
    expect(first).toMatchObject({
      meta: { profile: [ENROLMENT_PROFILES.carePlan] },
      extension: [{ url: ENROLMENT_EXTENSIONS.episodeOfCare, valueReference: { reference: `EpisodeOfCare/${episode.id}` } }],
      instantiatesCanonical: ['http://forfait-fhir.org/fhir/PlanDefinition/fnmf-intensive-phase'],
      intent: 'plan',
      category: [{ coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/plan-code', code: 'intensive' }] }],
      subject: { reference: 'Patient/p1' },
      careTeam: [{ reference: `CareTeam/${careTeam.id}` }],
    });
    // reinforced coaching: 8 nurse contacts, not 4
    const nurse = first?.activity?.find((a) => a.detail?.code?.coding?.[0]?.code === 'nurse-coaching');
    expect(nurse?.detail?.scheduledTiming?.repeat?.count).toBe(8);
  });

  it.each(['2026-01-20', '2026-03-01', '2026-06-01', '2028-06-01'])('validates against R4 and the profiles (as of %s)', (asOf) => {
    const built = buildEnrolment(fnmfContext, request, asOf);
    for (const resource of [built.episode, built.careTeam, ...built.carePlans]) assertValid(resource);
  }, 30_000);
});

describe('buildEnrolment: REDIAB', () => {
  it.each([
    ['without a podiatrist', rediabTeam, '2026-03-15', ['initial-education:2026-03-15..2026-07-14:active', 'follow-up:2026-07-15..2027-07-14:draft']],
    [
      'with a podiatrist',
      [...rediabTeam, { reference: 'PractitionerRole/pod-1', role: 'podiatrist' }],
      '2026-03-15',
      ['initial-education:2026-03-15..2026-07-14:active', 'follow-up:2026-07-15..2027-07-14:draft', 'podiatric-follow-up:2026-03-15..2027-03-14:active'],
    ],
    [
      'dated in the past: the follow-up years already due are opened too',
      rediabTeam,
      '2028-08-01',
      [
        'initial-education:2026-03-15..2026-07-14:completed',
        'follow-up:2026-07-15..2027-07-14:completed',
        'follow-up:2027-07-15..2028-07-14:completed',
        'follow-up:2028-07-15..2029-07-14:active',
      ],
    ],
  ])('%s', (_label, careTeam, asOf, plans) => {
    const built = buildEnrolment(rediabContext, rediabRequest({ careTeam }), asOf);
    expect(summary(built.carePlans)).toEqual(plans);
    expect(built.episode.extension).toBeUndefined(); // no options, no override
    for (const resource of [built.episode, built.careTeam, ...built.carePlans]) assertValid(resource);
  }, 30_000);

  it('a completed period closes its activities (none held: cancelled)', () => {
    const built = buildEnrolment(rediabContext, rediabRequest(), '2028-08-01');
    expect(built.carePlans[0]?.activity?.map((a) => a.detail?.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(built.carePlans[3]?.activity?.map((a) => a.detail?.status)).toEqual(['not-started', 'not-started']);
  });

  it('throws on a request that checkEnrolmentRequest would refuse', () => {
    expect(() => buildEnrolment(rediabContext, rediabRequest({ start: '2026-02-30' }), '2026-03-01')).toThrow(RangeError);
    expect(() => buildEnrolment(fnmfContext, fnmfRequest({ options: { coaching: true } }), '2026-03-01')).toThrow(RangeError);
    expect(() => buildEnrolment({ ...fnmfContext, planDefinitions: new Map() }, fnmfRequest(), '2026-03-01')).toThrow(/not loaded/);
  });
});

function rules(check: EnrolmentRequestCheck): EnrolmentRule[] {
  return checkEnrolmentRequest(check).map((issue) => issue.rule);
}

describe('checkEnrolmentRequest', () => {
  const rediabCheck = (request: EnrolmentRequest, overrides: Partial<EnrolmentRequestCheck> = {}): EnrolmentRequestCheck => ({
    enrolment: rediabEnrolment,
    request,
    zone: 'Europe/Paris',
    consent: consent(),
    consentCriterion: { policyUris: [REDIAB_POLICY] },
    ...overrides,
  });

  it.each<[string, EnrolmentRequestCheck, EnrolmentRule[]]>([
    ['a valid FNMF request', { enrolment: fnmfEnrolment, request: fnmfRequest(), zone: 'Europe/Paris' }, []],
    ['a valid REDIAB request', rediabCheck(rediabRequest()), []],
    ['start not a date', { enrolment: fnmfEnrolment, request: fnmfRequest({ start: '31/01/2026' }), zone: 'Europe/Paris' }, ['start-invalid']],
    ['start an impossible date', { enrolment: fnmfEnrolment, request: fnmfRequest({ start: '2026-02-29' }), zone: 'Europe/Paris' }, ['start-invalid']],
    [
      'FNMF team without an APA teacher',
      { enrolment: fnmfEnrolment, request: fnmfRequest({ careTeam: fnmfTeam.filter((m) => m.role !== 'apa-teacher') }), zone: 'Europe/Paris' },
      ['care-team-missing-role'],
    ],
    ['an empty team', { enrolment: fnmfEnrolment, request: fnmfRequest({ careTeam: [] }), zone: 'Europe/Paris' }, ['care-team-missing-role', 'care-team-missing-role']],
    [
      'a member with a role of the other program',
      { enrolment: fnmfEnrolment, request: fnmfRequest({ careTeam: [...fnmfTeam, { reference: 'Practitioner/x', role: 'podiatrist' }] }), zone: 'Europe/Paris' },
      ['care-team-unknown-role'],
    ],
    [
      'a member that is not a practitioner',
      { enrolment: fnmfEnrolment, request: fnmfRequest({ careTeam: [...fnmfTeam, { reference: 'Patient/p1', role: 'nurse' }] }), zone: 'Europe/Paris' },
      ['care-team-member-invalid'],
    ],
    [
      'a member listed twice with the same role',
      { enrolment: fnmfEnrolment, request: fnmfRequest({ careTeam: [...fnmfTeam, { reference: 'Practitioner/nurse-1', role: 'nurse' }] }), zone: 'Europe/Paris' },
      ['care-team-duplicate'],
    ],
    ['REDIAB without consent', rediabCheck(rediabRequest({ consent: undefined })), ['consent-missing']],
    ['consent referenced but not found', rediabCheck(rediabRequest(), { consent: undefined }), ['consent-not-found']],
    ['consent of another id', rediabCheck(rediabRequest({ consent: 'Consent/other' })), ['consent-not-found']],
    ['consent draft', rediabCheck(rediabRequest(), { consent: consent({ status: 'draft' }) }), ['consent-not-active']],
    ['consent inactive', rediabCheck(rediabRequest(), { consent: consent({ status: 'inactive' }) }), ['consent-not-active']],
    [
      'consent whose period ended before the start',
      rediabCheck(rediabRequest(), { consent: consent({ provision: { period: { start: '2025-01-01', end: '2026-03-14' } } }) }),
      ['consent-not-active'],
    ],
    ["another patient's consent", rediabCheck(rediabRequest(), { consent: consent({ patient: { reference: 'Patient/p9' } }) }), ['consent-other-patient']],
    ['a consent of another program', rediabCheck(rediabRequest(), { consent: consent({ policy: [{ uri: 'http://example.org/other' }] }) }), ['consent-other-program']],
    ['a consent of the program by category only', rediabCheck(rediabRequest(), {
      consent: consent({ policy: [] }),
      consentCriterion: {
        policyUris: [REDIAB_POLICY],
        categories: { resourceType: 'ValueSet', id: 'x', url: 'http://example.org/vs', status: 'active', compose: { include: [{ system: 'http://loinc.org', concept: [{ code: '59284-0' }] }] } },
      },
    }), []],
    ['a bad option', { enrolment: fnmfEnrolment, request: fnmfRequest({ options: { platformIntensity: 'max' } }), zone: 'Europe/Paris' }, ['option-invalid']],
    ['not eligible, no override', { enrolment: fnmfEnrolment, request: fnmfRequest(), zone: 'Europe/Paris', eligibility: 'not-eligible' }, ['override-reason-missing']],
    ['undetermined, no override', { enrolment: fnmfEnrolment, request: fnmfRequest(), zone: 'Europe/Paris', eligibility: 'undetermined' }, ['override-reason-missing']],
    ['not eligible with an override reason', { enrolment: fnmfEnrolment, request: fnmfRequest({ overrideReason: 'GP decision' }), zone: 'Europe/Paris', eligibility: 'not-eligible' }, []],
    ['an empty override reason', { enrolment: fnmfEnrolment, request: fnmfRequest({ overrideReason: ' ' }), zone: 'Europe/Paris', eligibility: 'not-eligible' }, ['override-reason-missing', 'override-reason-missing']],
    ['the 140th place', { enrolment: fnmfEnrolment, request: fnmfRequest(), zone: 'Europe/Paris', openEnrolments: 139 }, []],
    ['the 141st enrolment', { enrolment: fnmfEnrolment, request: fnmfRequest(), zone: 'Europe/Paris', openEnrolments: 140 }, ['capacity-reached']],
    ['no capacity in REDIAB', rediabCheck(rediabRequest(), { openEnrolments: 10_000 }), []],
  ])('%s: %j', (_label, check, expected) => {
    expect(rules(check)).toEqual(expected);
  });

  it('says where: the request field and the Consent element', () => {
    const issues = checkEnrolmentRequest(rediabCheck(rediabRequest(), { consent: consent({ status: 'inactive' }) }));
    expect(issues).toEqual([
      { rule: 'consent-not-active', code: 'business-rule', diagnostics: 'The Consent is inactive, not active.', field: 'consent', expression: 'Consent.status' },
    ]);
  });
});

describe('sameEnrolment', () => {
  const original = fnmfRequest({ options: { reinforcedCoaching: true } });
  const { episode, careTeam } = buildEnrolment(fnmfContext, original, '2026-01-20');
  it.each<[string, EnrolmentRequest, boolean]>([
    ['the same request', original, true],
    ['the same team in another order', { ...original, careTeam: [...fnmfTeam].reverse() }, true],
    ['an option left to its default', { ...original, options: {} }, true],
    ['a default given explicitly', { ...original, options: { reinforcedCoaching: true, platformIntensity: 'standard' } }, true],
    ['another start', { ...original, start: '2026-02-01' }, false],
    ['another member', { ...original, careTeam: [...fnmfTeam.slice(1), { reference: 'PractitionerRole/gp-9', role: 'gp' }] }, false],
    ['a member with another role', { ...original, careTeam: fnmfTeam.map((m) => (m.role === 'nurse' ? { ...m, role: 'psychologist' } : m)) }, false],
    ['one member less', { ...original, careTeam: fnmfTeam.slice(0, 3) }, false],
    ['another option value', { ...original, options: { reinforcedCoaching: false } }, false],
  ])('%s: %s', (_label, request, same) => {
    expect(sameEnrolment(episode, careTeam, request)).toBe(same);
  });
});
