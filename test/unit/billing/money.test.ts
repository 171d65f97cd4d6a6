import { describe, expect, it } from 'vitest';
import { applyShare, formatMoney, isMoney, moneyValue, parseMoney, splitByShares, subtractMoney, sumMoney } from '../../../src/domain/billing/money.js';

describe('parseMoney / formatMoney: exact, at most two decimals', () => {
  it.each<[number | string, string]>([
    [690.6, '690.60'], // JSON.parse('690.60') is 690.6: the same decimal
    [178.36, '178.36'],
    ['80.49', '80.49'],
    [0.1, '0.10'],
    [96684, '96684.00'],
    ['  30.18 ', '30.18'],
  ])('%s → %s', (value, expected) => {
    expect(formatMoney(value)).toBe(expected);
  });

  it.each<[unknown]>([[178.365], ['1.001'], [-1], ['abc'], [Number.NaN], [Number.POSITIVE_INFINITY], [undefined], [null]])('refuses %s', (value) => {
    expect(isMoney(value)).toBe(false);
  });

  it('throws a RangeError on more than two decimals instead of rounding', () => {
    expect(() => parseMoney('0.005')).toThrow(RangeError);
  });

  it('writes a FHIR Money.value that reads back to the same decimal', () => {
    expect(moneyValue('345.30')).toBe(345.3);
    expect(formatMoney(JSON.parse(JSON.stringify(moneyValue('345.30'))) as number)).toBe('345.30');
  });
});

describe('sums are exact where floats are not', () => {
  it('0.1 + 0.2 = 0.30', () => {
    expect(0.1 + 0.2).not.toBe(0.3);
    expect(sumMoney([0.1, 0.2])).toBe('0.30');
  });
  it('140 × 690.60 = 96684.00', () => {
    expect(sumMoney(Array.from({ length: 140 }, () => 690.6))).toBe('96684.00');
  });
  it('FEID parts: 178.36 + 80.49 + 30.18 = 289.03', () => {
    expect(sumMoney(['178.36', '80.49', '30.18'])).toBe('289.03');
  });
  it('empty sum and differences', () => {
    expect(sumMoney([])).toBe('0.00');
    expect(subtractMoney('96684.00', '690.60')).toBe('95993.40');
    expect(subtractMoney('100', '100.01')).toBe('-0.01');
  });
});

describe('applyShare: half-up to the cent', () => {
  it.each<[string, string, string]>([
    ['690.60', '0.5', '345.30'],
    ['690.60', '1', '690.60'],
    ['0.05', '0.5', '0.03'],
    ['0.03', '0.5', '0.02'],
    ['100.00', '0.3333', '33.33'],
    ['178.36', '0', '0.00'],
  ])('%s × %s = %s', (amount, share, expected) => {
    expect(applyShare(amount, share)).toBe(expected);
  });
});

describe('splitByShares: parts add up exactly, the remainder on the last share', () => {
  it.each<[string, string[], string[]]>([
    ['690.60', ['1'], ['690.60']],
    ['690.60', ['0.5', '0.5'], ['345.30', '345.30']],
    ['690.61', ['0.5', '0.5'], ['345.31', '345.30']],
    ['100.00', ['0.3333333333', '0.3333333333', '0.3333333334'], ['33.33', '33.33', '33.34']],
    ['200.00', ['0.3333333333', '0.3333333333', '0.3333333334'], ['66.67', '66.67', '66.66']],
    ['0.01', ['0.5', '0.5'], ['0.01', '0.00']],
    ['80.49', ['0.25', '0.25', '0.5'], ['20.12', '20.12', '40.25']],
  ])('%s by %j → %j', (amount, shares, parts) => {
    expect(splitByShares(amount, shares)).toEqual(parts);
    expect(sumMoney(parts)).toBe(formatMoney(amount));
  });

  it.each<[string[]]>([[[]], [['0.5']], [['0.5', '0.6']], [['1.5', '-0.5']]])('refuses the shares %j', (shares) => {
    expect(() => splitByShares('10.00', shares)).toThrow(RangeError);
  });
});
