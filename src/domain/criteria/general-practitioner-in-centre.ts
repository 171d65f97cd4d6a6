/**
 * `general-practitioner-in-centre` (DOMAIN.md 1, inclusion criterion 1): one of the
 * patient's `generalPractitioner` references is a member of a participating centre in the
 * `CentreDirectory` (Organization, PractitionerRole or Practitioner resolved from the centres'
 * identifiers by the FHIR adapter).
 */
import { referenceKey, versionedReference } from '../references.js';
import type { CriterionResult } from '../types.js';
import { unique, type CriterionEvaluator, type EvaluationContext } from './context.js';

export const evaluateGeneralPractitionerInCentre: CriterionEvaluator<'general-practitioner-in-centre'> = (
  criterion,
  context,
) => {
  const { patient } = context.record;
  const patientReference = versionedReference(patient);
  const practitioners = patient.generalPractitioner ?? [];
  const result = (status: CriterionResult['status'], reason: string, evidence: string[]): CriterionResult => ({
    code: criterion.code,
    status,
    reason,
    evidence,
  });
  if (practitioners.length === 0) {
    return result('not-met', 'No general practitioner recorded.', [patientReference]);
  }
  const keys = practitioners.map((practitioner) => referenceKey(practitioner));
  for (const key of keys) {
    const member = key === undefined ? undefined : context.directory.members.get(key);
    if (member) {
      return result(
        'met',
        `The general practitioner practises in a participating centre (${centreName(member.centre, context)}).`,
        unique([patientReference, ...member.evidence]),
      );
    }
  }
  if (keys.some((key) => key === undefined)) {
    // A logical or contained reference cannot be looked up: the data is incomplete, not negative.
    return {
      ...result(
        'unknown',
        'The general practitioner is recorded without a resolvable reference, so the centre cannot be checked.',
        [patientReference],
      ),
      issues: [
        {
          severity: 'warning',
          code: 'incomplete',
          diagnostics: 'Patient.generalPractitioner has no literal reference (Type/id) to resolve',
          resource: patientReference,
          expression: 'Patient.generalPractitioner',
        },
      ],
    };
  }
  return result(
    'not-met',
    'The general practitioner recorded does not practise in a participating centre.',
    [patientReference],
  );
};

/** Names already found, per program (read-only once loaded) and directory centre. */
const centreNames = new WeakMap<EvaluationContext['program'], Map<string, string>>();

/** The centre's name from program data; the directory names centres by `system|value` of their identifier. */
function centreName(centre: string, context: EvaluationContext): string {
  let names = centreNames.get(context.program);
  if (names === undefined) {
    names = new Map();
    centreNames.set(context.program, names);
  }
  let name = names.get(centre);
  if (name === undefined) {
    const found = context.program.centres.find(
      ({ identifier }) => centre === `${identifier.system}|${identifier.value}` || centre === identifier.value,
    );
    name = found?.name ?? centre;
    if (names.size >= 1_000) names.clear();
    names.set(centre, name);
  }
  return name;
}
