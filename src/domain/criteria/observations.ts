/** Selecting the Observations a quantity criterion may judge (shared by glucose-like and BMI criteria). */
import type { UnitsData, ValueSetData } from '../../programs/schema.js';
import { dateSpanOf, observationDateSpan, type DateSpan } from '../dates.js';
import { versionedReference } from '../references.js';
import { findCoding } from '../value-sets.js';
import type { EvaluationContext } from './context.js';

export interface DatedObservation {
  observation: fhir4.Observation;
  /** The coding that put it in the value set. */
  coding: fhir4.Coding;
  quantity: fhir4.Quantity & { value: number };
  date: DateSpan;
  reference: string;
}

/**
 * Observations coded in one of `valueSets` that can be judged: status not in the program's
 * `ignoredStatuses` (entered-in-error, cancelled), a `valueQuantity` with a value (an
 * Observation with only a `dataAbsentReason`, or a non-quantity value, has nothing to judge)
 * and a readable date. The look-back window is applied by the caller.
 */
export function quantityObservationsIn(
  context: EvaluationContext,
  valueSets: readonly ValueSetData[],
): DatedObservation[] {
  // A plain loop: this runs for every quantity value set of every patient (bulk screening).
  const found: DatedObservation[] = [];
  for (const observation of context.record.observations) {
    if (context.ignoredStatuses.has(observation.status)) continue;
    const coding = findCoding(observation.code, valueSets);
    const quantity = observation.valueQuantity;
    if (!coding || quantity?.value === undefined) continue;
    const date = observationDateSpan(observation, context.zone);
    if (!date) continue;
    found.push({
      observation,
      coding,
      quantity: quantity as fhir4.Quantity & { value: number },
      date,
      reference: versionedReference(observation),
    });
  }
  return found;
}

/**
 * Newest first: by the latest instant the effective date may denote, then by `issued`, then
 * by reference (only so that the order never depends on the input order).
 */
export function compareNewestFirst(a: DatedObservation, b: DatedObservation): number {
  return (
    b.date.latestInstant - a.date.latestInstant ||
    issuedInstant(b.observation) - issuedInstant(a.observation) ||
    b.reference.localeCompare(a.reference)
  );
}

function issuedInstant(observation: fhir4.Observation): number {
  return dateSpanOf(observation.issued, 'UTC')?.latestInstant ?? 0;
}

export function latestOf<T extends DatedObservation>(observations: readonly T[]): T | undefined {
  // The first of a stable sort is the first newest one in input order: found by one scan, without
  // copying and sorting (this runs several times per patient). A comparison that is not a number
  // (NaN) leaves it to the sort, as before.
  let latest = observations[0];
  for (let index = 1; index < observations.length; index += 1) {
    const candidate = observations[index] as T;
    const order = compareNewestFirst(candidate, latest as T);
    if (Number.isNaN(order)) return [...observations].sort(compareNewestFirst)[0];
    if (order < 0) latest = candidate;
  }
  return latest;
}

/** `6.1 mmol/L` as the Observation gave it (its number as JSON held it, and its unit). */
export function describeQuantity(quantity: fhir4.Quantity): string {
  const unit = quantity.unit ?? quantity.code;
  return unit === undefined ? `${quantity.value ?? '?'}` : `${quantity.value ?? '?'} ${unit}`;
}

/** `2025-03-01`, or `2025-03-01 to 2025-03-31` for a partial date. */
export function describeSpan(span: DateSpan): string {
  return span.first === span.last ? span.first : `${span.first} to ${span.last}`;
}

type QuantityField = string | undefined;
/**
 * Distinct quantities seen (value with its JS type, unit, code, system), numbered: memo keys.
 * Numbers are never reused: once MAX_QUANTITY_IDS quantities are numbered, later ones get none
 * (judged without memo). Restarting the numbering instead could give a pair key taken before
 * the restart and one after the same number for two different pairs.
 */
const quantityIds = new Map<number | string, Map<QuantityField, Map<QuantityField, Map<QuantityField, number>>>>();
let quantityIdCount = 0;
const MAX_QUANTITY_IDS = 20_000;

const isTextOrAbsent = (field: unknown): field is QuantityField => field === undefined || typeof field === 'string';

/**
 * The number of a distinct quantity: the same for two quantities with the same value (a
 * number, or a string: never equal to each other), unit, code and system, i.e. everything a
 * criterion reads of a quantity. Undefined for an unusual one (-0, a value or field of another
 * type), and once MAX_QUANTITY_IDS are numbered: it is judged without memo. Nested Maps of the
 * fields: no key string is built.
 */
export function quantityId(quantity: fhir4.Quantity): number | undefined {
  const { value, unit, code, system } = quantity as { value: unknown; unit: unknown; code: unknown; system: unknown };
  if (!((typeof value === 'number' && !Object.is(value, -0)) || typeof value === 'string')) return undefined;
  if (!isTextOrAbsent(unit) || !isTextOrAbsent(code) || !isTextOrAbsent(system)) return undefined;
  const full = quantityIdCount >= MAX_QUANTITY_IDS;
  let byUnit = quantityIds.get(value);
  if (byUnit === undefined) {
    if (full) return undefined;
    byUnit = new Map();
    quantityIds.set(value, byUnit);
  }
  let byCode = byUnit.get(unit);
  if (byCode === undefined) {
    if (full) return undefined;
    byCode = new Map();
    byUnit.set(unit, byCode);
  }
  let bySystem = byCode.get(code);
  if (bySystem === undefined) {
    if (full) return undefined;
    bySystem = new Map();
    byCode.set(code, bySystem);
  }
  let id = bySystem.get(system);
  if (id === undefined) {
    if (full) return undefined;
    id = quantityIdCount;
    quantityIdCount += 1;
    bySystem.set(system, id);
  }
  return id;
}

/** A memo key for a pair of quantities (each id is below MAX_QUANTITY_IDS). */
export function quantityPairId(first: number | undefined, second: number | undefined): number | undefined {
  return first === undefined || second === undefined ? undefined : first * MAX_QUANTITY_IDS + second;
}

/**
 * A memo of pure judgements per criterion (program data, read-only once loaded) and units
 * data, keyed by quantity ids: what a criterion makes of a value depends on nothing else, and a
 * population has few distinct values. Bounded (cleared when full).
 */
export class JudgementMemo<T> {
  private readonly byCriterion = new WeakMap<object, { units: UnitsData; values: Map<number, T> }>();

  constructor(private readonly max = 20_000) {}

  /** The memoised `compute()`; `key` undefined: computed, not memoised. Take the key (quantity ids) before calling. */
  get(criterion: object, units: UnitsData, key: number | undefined, compute: () => T): T {
    if (key === undefined) return compute();
    let entry = this.byCriterion.get(criterion);
    if (entry === undefined || entry.units !== units) {
      entry = { units, values: new Map() };
      this.byCriterion.set(criterion, entry);
    }
    let value = entry.values.get(key);
    if (value === undefined) {
      value = compute();
      if (entry.values.size >= this.max) entry.values.clear();
      entry.values.set(key, value);
    }
    return value;
  }
}
