/**
 * `coverage-payor-accepted` (DOMAIN.md 2, Population: the general-scheme funds named by the
 * decree, and other schemes' insurers once they joined; the list is `insurers.json`).
 *
 * Met when a Coverage in force on `asOf` (status `active`, `period` covering `asOf` when
 * given) whose beneficiary is the patient has an accepted payor: the payor reference's
 * `identifier`, or the identifier of the Organization it references, is an insurer's.
 * **Decision**: with no Coverage at all, or none in force on `asOf` (only expired or draft
 * ones), the criterion is `unknown` and asks for one; with coverages in force but no
 * accepted payor it is `not-met`.
 */
import { periodCovers } from '../dates.js';
import { referenceKey, refersTo, versionedReference } from '../references.js';
import type { DataIssue } from '../types.js';
import { unique, type CriterionEvaluator, type EvaluationContext } from './context.js';

type Insurer = EvaluationContext['program']['insurers'][number];

type PayorCheck =
  | { kind: 'accepted'; insurer: Insurer; evidence: string[] }
  | { kind: 'refused'; evidence: string[] }
  | { kind: 'unresolved'; issue: DataIssue };

export const evaluateCoveragePayorAccepted: CriterionEvaluator<'coverage-payor-accepted'> = (criterion, context) => {
  const { patient } = context.record;
  const coverages = context.record.coverages.filter(
    (coverage) => !context.ignoredStatuses.has(coverage.status) && refersTo(coverage.beneficiary, patient),
  );
  const inForce = coverages.filter(
    (coverage) => coverage.status === 'active' && periodCovers(coverage.period, context.asOf, context.zone),
  );
  if (inForce.length === 0) {
    return {
      code: criterion.code,
      status: 'unknown',
      reason:
        coverages.length === 0
          ? 'No health-insurance coverage recorded.'
          : `No health-insurance coverage in force on ${context.asOf} (those recorded are not active or their period does not cover that date).`,
      evidence: coverages.map(versionedReference),
      missing: [{ type: 'Coverage', description: `health-insurance coverage in force on ${context.asOf}, with its payor` }],
    };
  }

  // Coverage.payor is 1..*: a Coverage without one is checked as a payor that cannot be identified.
  const checks = inForce.flatMap((coverage) =>
    (coverage.payor?.length ? coverage.payor : [{}]).map((payor) => ({
      coverage: versionedReference(coverage),
      check: checkPayor(payor, coverage, context),
    })),
  );
  const accepted = checks.find(({ check }) => check.kind === 'accepted');
  if (accepted && accepted.check.kind === 'accepted') {
    const { insurer } = accepted.check;
    return {
      code: criterion.code,
      status: 'met',
      value: { type: 'Coding', system: insurer.identifier.system, code: insurer.identifier.value, display: insurer.name },
      reason: `Covered by an accepted insurer (${insurer.name}).`,
      evidence: unique([accepted.coverage, ...accepted.check.evidence]),
    };
  }
  const evidence = unique(checks.flatMap(({ coverage, check }) => [coverage, ...(check.kind === 'refused' ? check.evidence : [])]));
  const issues = checks.flatMap(({ check }) => (check.kind === 'unresolved' ? [check.issue] : []));
  if (issues.length > 0) {
    return {
      code: criterion.code,
      status: 'unknown',
      reason: 'The insurer of the coverage in force cannot be identified, so its membership of the agreement cannot be checked.',
      evidence,
      issues,
    };
  }
  return {
    code: criterion.code,
    status: 'not-met',
    reason: 'The coverage in force is with an insurer that is not among the accepted ones.',
    evidence,
  };
};

function checkPayor(payor: fhir4.Reference, coverage: fhir4.Coverage, context: EvaluationContext): PayorCheck {
  const byIdentifier = findInsurer([payor.identifier], context);
  if (byIdentifier) return { kind: 'accepted', insurer: byIdentifier, evidence: [] };

  const reference = payor.reference;
  const organization = reference?.startsWith('#')
    ? coverage.contained?.find(
        (resource): resource is fhir4.Organization =>
          resource.resourceType === 'Organization' && resource.id === reference.slice(1),
      )
    : context.record.organizations.find((candidate) => `Organization/${candidate.id}` === referenceKey(reference));
  if (organization) {
    // A contained Organization is part of the Coverage's own version.
    const evidence = reference?.startsWith('#') ? [] : [versionedReference(organization)];
    const insurer = findInsurer(organization.identifier ?? [], context);
    return insurer ? { kind: 'accepted', insurer, evidence } : { kind: 'refused', evidence };
  }
  const key = referenceKey(reference);
  // A payor that is the patient or a related person (self-pay), or an identifier that is no insurer's.
  if ((key !== undefined && !key.startsWith('Organization/')) || (key === undefined && payor.identifier !== undefined)) {
    return { kind: 'refused', evidence: [] };
  }
  return {
    kind: 'unresolved',
    issue: {
      severity: 'warning',
      code: 'incomplete',
      diagnostics:
        key === undefined
          ? 'Coverage.payor has neither a literal reference nor an identifier'
          : `Coverage.payor ${key} is not available to read its identifier`,
      resource: versionedReference(coverage),
      expression: 'Coverage.payor',
    },
  };
}

function findInsurer(identifiers: readonly (fhir4.Identifier | undefined)[], context: EvaluationContext): Insurer | undefined {
  return context.program.insurers.find(({ identifier }) =>
    identifiers.some((candidate) => candidate?.system === identifier.system && candidate.value === identifier.value),
  );
}
