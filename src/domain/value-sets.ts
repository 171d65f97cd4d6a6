/**
 * Value-set membership without a terminology server (see `valueSetSchema`): enumerated
 * concepts, a whole code system, and `is-a` filters on `concept` for code systems whose
 * codes nest by prefix (ICD-10 / CIM-10).
 */
import type { ValueSetData } from '../programs/schema.js';

export interface CodingLike {
  system?: string;
  code?: string;
}

/** True when `coding` (system and code both present) is in `valueSet`. */
export function valueSetContains(valueSet: ValueSetData, coding: CodingLike): boolean {
  const { system, code } = coding;
  if (!system || !code) return false;
  const include = compiled(valueSet).get(system);
  if (include === undefined) return false;
  if (include.whole || include.codes.has(code)) return true;
  if (include.filters.length === 0) return false;
  const bare = code.replaceAll('.', '');
  return include.filters.some((prefix) => bare.startsWith(prefix));
}

/** A value set's includes merged per system (the includes of a system are alternatives). */
interface CompiledInclude {
  /** An include of the system with neither concepts nor filters: the whole system. */
  whole: boolean;
  codes: Set<string>;
  /**
   * `is-a` for prefix-nested codes: the code is the filter value or one of its descendants,
   * i.e. starts with it (E11 covers E11, E11.9 and E119; O24.4 covers O24.41 and O24.419).
   * Dots are ignored on both sides because CIM-10 codes are often written without them in
   * French data (PMSI: E119, O244). Filter values must be whole categories (E11, not E1).
   */
  filters: string[];
}

/**
 * Value sets are program data, read-only once loaded: each is indexed once (Sets per
 * system) instead of scanning its includes for every coding of every patient.
 */
const compiledValueSets = new WeakMap<ValueSetData, Map<string, CompiledInclude>>();

function compiled(valueSet: ValueSetData): Map<string, CompiledInclude> {
  let index = compiledValueSets.get(valueSet);
  if (index !== undefined) return index;
  index = new Map();
  for (const include of valueSet.compose.include) {
    let entry = index.get(include.system);
    if (entry === undefined) {
      entry = { whole: false, codes: new Set(), filters: [] };
      index.set(include.system, entry);
    }
    // FHIR ValueSet.compose.include: a system with neither concepts nor filters includes the whole system.
    if (include.concept === undefined && include.filter === undefined) entry.whole = true;
    for (const concept of include.concept ?? []) entry.codes.add(concept.code);
    for (const filter of include.filter ?? []) entry.filters.push(filter.value.replaceAll('.', ''));
  }
  compiledValueSets.set(valueSet, index);
  return index;
}

/** The first coding of `concept` that is in any of `valueSets`, if any. */
export function findCoding(
  concept: fhir4.CodeableConcept | undefined,
  valueSets: readonly ValueSetData[],
): fhir4.Coding | undefined {
  // Plain loops (no callback closures): this runs for every coded resource of every patient.
  const codings = concept?.coding;
  if (codings === undefined || codings === null) return undefined;
  // Not an array (malformed input): the same TypeError as Array.prototype.find would raise.
  if (!Array.isArray(codings)) return (codings as fhir4.Coding[]).find((coding) => valueSets.some((valueSet) => valueSetContains(valueSet, coding)));
  for (const coding of codings as fhir4.Coding[]) {
    for (const valueSet of valueSets) if (valueSetContains(valueSet, coding)) return coding;
  }
  return undefined;
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
