/**
 * `residence-in-area` (DOMAIN.md 2, Population: residing in the districts of the funds):
 * the postal code of a current home address (use `home` or absent, never `old`; `period`
 * covering `asOf` when given) is in one of the program's areas (`residence-areas.json`).
 */
import { periodCovers } from '../dates.js';
import { versionedReference } from '../references.js';
import type { CriterionEvaluator } from './context.js';

/** Postal codes compare without spaces and case (`62 100` is `62100`). */
function normalizePostalCode(code: string): string {
  return code.replace(/\s+/g, '').toUpperCase();
}

export const evaluateResidenceInArea: CriterionEvaluator<'residence-in-area'> = (criterion, context) => {
  const { patient } = context.record;
  const evidence = [versionedReference(patient)];
  const postalCodes = (patient.address ?? [])
    .filter((address) => (address.use === undefined || address.use === 'home') && periodCovers(address.period, context.asOf, context.zone))
    .flatMap((address) => (address.postalCode?.trim() ? [address.postalCode.trim()] : []));
  if (postalCodes.length === 0) {
    return {
      code: criterion.code,
      status: 'unknown',
      reason: `No current home address with a postal code recorded on ${context.asOf}.`,
      evidence,
      missing: [{ type: 'Patient', description: 'current home address with its postal code (Patient.address.postalCode)' }],
    };
  }
  for (const postalCode of postalCodes) {
    const area = context.program.residenceAreas.find((candidate) =>
      candidate.postalCodes.some((code) => normalizePostalCode(code) === normalizePostalCode(postalCode)),
    );
    if (area) {
      return {
        code: criterion.code,
        status: 'met',
        value: { type: 'string', value: postalCode },
        reason: `The current home address (postal code ${postalCode}) is in the area "${area.name}".`,
        evidence,
      };
    }
  }
  return {
    code: criterion.code,
    status: 'not-met',
    value: { type: 'string', value: postalCodes[0] as string },
    reason: `The current home address (postal code ${postalCodes.join(', ')}) is outside the program's areas.`,
    evidence,
  };
};
