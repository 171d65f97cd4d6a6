/**
 * A minimal snapshot generator for this project's differential-only profiles (`profiles/`).
 * Medplum's validator reads `StructureDefinition.snapshot` only, and the IG publisher or
 * HAPI's snapshot generator would be a heavy dependency for three small profiles.
 *
 * It supports exactly what those profiles use: constraints on elements of the base
 * resource's snapshot, matched by element `id` (no slicing, no new extensions, no
 * profiling of data-type children such as `GuidanceResponse.subject.reference`). Anything
 * else throws, so a profile is never silently half-applied. Applied per differential element:
 * - `min` / `max`: replace, and must narrow the base cardinality;
 * - `type`: replace, each type code must be one of the base element's;
 * - `fixed[x]` / `pattern[x]`, `binding`, `mustSupport`, `short`, `definition`, `comment`:
 *   replace;
 * - `constraint`: appended to the base element's, with `source` set to the profile URL.
 *
 * Pure: the caller reads the files.
 */

/** Keys of a differential ElementDefinition this generator applies. */
const REPLACED_KEYS = new Set(['min', 'max', 'type', 'binding', 'mustSupport', 'short', 'definition', 'comment']);
const IDENTITY_KEYS = new Set(['id', 'path']);

function parseMax(max: string | undefined): number {
  if (max === undefined || max === '*') return Number.POSITIVE_INFINITY;
  return Number.parseInt(max, 10);
}

/**
 * Returns a copy of `profile` with a `snapshot` built from `base`'s snapshot and `profile`'s
 * differential.
 *
 * @throws Error when the profile is not a constraint on `base`, or its differential uses
 * something this generator does not support (unknown element id, slicing, loosened
 * cardinality, a type the base element does not allow...).
 */
export function generateSnapshot(profile: fhir4.StructureDefinition, base: fhir4.StructureDefinition): fhir4.StructureDefinition {
  const name = profile.url;
  if (profile.derivation !== 'constraint') throw new Error(`${name}: derivation must be 'constraint'`);
  if (profile.baseDefinition !== base.url) {
    throw new Error(`${name}: baseDefinition ${profile.baseDefinition ?? '(none)'} is not ${base.url}`);
  }
  if (profile.type !== base.type) throw new Error(`${name}: type ${profile.type} is not the base type ${base.type}`);
  const baseElements = base.snapshot?.element;
  if (!baseElements || baseElements.length === 0) throw new Error(`${name}: base ${base.url} has no snapshot`);
  const differential = profile.differential?.element;
  if (!differential || differential.length === 0) throw new Error(`${name}: no differential`);

  const elements: fhir4.ElementDefinition[] = structuredClone(baseElements);
  const byId = new Map<string, fhir4.ElementDefinition>();
  for (const element of elements) if (element.id) byId.set(element.id, element);

  for (const diff of differential) {
    const where = `${name} element ${diff.id ?? diff.path}`;
    if (!diff.id) throw new Error(`${where}: differential elements need an id`);
    const target = byId.get(diff.id);
    if (!target) throw new Error(`${where}: no element with this id in ${base.url}`);
    if (diff.path !== target.path) throw new Error(`${where}: path ${diff.path} does not match ${target.path}`);
    // ElementDefinition's fixed[x]/pattern[x] are ~50 typed keys: handled by name.
    const record = target as unknown as Record<string, unknown>;

    for (const [key, value] of Object.entries(diff) as [keyof fhir4.ElementDefinition & string, unknown][]) {
      if (IDENTITY_KEYS.has(key) || value === undefined) continue;
      if (key === 'constraint') {
        const added = (value as fhir4.ElementDefinitionConstraint[]).map((c) => ({ ...c, source: c.source ?? name }));
        target.constraint = [...(target.constraint ?? []), ...added];
      } else if (key.startsWith('fixed') || key.startsWith('pattern')) {
        for (const k of Object.keys(record)) if (k.startsWith('fixed') || k.startsWith('pattern')) delete record[k];
        record[key] = structuredClone(value);
      } else if (REPLACED_KEYS.has(key)) {
        record[key] = structuredClone(value);
      } else {
        throw new Error(`${where}: differential property '${key}' is not supported by this snapshot generator`);
      }
    }

    const baseElement = baseElements.find((e) => e.id === diff.id);
    if (baseElement) {
      if ((target.min ?? 0) < (baseElement.min ?? 0)) throw new Error(`${where}: min ${target.min} loosens the base min ${baseElement.min}`);
      if (parseMax(target.max) > parseMax(baseElement.max)) throw new Error(`${where}: max ${target.max} loosens the base max ${baseElement.max}`);
      if ((target.min ?? 0) > parseMax(target.max)) throw new Error(`${where}: min ${target.min} is above max ${target.max}`);
      if (diff.type) {
        const allowed = new Set((baseElement.type ?? []).map((t) => t.code));
        for (const t of diff.type) {
          if (!allowed.has(t.code)) throw new Error(`${where}: type ${t.code} is not allowed by the base element`);
        }
      }
    }
  }

  return { ...profile, snapshot: { element: elements } };
}
