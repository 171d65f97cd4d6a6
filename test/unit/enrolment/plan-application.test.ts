import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { applyPlanDefinition, planDefinitionProblems, resolvePersonalisation, sessionKindOf } from '../../../src/domain/enrolment/plan-application.js';
import { evaluateFhirPathCondition } from '../../../src/fhir/fhirpath-conditions.js';
import { ENROLMENT_EXTENSIONS, type CareTeamMember, type PersonalisationValues } from '../../../src/domain/enrolment/types.js';
import { fnmfEnrolment, fnmfTeam, planDefinition, planDefinitions, rediabEnrolment, tinyEvaluate } from './fixtures.js';

const INTENSIVE = 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-intensive-phase';
const intensive = planDefinitions.get(INTENSIVE) as fhir4.PlanDefinition;
const DEFAULTS = { personalisedApa: false, reinforcedCoaching: false, platformIntensity: 'standard' };

describe('tinyEvaluate (the test stand-in for FHIRPath)', () => {
  it.each([
    ['%a = true', { a: true }, true],
    ['%a = true', { a: false }, false],
    ['%a = false', { a: false }, true],
    ['%a', { a: true }, true],
    ["%p = 'intensive'", { p: 'intensive' }, true],
    ["%p = 'intensive'", { p: 'light' }, false],
    ['%missing = true', {}, false],
  ])('%s with %j is %s', (expression, variables, expected) => {
    expect(tinyEvaluate(expression, variables)).toBe(expected);
  });

  it('refuses what it does not understand', () => {
    expect(() => tinyEvaluate('%a = true and %b = true', { a: true, b: true })).toThrow();
  });
});

describe('resolvePersonalisation', () => {
  it.each([
    ['nothing given: every default', {}, DEFAULTS],
    ['a boolean option', { reinforcedCoaching: true }, { ...DEFAULTS, reinforcedCoaching: true }],
    ['a code option', { platformIntensity: 'intensive' }, { ...DEFAULTS, platformIntensity: 'intensive' }],
    ['all of them', { personalisedApa: true, reinforcedCoaching: false, platformIntensity: 'light' }, { personalisedApa: true, reinforcedCoaching: false, platformIntensity: 'light' }],
  ])('%s', (_label, given, values) => {
    expect(resolvePersonalisation(fnmfEnrolment.personalisation, given)).toEqual({ ok: true, values });
  });

  it.each([
    ['an unknown name', { coaching: true }, [['option-unknown', 'options.coaching']]],
    ['a string for a boolean', { reinforcedCoaching: 'true' }, [['option-invalid', 'options.reinforcedCoaching']]],
    ['a number for a boolean', { personalisedApa: 1 }, [['option-invalid', 'options.personalisedApa']]],
    ['a code outside the values', { platformIntensity: 'extreme' }, [['option-invalid', 'options.platformIntensity']]],
    ['a boolean for a code', { platformIntensity: true }, [['option-invalid', 'options.platformIntensity']]],
    ['several at once', { x: 1, platformIntensity: 'x' }, [['option-unknown', 'options.x'], ['option-invalid', 'options.platformIntensity']]],
  ])('%s is an issue', (_label, given, expected) => {
    const result = resolvePersonalisation(fnmfEnrolment.personalisation, given);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.issues.map((i) => [i.rule, i.field])).toEqual(expected);
  });

  it('a program without options accepts none', () => {
    expect(resolvePersonalisation(rediabEnrolment.personalisation, {})).toEqual({ ok: true, values: {} });
    expect(resolvePersonalisation(rediabEnrolment.personalisation, { reinforcedCoaching: true }).ok).toBe(false);
  });
});

function kinds(activities: fhir4.CarePlanActivity[]): string[] {
  return activities.map((a) => `${sessionKindOf(a.detail?.code) ?? '?'}:${a.detail?.scheduledTiming?.repeat?.count ?? '?'}`);
}

describe('applyPlanDefinition: conditions and roles', () => {
  const full = fnmfTeam;
  const noDietitian = fnmfTeam.filter((m) => m.role !== 'dietitian');
  it.each<[string, PersonalisationValues, CareTeamMember[], string[]]>([
    ['defaults, full team', DEFAULTS, full, ['apa-group:16', 'dietary:4', 'nurse-coaching:4', 'gp-consultation:2']],
    ['personalised APA', { ...DEFAULTS, personalisedApa: true }, full, ['apa-group:16', 'apa-individual:8', 'dietary:4', 'nurse-coaching:4', 'gp-consultation:2']],
    ['reinforced coaching replaces standard coaching', { ...DEFAULTS, reinforcedCoaching: true }, full, ['apa-group:16', 'dietary:4', 'nurse-coaching:8', 'gp-consultation:2']],
    ['intensive platform use', { ...DEFAULTS, platformIntensity: 'intensive' }, full, ['apa-group:16', 'dietary:4', 'nurse-coaching:4', 'resource-platform:16', 'gp-consultation:2']],
    ['an optional role absent from the team drops its sessions', DEFAULTS, noDietitian, ['apa-group:16', 'nurse-coaching:4', 'gp-consultation:2']],
  ])('%s', (_label, values, team, expected) => {
    expect(kinds(applyPlanDefinition(intensive, { values, team, evaluate: tinyEvaluate }))).toEqual(expected);
  });

  it('an activity is fully described: kind, canonical, code, status, timing, performers, extensions', () => {
    const team: CareTeamMember[] = [...fnmfTeam, { reference: 'Practitioner/apa-2', role: 'apa-teacher' }];
    const [apa] = applyPlanDefinition(intensive, { values: DEFAULTS, team, evaluate: tinyEvaluate });
    expect(apa).toEqual({
      detail: {
        extension: [
          { url: ENROLMENT_EXTENSIONS.performerRole, valueCoding: { system: 'http://forfait-fhir.org/fhir/CodeSystem/care-team-role', code: 'apa-teacher' } },
          { url: ENROLMENT_EXTENSIONS.sessionCount, valueUnsignedInt: 0 },
        ],
        kind: 'Appointment',
        instantiatesCanonical: ['http://forfait-fhir.org/fhir/ActivityDefinition/apa-group'],
        code: { coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/session-kind', code: 'apa-group' }], text: 'apa-group sessions' },
        status: 'not-started',
        performer: [{ reference: 'PractitionerRole/apa-1' }, { reference: 'Practitioner/apa-2' }],
        scheduledTiming: { repeat: { count: 16, frequency: 1, period: 1, periodUnit: 'wk' } },
      },
    });
  });

  it('passes the values to the evaluator as variables, and does not let it change them', () => {
    const seen: Record<string, unknown>[] = [];
    const values = { ...DEFAULTS };
    applyPlanDefinition(intensive, {
      values,
      team: fnmfTeam,
      evaluate: (expression, variables) => {
        seen.push(variables);
        variables['personalisedApa'] = true;
        return tinyEvaluate(expression, variables);
      },
    });
    expect(seen.length).toBeGreaterThan(0);
    expect(values).toEqual(DEFAULTS);
  });

  it('does not share objects with the PlanDefinition', () => {
    const [apa] = applyPlanDefinition(intensive, { values: DEFAULTS, team: fnmfTeam, evaluate: tinyEvaluate });
    expect(apa?.detail?.scheduledTiming).not.toBe(intensive.action?.[0]?.timingTiming);
  });
});

describe('planDefinitionProblems', () => {
  const ok = planDefinition('http://example.org/pd', [{ id: 'a', kind: 'dietary', role: 'dietitian', count: 1 }]);
  const broken = (patch: (action: fhir4.PlanDefinitionAction) => void): fhir4.PlanDefinition => {
    const copy = structuredClone(ok);
    patch(copy.action?.[0] as fhir4.PlanDefinitionAction);
    return copy;
  };
  it.each<[string, fhir4.PlanDefinition, RegExp | undefined]>([
    ['a conforming definition', ok, undefined],
    ['no code', broken((a) => delete a.code), /session-kind/],
    ['a code of another system', broken((a) => (a.code = [{ coding: [{ system: 'http://snomed.info/sct', code: '1' }] }])), /session-kind/],
    ['no participant role', broken((a) => delete a.participant), /care-team-role/],
    ['no definitionCanonical', broken((a) => delete a.definitionCanonical), /definitionCanonical/],
    ['a CQL condition', broken((a) => (a.condition = [{ kind: 'applicability', expression: { language: 'text/cql', expression: 'true' } }])), /text\/fhirpath/],
    ['nested actions', broken((a) => (a.action = [{ title: 'x' }])), /nested/],
    ['no action at all', { ...ok, action: [] }, /no action/],
  ])('%s', (_label, pd, problem) => {
    const problems = planDefinitionProblems(pd);
    if (problem === undefined) expect(problems).toEqual([]);
    else expect(problems.join('\n')).toMatch(problem);
  });

  it('applyPlanDefinition refuses a definition with problems', () => {
    expect(() => applyPlanDefinition(broken((a) => delete a.code), { values: {}, team: fnmfTeam, evaluate: tinyEvaluate })).toThrow(RangeError);
  });

  it('ignores start/stop conditions (they do not choose sessions)', () => {
    const pd = broken((a) => (a.condition = [{ kind: 'start', expression: { language: 'text/cql', expression: 'x' } }]));
    expect(planDefinitionProblems(pd)).toEqual([]);
    expect(applyPlanDefinition(pd, { values: {}, team: [{ reference: 'Practitioner/d', role: 'dietitian' }], evaluate: tinyEvaluate })).toHaveLength(1);
  });
});

describe("the protocol in profiles/ follows the convention", () => {
  const dir = join(dirname(fileURLToPath(import.meta.url)), '../../../profiles');
  const files = readdirSync(dir).filter((f) => f.startsWith('PlanDefinition-') && f.endsWith('.json'));
  const programPlans = [...fnmfEnrolment.plans, ...rediabEnrolment.plans, ...rediabEnrolment.onDemandPlans].map((p) => p.planDefinition);

  it.each(files)('%s', (file) => {
    const pd = JSON.parse(readFileSync(join(dir, file), 'utf8')) as fhir4.PlanDefinition;
    expect(planDefinitionProblems(pd)).toEqual([]);
    // Applicable with the default options and a team holding every role the program knows.
    const roles = [...fnmfEnrolment.careTeamRoles, ...rediabEnrolment.careTeamRoles].map((r) => r.code);
    const team = roles.map((role) => ({ reference: `Practitioner/${role}`, role }));
    expect(applyPlanDefinition(pd, { values: DEFAULTS, team, evaluate: tinyEvaluate }).length).toBeGreaterThan(0);
  });

  it.each([
    DEFAULTS,
    { personalisedApa: true, reinforcedCoaching: true, platformIntensity: 'intensive' },
    { personalisedApa: false, reinforcedCoaching: true, platformIntensity: 'light' },
  ])('the FHIRPath evaluator of the adapter selects the same sessions as the stand-in (%j)', (values) => {
    const roles = [...fnmfEnrolment.careTeamRoles, ...rediabEnrolment.careTeamRoles].map((r) => r.code);
    const team = roles.map((role) => ({ reference: `Practitioner/${role}`, role }));
    for (const file of files) {
      const pd = JSON.parse(readFileSync(join(dir, file), 'utf8')) as fhir4.PlanDefinition;
      const real = applyPlanDefinition(pd, { values, team, evaluate: evaluateFhirPathCondition });
      expect(real).toEqual(applyPlanDefinition(pd, { values, team, evaluate: tinyEvaluate }));
    }
  });

  it('every plan of the programs has its PlanDefinition there', () => {
    const urls = files.map((file) => (JSON.parse(readFileSync(join(dir, file), 'utf8')) as fhir4.PlanDefinition).url);
    expect(urls).toEqual(expect.arrayContaining(programPlans));
  });
});
