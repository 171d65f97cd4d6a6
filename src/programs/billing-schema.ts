/**
 * Program data for forfait billing (`mappings/programs/<id>/billing.json`), validated with zod
 * at start-up. Amounts are NOT here: each forfait's tariff is a FHIR ChargeItemDefinition in
 * `profiles/` (one resource per dated version, `effectivePeriod`), so a tariff change is a new
 * version and a past date replays the amounts then in force. This file says when each forfait
 * falls due, to whom it is paid, and the program's approval period and budget.
 *
 * Pure (zod only).
 */
import { z } from 'zod';

const code = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]*$/);
const decimal = z.string().regex(/^\d+(\.\d+)?$/, 'a decimal written as a string, e.g. "0.5"');
const comment = { _source: z.string().optional(), _comment: z.string().optional() };
const identifier = z.strictObject({ system: z.string().min(1), value: z.string().min(1) });

/**
 * When a share of a forfait falls due (DOMAIN.md 2, "When each forfait falls due"):
 * - `enrolment`: on the enrolment start date;
 * - `plan-start`: on the start of each period of the plan `plan` (every yearly period of a
 *   yearly plan; an on-demand plan when it is opened).
 */
export const dueEventSchema = z.discriminatedUnion('event', [
  z.strictObject({ event: z.literal('enrolment'), share: decimal, ...comment }),
  z.strictObject({ event: z.literal('plan-start'), plan: z.string().min(1), share: decimal, ...comment }),
]);

export const patientForfaitSchema = z.strictObject({
  /** The forfait code (Claim.item.productOrService), e.g. FEID. */
  code,
  /** Canonical URL of its ChargeItemDefinition versions in profiles/ (all versions share it). */
  chargeItemDefinition: z.url(),
  /** The schedule: the shares of the amount and when each falls due; they add up to 1. */
  dueOn: z.array(dueEventSchema).min(1),
  /**
   * Period the forfait pays for (Claim.billablePeriod): the period of the plan whose start made
   * it due, or for `enrolment` shares the whole care sequence (`sequenceMonths`).
   */
  sequenceMonths: z.number().int().min(1).optional(),
  ...comment,
});

/** A forfait owed per professional, not per patient (REDIAB COOP): an Invoice, not a Claim. */
export const memberForfaitSchema = z.strictObject({
  code,
  chargeItemDefinition: z.url(),
  /** Due on joining (the PractitionerRole's period.start) and at each anniversary while a member. */
  dueOn: z.literal('membership-anniversary'),
  ...comment,
});

export const billingSchema = z.strictObject({
  /** Claims only fall due inside this period (REDIAB: approved for 3 years from 2001-08-24). */
  approvalPeriod: z.strictObject({ start: z.iso.date(), end: z.iso.date().optional(), ...comment }),
  /** The program's budget, for the budget report (FNMF: 96,684 EUR for 140 patients). */
  budget: z.strictObject({ amount: decimal, currency: z.literal('EUR'), ...comment }).optional(),
  /** The association receiving the sports educators' parts, FECD, and training indemnities (REDIAB). */
  association: z.strictObject({ identifier, name: z.string().min(1), ...comment }).optional(),
  /** Who pays forfaits that belong to no patient (COOP): patient forfaits go to the patient's own Coverage.payor. */
  memberForfaitsPayer: z.strictObject({ identifier, name: z.string().min(1), ...comment }).optional(),
  /** The centre paid the FNMF team forfait: the enrolment's managing organization. */
  patientForfaits: z.array(patientForfaitSchema).default([]),
  memberForfaits: z.array(memberForfaitSchema).default([]),
  ...comment,
});

export type DueEvent = z.infer<typeof dueEventSchema>;
export type PatientForfait = z.infer<typeof patientForfaitSchema>;
export type MemberForfait = z.infer<typeof memberForfaitSchema>;
export type BillingData = z.infer<typeof billingSchema>;

const BASE = 'http://forfait-fhir.org/fhir';
/** Forfait codes (Claim.item.productOrService, ChargeItemDefinition.code). */
export const FORFAIT_CODE_SYSTEM = `${BASE}/CodeSystem/forfait`;
/**
 * Who a ChargeItemDefinition price component is paid to, as an extension on its
 * `propertyGroup`: `member` (the care-team member holding the group's category), `association`
 * (billing.json `association`), `centre` (the enrolment's managing organization).
 */
export const PAYEE_RULE_EXTENSION = `${BASE}/StructureDefinition/forfait-payee-rule`;
/** The professional category of a ChargeItemDefinition `propertyGroup` (a care-team-role code), as an extension. */
export const CATEGORY_EXTENSION = `${BASE}/StructureDefinition/forfait-professional-category`;
