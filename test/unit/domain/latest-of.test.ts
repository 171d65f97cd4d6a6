/**
 * `latestOf` (src/domain/criteria/observations.ts) finds by one scan the observation a stable
 * sort by `compareNewestFirst` puts first: the same object, ties included (the first of the
 * input among equals), whatever the dates, issued instants and references.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareNewestFirst, latestOf, type DatedObservation } from '../../../src/domain/criteria/observations.js';

const dated = (latestInstant: number, issued: string | undefined, reference: string): DatedObservation => ({
  observation: { resourceType: 'Observation', status: 'final', code: {}, ...(issued === undefined ? {} : { issued }) } as fhir4.Observation,
  coding: {},
  quantity: { value: 1 },
  date: { first: '2025-01-01', last: '2025-01-01', latestInstant },
  reference,
});

describe('latestOf', () => {
  it('is the first of the observations sorted newest first (the same object), ties in input order', () => {
    const observation = fc
      .tuple(fc.integer({ min: 0, max: 3 }), fc.option(fc.constantFrom('2025-01-01T10:00:00Z', '2025-01-02', '2024'), { nil: undefined }), fc.constantFrom('Observation/a', 'Observation/b', 'Observation/a/_history/2'))
      .map(([day, issued, reference]) => dated(day * 86_400_000, issued, reference));
    fc.assert(
      fc.property(fc.array(observation, { maxLength: 12 }), (observations) => {
        expect(latestOf(observations)).toBe([...observations].sort(compareNewestFirst)[0]);
      }),
      { numRuns: 5_000 },
    );
  });

  it('is undefined for none, the only one for one, and the newest of several', () => {
    expect(latestOf([])).toBeUndefined();
    const only = dated(1, undefined, 'Observation/x');
    expect(latestOf([only])).toBe(only);
    const older = dated(1, undefined, 'Observation/a');
    const newer = dated(2, undefined, 'Observation/b');
    const tie = dated(2, undefined, 'Observation/b');
    expect(latestOf([older, newer, tie])).toBe(newer);
    expect(latestOf([tie, older, newer])).toBe(tie);
  });

  it('leaves observations whose order is not a number (NaN instants) to the sort, as before', () => {
    const broken = [dated(Number.NaN, undefined, 'Observation/a'), dated(5, undefined, 'Observation/b'), dated(Number.NaN, undefined, 'Observation/c')];
    expect(latestOf(broken)).toBe([...broken].sort(compareNewestFirst)[0]);
  });
});
