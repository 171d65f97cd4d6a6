/**
 * `active-consent` (DOMAIN.md 2: participation is voluntary, the patient signs a contract of
 * engagement and membership before enrolment). The contract is a Consent of the patient
 * that carries one of `policyUris` (Consent.policy.uri) or a category in `categoryValueSet`.
 * Met when one is `active`, its `provision.period` (if any) covers `asOf`, and it was not
 * signed (Consent.dateTime) after `asOf`. None recorded: `unknown`, asking for it; recorded
 * but not in force (draft, proposed, rejected, inactive, expired): `not-met`.
 */
import { dateSpanOf, periodCovers } from '../dates.js';
import { refersTo, versionedReference } from '../references.js';
import type { CriterionResult } from '../types.js';
import { codeableConceptIn, enumeratedCodes } from '../value-sets.js';
import { valueSetById, type CriterionEvaluator } from './context.js';

export const evaluateActiveConsent: CriterionEvaluator<'active-consent'> = (criterion, context) => {
  const { patient } = context.record;
  const categories = criterion.categoryValueSet === undefined ? undefined : valueSetById(context.shared, criterion.categoryValueSet);
  const signedOn = (consent: fhir4.Consent) => dateSpanOf(consent.dateTime, context.zone);
  const contracts = context.record.consents.filter((consent) => {
    if (context.ignoredStatuses.has(consent.status) || !refersTo(consent.patient, patient)) return false;
    const signed = signedOn(consent);
    if (signed !== undefined && signed.first > context.asOf) return false;
    const byPolicy = (consent.policy ?? []).some((policy) => policy.uri !== undefined && criterion.policyUris.includes(policy.uri));
    const byCategory = categories !== undefined && consent.category.some((category) => codeableConceptIn(category, categories));
    return byPolicy || byCategory;
  });
  if (contracts.length === 0) {
    return {
      code: criterion.code,
      status: 'unknown',
      reason: `No signed consent for the program recorded on ${context.asOf}.`,
      evidence: [],
      missing: [
        {
          type: 'Consent',
          ...(categories === undefined ? {} : { codes: enumeratedCodes(categories) }),
          description: criterion.description,
        },
      ],
    };
  }
  const inForce = contracts
    .filter((consent) => consent.status === 'active' && periodCovers(consent.provision?.period, context.asOf, context.zone))
    .sort((a, b) => (signedOn(b)?.latestInstant ?? 0) - (signedOn(a)?.latestInstant ?? 0));
  const consent = inForce[0];
  if (consent) {
    const signed = signedOn(consent);
    const result: CriterionResult = {
      code: criterion.code,
      status: 'met',
      reason: `An active consent for the program is recorded${signed ? `, signed on ${signed.last}` : ''}.`,
      evidence: [versionedReference(consent)],
    };
    if (signed) result.value = { type: 'date', value: signed.last };
    return result;
  }
  const statuses = [...new Set(contracts.map((contract) => contract.status))].join(', ');
  return {
    code: criterion.code,
    status: 'not-met',
    reason: `The consent for the program is not in force on ${context.asOf} (status ${statuses}, or its period does not cover that date).`,
    evidence: contracts.map(versionedReference),
  };
};
