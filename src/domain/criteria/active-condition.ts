/**
 * `active-condition` (DOMAIN.md 2, Population: people with type-2 diabetes). Met when an
 * active Condition is coded in the value set. **Decision**: when no Condition of the value
 * set is recorded at all the criterion is `unknown` (the diagnosis may simply not be coded
 * yet: the verdict asks for it), while a recorded but resolved or inactive one is `not-met`.
 * `value`: whether an active one is recorded.
 */
import { versionedReference } from '../references.js';
import { enumeratedCodes } from '../value-sets.js';
import { valueSetById, type CriterionEvaluator } from './context.js';
import { conditionsIn, isActiveCondition, matchingCode } from './conditions.js';

export const evaluateActiveCondition: CriterionEvaluator<'active-condition'> = (criterion, context) => {
  const valueSet = valueSetById(context.shared, criterion.valueSet);
  const conditions = conditionsIn(context, valueSet);
  const active = conditions.filter(isActiveCondition);
  if (active.length > 0) {
    return {
      code: criterion.code,
      status: 'met',
      value: { type: 'boolean', value: true },
      reason: `Active ${criterion.label} recorded (code ${active.map((c) => matchingCode(c, valueSet)).join(', ')}).`,
      evidence: active.map(versionedReference),
    };
  }
  if (conditions.length > 0) {
    return {
      code: criterion.code,
      status: 'not-met',
      value: { type: 'boolean', value: false },
      reason: `The ${criterion.label} recorded is not active (resolved or inactive).`,
      evidence: conditions.map(versionedReference),
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
