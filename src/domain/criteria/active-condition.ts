/**
 * `active-condition` (DOMAIN.md 2, Population: people with type-2 diabetes). Met when an
 * active Condition is coded in the value set; a recorded but resolved or inactive one is
 * `not-met`. When none is recorded at all, the program data decides (`whenAbsent`):
 * `unknown` asks for the diagnosis, `not-met` treats the patient as outside the population.
 * `value`: whether an active one is recorded.
 */
import { versionedReference } from '../references.js';
import { enumeratedCodes } from '../value-sets.js';
import type { CriterionEvaluator } from './context.js';
import { activeRecorded, conditionsOfCriterion } from './conditions.js';

export const evaluateActiveCondition: CriterionEvaluator<'active-condition'> = (criterion, context) => {
  const found = conditionsOfCriterion(criterion, context);
  const { conditions, valueSet } = found;
  if (found.active.length > 0) return activeRecorded(criterion, found, 'met');
  if (conditions.length > 0) {
    return {
      code: criterion.code,
      status: 'not-met',
      value: { type: 'boolean', value: false },
      reason: `The ${criterion.label} recorded is not active (resolved or inactive).`,
      evidence: conditions.map(versionedReference),
    };
  }
  if (criterion.whenAbsent === 'not-met') {
    return {
      code: criterion.code,
      status: 'not-met',
      value: { type: 'boolean', value: false },
      reason: `No ${criterion.label} diagnosis recorded.`,
      evidence: [],
    };
  }
  return {
    code: criterion.code,
    status: 'unknown',
    reason: `No ${criterion.label} diagnosis recorded.`,
    evidence: [],
    missing: [
      {
        type: 'Condition',
        codes: enumeratedCodes(valueSet),
        description: `an active ${criterion.label} diagnosis`,
      },
    ],
  };
};
