/**
 * The computed BMI with scaled integers (src/domain/scaled-quotient.ts) against decimal.js, the
 * reference: the same shown value and the same position against the bounds, whatever the
 * weight, height, units, bounds and precision; and decimal.js decides (undefined) when the
 * numbers are too large to be proved equal.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDecimal, positionInRange, roundHalfUp, toDecimal, type Decimal } from '../../../src/domain/decimal.js';
import { judgeQuotient, scaledOfText } from '../../../src/domain/scaled-quotient.js';
import type { Bound } from '../../../src/programs/schema.js';
import { catalog } from './program-fixtures.js';

const DISPLAY = 4;

/** What body-mass-index.ts's decimal.js `judge` makes of mass / length² (factor 1). */
function viaDecimal(mass: Decimal, length: Decimal, precision: number | undefined, low?: Bound, high?: Bound): { shown: string; position: string } {
  const exact = mass.dividedBy(length.pow(2)).times('1');
  const rounded = roundHalfUp(exact, precision);
  const shown = precision !== undefined ? formatDecimal(rounded, precision) : formatDecimal(roundHalfUp(exact, DISPLAY));
  return { shown, position: positionInRange(rounded, low, high) };
}

const massFactors = catalog.units.dimensions['mass']!.factors;
const lengthFactors = catalog.units.dimensions['length']!.factors;

/** A JSON-like number with up to `decimals` decimals in [min, max]. */
const measured = (min: number, max: number, decimals: number): fc.Arbitrary<number> =>
  fc.tuple(fc.integer({ min: min * 10 ** decimals, max: max * 10 ** decimals }), fc.integer({ min: 0, max: decimals })).map(([units, places]) => Number((units / 10 ** decimals).toFixed(places)));

const boundText = fc.oneof(
  fc.constantFrom('25', '30', '18.5', '24.9959', '25.0239', '40', '0', '-3'),
  fc.tuple(fc.integer({ min: 0, max: 60_000_000 }), fc.integer({ min: 0, max: 6 })).map(([units, places]) => (units / 10 ** places).toFixed(places)),
);
const bound: fc.Arbitrary<Bound | undefined> = fc.option(fc.record({ value: boundText, inclusive: fc.boolean() }), { nil: undefined });

describe('judgeQuotient (computed BMI with scaled integers)', () => {
  it('gives what decimal.js gives, for weights and heights in every unit, any bounds and precision', () => {
    let decided = 0;
    let runs = 0;
    fc.assert(
      fc.property(
        measured(0, 400, 3),
        fc.constantFrom(...Object.values(massFactors)),
        measured(0, 2500, 2),
        fc.constantFrom(...Object.values(lengthFactors)),
        fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
        bound,
        bound,
        (weight, massFactor, height, lengthFactor, precision, low, high) => {
          const mass = toDecimal(weight).times(massFactor);
          const length = toDecimal(height).times(lengthFactor);
          fc.pre(mass.gt(0) && length.gt(0));
          const fast = judgeQuotient(mass, length, precision, DISPLAY, low, high);
          runs += 1;
          if (fast === undefined) return; // too large to prove: decimal.js decides
          decided += 1;
          expect(fast).toEqual(viaDecimal(mass, length, precision, low, high));
        },
      ),
      { numRuns: 20_000 },
    );
    // Only extreme values (a gram over a hundredth of a millimetre squared) are left to decimal.js.
    expect(decided / runs).toBeGreaterThan(0.95);
  });

  it('takes the integer path for every realistic weight and height (kg or lb, cm, m or in)', () => {
    fc.assert(
      fc.property(
        measured(1, 400, 2),
        fc.constantFrom('1', '0.45359237'),
        measured(30, 250, 2),
        fc.constantFrom('0.01', '0.0254'),
        fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
        bound,
        bound,
        (weight, massFactor, height, lengthFactor, precision, low, high) => {
          const mass = toDecimal(weight).times(massFactor);
          const length = toDecimal(height).times(lengthFactor);
          const fast = judgeQuotient(mass, length, precision, DISPLAY, low, high);
          expect(fast).toBeDefined();
          expect(fast).toEqual(viaDecimal(mass, length, precision, low, high));
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it('decides exactly at the thresholds 25 and 30 (inclusive or not), with or without a precision', () => {
    const cases: [number, number, string, string][] = [
      // kg, cm, bound, shown without precision
      [100, 200, '25', '25'],
      [81, 180, '25', '25'],
      [97.2, 180, '30', '30'],
      [80, 178.9, '25', '24.9959'],
      [80, 178.8, '25', '25.0239'],
      [64.8, 161, '25', '24.999'],
    ];
    for (const [kg, cm, threshold, shown] of cases) {
      const mass = toDecimal(kg);
      const length = toDecimal(cm).times('0.01');
      for (const precision of [undefined, 0, 1, 2, 4]) {
        for (const inclusive of [true, false]) {
          const low = { value: threshold, inclusive };
          const high = { value: threshold, inclusive };
          const reference = viaDecimal(mass, length, precision, low);
          expect(judgeQuotient(mass, length, precision, DISPLAY, low, undefined)).toEqual(reference);
          expect(judgeQuotient(mass, length, precision, DISPLAY, undefined, high)).toEqual(viaDecimal(mass, length, precision, undefined, high));
        }
      }
      expect(judgeQuotient(mass, length, undefined, DISPLAY, { value: threshold, inclusive: true }, undefined)?.shown).toBe(shown);
    }
    // Exactly 25: inside an inclusive bound, outside an exclusive one.
    expect(judgeQuotient(toDecimal(100), toDecimal(2), undefined, DISPLAY, { value: '25', inclusive: true }, undefined)?.position).toBe('within');
    expect(judgeQuotient(toDecimal(100), toDecimal(2), undefined, DISPLAY, { value: '25', inclusive: false }, undefined)?.position).toBe('below');
    expect(judgeQuotient(toDecimal(100), toDecimal(2), undefined, DISPLAY, undefined, { value: '25', inclusive: false })?.position).toBe('above');
  });

  it('rounds half-up for display and with a precision (a 5 at the next decimal goes up)', () => {
    // length 1 m: the quotient is the mass itself.
    expect(judgeQuotient(toDecimal('24.12345'), toDecimal(1), undefined, DISPLAY, undefined, undefined)?.shown).toBe('24.1235');
    expect(judgeQuotient(toDecimal('24.12344'), toDecimal(1), undefined, DISPLAY, undefined, undefined)?.shown).toBe('24.1234');
    expect(judgeQuotient(toDecimal('24.5'), toDecimal(1), 0, DISPLAY, { value: '25', inclusive: true }, undefined)).toEqual({ shown: '25', position: 'within' });
    expect(judgeQuotient(toDecimal('24.49'), toDecimal(1), 0, DISPLAY, { value: '25', inclusive: true }, undefined)).toEqual({ shown: '24', position: 'below' });
    expect(judgeQuotient(toDecimal('25'), toDecimal(1), 2, DISPLAY, undefined, undefined)?.shown).toBe('25.00');
    expect(judgeQuotient(toDecimal('25.1'), toDecimal(1), undefined, DISPLAY, undefined, undefined)?.shown).toBe('25.1');
    // A repeating quotient (1/3): rounded, never compared as equal to its rounding.
    expect(judgeQuotient(toDecimal(1), toDecimal(3).sqrt(), undefined, DISPLAY, undefined, undefined)).toBeUndefined();
    const third = judgeQuotient(toDecimal(100), toDecimal('17.32'), undefined, DISPLAY, { value: '0.3334', inclusive: true }, undefined);
    expect(third).toEqual(viaDecimal(toDecimal(100), toDecimal('17.32'), undefined, { value: '0.3334', inclusive: true }));
  });

  it('handles long decimals exactly, and leaves to decimal.js (undefined) what its proof does not cover, and values that are not positive', () => {
    for (const long of [
      [toDecimal('123456789.123456789'), toDecimal('1.7')],
      [toDecimal('12345678901234567890.5'), toDecimal('1.7')],
    ] as const) {
      expect(judgeQuotient(...long, undefined, DISPLAY, { value: '25', inclusive: true }, undefined)).toEqual(viaDecimal(...long, undefined, { value: '25', inclusive: true }));
    }
    // N · 10^k ≥ 10^38: decimal.js decides.
    expect(judgeQuotient(toDecimal('1000000000000000000000000000000000.5'), toDecimal('1.7'), undefined, DISPLAY, undefined, undefined)).toBeUndefined();
    expect(judgeQuotient(toDecimal(80), toDecimal('1.23456789012345678'), undefined, DISPLAY, undefined, undefined)).toBeUndefined();
    // A denominator whose square has more than 40 digits (decimal.js rounds it): decimal.js decides.
    expect(judgeQuotient(toDecimal(1), toDecimal('123456789012345678901234'), undefined, DISPLAY, undefined, undefined)).toBeUndefined();
    expect(judgeQuotient(toDecimal(1), toDecimal('12345678901234567890'), undefined, DISPLAY, undefined, undefined)).toEqual(viaDecimal(toDecimal(1), toDecimal('12345678901234567890'), undefined));
    expect(judgeQuotient(toDecimal(80), toDecimal('1.8'), undefined, DISPLAY, { value: '25.000000000000000000001', inclusive: true }, undefined)).toBeUndefined();
    expect(judgeQuotient(toDecimal(0), toDecimal('1.8'), undefined, DISPLAY, undefined, undefined)).toBeUndefined();
    expect(judgeQuotient(toDecimal(80), toDecimal('-1.8'), undefined, DISPLAY, undefined, undefined)).toBeUndefined();
  });

  it('reads decimal texts as scaled integers', () => {
    expect(scaledOfText('25')).toEqual({ units: 25n, scale: 0 });
    expect(scaledOfText('-18.50')).toEqual({ units: -1850n, scale: 2 });
    expect(scaledOfText('0.001')).toEqual({ units: 1n, scale: 3 });
    expect(scaledOfText('-0')).toEqual({ units: 0n, scale: 0 });
    expect(scaledOfText('1e5')).toBeUndefined();
    expect(scaledOfText('0.000000000000000000001')).toBeUndefined();
  });
});
