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
 * Money is exact: decimal strings with two places (e.g. "12.30"), summed with decimal.js.
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

/** A domain answer: the value, or why not (mapped to an OperationOutcome upstream). */
export type Checked<T> = ({ ok: true } & T) | { ok: false; issues: BillingIssue[] };

/**
 * An Invoice that falls due for a forfait owed per professional (REDIAB COOP): one member, one
 * membership year, one payee (the member, or the association for a sports educator's part).
 */
export interface DueInvoice {
  /** Deterministic business identifier value (Invoice.identifier). */
  key: string;
  programId: string;
  forfaitCode: string;
  /** The member professional the forfait is for (care-team-role code as category). */
  member: { reference: string; category: string };
  payee: Payee;
  /** Who is invoiced (billing.json `memberForfaitsPayer`): Invoice.recipient. */
  recipient: fhir4.Reference;
  dueDate: CalendarDate;
  /** The membership year paid for (first and last day, inclusive). */
  period: { start: CalendarDate; end: CalendarDate };
  lines: DueLine[];
  /** Exact sum of the lines. */
  total: string;
}

const FHIR_BASE = 'http://forfait-fhir.org/fhir';

/** Profiles of the billing resources (`profiles/StructureDefinition-<name>.json`). */
export const BILLING_PROFILES = {
  claim: `${FHIR_BASE}/StructureDefinition/forfait-claim`,
  invoice: `${FHIR_BASE}/StructureDefinition/forfait-invoice`,
  claimResponse: `${FHIR_BASE}/StructureDefinition/forfait-claim-response`,
} as const;

/**
 * Extensions of the billing resources, besides the ChargeItemDefinition `propertyGroup` ones
 * (CATEGORY_EXTENSION, PAYEE_RULE_EXTENSION of src/programs/billing-schema.ts):
 * - Claim.item and Invoice.lineItem carry `forfait-charge-item-definition` (valueCanonical
 *   `url|version`: the tariff version the amount comes from, so a replay can be audited) and,
 *   for a line of a professional category, the same `forfait-professional-category`
 *   extension (valueCode) as the price component it prices.
 * - Invoice: FHIR R4 Invoice.issuer is Reference(Organization) only, so the payee (who may be a
 *   PractitionerRole) is `participant` with role payeetype#provider; `issuer` is set as well
 *   when the payee is an Organization (the association). The member professional the forfait
 *   is for is a `participant` with its care-team-role coding as role.
 */
export const BILLING_EXTENSIONS = {
  chargeItemDefinition: `${FHIR_BASE}/StructureDefinition/forfait-charge-item-definition`,
} as const;
