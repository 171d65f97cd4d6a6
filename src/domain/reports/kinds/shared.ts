/** Building blocks of the indicator kinds: strata in a stable order, ratios, parameter schemas. Pure. */
import { z } from 'zod';
import { Decimal } from '../../decimal.js';
import { NO_CODE, type PopulationCode, type PopulationResult, type Score, type StratumResult } from '../types.js';

export const RATIO_PLACES = 4;
export const RATE_PLACES = 2;

export const codeList = z.array(z.string().min(1)).default([]);

/** Parses with a zod schema; the error names the first failing field. */
export function parseWith<T>(schema: z.ZodType<T>, parameters: Record<string, unknown>): T {
  const result = schema.safeParse(parameters);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  throw new Error(`parameter ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
}

export const population = (code: PopulationCode, count: number): PopulationResult => ({ code, count });

/**
 * Strata for coded values: every listed code first, in the order listed (zeros included), then the
 * codes found in the data but not listed, sorted. `make` builds a stratum's populations and score
 * from the key.
 */
export function codedStrata(system: string | undefined, listed: readonly string[], found: Iterable<string>, make: (key: string) => Omit<StratumResult, 'key' | 'system'>): StratumResult[] {
  const keys = [...listed];
  const extra = [...new Set(found)].filter((key) => !listed.includes(key)).sort();
  keys.push(...extra);
  return keys.map((key) => ({ key, ...(system !== undefined && key !== NO_CODE ? { system } : {}), ...make(key) }));
}

/** numerator / denominator as a proportion; undefined when the denominator is 0. */
export function ratio(numerator: number | Decimal, denominator: number | Decimal): Score | undefined {
  const d = new Decimal(denominator);
  if (d.isZero()) return undefined;
  return { type: 'ratio', value: new Decimal(numerator).dividedBy(d) };
}

/** Counts occurrences of keys. */
export function countBy<T>(items: Iterable<T>, keysOf: (item: T) => Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) for (const key of new Set(keysOf(item))) counts.set(key, (counts.get(key) ?? 0) + 1);
  return counts;
}
