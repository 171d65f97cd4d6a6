/**
 * The memos of the quantity criteria (src/domain/criteria/observations.ts `JudgementMemo`,
 * `quantityId`) and of unit conversion (src/domain/units.ts): a judgement or a converted value
 * taken from a memo must be what computing it afresh gives. A fresh copy of the program (new
 * criterion objects: an empty memo) is the reference; the same program evaluated again (memo
 * hits) must give the same verdicts, byte for byte.
 */
import { Decimal as DecimalJs } from 'decimal.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { quantityId, quantityPairId } from '../../../src/domain/criteria/observations.js';
import { evaluateEligibility } from '../../../src/domain/evaluate.js';
import type { LoadedProgram } from '../../../src/programs/schema.js';
import { convertQuantity } from '../../../src/domain/units.js';
import { ASOF, bmiObs, glucose, heightObs, record, weightObs } from './fhir-fixtures.js';
import { catalog, fnmf } from './program-fixtures.js';

const verdictJson = (program: LoadedProgram, observations: fhir4.Observation[]): string =>
  JSON.stringify(evaluateEligibility(program, catalog, record({ observations }), { members: new Map() }, ASOF));

/** Decimal values as FHIR holds them: up to 3 decimals, small and large, and some exact .5 cases. */
const decimalValue = fc.oneof(
  fc.integer({ min: 0, max: 400_000 }).map((n) => n / 1000),
  fc.integer({ min: 0, max: 3000 }).map((n) => n / 10),
  fc.constantFrom(0, 1.095, 1.265, 6.1, 7, 109.5, 110.5, 126, 0.0001, 1e-7, 123456789.123),
);

describe('memoised judgements equal fresh ones', () => {
  it('glucose in any unit (known, alias, unknown): the verdict with a warm memo is the verdict with an empty one', () => {
    const unit = fc.constantFrom('g/L', 'mg/dL', 'mmol/L', 'mg/dl', 'mmol/l', 'g/l', 'mg/L', 'furlong');
    fc.assert(
      fc.property(decimalValue, unit, (value, code) => {
        const observations = [glucose(value, code, '2025-05-01')];
        const cold = verdictJson(structuredClone(fnmf), observations);
        expect(verdictJson(fnmf, observations)).toBe(cold);
        expect(verdictJson(fnmf, observations)).toBe(cold);
      }),
      { numRuns: 1500 },
    );
  });

  it('body-mass index observed or computed from weight and height (kg, g, [lb_av]; cm, m, [in_i])', () => {
    const weightUnit = fc.constantFrom('kg', 'g', '[lb_av]', 'stone');
    const heightUnit = fc.constantFrom('cm', 'm', '[in_i]');
    fc.assert(
      fc.property(decimalValue, decimalValue, weightUnit, decimalValue, heightUnit, fc.boolean(), (bmi, weight, wUnit, height, hUnit, withBmi) => {
        const observations = [weightObs(weight, wUnit, '2025-05-02'), heightObs(height, hUnit, '2024-01-01'), ...(withBmi ? [bmiObs(bmi, '2025-05-01')] : [])];
        const cold = verdictJson(structuredClone(fnmf), observations);
        expect(verdictJson(fnmf, observations)).toBe(cold);
        expect(verdictJson(fnmf, observations)).toBe(cold);
      }),
      { numRuns: 1500 },
    );
  });

  it('a value written as a string, -0, and a unit text that differs from the code are never confused with another quantity', () => {
    const number = glucose(1.1, 'g/L', '2025-05-01');
    const text = glucose(1.1, 'g/L', '2025-05-01');
    (text.valueQuantity as { value: unknown }).value = '1.10';
    const negativeZero = glucose(-0, 'g/L', '2025-05-01');
    const zero = glucose(0, 'g/L', '2025-05-01');
    const otherText = glucose(1.1, 'g/L', '2025-05-01');
    otherText.valueQuantity!.unit = 'grams per litre';
    for (const observation of [number, text, negativeZero, zero, otherText, number, text]) {
      expect(verdictJson(fnmf, [observation])).toBe(verdictJson(structuredClone(fnmf), [observation]));
    }
  });
});

describe('quantityId', () => {
  it('numbers a quantity by its value (with its type), unit, code and system', () => {
    const id = quantityId({ value: 7.3, unit: 'mmol/L', code: 'mmol/L', system: 'http://unitsofmeasure.org' });
    expect(id).toBeTypeOf('number');
    expect(quantityId({ value: 7.3, unit: 'mmol/L', code: 'mmol/L', system: 'http://unitsofmeasure.org' })).toBe(id);
    const others = [
      { value: '7.3', unit: 'mmol/L', code: 'mmol/L', system: 'http://unitsofmeasure.org' },
      { value: 7.30001, unit: 'mmol/L', code: 'mmol/L', system: 'http://unitsofmeasure.org' },
      { value: 7.3, unit: 'mmol/l', code: 'mmol/L', system: 'http://unitsofmeasure.org' },
      { value: 7.3, code: 'mmol/L', system: 'http://unitsofmeasure.org' },
      { value: 7.3, unit: 'mmol/L', code: 'mmol/L' },
      { value: 7.3, unit: 'undefined', code: 'mmol/L', system: 'http://unitsofmeasure.org' },
    ] as fhir4.Quantity[];
    const ids = others.map(quantityId);
    expect(new Set([id, ...ids]).size).toBe(others.length + 1);
    expect(quantityId({ value: -0, code: 'g/L' })).toBeUndefined();
    expect(quantityId({ value: 0, code: 'g/L' })).toBeTypeOf('number');
    expect(quantityId({ value: { n: 1 }, code: 'g/L' } as unknown as fhir4.Quantity)).toBeUndefined();
    expect(quantityId({ value: 1, code: 5 } as unknown as fhir4.Quantity)).toBeUndefined();
    expect(quantityPairId(1, undefined)).toBeUndefined();
    expect(quantityPairId(1, 2)).not.toBe(quantityPairId(2, 1));
  });
});

describe('quantityId when the numbering is full', () => {
  it('later quantities get no number (judged without memo); numbers given before are kept and never reused', () => {
    const first = quantityId({ value: 7.25, unit: 'mmol/L', code: 'mmol/L', system: 'http://unitsofmeasure.org' });
    expect(first).toBeDefined();
    const given = new Set<number>([first as number]);
    let n = 0;
    let id: number | undefined = 0;
    // Distinct values until the numbering is full (at most its size, whatever other tests numbered).
    while (id !== undefined && n < 1_000_000) {
      id = quantityId({ value: 1_000_000 + n, unit: 'kg', code: 'kg', system: 'http://unitsofmeasure.org' });
      if (id !== undefined) {
        expect(given.has(id), 'a number is never given twice').toBe(false);
        given.add(id);
      }
      n += 1;
    }
    expect(id).toBeUndefined();
    expect(quantityId({ value: 7.25, unit: 'mmol/L', code: 'mmol/L', system: 'http://unitsofmeasure.org' })).toBe(first);
    expect(quantityId({ value: 1_000_000, unit: 'kg', code: 'kg', system: 'http://unitsofmeasure.org' })).toBeDefined();
    expect(quantityPairId(first, undefined)).toBeUndefined();
  });
});

describe('convertQuantity (memoised products)', () => {
  it('equals value × factor computed by decimal.js each time, for numbers and strings', () => {
    const Reference = DecimalJs.clone({ precision: 40, rounding: DecimalJs.ROUND_HALF_UP, toExpNeg: -40, toExpPos: 40 });
    const dimension = catalog.units.dimensions['glucose-mass-concentration']!;
    fc.assert(
      fc.property(fc.oneof(decimalValue, decimalValue.map(String), fc.constantFrom('1.10', '007.5', '1e2')), fc.constantFrom(...Object.keys(dimension.factors)), (value, code) => {
        for (let i = 0; i < 2; i += 1) {
          const converted = convertQuantity({ value: value as number, code }, 'glucose-mass-concentration', catalog.units);
          expect(converted.ok).toBe(true);
          if (!converted.ok) return;
          const expected = new Reference(value).times(dimension.factors[code]!);
          expect(converted.value.toFixed()).toBe(expected.toFixed());
          expect(converted.value.equals(expected)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
