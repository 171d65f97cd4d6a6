/** What every criterion receives, and small helpers they share. */
import type { CriterionDefinition, LoadedProgram, UnitsData, ValueSetData } from '../../programs/schema.js';
import type { CalendarDate, CentreDirectory, CriterionResult, CriterionStatus, PatientRecord } from '../types.js';

/** Program data shared by every program (`ProgramCatalog` satisfies it). */
export interface SharedProgramData {
  valueSets: ReadonlyMap<string, ValueSetData>;
  units: UnitsData;
}

export interface EvaluationContext {
  program: LoadedProgram;
  shared: SharedProgramData;
  record: PatientRecord;
  directory: CentreDirectory;
  asOf: CalendarDate;
  /** The program's IANA time zone: dates of FHIR instants are taken in it. */
  zone: string;
  /** The program's `ignoredStatuses`: resources with one of these statuses are never evidence. */
  ignoredStatuses: ReadonlySet<string>;
}

export type CriterionOf<K extends CriterionDefinition['kind']> = Extract<CriterionDefinition, { kind: K }>;
export type CriterionEvaluator<K extends CriterionDefinition['kind']> = (
  criterion: CriterionOf<K>,
  context: EvaluationContext,
) => CriterionResult;

/**
 * The value set `id` of the shared program data.
 * @throws Error for an unknown id: the loader checks every id, so this is a programming error.
 */
export function valueSetById(shared: SharedProgramData, id: string): ValueSetData {
  const valueSet = shared.valueSets.get(id);
  if (!valueSet) throw new Error(`Value set "${id}" is not loaded (program data not checked by the loader?)`);
  return valueSet;
}

/** Three-valued OR (Kleene): met if any is met, else unknown if any is unknown. */
export function anyOf(statuses: readonly CriterionStatus[]): CriterionStatus {
  if (statuses.includes('met')) return 'met';
  return statuses.includes('unknown') ? 'unknown' : 'not-met';
}

/** Three-valued AND (Kleene): not-met if any is not-met, else unknown if any is unknown. */
export function allOf(statuses: readonly CriterionStatus[]): CriterionStatus {
  if (statuses.includes('not-met')) return 'not-met';
  return statuses.includes('unknown') ? 'unknown' : 'met';
}

/** 1st, 2nd, 3rd, 4th, 11th, 21st, 45th... */
export function ordinal(n: number): string {
  const lastTwo = n % 100;
  if (lastTwo >= 11 && lastTwo <= 13) return `${n}th`;
  const suffix = { 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] ?? 'th';
  return `${n}${suffix}`;
}

/** The codes of a CodeableConcept (any system). */
export function codesOf(concept: fhir4.CodeableConcept | undefined): string[] {
  return (concept?.coding ?? []).flatMap((coding) => (coding.code === undefined ? [] : [coding.code]));
}

/** Removes duplicates, keeping the first occurrence (evidence lists). */
export function unique<T>(values: readonly T[]): T[] {
  // Evidence lists have a few items: a scan costs less than a Set (this runs for every patient of
  // a bulk screening). The same result as `[...new Set(values)]`: `includes` compares as a Set
  // does (SameValueZero), and a Set keeps -0 as +0.
  if (values.length > 16) return [...new Set(values)];
  const kept: T[] = [];
  for (let index = 0; index < values.length; index += 1) {
    let value = values[index] as T;
    if (kept.includes(value)) continue;
    if (value === 0) value = 0 as T;
    kept.push(value);
  }
  return kept;
}
