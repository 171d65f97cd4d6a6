/**
 * Forfaits owed per professional, not per patient (REDIAB COOP cooperation forfait, DOMAIN.md 2
 * Forfaits Art. 10 and "When each forfait falls due"): due to each member professional on
 * joining the network and at each anniversary of joining, while a member.
 *
 * **Decision (resource)**: these are FHIR `Invoice`s, not Claims. R4 `Claim.patient` is 1..1:
 * a claim is "a provider's request for payment for services to a patient", and no patient
 * takes part in a cooperation forfait. An Invoice has what these payments are: who issues it
 * (the payee), who pays it (`recipient`, the CPAM of billing.json `memberForfaitsPayer`), a date,
 * line items with their price components, and exact totals; `subject` (a patient) is optional.
 * Training days and the association's training indemnity (Art. 9) fit the same resource.
 *
 * Membership years are counted in whole months from the joining date J, as plan periods are
 * (enrolment/plan-periods.ts): year k runs from J + 12k months to J + 12(k+1) months − 1 day, so
 * a member who joined on 29 February has anniversaries on 28 February in common years. A year is
 * due on its first day when that day is inside the approval period, on or before `asOf`, and on
 * or before `left` (the last day of membership, inclusive as a FHIR Period end).
 *
 * Pure: no I/O, no clock.
 */
import { FORFAIT_CODE_SYSTEM, type BillingData } from '../../programs/billing-schema.js';
import { CARE_TEAM_ROLE_SYSTEM } from '../../programs/enrolment-schema.js';
import { addDays, addMonths, isCalendarDate } from '../enrolment/plan-periods.js';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from '../ids.js';
import { referenceKey } from '../references.js';
import type { CalendarDate } from '../types.js';
import { CLAIM_CODES, lineExtensions } from './claims.js';
import { moneyValue, sumMoney } from './money.js';
import { canonicalOf, priceFor, tariffInForce } from './tariffs.js';
import { BILLING_PROFILES, type BillingIssue, type DueInvoice } from './types.js';

/** A member professional of the network (a PractitionerRole and its period, read by the adapter). */
export interface NetworkMember {
  /** `PractitionerRole/x` or `Practitioner/x`. */
  reference: string;
  /** Care-team-role code (the COOP price component's category). */
  category: string;
  /** First day of membership (PractitionerRole.period.start). */
  joined: CalendarDate;
  /** Last day of membership, inclusive (PractitionerRole.period.end); absent: still a member. */
  left?: CalendarDate;
}

export interface MemberInvoicesInput {
  program: { id: string; url: string };
  billing: BillingData;
  /** Every dated version of each ChargeItemDefinition, by canonical url. */
  definitions: ReadonlyMap<string, readonly fhir4.ChargeItemDefinition[]>;
  members: readonly NetworkMember[];
  /** `Organization/x`: receives the sports educators' parts. */
  associationRef?: string;
  /** Who is invoiced (billing.json `memberForfaitsPayer`, e.g. a logical reference by identifier). */
  payer: fhir4.Reference;
  asOf: CalendarDate;
  /** Zone for tariff bounds written as instants; default UTC. */
  zone?: string;
}

export interface MemberInvoicesResult {
  /** By forfait, member (input order), then membership year. */
  invoices: DueInvoice[];
  issues: BillingIssue[];
}

const MONTHS_PER_YEAR = 12;

/** The deterministic key of a member invoice: (program, forfait, member, category, membership year index). */
export function dueInvoiceKey(programUrl: string, forfaitCode: string, member: Pick<NetworkMember, 'reference' | 'category'>, year: number): string {
  const name = `DueInvoice|${programUrl}|${forfaitCode}|${referenceKey(member.reference) ?? member.reference}|${member.category}|${year}`;
  return `${forfaitCode}-${deterministicUuid(FORFAIT_UUID_NAMESPACE, name)}`;
}

/** The member invoices due up to `asOf` (see the module comment), and what stops some of them. */
export function dueMemberInvoices(input: MemberInvoicesInput): MemberInvoicesResult {
  const invoices: DueInvoice[] = [];
  const issues: BillingIssue[] = [];
  const { approvalPeriod } = input.billing;
  for (const forfait of input.billing.memberForfaits) {
    const versions = input.definitions.get(forfait.chargeItemDefinition) ?? [];
    for (const member of input.members) {
      if (!isCalendarDate(member.joined) || (member.left !== undefined && !isCalendarDate(member.left))) continue;
      const last = [input.asOf, member.left, approvalPeriod.end].filter(isCalendarDate).sort()[0] as CalendarDate;
      for (let year = 0; ; year += 1) {
        const start = addMonths(member.joined, year * MONTHS_PER_YEAR);
        if (start > last) break;
        if (start < approvalPeriod.start) continue;
        const found = tariffInForce(forfait, versions, start, input.zone);
        if ('issue' in found) {
          issues.push(found.issue);
          continue;
        }
        const { tariff } = found;
        // A member of a category the forfait does not pay (e.g. an APA teacher) is owed nothing.
        const price = priceFor(tariff, member.category);
        if (!price) continue;
        const payee = price.payeeRule === 'member' ? member.reference : price.payeeRule === 'association' ? input.associationRef : undefined;
        if (payee === undefined) {
          issues.push({
            rule: 'payee-missing',
            code: 'required',
            diagnostics: `The ${forfait.code} ${member.category} part due on ${start} is paid to the ${price.payeeRule}, which is not configured or found.`,
          });
          continue;
        }
        const lines = [{ forfaitCode: forfait.code, category: member.category, chargeItemDefinition: canonicalOf(tariff), amount: price.amount }];
        invoices.push({
          key: dueInvoiceKey(input.program.url, forfait.code, member, year),
          programId: input.program.id,
          forfaitCode: forfait.code,
          member: { reference: member.reference, category: member.category },
          payee: { rule: price.payeeRule, reference: payee },
          recipient: { ...input.payer },
          dueDate: start,
          period: { start, end: addDays(addMonths(member.joined, (year + 1) * MONTHS_PER_YEAR), -1) },
          lines,
          total: sumMoney(lines.map((line) => line.amount)),
        });
      }
    }
  }
  return { invoices, issues };
}

/** `<program url>/invoice`: the system of the Invoice's business identifier. */
export function invoiceIdentifierSystem(programUrl: string): string {
  return `${programUrl}/invoice`;
}

/**
 * The Invoice of a due member forfait (profile forfait-invoice): status `issued`, type the
 * forfait coding, the payee as participant (role payeetype#provider) and, when it is an
 * Organization, as `issuer` (R4 Invoice.issuer is Reference(Organization)); the member as
 * participant (role: the care-team-role coding); `recipient` the payer; `date` the due date; one
 * line item per line with its `base` price component; `totalNet` = `totalGross` = the exact sum.
 * Deterministic: id UUIDv5 of the key, no clock.
 */
export function buildInvoice(due: DueInvoice, ctx: { programUrl: string }): fhir4.Invoice {
  const forfait: fhir4.Coding = { system: FORFAIT_CODE_SYSTEM, code: due.forfaitCode };
  const payeeIsOrganization = referenceKey(due.payee.reference)?.startsWith('Organization/') === true;
  return {
    resourceType: 'Invoice',
    id: deterministicUuid(FORFAIT_UUID_NAMESPACE, `Invoice|${ctx.programUrl}|${due.key}`),
    meta: { profile: [BILLING_PROFILES.invoice] },
    identifier: [{ system: invoiceIdentifierSystem(ctx.programUrl), value: due.key }],
    status: 'issued',
    type: { coding: [forfait] },
    recipient: { ...due.recipient },
    date: due.dueDate,
    participant: [
      { role: { coding: [{ ...CLAIM_CODES.payeeType }] }, actor: { reference: due.payee.reference } },
      { role: { coding: [{ system: CARE_TEAM_ROLE_SYSTEM, code: due.member.category }] }, actor: { reference: due.member.reference } },
    ],
    ...(payeeIsOrganization ? { issuer: { reference: due.payee.reference } } : {}),
    lineItem: due.lines.map((line, index) => ({
      extension: lineExtensions(line),
      sequence: index + 1,
      chargeItemCodeableConcept: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: line.forfaitCode }] },
      priceComponent: [{ type: 'base' as const, code: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: line.forfaitCode }] }, amount: { value: moneyValue(line.amount), currency: 'EUR' } }],
    })),
    totalNet: { value: moneyValue(due.total), currency: 'EUR' },
    totalGross: { value: moneyValue(due.total), currency: 'EUR' },
    note: [{ text: `${due.forfaitCode} for membership year ${due.period.start} to ${due.period.end}.` }],
  };
}
