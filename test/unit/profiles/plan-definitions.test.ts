/**
 * The plan content shipped in `profiles/` (issue #3): PlanDefinitions per plan, one
 * ActivityDefinition per session kind, and the CodeSystems of enrolment, checked against base
 * R4 and against the program data of `mappings/programs/<id>/enrolment.json` that names them.
 * A centre replacing a file through SITE_DIR/profiles/ must keep these properties.
 */
import { readdirSync, readFileSync } from 'node:fs';
import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4/index.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT_REASONS } from '../../../src/domain/enrolment/types.js';
import { formatIssue, initValidation, validateResource } from '../../../src/fhir/validation.js';
import {
  CARE_TEAM_ROLE_SYSTEM,
  DECLINE_REASON_SYSTEM,
  enrolmentSchema,
  EXIT_REASON_SYSTEM,
  PLAN_CODE_SYSTEM,
  PROGRAM_CODE_SYSTEM,
  SESSION_KIND_SYSTEM,
  type EnrolmentData,
  type PersonalisationOption,
} from '../../../src/programs/enrolment-schema.js';

const profilesDir = new URL('../../../profiles/', import.meta.url);
const programsDir = new URL('../../../mappings/programs/', import.meta.url);
const BASE = 'http://forfait-fhir.org/fhir';

function readJson<T>(url: URL): T {
  return JSON.parse(readFileSync(url, 'utf8')) as T;
}

/** The profiles/ files of the kinds this test covers, by file name. */
const files = readdirSync(profilesDir)
  .filter((f) => /^(PlanDefinition|ActivityDefinition|CodeSystem)-.+\.json$/.test(f))
  .sort();
const resources = new Map(files.map((f) => [f, readJson<fhir4.Resource>(new URL(f, profilesDir))]));
const ofType = <T extends fhir4.Resource>(type: T['resourceType']): T[] =>
  [...resources.values()].filter((r): r is T => r.resourceType === type);

const planDefinitions = ofType<fhir4.PlanDefinition>('PlanDefinition');
const activityDefinitions = ofType<fhir4.ActivityDefinition>('ActivityDefinition');
const codeSystems = ofType<fhir4.CodeSystem>('CodeSystem');
const planByUrl = new Map(planDefinitions.map((p) => [p.url, p]));
const activityByUrl = new Map(activityDefinitions.map((a) => [a.url, a]));

function codesOf(system: string): string[] {
  const cs = codeSystems.find((c) => c.url === system);
  if (!cs) throw new Error(`CodeSystem ${system} not in profiles/`);
  return (cs.concept ?? []).map((c) => c.code);
}

/** Programs with enrolment data, parsed with the schema the adapter uses. */
const programs: { id: string; enrolment: EnrolmentData }[] = readdirSync(programsDir, { withFileTypes: true })
  .filter((d) => d.isDirectory() && readdirSync(new URL(`${d.name}/`, programsDir)).includes('enrolment.json'))
  .map((d) => ({ id: d.name, enrolment: enrolmentSchema.parse(readJson(new URL(`${d.name}/enrolment.json`, programsDir))) }))
  .sort((a, b) => a.id.localeCompare(b.id));

function planUrlsOf(enrolment: EnrolmentData): string[] {
  return [...enrolment.plans, ...enrolment.onDemandPlans].map((p) => p.planDefinition);
}

function roleCodes(concepts: (fhir4.CodeableConcept | undefined)[]): string[] {
  return concepts.flatMap((cc) => (cc?.coding ?? []).filter((c) => c.system === CARE_TEAM_ROLE_SYSTEM).map((c) => c.code!));
}

function kindOf(action: fhir4.PlanDefinitionAction): string | undefined {
  const codings = (action.code ?? []).flatMap((cc) => cc.coding ?? []).filter((c) => c.system === SESSION_KIND_SYSTEM);
  return codings.length === 1 ? codings[0]!.code : undefined;
}

function conditionsOf(action: fhir4.PlanDefinitionAction): string[] {
  return (action.condition ?? []).map((c) => c.expression?.expression ?? '');
}

/** Every combination of a program's personalisation option values. */
function combinations(options: PersonalisationOption[]): Record<string, boolean | string>[] {
  let out: Record<string, boolean | string>[] = [{}];
  for (const option of options) {
    const values: (boolean | string)[] = option.type === 'boolean' ? [false, true] : option.values;
    out = out.flatMap((combo) => values.map((v) => ({ ...combo, [option.name]: v })));
  }
  return out;
}

/** FHIRPath applicability as the adapter evaluates it: exactly `[true]`. */
function applies(action: fhir4.PlanDefinitionAction, variables: Record<string, boolean | string>): boolean {
  return conditionsOf(action).every((expression) => {
    const result = fhirpath.evaluate({}, expression, variables, r4Model);
    return Array.isArray(result) && result.length === 1 && result[0] === true;
  });
}

const MONTH_DAYS = 365.25 / 12;
const UNIT_DAYS: Record<string, number> = { d: 1, wk: 7, mo: MONTH_DAYS, a: 365.25 };

beforeAll(() => {
  initValidation();
}, 30_000);

describe('profiles/ plan content', () => {
  it('finds the files it checks', () => {
    expect(planDefinitions.length).toBeGreaterThanOrEqual(6);
    expect(activityDefinitions.length).toBeGreaterThanOrEqual(9);
    expect(programs.map((p) => p.id)).toEqual(['fnmf-prediabetes', 'rediab']);
  });

  it.each(files)('%s is valid base R4, with id and url from its file name', (file) => {
    const resource = resources.get(file) as fhir4.PlanDefinition | fhir4.ActivityDefinition | fhir4.CodeSystem;
    expect(validateResource(resource, { profiles: [] }).map(formatIssue)).toEqual([]);
    const id = file.replace(/^[A-Za-z]+-/, '').replace(/\.json$/, '');
    expect(resource.resourceType).toBe(file.split('-')[0]);
    expect(resource.id).toBe(id);
    expect(resource.url).toBe(`${BASE}/${resource.resourceType}/${id}`);
    expect(resource.publisher).toBe('forfait-fhir');
    if (resource.resourceType === 'CodeSystem') {
      expect(resource).toMatchObject({ content: 'complete', caseSensitive: true });
      const codes = resource.concept!.map((c) => c.code);
      expect(new Set(codes).size).toBe(codes.length);
      for (const concept of resource.concept!) expect(concept.display, concept.code).toBeTruthy();
    }
  });

  it('ships the enrolment resources active, at version 1.0.0, citing their source', () => {
    // The eligibility code systems (eligibility-outcome, task-code) predate issue #3 and keep their own version.
    const enrolmentCodeSystems = [CARE_TEAM_ROLE_SYSTEM, SESSION_KIND_SYSTEM, PLAN_CODE_SYSTEM, EXIT_REASON_SYSTEM, DECLINE_REASON_SYSTEM, PROGRAM_CODE_SYSTEM];
    const ours = [...planDefinitions, ...activityDefinitions, ...codeSystems.filter((c) => enrolmentCodeSystems.includes(c.url!))];
    expect(ours.length).toBe(planDefinitions.length + activityDefinitions.length + enrolmentCodeSystems.length);
    for (const r of ours) {
      expect(r.version, r.url).toBe('1.0.0');
      expect(r.status, r.url).toBe('active');
      expect(r.description, r.url).toMatch(/DOMAIN\.md|seeds\//);
    }
  });

  it('has the code systems the enrolment code names, with the codes the domain uses', () => {
    expect(codesOf(EXIT_REASON_SYSTEM).sort()).toEqual([...EXIT_REASONS].sort());
    expect(codesOf(DECLINE_REASON_SYSTEM)).toContain('other');
    expect(codesOf(PROGRAM_CODE_SYSTEM).sort()).toEqual(programs.map((p) => p.id).sort());
    const planCodes = codesOf(PLAN_CODE_SYSTEM);
    for (const { id, enrolment } of programs) {
      for (const plan of [...enrolment.plans, ...enrolment.onDemandPlans]) expect(planCodes, `${id} ${plan.code}`).toContain(plan.code);
      const roles = codesOf(CARE_TEAM_ROLE_SYSTEM);
      for (const role of enrolment.careTeamRoles) expect(roles, `${id} ${role.code}`).toContain(role.code);
      for (const plan of enrolment.plans) if (plan.requiresRole) expect(roles).toContain(plan.requiresRole);
    }
  });

  it('has a PlanDefinition in profiles/ for every plan of every program', () => {
    for (const { id, enrolment } of programs) {
      for (const url of planUrlsOf(enrolment)) expect(planByUrl.has(url), `${id}: ${url}`).toBe(true);
    }
  });

  it('has exactly one ActivityDefinition per session kind, coded with it', () => {
    const kinds = codesOf(SESSION_KIND_SYSTEM);
    const adKinds = activityDefinitions.map((ad) => {
      expect(ad.kind).toBe('Appointment');
      const codings = (ad.code?.coding ?? []).filter((c) => c.system === SESSION_KIND_SYSTEM);
      expect(codings, ad.url).toHaveLength(1);
      expect(ad.url).toBe(`${BASE}/ActivityDefinition/${codings[0]!.code}`);
      const roles = roleCodes((ad.participant ?? []).map((p) => p.role));
      expect(roles.length, ad.url).toBeGreaterThan(0);
      for (const p of ad.participant ?? []) expect(p.type).toBe('practitioner');
      for (const role of roles) expect(codesOf(CARE_TEAM_ROLE_SYSTEM), `${ad.url} role ${role}`).toContain(role);
      return codings[0]!.code!;
    });
    expect([...adKinds].sort()).toEqual([...kinds].sort());
  });

  describe.each(programs)('$id', ({ id, enrolment }) => {
    const plans = planUrlsOf(enrolment).map((url) => planByUrl.get(url)!);
    const teamRoles = enrolment.careTeamRoles.map((r) => r.code);
    const options = new Map(enrolment.personalisation.map((o) => [o.name, o]));
    const durations = new Map(
      [...enrolment.plans, ...enrolment.onDemandPlans].map((p) => [p.planDefinition, p.durationMonths] as const),
    );

    it('has plans that are clinical protocols of this program with well-formed actions', () => {
      for (const plan of plans) {
        expect(plan, 'PlanDefinition missing').toBeDefined();
        expect(plan.type?.coding).toEqual([expect.objectContaining({ system: 'http://terminology.hl7.org/CodeSystem/plan-definition-type', code: 'clinical-protocol' })]);
        expect(plan.useContext?.[0]?.valueCodeableConcept?.coding?.[0]).toMatchObject({ system: PROGRAM_CODE_SYSTEM, code: id });
        expect(plan.usage).toMatch(/default protocol of this adapter, not from the program text/i);
        expect(plan.usage).toContain(`SITE_DIR/profiles/PlanDefinition-${plan.id}.json`);
        const actions = plan.action ?? [];
        expect(actions.length, plan.url).toBeGreaterThan(0);
        const ids = actions.map((a) => a.id);
        expect(new Set(ids).size, `${plan.url} action ids`).toBe(ids.length);
        for (const action of actions) {
          const where = `${plan.url}#${action.id}`;
          expect(action.id, where).toMatch(/^[a-z0-9][a-z0-9-]*$/);
          expect(action.title, where).toBeTruthy();
          expect(kindOf(action), `${where} session kind`).toBeDefined();
          const repeat = action.timingTiming?.repeat;
          expect(repeat, `${where} timing`).toBeDefined();
          expect(Number.isInteger(repeat!.count) && repeat!.count! >= 1, `${where} count`).toBe(true);
          expect(Number.isInteger(repeat!.frequency) && repeat!.frequency! >= 1, `${where} frequency`).toBe(true);
          expect(repeat!.period! > 0, `${where} period`).toBe(true);
          expect(Object.keys(UNIT_DAYS), `${where} periodUnit`).toContain(repeat!.periodUnit);
          // The sessions fit in the plan: from the first to the last, less than its duration.
          const spanDays = ((repeat!.count! - 1) / repeat!.frequency!) * repeat!.period! * UNIT_DAYS[repeat!.periodUnit!]!;
          expect(spanDays, `${where}: ${repeat!.count} sessions do not fit in the plan`).toBeLessThan(durations.get(plan.url!)! * MONTH_DAYS);
        }
      }
    });

    it('resolves every action to the ActivityDefinition of its session kind, with a role that may perform it', () => {
      const kinds = codesOf(SESSION_KIND_SYSTEM);
      for (const plan of plans) {
        for (const action of plan.action ?? []) {
          const where = `${plan.url}#${action.id}`;
          const kind = kindOf(action)!;
          expect(kinds, where).toContain(kind);
          expect(action.definitionCanonical, where).toBe(`${BASE}/ActivityDefinition/${kind}`);
          const ad = activityByUrl.get(action.definitionCanonical!);
          expect(ad, `${where}: ${action.definitionCanonical} not in profiles/`).toBeDefined();
          const roles = roleCodes((action.participant ?? []).map((p) => p.role));
          expect(roles, `${where} participant role`).toHaveLength(1);
          for (const p of action.participant ?? []) expect(p.type).toBe('practitioner');
          expect(roleCodes((ad!.participant ?? []).map((p) => p.role)), `${where}: ${ad!.url} roles`).toContain(roles[0]);
        }
      }
    });

    it("uses only care-team roles of the program's careTeamRoles", () => {
      const all = codesOf(CARE_TEAM_ROLE_SYSTEM);
      for (const plan of plans) {
        for (const action of plan.action ?? []) {
          for (const role of roleCodes((action.participant ?? []).map((p) => p.role))) {
            expect(all, `${plan.url}#${action.id}`).toContain(role);
            expect(teamRoles, `${plan.url}#${action.id}: role ${role} not in ${id} careTeamRoles`).toContain(role);
          }
        }
      }
    });

    it('writes conditions only on declared personalisation options, with declared values', () => {
      const comparison = /^%([A-Za-z][A-Za-z0-9]*) = (true|false|'([a-z0-9-]+)')$/;
      for (const plan of plans) {
        for (const action of plan.action ?? []) {
          const where = `${plan.url}#${action.id}`;
          for (const condition of action.condition ?? []) {
            expect(condition.kind, where).toBe('applicability');
            expect(condition.expression?.language, where).toBe('text/fhirpath');
            const expression = condition.expression?.expression ?? '';
            for (const [, name] of expression.matchAll(/%([A-Za-z][A-Za-z0-9]*)/g)) {
              expect([...options.keys()], `${where}: %${name} is not a personalisation option of ${id}`).toContain(name);
            }
            const match = comparison.exec(expression);
            expect(match, `${where}: "${expression}" is not %option = value`).not.toBeNull();
            const option = options.get(match![1]!)!;
            if (option.type === 'boolean') expect(['true', 'false'], where).toContain(match![2]);
            else expect(option.values, `${where}: value ${match![2]} of %${option.name}`).toContain(match![3]);
          }
        }
      }
    });

    it('gives every option an effect and one activity per session kind whatever the options', () => {
      const used = new Set(
        plans.flatMap((p) => (p.action ?? []).flatMap((a) => conditionsOf(a).flatMap((e) => [...e.matchAll(/%([A-Za-z][A-Za-z0-9]*)/g)].map((m) => m[1])))),
      );
      expect([...used].sort()).toEqual([...options.keys()].sort());
      for (const variables of combinations(enrolment.personalisation)) {
        for (const plan of plans) {
          const applicable = (plan.action ?? []).filter((a) => applies(a, variables));
          const kinds = applicable.map(kindOf);
          expect(new Set(kinds).size, `${plan.url} with ${JSON.stringify(variables)}: ${kinds.join(', ')}`).toBe(kinds.length);
          expect(applicable.length).toBeGreaterThan(0);
        }
      }
    });
  });

  it('applies the FNMF options as documented (default protocol)', () => {
    const fnmf = programs.find((p) => p.id === 'fnmf-prediabetes')!.enrolment;
    const intensive = planByUrl.get(`${BASE}/PlanDefinition/fnmf-intensive-phase`)!;
    const sessions = (variables: Record<string, boolean | string>): Record<string, number> =>
      Object.fromEntries((intensive.action ?? []).filter((a) => applies(a, variables)).map((a) => [kindOf(a)!, a.timingTiming!.repeat!.count!]));
    const defaults = Object.fromEntries(fnmf.personalisation.map((o) => [o.name, o.default]));
    const standard = sessions(defaults);
    expect(standard).not.toHaveProperty('apa-individual');
    expect(sessions({ ...defaults, personalisedApa: true })['apa-individual']).toBeGreaterThan(0);
    expect(sessions({ ...defaults, reinforcedCoaching: true })['nurse-coaching']).toBeGreaterThan(standard['nurse-coaching']!);
    const platform = (value: string): number => sessions({ ...defaults, platformIntensity: value })['resource-platform']!;
    expect(platform('light')).toBeLessThan(platform('standard'));
    expect(platform('standard')).toBeLessThan(platform('intensive'));
  });
});
