/**
 * `no-active-condition` (DOMAIN.md 1, Decision "Exclusion": an active diagnosis of diabetes
 * excludes a prevention program). Met when no active Condition is coded in the value set;
 * resolved or inactive ones do not exclude. `value`: whether an active one is recorded.
 */
import { versionedReference } from '../references.js';
import type { CriterionEvaluator } from './context.js';
import { activeRecorded, conditionsOfCriterion } from './conditions.js';

export const evaluateNoActiveCondition: CriterionEvaluator<'no-active-condition'> = (criterion, context) => {
  const found = conditionsOfCriterion(criterion, context);
  const { conditions } = found;
  if (found.active.length > 0) return activeRecorded(criterion, found, 'not-met');
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
