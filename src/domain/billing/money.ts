/**
 * Exact money (issue #4, "Money is exact"): euro amounts are decimal.js values (the domain's
 * `Decimal` clone, ROUND_HALF_UP) in code and two-decimal strings ("12.30") at every boundary
 * (DueLine.amount, DueClaim.total). Binary floats never take part in a sum.
 *
 * Reading a FHIR `Money.value`: JSON.parse turns `12.30` into the number 12.3, whose shortest
 * round-trip string ("12.3") is exactly the decimal that was written, so `new Decimal(String(v))`
 * is exact for any amount with few digits. Amounts must have at most two decimals (cents): a
 * value with more is refused (`parseMoney` throws), never rounded silently.
 *
 * Writing a FHIR `Money.value`: `Number("12.30")` is 12.3, the same decimal; JSON cannot keep
 * the trailing zero of a number, so the string form is the one to compare and display.
 *
 * Pure: no I/O, no clock.
 */
import { Decimal } from '../decimal.js';

export type MoneyInput = Decimal | string | number;

/** Cents: amounts are euros with at most this many decimals. */
export const MONEY_PLACES = 2;

/**
 * An exact euro amount: a decimal string or a FHIR `Money.value` number read through its
 * shortest round-trip string.
 *
 * @throws RangeError when the value is not a finite, non-negative number with at most two decimals.
 */
export function parseMoney(value: MoneyInput): Decimal {
  let amount: Decimal;
  try {
    amount = value instanceof Decimal ? value : new Decimal(typeof value === 'number' ? String(value) : value.trim());
  } catch {
    throw new RangeError(`Not an amount: "${String(value)}"`);
  }
  if (!amount.isFinite() || amount.isNegative()) throw new RangeError(`Not a non-negative amount: "${String(value)}"`);
  if (amount.decimalPlaces() > MONEY_PLACES) throw new RangeError(`An amount has at most ${MONEY_PLACES} decimals (cents): "${String(value)}"`);
  return amount;
}

/** True when `parseMoney` accepts the value. */
export function isMoney(value: unknown): value is MoneyInput {
  if (typeof value !== 'string' && typeof value !== 'number' && !(value instanceof Decimal)) return false;
  try {
    parseMoney(value);
    return true;
  } catch {
    return false;
  }
}

/** Two fixed decimals, e.g. "12.30", "0.05", "1000.00". */
export function formatMoney(value: MoneyInput): string {
  return parseMoney(value).toFixed(MONEY_PLACES);
}

/** The number to write in a FHIR `Money.value` (the same decimal: see the module comment). */
export function moneyValue(value: MoneyInput): number {
  return Number(formatMoney(value));
}

/** Exact sum, two decimals ("0.00" for none). */
export function sumMoney(values: Iterable<MoneyInput>): string {
  let total = new Decimal(0);
  for (const value of values) total = total.plus(parseMoney(value));
  return total.toFixed(MONEY_PLACES);
}

/** `a - b`, two decimals; may be negative (a budget overrun). */
export function subtractMoney(a: MoneyInput, b: MoneyInput): string {
  return parseMoney(a).minus(parseMoney(b)).toFixed(MONEY_PLACES);
}

function parseShare(share: Decimal | string): Decimal {
  const value = share instanceof Decimal ? share : new Decimal(share);
  if (!value.isFinite() || value.isNegative() || value.greaterThan(1)) throw new RangeError(`A share is a decimal in [0 ; 1]: "${String(share)}"`);
  return value;
}

/** `share` × `amount`, rounded half-up to the cent (0.5 × 24.60 = 12.30; 0.5 × 0.05 = 0.03). */
export function applyShare(amount: MoneyInput, share: Decimal | string): string {
  return parseMoney(amount).times(parseShare(share)).toDecimalPlaces(MONEY_PLACES, Decimal.ROUND_HALF_UP).toFixed(MONEY_PLACES);
}

/**
 * The parts of `amount` paid under a schedule of `shares` (billing.json `dueOn[].share`), which
 * must add up to exactly 1. Every part but the last is `applyShare`; the last is the amount
 * minus the others, so the parts always add up exactly to the amount and the rounding
 * remainder falls on the last due event (100.00 in thirds: 33.33, 33.33, 33.34; 24.60 in
 * halves: 12.30, 12.30).
 *
 * @throws RangeError when the shares do not add up to 1 or one is outside [0 ; 1].
 */
export function splitByShares(amount: MoneyInput, shares: readonly (Decimal | string)[]): string[] {
  if (shares.length === 0) throw new RangeError('A schedule has at least one share');
  const parsed = shares.map(parseShare);
  const sum = parsed.reduce((total, share) => total.plus(share), new Decimal(0));
  if (!sum.equals(1)) throw new RangeError(`The shares add up to ${sum.toFixed()}, not 1`);
  const total = parseMoney(amount);
  const parts = parsed.slice(0, -1).map((share) => applyShare(total, share));
  const last = total.minus(sumMoney(parts));
  return [...parts, last.toFixed(MONEY_PLACES)];
}
