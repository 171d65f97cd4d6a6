import { describe, expect, it } from 'vitest';
import { describeRange, formatDecimal, positionInRange, roundHalfUp, toDecimal } from '../../../src/domain/decimal.js';
import { convertQuantity } from '../../../src/domain/units.js';
import { catalog } from './program-fixtures.js';

const units = catalog.units;
const GLUCOSE = 'glucose-mass-concentration';
const UCUM = 'http://unitsofmeasure.org';

describe('convertQuantity', () => {
  it.each([
    // value, code, unit, system, exact canonical value, rounded to 2 decimals, fromCode
    [1.1, 'g/L', undefined, UCUM, '1.1', '1.10', 'g/L'],
    [110.5, 'mg/dL', undefined, UCUM, '1.105', '1.11', 'mg/dL'],
    [109.5, 'mg/dL', undefined, UCUM, '1.095', '1.10', 'mg/dL'],
    [6.1, 'mmol/L', undefined, UCUM, '1.098976', '1.10', 'mmol/L'],
    [7.0, 'mmol/L', undefined, UCUM, '1.26112', '1.26', 'mmol/L'],
    [6.3, 'mmol/L', 'mmol/l', UCUM, '1.135008', '1.14', 'mmol/L'],
    [126, 'mg/dl', undefined, undefined, '1.26', '1.26', 'mg/dL'], // alias, system absent
    [1.2, undefined, 'g/l', undefined, '1.2', '1.20', 'g/L'], // no code: the unit text, through an alias
    [100, 'X1', 'mg/dL', 'http://example.org/local-units', '1', '1.00', 'mg/dL'], // non-UCUM system: the unit text
  ])('%s %s (unit %s, system %s) = %s g/L, %s at 0.01', (value, code, unit, system, exact, rounded, fromCode) => {
    const quantity: fhir4.Quantity = { value, ...(code && { code }), ...(unit && { unit }), ...(system && { system }) };
    const result = convertQuantity(quantity, GLUCOSE, units);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.toFixed()).toBe(exact);
    expect(formatDecimal(roundHalfUp(result.value, 2), 2)).toBe(rounded);
    expect(result.canonical).toBe('g/L');
    expect(result.fromCode).toBe(fromCode);
  });

  it.each([
    [{ value: 5.5, code: 'mmol', system: UCUM }, 'Unknown unit "mmol"'],
    [{ value: 5.5, code: 'mg/L', unit: 'mg/dL', system: UCUM }, 'Unknown unit "mg/L"'], // the UCUM code decides, never the text
    [{ value: 5.5 }, 'No unit given'],
    [{ value: 5.5, unit: '  ' }, 'No unit given'],
    [{ value: 5.5, unit: 'constructor' }, 'Unknown unit "constructor"'],
  ])('%j is a code-invalid issue, never a guess', (quantity, message) => {
    const result = convertQuantity(quantity as fhir4.Quantity, GLUCOSE, units);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.issue).toMatchObject({ severity: 'error', code: 'code-invalid', expression: 'Observation.valueQuantity' });
    expect(result.issue.diagnostics).toContain(message);
    expect(result.issue.diagnostics).toContain('g/L, mg/dL, mmol/L');
  });

  it('reports a quantity without a value', () => {
    const result = convertQuantity({ code: 'g/L', system: UCUM }, GLUCOSE, units);
    expect(result).toMatchObject({ ok: false, issue: { code: 'required' } });
  });

  it.each([
    [80000, 'g', 'mass', '80'],
    [176.37, '[lb_av]', 'mass', '80.0000862969'],
    [1.789, 'm', 'length', '1.789'],
    [178.9, 'cm', 'length', '1.789'],
    [70, 'in', 'length', '1.778'],
    [25, 'kg/m^2', 'body-mass-index', '25'],
  ])('%s %s in %s = %s', (value, code, dimension, expected) => {
    const result = convertQuantity({ value, code, system: UCUM }, dimension, units);
    expect(result.ok && result.value.toFixed()).toBe(expected);
  });

  it('throws on a dimension units.json does not define (a programming error)', () => {
    expect(() => convertQuantity({ value: 1, code: 'g/L' }, 'no-such-dimension', units)).toThrow(/no-such-dimension/);
  });
});

describe('decimal comparisons', () => {
  const inclusive = { low: { value: '1.10', inclusive: true }, high: { value: '1.26', inclusive: true } };
  it.each([
    ['1.09', 'below'],
    ['1.10', 'within'],
    ['1.26', 'within'],
    ['1.27', 'above'],
  ] as const)('%s against [1.10 ; 1.26] is %s', (value, position) => {
    expect(positionInRange(toDecimal(value), inclusive.low, inclusive.high)).toBe(position);
  });

  it.each([
    ['1.10', { value: '1.10', inclusive: false }, undefined, 'below'],
    ['1.26', undefined, { value: '1.26', inclusive: false }, 'above'],
    ['25', { value: '25', inclusive: true }, undefined, 'within'],
    ['24.99', { value: '25', inclusive: true }, undefined, 'below'],
  ] as const)('%s with exclusive/one-sided bounds', (value, low, high, position) => {
    expect(positionInRange(toDecimal(value), low, high)).toBe(position);
  });

  it('is exact where binary floats are not', () => {
    expect(0.1 + 0.2 === 0.3).toBe(false);
    expect(toDecimal(0.1).plus(0.2).equals(toDecimal('0.3'))).toBe(true);
    // 1.005 is 1.00499999999999989... as a double: decimal rounding sees what JSON held.
    expect(formatDecimal(roundHalfUp(toDecimal(1.005), 2), 2)).toBe('1.01');
  });

  it.each([
    [{ value: '1.10', inclusive: true }, { value: '1.26', inclusive: false }, 'g/L', '[1.10 ; 1.26) g/L'],
    [{ value: '25', inclusive: true }, undefined, 'kg/m2', '>= 25 kg/m2'],
    [undefined, { value: '30', inclusive: false }, 'kg/m2', '< 30 kg/m2'],
  ])('describes %j..%j', (low, high, unit, text) => {
    expect(describeRange(low, high, unit)).toBe(text);
  });
});
