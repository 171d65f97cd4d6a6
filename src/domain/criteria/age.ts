/**
 * `age` (DOMAIN.md 1, criterion 2 and Decision "Age"): met when any rule holds. A rule holds
 * when the patient is over `years` at `asOf` (strictly, from the day after the birthday,
 * when `exclusive`) and matches its `when` (gender; a Condition of the value set with any
 * clinical status, i.e. current, resolved or history of).
 *
 * A partial birthDate (YYYY or YYYY-MM) is judged with the earliest and the latest possible
 * birth dates: met if both are, not-met if neither is, unknown otherwise.
 */
import { birthDateBounds, completedYears, isOverAge } from '../dates.js';
import { versionedReference } from '../references.js';
import type { CriterionResult, CriterionStatus, MissingData } from '../types.js';
import { allOf, anyOf, ordinal, unique, valueSetById, type CriterionEvaluator, type CriterionOf, type EvaluationContext } from './context.js';
import { conditionsIn } from './conditions.js';

type AgeRule = CriterionOf<'age'>['rules'][number];

interface RuleOutcome {
  status: CriterionStatus;
  /** What the rule found, as a clause of the reason. */
  clause: string;
  evidence: string[];
  missing: MissingData[];
}

export const evaluateAge: CriterionEvaluator<'age'> = (criterion, context) => {
  const { patient } = context.record;
  const patientReference = versionedReference(patient);
  const bounds = birthDateBounds(patient.birthDate, context.zone);
  if (!bounds) {
    const result: CriterionResult = {
      code: criterion.code,
      status: 'unknown',
      reason: 'The age cannot be computed: no valid date of birth recorded.',
      evidence: [patientReference],
      missing: [{ type: 'Patient', description: 'date of birth (Patient.birthDate)' }],
    };
    return patient.birthDate === undefined
      ? result
      : {
          ...result,
          issues: [
            {
              severity: 'error',
              code: 'value',
              diagnostics: `Patient.birthDate "${patient.birthDate}" is not a valid FHIR date`,
              resource: patientReference,
              expression: 'Patient.birthDate',
            },
          ],
        };
  }

  const outcomes = criterion.rules.map((rule) => evaluateRule(rule, bounds, patientReference, context));
  const status = anyOf(outcomes.map((outcome) => outcome.status));
  // The youngest possible age first: both are equal unless the birthDate is partial.
  const youngest = completedYears(bounds.latest, context.asOf);
  // A full birthDate: one date, one age (completedYears is pure).
  const oldest = bounds.earliest === bounds.latest ? youngest : completedYears(bounds.earliest, context.asOf);
  const age = youngest === oldest ? `${youngest}` : `${youngest} or ${oldest}`;
  const decisive = status === 'met' ? outcomes.filter((outcome) => outcome.status === 'met').slice(0, 1) : outcomes;
  const result: CriterionResult = {
    code: criterion.code,
    status,
    reason: `Age ${age} on ${context.asOf}: ${decisive.map((outcome) => outcome.clause).join('; ')}.`,
    evidence: unique(decisive.flatMap((outcome) => outcome.evidence)),
  };
  if (youngest === oldest) result.value = { type: 'integer', value: youngest };
  const missing = status === 'unknown' ? uniqueMissing(outcomes.flatMap((outcome) => outcome.missing)) : [];
  return missing.length > 0 ? { ...result, missing } : result;
};

function evaluateRule(
  rule: AgeRule,
  bounds: { earliest: string; latest: string },
  patientReference: string,
  context: EvaluationContext,
): RuleOutcome {
  const { threshold, scope } = wordsOf(rule);
  const evidence = [patientReference];
  const missing: MissingData[] = [];

  const { gender, conditionValueSet } = rule.when ?? {};
  let applies: CriterionStatus = 'met';
  let notApplying = '';
  if (gender !== undefined) {
    const recorded = context.record.patient.gender;
    if (recorded === undefined) {
      applies = 'unknown';
      notApplying = 'gender not recorded';
      missing.push({ type: 'Patient', description: 'administrative gender (Patient.gender)' });
    } else if (recorded !== gender) {
      applies = 'not-met';
      notApplying = `recorded gender is ${recorded}`;
    }
  }
  if (applies !== 'not-met' && conditionValueSet !== undefined) {
    const conditions = conditionsIn(context, valueSetById(context.shared, conditionValueSet));
    if (conditions.length === 0) {
      applies = 'not-met';
      notApplying = 'no such condition recorded';
    } else {
      evidence.push(...conditions.map(versionedReference));
    }
  }
  if (applies === 'not-met') {
    return { status: 'not-met', clause: `the rule${scope} does not apply: ${notApplying}`, evidence, missing: [] };
  }

  const youngestHolds = isOverAge(bounds.latest, rule.years, rule.exclusive, context.asOf);
  const oldestHolds = isOverAge(bounds.earliest, rule.years, rule.exclusive, context.asOf);
  const old: CriterionStatus = youngestHolds ? 'met' : oldestHolds ? 'unknown' : 'not-met';
  if (old === 'unknown') {
    missing.push({ type: 'Patient', description: 'full date of birth (Patient.birthDate is partial)' });
  }
  const status = allOf([applies, old]);
  const clause =
    old === 'not-met'
      ? `not ${threshold}${scope}`
      : old === 'unknown'
        ? `possibly ${threshold}${scope}, the date of birth being partial`
        : applies === 'unknown'
          ? `${threshold}, but the rule${scope} cannot be checked: ${notApplying}`
          : `${threshold}${scope}`;
  return { status, clause, evidence, missing: status === 'unknown' ? missing : [] };
}

/** A rule's threshold and scope in words: program data, read-only once loaded, so written once per rule. */
const ruleWords = new WeakMap<AgeRule, { threshold: string; scope: string }>();

function wordsOf(rule: AgeRule): { threshold: string; scope: string } {
  let words = ruleWords.get(rule);
  if (words === undefined) {
    words = {
      threshold: `${rule.exclusive ? 'past' : 'on or past'} the ${ordinal(rule.years)} birthday`,
      scope: rule.when ? ` (${rule.when.description ?? describeWhen(rule.when)})` : '',
    };
    ruleWords.set(rule, words);
  }
  return words;
}

function describeWhen(when: NonNullable<AgeRule['when']>): string {
  const parts = [
    when.gender === undefined ? undefined : `${when.gender} patients`,
    when.conditionValueSet === undefined ? undefined : `with a condition in value set ${when.conditionValueSet}`,
  ];
  return parts.filter((part) => part !== undefined).join(' ');
}

function uniqueMissing(missing: readonly MissingData[]): MissingData[] {
  const seen = new Set<string>();
  return missing.filter((item) => {
    if (seen.has(item.description)) return false;
    seen.add(item.description);
    return true;
  });
}
