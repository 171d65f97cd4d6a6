/**
 * Exact judgement of a quotient `numerator / denominator²` (the computed BMI: kg / m²) with
 * scaled integers instead of decimal.js, for the common case where every number involved is a
 * small decimal. Bulk screening computes a BMI for about a third of the population, and
 * decimal.js's 40-digit division cost several microseconds each.
 *
 * **Same results as decimal.js, not an approximation.** decimal.js (src/domain/decimal.ts)
 * computes `r = round40(q)`, q the exact quotient (the denominator's square is exact: its digits
 * are checked to fit 40), then rounds `r` half-up to the shown
 * decimals and compares it with the bounds. Here q = N / D exactly (N, D integers), and:
 * - rounding and comparing q itself gives the same answers as doing so with r whenever no
 *   rounding boundary or bound c lies strictly between q and r. If q ≠ c, |q - c| ≥ 1 / (2·D·10^k)
 *   (k: the decimals of c), while |q - r| ≤ q · 10^-39 / 2 ≤ N / D · 10^-39 / 2; so with
 *   N · 10^k < 10^39 (checked, with a margin of 10) r never crosses c. If q = c, q has at most
 *   k + 1 decimals and q · 10^(k+1) ≤ N · 10^(k+1) < 10^39: at most 39 digits, so r = q.
 * - integers are BigInts: exact whatever their size. Anything outside the bounds of the
 *   argument (a larger N, a bound or precision with more decimals) answers undefined and the
 *   caller uses decimal.js.
 * test/unit/domain/scaled-quotient.test.ts checks it against decimal.js (property test).
 */
import type { Bound } from '../programs/schema.js';
import type { Decimal, RangePosition } from './decimal.js';

/** `units / 10^scale`. */
export interface ScaledInteger {
  units: bigint;
  scale: number;
}

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;
/** Beyond these decimals (of a bound, a precision) decimal.js decides: see the file comment. */
const MAX_SCALE = 20;
/** N · 10^k must stay below 10^39 (file comment): it is kept below a tenth of that. */
const MAX_SCALED_NUMERATOR = 10n ** 38n;
/** L < 10^20: L² < 10^40, which decimal.js's 40 digits hold exactly. */
const MAX_DENOMINATOR_UNITS = 10n ** 20n;

/** A decimal text (`-12.340`, `7`) as a scaled integer; undefined for any other text or more than MAX_SCALE decimals. */
export function scaledOfText(text: string): ScaledInteger | undefined {
  const match = DECIMAL.exec(text);
  if (!match) return undefined;
  const fraction = match[3] ?? '';
  if (fraction.length > MAX_SCALE) return undefined;
  const units = BigInt(`${match[2]}${fraction}`);
  return { units: match[1] === '-' ? -units : units, scale: fraction.length };
}

/** Decimals are immutable and repeat (converted values are memoised): each is read once. */
const scaledDecimals = new WeakMap<Decimal, ScaledInteger | null>();

function scaledOfDecimal(value: Decimal): ScaledInteger | undefined {
  let known = scaledDecimals.get(value);
  if (known === undefined) {
    known = value.isFinite() && value.decimalPlaces() <= 2 * MAX_SCALE ? (scaledOfText(value.toFixed()) ?? null) : null;
    scaledDecimals.set(value, known);
  }
  return known ?? undefined;
}

/** Program bounds are few strings: each is read once. */
const scaledBounds = new Map<string, ScaledInteger | null>();

function scaledOfBound(value: string): ScaledInteger | undefined {
  let known = scaledBounds.get(value);
  if (known === undefined) {
    known = scaledOfText(value) ?? null;
    if (scaledBounds.size >= 1_000) scaledBounds.clear();
    scaledBounds.set(value, known);
  }
  return known ?? undefined;
}

const pow10 = (k: number): bigint => 10n ** BigInt(k);

/** Sign of `a/10^ea - b/10^eb`. */
function compareScaled(a: bigint, ea: number, b: bigint, eb: number): number {
  const left = ea >= eb ? a : a * pow10(eb - ea);
  const right = eb >= ea ? b : b * pow10(ea - eb);
  return left === right ? 0 : left < right ? -1 : 1;
}

/** `units / 10^scale` with exactly `scale` decimals, or without trailing zeros (`trim`); units ≥ 0. */
function formatScaled(units: bigint, scale: number, trim: boolean): string {
  const digits = units.toString().padStart(scale + 1, '0');
  const whole = digits.slice(0, digits.length - scale);
  let fraction = digits.slice(digits.length - scale);
  if (trim) fraction = fraction.replace(/0+$/, '');
  return fraction.length === 0 ? whole : `${whole}.${fraction}`;
}

export interface QuotientJudgement {
  /** The value as decimal.js's `formatDecimal` writes it (see `judgeQuotient`). */
  shown: string;
  position: RangePosition;
}

/**
 * What `judge` of src/domain/criteria/body-mass-index.ts makes of `numerator / denominator²`
 * (both positive): with `precision`, the value rounded half-up to it, shown with exactly that
 * many decimals and compared with the bounds; without, shown rounded half-up to
 * `displayDecimals` without trailing zeros, and compared exactly. Undefined when it cannot be
 * proved equal to decimal.js's answer with safe integers (see the file comment).
 */
export function judgeQuotient(
  numerator: Decimal,
  denominator: Decimal,
  precision: number | undefined,
  displayDecimals: number,
  low: Bound | undefined,
  high: Bound | undefined,
): QuotientJudgement | undefined {
  const m = scaledOfDecimal(numerator);
  const l = scaledOfDecimal(denominator);
  if (!m || !l || m.units <= 0n || l.units <= 0n) return undefined;
  // decimal.js squares the denominator to 40 digits: exact only while L² has at most 40 digits.
  if (l.units >= MAX_DENOMINATOR_UNITS) return undefined;
  const shownScale = precision ?? displayDecimals;
  if (!(Number.isInteger(shownScale) && shownScale >= 0 && shownScale <= MAX_SCALE)) return undefined;
  const lowBound = low && scaledOfBound(low.value);
  const highBound = high && scaledOfBound(high.value);
  if ((low && !lowBound) || (high && !highBound)) return undefined;
  // q = (M / 10^a) / (L / 10^b)² = M·10^(2b) / (L²·10^a) = N / D.
  const n = m.units * pow10(2 * l.scale);
  const d = l.units * l.units * pow10(m.scale);
  // The decimals of what q is rounded at or compared with (with a precision, the bounds are
  // compared with the rounded value: exact rationals, no condition).
  const k = precision !== undefined ? shownScale : Math.max(shownScale, lowBound?.scale ?? 0, highBound?.scale ?? 0);
  if (n * pow10(k) >= MAX_SCALED_NUMERATOR) return undefined;
  // ⌊q·10^s + 1/2⌋ = ⌊(2·N·10^s + D) / (2·D)⌋: q rounded half-up to s decimals, in units of 10^-s.
  const shownUnits = (2n * n * pow10(shownScale) + d) / (2n * d);

  /** Sign of (value judged − bound): the rounded value with a precision, q itself (N·10^e vs P·D) without. */
  const compare = (bound: ScaledInteger): number => (precision !== undefined ? compareScaled(shownUnits, precision, bound.units, bound.scale) : compareScaled(n, 0, bound.units * d, bound.scale));
  let position: RangePosition = 'within';
  if (low && lowBound) {
    const cmp = compare(lowBound);
    if (cmp < 0 || (cmp === 0 && !low.inclusive)) position = 'below';
  }
  if (high && highBound && position === 'within') {
    const cmp = compare(highBound);
    if (cmp > 0 || (cmp === 0 && !high.inclusive)) position = 'above';
  }
  return { shown: formatScaled(shownUnits, shownScale, precision === undefined), position };
}
