/**
 * Value-set membership without a terminology server (see `valueSetSchema`): enumerated
 * concepts, a whole code system, and `is-a` filters on `concept` for code systems whose
 * codes nest by prefix (ICD-10 / CIM-10).
 */
import type { ValueSetData } from '../programs/schema.js';

type Include = ValueSetData['compose']['include'][number];
export interface CodingLike {
  system?: string;
  code?: string;
}

/** True when `coding` (system and code both present) is in `valueSet`. */
export function valueSetContains(valueSet: ValueSetData, coding: CodingLike): boolean {
  const { system, code } = coding;
  if (!system || !code) return false;
  return valueSet.compose.include.some((include) => include.system === system && includeContains(include, code));
}

function includeContains(include: Include, code: string): boolean {
  // FHIR ValueSet.compose.include: a system with neither concepts nor filters includes the whole system.
  if (include.concept === undefined && include.filter === undefined) return true;
  if (include.concept?.some((concept) => concept.code === code)) return true;
  return include.filter?.some((filter) => isA(code, filter.value)) ?? false;
}

/**
 * `is-a` for prefix-nested codes: the code is the filter value or one of its descendants,
 * i.e. starts with it (E11 covers E11, E11.9 and E119; O24.4 covers O24.41 and O24.419).
 * Dots are ignored on both sides because CIM-10 codes are often written without them in
 * French data (PMSI: E119, O244). Filter values must be whole categories (E11, not E1).
 */
function isA(code: string, filterValue: string): boolean {
  return code.replaceAll('.', '').startsWith(filterValue.replaceAll('.', ''));
}

/** The first coding of `concept` that is in any of `valueSets`, if any. */
export function findCoding(
  concept: fhir4.CodeableConcept | undefined,
  valueSets: readonly ValueSetData[],
): fhir4.Coding | undefined {
  return concept?.coding?.find((coding) => valueSets.some((valueSet) => valueSetContains(valueSet, coding)));
}

/** True when some coding of `concept` is in `valueSet`. */
export function codeableConceptIn(concept: fhir4.CodeableConcept | undefined, valueSet: ValueSetData): boolean {
  return findCoding(concept, [valueSet]) !== undefined;
}

/**
 * The enumerated concepts of `valueSet`, as `{ system, code, display? }`. `is-a` filters and
 * whole-system includes cannot be enumerated without a terminology server and are left out.
 */
export function enumeratedCodes(valueSet: ValueSetData): { system: string; code: string; display?: string }[] {
  return valueSet.compose.include.flatMap((include) =>
    (include.concept ?? []).map((concept) =>
      concept.display === undefined
        ? { system: include.system, code: concept.code }
        : { system: include.system, code: concept.code, display: concept.display },
    ),
  );
}
