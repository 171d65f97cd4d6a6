import { describe, expect, it } from 'vitest';
import { unique } from '../../../src/domain/criteria/context.js';

/** What `unique` was: the reference its scan of short lists must equal. */
const viaSet = <T>(values: readonly T[]): T[] => [...new Set(values)];

describe('unique (evidence lists without duplicates)', () => {
  it.each<[string, unknown[]]>([
    ['empty', []],
    ['one', ['Patient/1']],
    ['duplicates, first occurrence kept in place', ['b', 'a', 'b', 'c', 'a']],
    ['NaN equals NaN', [Number.NaN, 1, Number.NaN]],
    ['-0 and +0 are one value', [-0, 0, -0]],
    ['undefined and null are distinct', [undefined, null, undefined, null]],
    ['a hole reads as undefined', [1, , 1, undefined]], // eslint-disable-line no-sparse-arrays
    ['16 items (the scan)', Array.from({ length: 16 }, (_, i) => `r${i % 9}`)],
    ['17 items (the Set)', Array.from({ length: 17 }, (_, i) => `r${i % 9}`)],
    ['40 distinct items', Array.from({ length: 40 }, (_, i) => `r${i}`)],
  ])('%s: the same as [...new Set(values)]', (_name, values) => {
    const result = unique(values);
    const reference = viaSet(values);
    expect(result).toEqual(reference);
    expect(result.length).toBe(reference.length);
    // toEqual does not tell -0 from +0: a Set keeps -0 as +0, and so does unique.
    result.forEach((value, index) => expect(Object.is(value, reference[index])).toBe(true));
  });

  it('returns a new array, never the argument', () => {
    const values = ['a', 'b'];
    const result = unique(values);
    expect(result).not.toBe(values);
    expect(values).toEqual(['a', 'b']);
  });
});
