/**
 * Exact decimal arithmetic for every number the domain compares (DOMAIN.md 1, Decision on
 * glucose bounds: convert, round half-up, then compare). Binary floats never take part in a
 * comparison: a FHIR `Quantity.value` arrives as a JS number, is read through its shortest
 * round-trip string (what JSON held, e.g. 110.5) and is from then on a decimal.js value.
 */
import { Decimal as DecimalJs } from 'decimal.js';
import type { Bound } from '../programs/schema.js';

/**
 * Our own Decimal constructor, so that a `Decimal.set(...)` elsewhere in the process cannot
 * change our results. 40 significant digits keep divisions (BMI = kg / m²) far more precise
 * than any bound; plain notation (no exponent) for every value the domain prints.
 */
export const Decimal = DecimalJs.clone({
  precision: 40,
  rounding: DecimalJs.ROUND_HALF_UP,
  toExpNeg: -40,
  toExpPos: 40,
});
export type Decimal = DecimalJs;

/** A decimal from a FHIR number or a program-data decimal string. */
export function toDecimal(value: number | string): Decimal {
  return new Decimal(value);
}

/** Rounds half-up (away from zero at exactly .5) to `places` decimals; `undefined` keeps the value exact. */
export function roundHalfUp(value: Decimal, places: number | undefined): Decimal {
  return places === undefined ? value : value.toDecimalPlaces(places, DecimalJs.ROUND_HALF_UP);
}

/** The value as written for a reader: `places` fixed decimals (half-up), or the exact value without exponent. */
export function formatDecimal(value: Decimal, places?: number): string {
  return places === undefined ? value.toFixed() : value.toFixed(places, DecimalJs.ROUND_HALF_UP);
}

export type RangePosition = 'below' | 'within' | 'above';

/** Bounds are program-data strings: each is parsed once (Decimals are immutable). */
const boundDecimals = new Map<string, Decimal>();

function boundDecimal(value: string | number): Decimal {
  if (typeof value !== 'string') return toDecimal(value);
  let decimal = boundDecimals.get(value);
  if (decimal === undefined) {
    decimal = toDecimal(value);
    if (boundDecimals.size >= 10_000) boundDecimals.clear();
    boundDecimals.set(value, decimal);
  }
  return decimal;
}

/** Where `value` lies against optional low and high bounds, each inclusive or exclusive (program data). */
export function positionInRange(value: Decimal, low?: Bound, high?: Bound): RangePosition {
  if (low) {
    const cmp = value.comparedTo(boundDecimal(low.value));
    if (cmp < 0 || (cmp === 0 && !low.inclusive)) return 'below';
  }
  if (high) {
    const cmp = value.comparedTo(boundDecimal(high.value));
    if (cmp > 0 || (cmp === 0 && !high.inclusive)) return 'above';
  }
  return 'within';
}

/**
 * The required range in words, e.g. `[a ; b] g/L` (inclusive bounds in square brackets,
 * exclusive ones in parentheses), `>= a kg/m2`, `< b g/L`.
 */
export function describeRange(low: Bound | undefined, high: Bound | undefined, unit: string): string {
  if (low && high) {
    return `${low.inclusive ? '[' : '('}${low.value} ; ${high.value}${high.inclusive ? ']' : ')'} ${unit}`;
  }
  if (low) return `${low.inclusive ? '>=' : '>'} ${low.value} ${unit}`;
  if (high) return `${high.inclusive ? '<=' : '<'} ${high.value} ${unit}`;
  return `any value in ${unit}`;
}
