/**
 * Vocabulary of forfait billing (issue #4). Pure: no I/O, no clock.
 *
 * Resource model (profiles in `profiles/`, canonical base http://forfait-fhir.org/fhir):
 * - ChargeItemDefinition per forfait and dated version (`url` shared, `version`,
 *   `effectivePeriod`, `code` = forfait coding); one `propertyGroup` per professional category
 *   (extension forfait-professional-category = a care-team-role code; absent for a single
 *   amount) with the payee-rule extension (`member` | `association` | `centre`) and one
 *   `priceComponent` {type base, amount {value, currency EUR}}.
 * - Claim per (patient, forfait, due occurrence, payee): use `claim`, status `active`, type
 *   `professional`, priority `normal`, `patient`, `created` = the due date (deterministic, so a
 *   re-run writes the same content), `insurer` = the patient's Coverage.payor, `provider` and
 *   `payee.party` = who is paid, `insurance` [{sequence 1, focal, coverage}], one `item` per
 *   line (productOrService = forfait coding, servicedPeriod, unitPrice, net), `total`,
 *   `billablePeriod`, `supportingInfo` → EpisodeOfCare and CarePlan, and a deterministic
 *   `identifier` {system <program url>/claim, value}: the business key the gateway dedupes on.
 * - Invoice for a forfait that belongs to no patient (COOP per member professional, training):
 *   FHIR Claim requires a patient; Invoice carries an issuer, a recipient, line items with
 *   price components and exact totals, which is what these payments are.
 * - ClaimResponse from the gateway, stored with `request` → the Claim.
 *
 * Money is exact: decimal strings with two places ("178.36"), summed with decimal.js.
 */
import type { CalendarDate } from '../types.js';

/** Who a line is paid to. */
export interface Payee {
  rule: 'member' | 'association' | 'centre';
  /** Literal reference: `PractitionerRole/x`, `Practitioner/x` or `Organization/x`. */
  reference: string;
}

/** One priced line of a due claim. */
export interface DueLine {
  forfaitCode: string;
  /** Care-team role code of the price component; absent for a single amount. */
  category?: string;
  /** `url|version` of the ChargeItemDefinition version in force on the due date. */
  chargeItemDefinition: string;
  /** Exact amount, two decimals, EUR (share of the tariff applied). */
  amount: string;
}

/** A claim that falls due: one payee, one forfait occurrence, its lines. */
export interface DueClaim {
  /** Deterministic business identifier value (the same every time it is computed). */
  key: string;
  programId: string;
  patientId: string;
  forfaitCode: string;
  payee: Payee;
  dueDate: CalendarDate;
  billablePeriod: { start: CalendarDate; end: CalendarDate };
  lines: DueLine[];
  /** Exact sum of the lines. */
  total: string;
  episode: string;
  /** The CarePlan whose start made it due, if any. */
  carePlan?: string;
}

/** Why a claim cannot be built (a clear OperationOutcome upstream; no claim is written). */
export type BillingRule =
  | 'coverage-missing'
  | 'insurer-not-accepted'
  | 'payee-identifier-missing'
  | 'tariff-missing'
  | 'payee-missing';

export interface BillingIssue {
  rule: BillingRule;
  code: fhir4.OperationOutcomeIssue['code'];
  diagnostics: string;
  expression?: string;
}
