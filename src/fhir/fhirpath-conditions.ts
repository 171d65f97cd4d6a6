/**
 * Evaluates PlanDefinition applicability conditions (`text/fhirpath`) with the HL7 `fhirpath`
 * library and the R4 model: personalisation options are the `%name` environment variables.
 * A condition holds when it evaluates to exactly `[true]` (FHIRPath boolean semantics: an
 * empty result is not true).
 */
import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4/index.js';

export type ConditionEvaluator = (expression: string, variables: Record<string, unknown>) => boolean;

const compiled = new Map<string, ReturnType<typeof fhirpath.compile>>();

export const evaluateFhirPathCondition: ConditionEvaluator = (expression, variables) => {
  let run = compiled.get(expression);
  if (!run) {
    run = fhirpath.compile(expression, r4Model);
    compiled.set(expression, run);
  }
  const result = run({}, variables as Record<string, never>);
  return Array.isArray(result) && result.length === 1 && result[0] === true;
};
