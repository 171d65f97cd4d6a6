/** Conditions as evidence: which count at all, and which are active (shared by the condition and age criteria). */
import type { ValueSetData } from '../../programs/schema.js';
import { dateSpanOf } from '../dates.js';
import { findCoding } from '../value-sets.js';
import { versionedReference } from '../references.js';
import type { CriterionResult } from '../types.js';
import { codesOf, valueSetById, type EvaluationContext } from './context.js';

/** http://hl7.org/fhir/R4/valueset-condition-ver-status.html: a Condition never counts with these. */
const DISCARDED_VERIFICATION = new Set(['entered-in-error', 'refuted']);
/** http://hl7.org/fhir/R4/valueset-condition-clinical.html: the statuses of a current condition. */
const ACTIVE_CLINICAL = new Set(['active', 'recurrence', 'relapse']);

/**
 * The patient's Conditions coded in `valueSet`, whatever their clinical status, minus those
 * that never count: verificationStatus entered-in-error or refuted, a status in the
 * program's `ignoredStatuses`, or an onset (else recordedDate) after `asOf`, so that a
 * replay at a past date does not see a diagnosis made later.
 */
export function conditionsIn(context: EvaluationContext, valueSet: ValueSetData): fhir4.Condition[] {
  return context.record.conditions.filter((condition) => {
    const statuses = [...codesOf(condition.verificationStatus), ...codesOf(condition.clinicalStatus)];
    if (statuses.some((status) => DISCARDED_VERIFICATION.has(status) || context.ignoredStatuses.has(status))) {
      return false;
    }
    const since = dateSpanOf(
      condition.onsetDateTime ?? condition.onsetPeriod?.start ?? condition.recordedDate,
      context.zone,
    );
    if (since !== undefined && since.first > context.asOf) return false;
    return findCoding(condition.code, [valueSet]) !== undefined;
  });
}

/**
 * Active: clinicalStatus active, recurrence or relapse; or, with no clinicalStatus, no
 * abatement recorded (FHIR R4 Condition: clinicalStatus is required unless
 * entered-in-error, so an absent status is judged from abatement[x]).
 */
export function isActiveCondition(condition: fhir4.Condition): boolean {
  const clinical = codesOf(condition.clinicalStatus);
  if (clinical.length > 0) return clinical.some((status) => ACTIVE_CLINICAL.has(status));
  return (
    condition.abatementDateTime === undefined &&
    condition.abatementAge === undefined &&
    condition.abatementPeriod === undefined &&
    condition.abatementRange === undefined &&
    condition.abatementString === undefined
  );
}

/** `44054006`, the code that put the Condition in the value set (for reasons: codes, never names). */
export function matchingCode(condition: fhir4.Condition, valueSet: ValueSetData): string {
  return findCoding(condition.code, [valueSet])?.code ?? '?';
}

/** The Conditions of a criterion's value set, and the active ones among them. */
export function conditionsOfCriterion(
  criterion: { valueSet: string },
  context: EvaluationContext,
): { valueSet: ValueSetData; conditions: fhir4.Condition[]; active: fhir4.Condition[] } {
  const valueSet = valueSetById(context.shared, criterion.valueSet);
  const conditions = conditionsIn(context, valueSet);
  return { valueSet, conditions, active: conditions.filter(isActiveCondition) };
}

/** "Active <label> recorded": met for an inclusion criterion, not met for an exclusion. */
export function activeRecorded(
  criterion: { code: string; label: string },
  found: { valueSet: ValueSetData; active: fhir4.Condition[] },
  status: 'met' | 'not-met',
): CriterionResult {
  return {
    code: criterion.code,
    status,
    value: { type: 'boolean', value: true },
    reason: `Active ${criterion.label} recorded (code ${found.active.map((c) => matchingCode(c, found.valueSet)).join(', ')}).`,
    evidence: found.active.map(versionedReference),
  };
}
