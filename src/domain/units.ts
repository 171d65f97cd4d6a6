/**
 * Unit conversion to a dimension's canonical unit, with the exact factors of
 * `mappings/units.json` (DOMAIN.md 3: "an unknown unit is a clear error for that
 * Observation, never a guess").
 */
import type { UnitsData } from '../programs/schema.js';
import { Decimal, toDecimal } from './decimal.js';
import type { DataIssue } from './types.js';

export const UCUM_SYSTEM = 'http://unitsofmeasure.org';

export type QuantityConversion =
  | {
      ok: true;
      /** The value in the canonical unit, exact (not rounded). */
      value: Decimal;
      /** The dimension's canonical UCUM unit, e.g. `g/L`. */
      canonical: string;
      /** The UCUM code the value was given in, after alias resolution, e.g. `mmol/L`. */
      fromCode: string;
    }
  | { ok: false; issue: DataIssue };

const EXPRESSION = 'Observation.valueQuantity';

/**
 * Converts `quantity` to the canonical unit of `dimension`.
 *
 * The unit is read from `Quantity.code` when `Quantity.system` is UCUM or absent, else from
 * the free-text `Quantity.unit`; it must then be one of the dimension's UCUM codes or one
 * of its aliases (spellings seen in the wild, e.g. `mmol/l`). A code is authoritative: a
 * known `unit` text never overrides an unknown UCUM `code`.
 *
 * @throws Error when `dimension` is not in units.json: a program-data error the loader catches.
 */
export function convertQuantity(quantity: fhir4.Quantity, dimension: string, units: UnitsData): QuantityConversion {
  const dim = units.dimensions[dimension];
  if (!dim) throw new Error(`Unit dimension "${dimension}" is not defined in units.json`);

  if (quantity.value === undefined || quantity.value === null) {
    const accepted = acceptedUnits(dimension, units);
    return {
      ok: false,
      issue: {
        severity: 'error',
        code: 'required',
        diagnostics: `The quantity has no value (expected ${dimension} in one of: ${accepted})`,
        expression: `${EXPRESSION}.value`,
      },
    };
  }

  const usesCode = quantity.code !== undefined && (quantity.system === undefined || quantity.system === UCUM_SYSTEM);
  const given = usesCode ? quantity.code : quantity.unit;
  const fromCode = given === undefined ? undefined : resolveUnitCode(given, dimension, units);
  if (fromCode === undefined) {
    const accepted = acceptedUnits(dimension, units);
    return {
      ok: false,
      issue: {
        severity: 'error',
        code: 'code-invalid',
        diagnostics:
          given === undefined || given.trim() === ''
            ? `No unit given for a ${dimension} value; accepted units: ${accepted}`
            : `Unknown unit "${given}" for a ${dimension} value; accepted units: ${accepted}`,
        expression: EXPRESSION,
      },
    };
  }
  const factor = dim.factors[fromCode] as string;
  return { ok: true, value: convertedValue(quantity.value, factor), canonical: dim.canonical, fromCode };
}

/**
 * `value × factor`, exact (decimal.js), memoised per factor and value: a population has few
 * distinct measured values per unit, and the product is the same Decimal (immutable) each time.
 * Only numbers (but -0) and strings are memoised; a number and a string are distinct Map keys.
 */
const convertedValues = new Map<string, Map<number | string, Decimal>>();
const CONVERTED_VALUES_MAX = 20_000;
let convertedValuesSize = 0;

function convertedValue(value: number | string, factor: string): Decimal {
  if (!((typeof value === 'number' && !Object.is(value, -0)) || typeof value === 'string')) return toDecimal(value).times(factor);
  let byValue = convertedValues.get(factor);
  if (byValue === undefined) {
    byValue = new Map();
    convertedValues.set(factor, byValue);
  }
  let converted = byValue.get(value);
  if (converted === undefined) {
    converted = toDecimal(value).times(factor);
    if (convertedValuesSize >= CONVERTED_VALUES_MAX) {
      for (const values of convertedValues.values()) values.clear();
      convertedValuesSize = 0;
    }
    byValue.set(value, converted);
    convertedValuesSize += 1;
  }
  return converted;
}

/** The UCUM code of `unit` in `dimension` (itself, or what an alias maps to), or undefined when unknown. */
export function resolveUnitCode(unit: string, dimension: string, units: UnitsData): string | undefined {
  const dim = units.dimensions[dimension];
  if (!dim) return undefined;
  if (Object.hasOwn(dim.factors, unit)) return unit;
  const aliased = Object.hasOwn(dim.aliases, unit) ? dim.aliases[unit] : undefined;
  return aliased !== undefined && Object.hasOwn(dim.factors, aliased) ? aliased : undefined;
}

/** E.g. `g/L, mg/dL, mmol/L (also written g/l, mg/dl, mmol/l)`. */
function acceptedUnits(dimension: string, units: UnitsData): string {
  const dim = units.dimensions[dimension];
  if (!dim) return '';
  const codes = Object.keys(dim.factors).join(', ');
  const aliases = Object.keys(dim.aliases);
  return aliases.length === 0 ? codes : `${codes} (also written ${aliases.join(', ')})`;
}
