/**
 * Applying a program's PlanDefinition to one patient (issue #3, point 2): which sessions of a
 * plan apply, how many and how often, and who performs them. Pure: the FHIRPath engine that
 * judges applicability conditions is injected (`ConditionEvaluator`).
 *
 * PlanDefinition convention (profiles/PlanDefinition-*.json): flat `action[]`, each with
 * - `code[0].coding[0]`: the session kind (CodeSystem session-kind);
 * - `definitionCanonical`: the ActivityDefinition of that kind of session;
 * - `condition[]` of kind `applicability`, `text/fhirpath`, over the personalisation options as
 *   `%name` (e.g. `%reinforcedCoaching = true`, `%platformIntensity = 'intensive'`);
 * - `timingTiming.repeat`: how many sessions (`count`) and how often (`frequency` per `period`
 *   `periodUnit`);
 * - `participant[0].role.coding[0]`: the care-team role performing the sessions.
 *
 * **Rule**: an action becomes a CarePlan activity when every applicability condition holds for
 * the patient's personalisation values AND the care team has at least one member with the
 * action's role. An optional role absent from the team therefore drops its sessions (a team
 * without a psychologist gets no psychological sessions); required roles are enforced at
 * enrolment (`checkEnrolmentRequest`), so their sessions are always there.
 */
import { CARE_TEAM_ROLE_SYSTEM, SESSION_KIND_SYSTEM, type PersonalisationOption } from '../../programs/enrolment-schema.js';
import {
  ENROLMENT_EXTENSIONS,
  type CareTeamMember,
  type Checked,
  type ConditionEvaluator,
  type EnrolmentIssue,
  type PersonalisationValues,
} from './types.js';

const FHIRPATH = 'text/fhirpath';

/**
 * Activity status when a plan is written. R4 CarePlan activity status `not-started` ("planned
 * but no action has yet been taken"), not `scheduled` ("an appointment or other booking has
 * occurred"): the CarePlan says how many sessions are due, no appointment is booked yet. It
 * becomes `in-progress` with the first recorded session (`recordSession`).
 */
export const INITIAL_ACTIVITY_STATUS = 'not-started' satisfies fhir4.CarePlanActivityDetail['status'];

/**
 * The personalisation values of an enrolment: the given ones, checked against the program's
 * options, and the default of every option not given. Unknown names, a non-boolean for a
 * boolean option, or a code outside an option's values are issues (nothing is guessed).
 */
export function resolvePersonalisation(
  options: readonly PersonalisationOption[],
  given: Readonly<Record<string, unknown>>,
): Checked<{ values: PersonalisationValues }> {
  const issues: EnrolmentIssue[] = [];
  const byName = new Map(options.map((option) => [option.name, option]));
  for (const name of Object.keys(given)) {
    if (!byName.has(name)) {
      const known = options.map((option) => option.name).join(', ') || 'none';
      issues.push({
        rule: 'option-unknown',
        code: 'not-supported',
        diagnostics: `Unknown personalisation option "${name}" (the program's options: ${known}).`,
        field: `options.${name}`,
      });
    }
  }
  const values: PersonalisationValues = {};
  for (const option of options) {
    const value = Object.hasOwn(given, option.name) ? given[option.name] : undefined;
    if (value === undefined) {
      values[option.name] = option.default;
    } else if (option.type === 'boolean') {
      if (typeof value === 'boolean') values[option.name] = value;
      else issues.push(optionInvalid(option.name, `a boolean`, value));
    } else if (typeof value === 'string' && option.values.includes(value)) {
      values[option.name] = value;
    } else {
      issues.push(optionInvalid(option.name, `one of ${option.values.join(', ')}`, value));
    }
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, values };
}

function optionInvalid(name: string, expected: string, value: unknown): EnrolmentIssue {
  return {
    rule: 'option-invalid',
    code: 'value',
    diagnostics: `Personalisation option "${name}" must be ${expected}, not ${JSON.stringify(value)}.`,
    field: `options.${name}`,
  };
}

/** The parts of an action the application reads, once checked. */
interface ActionParts {
  kind: fhir4.Coding;
  role: fhir4.Coding;
  definition: string;
  conditions: string[];
}

function actionParts(action: fhir4.PlanDefinitionAction): ActionParts | string[] {
  const problems: string[] = [];
  const kind = action.code?.[0]?.coding?.[0];
  if (kind?.system !== SESSION_KIND_SYSTEM || !kind.code) problems.push(`code[0].coding[0] is not a ${SESSION_KIND_SYSTEM} coding`);
  const role = action.participant?.[0]?.role?.coding?.[0];
  if (role?.system !== CARE_TEAM_ROLE_SYSTEM || !role.code) problems.push(`participant[0].role.coding[0] is not a ${CARE_TEAM_ROLE_SYSTEM} coding`);
  if (!action.definitionCanonical) problems.push('definitionCanonical (the ActivityDefinition) is missing');
  if (action.action?.length) problems.push('nested actions are not supported: the plan lists its sessions in a flat action[]');
  const conditions: string[] = [];
  for (const condition of action.condition ?? []) {
    if (condition.kind !== 'applicability') continue; // start/stop conditions say nothing about which sessions apply
    const expression = condition.expression;
    if (expression?.language !== FHIRPATH || !expression.expression) {
      problems.push(`an applicability condition is not a ${FHIRPATH} expression`);
    } else {
      conditions.push(expression.expression);
    }
  }
  if (problems.length > 0 || !kind || !role || !action.definitionCanonical) return problems;
  return { kind, role, definition: action.definitionCanonical, conditions };
}

/**
 * What is wrong with a PlanDefinition under the convention above (empty: usable). For the
 * start-up checks of program data; `applyPlanDefinition` throws on the same problems.
 */
export function planDefinitionProblems(planDefinition: fhir4.PlanDefinition): string[] {
  const actions = planDefinition.action ?? [];
  const name = planDefinition.url ?? planDefinition.id ?? 'PlanDefinition';
  if (actions.length === 0) return [`${name}: no action`];
  return actions.flatMap((action, index) => {
    const parts = actionParts(action);
    const where = `${name} action[${index}]${action.id ? ` (${action.id})` : ''}`;
    return Array.isArray(parts) ? parts.map((problem) => `${where}: ${problem}`) : [];
  });
}

export interface PlanApplicationContext {
  /** Resolved personalisation values (every option present: see `resolvePersonalisation`). */
  values: PersonalisationValues;
  team: readonly CareTeamMember[];
  evaluate: ConditionEvaluator;
}

/**
 * One CarePlan activity per applicable action (rule in the module comment), in action order:
 * `detail` {kind `Appointment`, instantiatesCanonical [the ActivityDefinition], code = the
 * session kind (text: the action title), status `not-started`, scheduledTiming = the action's
 * timing, performer = the team members with the action's role (team order), extensions
 * performer-role (the role coding) and session-count 0}.
 *
 * @throws RangeError when the PlanDefinition breaks the convention (`planDefinitionProblems`):
 * program data is checked at start-up, so this is a data error, not a request error.
 */
export function applyPlanDefinition(planDefinition: fhir4.PlanDefinition, context: PlanApplicationContext): fhir4.CarePlanActivity[] {
  const problems = planDefinitionProblems(planDefinition);
  if (problems.length > 0) throw new RangeError(`PlanDefinition not applicable:\n${problems.join('\n')}`);
  const activities: fhir4.CarePlanActivity[] = [];
  for (const action of planDefinition.action ?? []) {
    const parts = actionParts(action) as ActionParts;
    const performers = context.team.filter((member) => member.role === parts.role.code);
    if (performers.length === 0) continue;
    if (!parts.conditions.every((expression) => context.evaluate(expression, { ...context.values }))) continue;
    const detail: fhir4.CarePlanActivityDetail = {
      extension: [
        { url: ENROLMENT_EXTENSIONS.performerRole, valueCoding: structuredClone(parts.role) },
        { url: ENROLMENT_EXTENSIONS.sessionCount, valueUnsignedInt: 0 },
      ],
      kind: 'Appointment',
      instantiatesCanonical: [parts.definition],
      code: { coding: [structuredClone(parts.kind)], ...(action.title ? { text: action.title } : {}) },
      status: INITIAL_ACTIVITY_STATUS,
      performer: performers.map((member) => ({ reference: member.reference })),
    };
    if (action.timingTiming) detail.scheduledTiming = structuredClone(action.timingTiming);
    if (action.description) detail.description = action.description;
    activities.push({ detail });
  }
  return activities;
}

/** The session-kind code of a CodeableConcept list (Encounter.type) or concept (activity.detail.code). */
export function sessionKindOf(concepts: fhir4.CodeableConcept | readonly fhir4.CodeableConcept[] | undefined): string | undefined {
  const list: readonly fhir4.CodeableConcept[] =
    concepts === undefined ? [] : isConceptList(concepts) ? concepts : [concepts];
  for (const concept of list) {
    const coding = concept.coding?.find((c) => c.system === SESSION_KIND_SYSTEM && c.code);
    if (coding?.code) return coding.code;
  }
  return undefined;
}

function isConceptList(value: fhir4.CodeableConcept | readonly fhir4.CodeableConcept[]): value is readonly fhir4.CodeableConcept[] {
  return Array.isArray(value);
}
