/**
 * A program's (or a centre's) budget report (issue #4, point 5): amounts claimed, accepted and
 * paid against the budget of billing.json `budget` (DOMAIN.md 1, Payment), exact sums.
 *
 * How the FHIR resources are read:
 * - claimed: the `total` of each Claim with status `active` (draft, cancelled and
 *   entered-in-error claims claim nothing); a Claim without `total` counts the sum of its items'
 *   `net`.
 * - Each Claim's answer is its latest final ClaimResponse: status `active`, `request` referring
 *   to the Claim (literal reference, or the Claim's business identifier), outcome not `queued`
 *   (a queued answer is not a decision yet); the latest by `created`, then by input order.
 * - accepted, for an answer with outcome `complete` or `partial`: the insurer's
 *   `total` of category adjudication#benefit when given; else the sum of its
 *   `item.adjudication` of category benefit; else, for `complete` only, the Claim's total (the
 *   claim was processed without error and the insurer stated no other amount). An `error`
 *   answer, or a `partial` one stating no amount, accepts nothing.
 * - paid: `payment.amount` of the answer (the insurer's statement of what it paid).
 * - remaining: budget − claimed (what is still free to claim); absent without a budget.
 * Amounts are read exactly (decimal.js from the JSON number's shortest string) in EUR; an
 * amount in another currency is not counted. Sums are written with two decimals (half-up).
 *
 * Pure: no I/O, no clock.
 */
import { FORFAIT_CODE_SYSTEM } from '../../programs/billing-schema.js';
import { Decimal } from '../decimal.js';
import { referenceKey } from '../references.js';
import { MONEY_PLACES } from './money.js';

export interface BudgetInput {
  /** The budget (billing.json `budget.amount`), a decimal string; absent: no `remaining`. */
  budget?: string;
  claims: readonly fhir4.Claim[];
  responses: readonly fhir4.ClaimResponse[];
}

export interface ForfaitBudgetLine {
  code: string;
  /** Number of claims counted. */
  claims: number;
  claimed: string;
  accepted: string;
  paid: string;
}

export interface BudgetReport {
  budget?: string;
  claimed: string;
  accepted: string;
  paid: string;
  /** budget − claimed; negative when the claims exceed the budget. */
  remaining?: string;
  /** By forfait code (the items' CodeSystem/forfait coding), sorted by code. */
  byForfait: ForfaitBudgetLine[];
}

const ADJUDICATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/adjudication';
const ZERO = new Decimal(0);

function amountOf(money: fhir4.Money | undefined): Decimal | undefined {
  if (money?.value === undefined || (money.currency !== undefined && money.currency !== 'EUR')) return undefined;
  const value = new Decimal(String(money.value));
  return value.isFinite() ? value : undefined;
}

function sum(values: readonly (Decimal | undefined)[]): Decimal {
  return values.reduce<Decimal>((total, value) => (value === undefined ? total : total.plus(value)), ZERO);
}

function isBenefit(category: fhir4.CodeableConcept | undefined): boolean {
  return category?.coding?.some((coding) => coding.system === ADJUDICATION_SYSTEM && coding.code === 'benefit') === true;
}

function claimTotal(claim: fhir4.Claim): Decimal {
  return amountOf(claim.total) ?? sum((claim.item ?? []).map((item) => amountOf(item.net)));
}

function forfaitOf(claim: fhir4.Claim): string {
  for (const item of claim.item ?? []) {
    const code = item.productOrService.coding?.find((coding) => coding.system === FORFAIT_CODE_SYSTEM && coding.code)?.code;
    if (code) return code;
  }
  return '(none)';
}

function answers(claim: fhir4.Claim, response: fhir4.ClaimResponse): boolean {
  if (referenceKey(response.request) === `Claim/${claim.id ?? ''}` && claim.id !== undefined) return true;
  const identifier = response.request?.identifier;
  return identifier !== undefined && (claim.identifier ?? []).some((own) => own.system === identifier.system && own.value === identifier.value);
}

function latestAnswer(claim: fhir4.Claim, responses: readonly fhir4.ClaimResponse[]): fhir4.ClaimResponse | undefined {
  let latest: { response: fhir4.ClaimResponse; at: number } | undefined;
  for (const response of responses) {
    if (response.status !== 'active' || response.outcome === 'queued' || !answers(claim, response)) continue;
    const at = Date.parse(response.created);
    const time = Number.isNaN(at) ? Number.NEGATIVE_INFINITY : at;
    if (!latest || time >= latest.at) latest = { response, at: time };
  }
  return latest?.response;
}

function acceptedBy(response: fhir4.ClaimResponse | undefined, claimed: Decimal): Decimal {
  if (!response || (response.outcome !== 'complete' && response.outcome !== 'partial')) return ZERO;
  const totals = (response.total ?? []).filter((total) => isBenefit(total.category));
  if (totals.length > 0) return sum(totals.map((total) => amountOf(total.amount)));
  const items = (response.item ?? []).flatMap((item) => item.adjudication.filter((adjudication) => isBenefit(adjudication.category)));
  if (items.length > 0) return sum(items.map((adjudication) => amountOf(adjudication.amount)));
  return response.outcome === 'complete' ? claimed : ZERO;
}

const format = (value: Decimal): string => value.toFixed(MONEY_PLACES, Decimal.ROUND_HALF_UP);

/** The budget report of a set of Claims and their ClaimResponses (see the module comment). */
export function budgetReport(input: BudgetInput): BudgetReport {
  const byForfait = new Map<string, { claims: number; claimed: Decimal; accepted: Decimal; paid: Decimal }>();
  let claimed = ZERO;
  let accepted = ZERO;
  let paid = ZERO;
  for (const claim of input.claims) {
    if (claim.status !== 'active') continue;
    const total = claimTotal(claim);
    const answer = latestAnswer(claim, input.responses);
    const claimAccepted = acceptedBy(answer, total);
    const claimPaid = amountOf(answer?.payment?.amount) ?? ZERO;
    claimed = claimed.plus(total);
    accepted = accepted.plus(claimAccepted);
    paid = paid.plus(claimPaid);
    const code = forfaitOf(claim);
    const line = byForfait.get(code) ?? { claims: 0, claimed: ZERO, accepted: ZERO, paid: ZERO };
    byForfait.set(code, { claims: line.claims + 1, claimed: line.claimed.plus(total), accepted: line.accepted.plus(claimAccepted), paid: line.paid.plus(claimPaid) });
  }
  const budget = input.budget === undefined ? undefined : new Decimal(input.budget);
  return {
    ...(budget !== undefined ? { budget: format(budget) } : {}),
    claimed: format(claimed),
    accepted: format(accepted),
    paid: format(paid),
    ...(budget !== undefined ? { remaining: format(budget.minus(claimed)) } : {}),
    byForfait: [...byForfait.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([code, line]) => ({ code, claims: line.claims, claimed: format(line.claimed), accepted: format(line.accepted), paid: format(line.paid) })),
  };
}
