/**
 * `no-active-condition` (DOMAIN.md 1, Decision "Exclusion": an active diagnosis of diabetes
 * excludes a prevention program). Met when no active Condition is coded in the value set;
 * resolved or inactive ones do not exclude. `value`: whether an active one is recorded.
 */
import { versionedReference } from '../references.js';
import { valueSetById, type CriterionEvaluator } from './context.js';
import { conditionsIn, isActiveCondition, matchingCode } from './conditions.js';

export const evaluateNoActiveCondition: CriterionEvaluator<'no-active-condition'> = (criterion, context) => {
  const valueSet = valueSetById(context.shared, criterion.valueSet);
  const conditions = conditionsIn(context, valueSet);
  const active = conditions.filter(isActiveCondition);
  if (active.length > 0) {
    return {
      code: criterion.code,
      status: 'not-met',
      value: { type: 'boolean', value: true },
      reason: `Active ${criterion.label} recorded (code ${active.map((c) => matchingCode(c, valueSet)).join(', ')}).`,
      evidence: active.map(versionedReference),
    };
  }
  return {
    code: criterion.code,
    status: 'met',
    value: { type: 'boolean', value: false },
    reason:
      conditions.length > 0
        ? `No active ${criterion.label} recorded (${conditions.length === 1 ? 'one inactive or resolved diagnosis' : `${conditions.length} inactive or resolved diagnoses`}).`
        : `No ${criterion.label} recorded.`,
    evidence: conditions.map(versionedReference),
  };
};
