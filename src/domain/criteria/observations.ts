/** Selecting the Observations a quantity criterion may judge (shared by glucose-like and BMI criteria). */
import type { ValueSetData } from '../../programs/schema.js';
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
  return [...observations].sort(compareNewestFirst)[0];
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
