/**
 * The enrolment profiles (profiles/StructureDefinition-{enrolment-episode-of-care,
 * program-care-team,phase-care-plan,care-session-encounter}.json): what the builders emit is
 * valid (see the other tests), and each invariant catches the mistake it is there for.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { buildEnrolment } from '../../../src/domain/enrolment/enrolment-resources.js';
import { recordSession } from '../../../src/domain/enrolment/sessions.js';
import { ENROLMENT_EXTENSIONS, ENROLMENT_PROFILES } from '../../../src/domain/enrolment/types.js';
import { formatIssue, initValidation, validateResource } from '../../../src/fhir/validation.js';
import { fnmfContext, fnmfRequest } from './fixtures.js';

beforeAll(() => {
  expect(initValidation()).toEqual(expect.arrayContaining(Object.values(ENROLMENT_PROFILES)));
}, 30_000);

const built = buildEnrolment(fnmfContext, fnmfRequest({ overrideReason: 'GP decision', options: { personalisedApa: true } }), '2026-02-01');
const carePlan = recordSession(built.carePlans[0] as fhir4.CarePlan, 0, 'Encounter/e1');

function errors(resource: fhir4.Resource): string {
  return validateResource(resource).map(formatIssue).join('\n');
}

function mutated<T extends fhir4.Resource>(resource: T, mutate: (copy: T) => void): T {
  const copy = structuredClone(resource);
  mutate(copy);
  return copy;
}

describe('what the builders emit validates (base R4 and the profile)', () => {
  it.each([
    ['EpisodeOfCare', built.episode],
    ['CareTeam', built.careTeam],
    ['CarePlan with a session', carePlan],
  ])('%s', (_label, resource) => {
    expect(errors(resource)).toBe('');
    expect(validateResource(resource, { profiles: [] })).toEqual([]);
  });
});

describe('enrolment-episode-of-care', () => {
  it.each<[string, (e: fhir4.EpisodeOfCare) => void, string]>([
    ['a status outside the model', (e) => (e.status = 'onhold'), 'eoc-1'],
    ['no program coding', (e) => (e.type = [{ text: 'FNMF' }]), 'eoc-2'],
    ['no start', (e) => (e.period = { end: '2027-01-01' }), 'eoc-3'],
    ['finished without exit reason', (e) => ((e.status = 'finished'), (e.period = { start: '2026-01-31', end: '2026-06-01' })), 'eoc-4'],
    ['an exit reason on an active episode', (e) => e.extension?.push({ url: ENROLMENT_EXTENSIONS.exitReason, valueCodeableConcept: { coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/exit-reason', code: 'withdrew' }] } }), 'eoc-4'],
    [
      'exit reason other without text',
      (e) => {
        e.status = 'finished';
        e.period = { start: '2026-01-31', end: '2026-06-01' };
        e.extension?.push({ url: ENROLMENT_EXTENSIONS.exitReason, valueCodeableConcept: { coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/exit-reason', code: 'other' }] } });
      },
      'eoc-5',
    ],
    ['an empty-valued override reason', (e) => e.extension?.push({ url: ENROLMENT_EXTENSIONS.overrideReason, valueBoolean: true }), 'eoc-6'],
    [
      'a personalisation option recorded twice',
      (e) => e.extension?.push({ url: ENROLMENT_EXTENSIONS.personalisation, extension: [{ url: 'name', valueCode: 'personalisedApa' }, { url: 'value', valueBoolean: false }] }),
      'eoc-7',
    ],
    ['a personalisation option without value', (e) => e.extension?.push({ url: ENROLMENT_EXTENSIONS.personalisation, extension: [{ url: 'name', valueCode: 'x' }] }), 'eoc-7'],
    ['a contained patient', (e) => (e.patient = { reference: '#p' }), 'eoc-8'],
    ['no team', (e) => delete e.team, 'team'],
    ['no identifier', (e) => delete e.identifier, 'identifier'],
  ])('%s is invalid (%s)', (_label, mutate, expected) => {
    expect(errors(mutated(built.episode, mutate))).toContain(expected);
  });
});

describe('program-care-team', () => {
  it.each<[string, (t: fhir4.CareTeam) => void, string]>([
    ['a participant without a care-team-role coding', (t) => ((t.participant as fhir4.CareTeamParticipant[])[0] = { member: { reference: 'Practitioner/x' } }), 'pct-1'],
    ['an Organization member', (t) => ((t.participant as fhir4.CareTeamParticipant[])[0] = { role: t.participant?.[0]?.role, member: { reference: 'Organization/o' } } as fhir4.CareTeamParticipant), 'pct-2'],
    ['no subject', (t) => delete t.subject, 'subject'],
    ['no participant', (t) => delete t.participant, 'participant'],
  ])('%s is invalid (%s)', (_label, mutate, expected) => {
    expect(errors(mutated(built.careTeam, mutate))).toContain(expected);
  });
});

describe('phase-care-plan', () => {
  const detail = (c: fhir4.CarePlan, index = 0) => c.activity?.[index]?.detail as fhir4.CarePlanActivityDetail;
  it.each<[string, (c: fhir4.CarePlan) => void, string]>([
    ['on-hold', (c) => (c.status = 'on-hold'), 'pcp-1'],
    ['no episode link', (c) => (c.extension = []), 'pcp-2'],
    ['an episode link to something else', (c) => (c.extension = [{ url: ENROLMENT_EXTENSIONS.episodeOfCare, valueReference: { reference: 'Encounter/x' } }]), 'pcp-2'],
    ['no plan code', (c) => (c.category = [{ text: 'intensive' }]), 'pcp-3'],
    ['an open-ended period', (c) => (c.period = { start: '2026-01-31' }), 'pcp-4'],
    ['an activity of another kind', (c) => (detail(c).kind = 'Task'), 'pcp-5'],
    ['an activity without performer role', (c) => (detail(c).extension = detail(c).extension?.filter((e) => e.url !== ENROLMENT_EXTENSIONS.performerRole)), 'pcp-5'],
    ['an activity without session count', (c) => (detail(c).extension = detail(c).extension?.filter((e) => e.url !== ENROLMENT_EXTENSIONS.sessionCount)), 'pcp-5'],
    ['a count that disagrees with the sessions', (c) => c.activity?.[0]?.outcomeReference?.push({ reference: 'Encounter/e2' }), 'pcp-6'],
    ['a session that is not an Encounter', (c) => (c.activity![0]!.outcomeReference = [{ reference: 'Observation/o1' }]), 'pcp-7'],
    ['a completed plan with an activity in progress', (c) => (c.status = 'completed'), 'pcp-8'],
    ['intent proposal', (c) => (c.intent = 'proposal'), 'intent'],
    ['two PlanDefinitions', (c) => c.instantiatesCanonical?.push('http://example.org/pd'), 'instantiatesCanonical'],
    ['a group subject', (c) => (c.subject = { reference: 'Group/g' }), 'pcp-9'],
  ])('%s is invalid (%s)', (_label, mutate, expected) => {
    expect(errors(mutated(carePlan, mutate))).toContain(expected);
  });
});
