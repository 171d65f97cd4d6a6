/**
 * Medplum's MemoryRepository with indexes that narrow a search to a few candidates before
 * Medplum's own matcher decides. The base repository scans every resource of the type and
 * evaluates FHIRPath on each: a Synthea bundle of 300 conditional creates cost seconds, and an
 * evaluation's batch read (Observations, Conditions, Coverages, Consents of one patient) cost
 * about 27 ms of CPU per evaluation once the server held a few thousand resources, growing with
 * the data.
 *
 * Indexed, for a filter with the `eq` operator:
 * - tokens `identifier` and `_tag` (the searches of `If-None-Exist`): keys `system|value`,
 *   `|value` (no system) and `value`, lower-cased as Medplum compares tokens;
 * - references `subject`, `patient` and `beneficiary` (a patient's data): the strings Medplum
 *   compares a reference filter with (the reference, `Type/id` of a resource, an identifier).
 *
 * References are indexed per type from the first search by one of them (AuditEvents and
 * Provenances, never searched so, cost no FHIRPath per write).
 *
 * A search with at least one such filter reads only the resources under its keys (the smallest
 * set), in the base repository's order, and keeps those `matchesSearchRequest` accepts: the
 * answer is the base scan's, sorted and paged as it does. Any other search (no indexed filter,
 * a sort, several resource types) goes to the base implementation unchanged.
 */
import { evalFhirPathTyped, getSearchParameters, matchesSearchRequest, notFound, OperationOutcomeError, toTypedValue, type SearchRequest, type WithId } from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, Resource } from '@medplum/fhirtypes';

type Tokenised = { system?: string; value?: string; code?: string };

const TOKEN_CODES = new Set(['identifier', '_tag']);
const REFERENCE_CODES = ['subject', 'patient', 'beneficiary'] as const;
const REFERENCE_CODE_SET: ReadonlySet<string> = new Set(REFERENCE_CODES);

/** Keys of a token, as a filter value would name it: `system|value`, `|value` when it has no system, and bare `value`; lower-cased. */
function tokenKeys(system: string | undefined, value: string | undefined): string[] {
  if (!value) return [];
  const lower = value.toLowerCase();
  return system ? [`${system.toLowerCase()}|${lower}`, lower] : [`|${lower}`, lower];
}

/** The key a token filter value looks up, or undefined when it is not one exact token (`system|`, several bars). */
function tokenFilterKey(value: string): string | undefined {
  const bars = value.split('|').length - 1;
  if (bars > 1 || value.endsWith('|') || value === '') return undefined;
  return value.toLowerCase();
}

/** The strings Medplum compares a reference filter with, for the values of a reference search parameter. */
function referenceStrings(values: readonly { value: unknown }[]): string[] {
  const strings: string[] = [];
  for (const { value } of values) {
    if (!value) continue;
    if (typeof value === 'string') strings.push(value);
    else if (typeof (value as { reference?: unknown }).reference === 'string') strings.push((value as { reference: string }).reference);
    else if (typeof (value as Resource).resourceType === 'string' && typeof (value as Resource).id === 'string') strings.push(`${(value as Resource).resourceType}/${(value as Resource).id}`);
    else if (typeof (value as { identifier?: unknown }).identifier === 'object') {
      const identifier = (value as { identifier: Tokenised }).identifier;
      strings.push(`identifier:${identifier.system}|${identifier.value}`);
    }
  }
  return strings;
}

function referenceExpression(resourceType: string, code: string): string | undefined {
  const parameter = getSearchParameters(resourceType)?.[code];
  return parameter?.type === 'reference' ? parameter.expression : undefined;
}

/** The token keys of a resource (identifier, _tag). */
function tokenKeysOf(resource: Resource): string[] {
  const keys: string[] = [];
  const identifiers = (resource as { identifier?: Tokenised | Tokenised[] }).identifier;
  for (const identifier of Array.isArray(identifiers) ? identifiers : identifiers ? [identifiers] : []) {
    for (const key of tokenKeys(identifier.system, identifier.value)) keys.push(`identifier\u0000${key}`);
  }
  for (const tag of (resource.meta?.tag ?? []) as Tokenised[]) {
    for (const key of tokenKeys(tag.system, tag.code)) keys.push(`_tag\u0000${key}`);
  }
  return keys;
}

/** The reference keys of a resource (subject, patient, beneficiary): FHIRPath, so only for types searched so. */
function referenceKeysOf(resource: Resource): string[] {
  const keys: string[] = [];
  for (const code of REFERENCE_CODES) {
    const expression = referenceExpression(resource.resourceType, code);
    if (!expression) continue;
    for (const reference of referenceStrings(evalFhirPathTyped(expression, [toTypedValue(resource)]))) keys.push(`${code}\u0000${reference}`);
  }
  return keys;
}

/**
 * The base repository's answer to a read of an absent resource, made once: building an Error (its
 * stack) for each of them cost the bulk screening's Task existence checks (a batch of GETs,
 * mostly 404) more than the reads themselves.
 */
const NOT_FOUND = new OperationOutcomeError(notFound);

export class IndexedMemoryRepository extends MemoryRepository {
  /** resourceType → index key → ids. */
  private readonly index = new Map<string, Map<string, Set<string>>>();
  /**
   * Types whose references are indexed: those searched by subject, patient or beneficiary at
   * least once (indexed then, and kept up to date from then on). Types never searched so (the
   * AuditEvents, Provenances) cost no FHIRPath per write.
   */
  private readonly referenceTypes = new Set<string>();
  /** `Type/id` → when it was first stored: the base repository's order (a Map in insertion order). */
  private readonly order = new Map<string, number>();
  private stored = 0;

  private indexFor(resourceType: string): Map<string, Set<string>> {
    let index = this.index.get(resourceType);
    if (!index) {
      index = new Map();
      this.index.set(resourceType, index);
    }
    return index;
  }

  /** Every key of a resource: its tokens, and its references when its type is searched by them. */
  private keysOf(resource: Resource): string[] {
    const keys = tokenKeysOf(resource);
    return this.referenceTypes.has(resource.resourceType) ? keys.concat(referenceKeysOf(resource)) : keys;
  }

  private add(resource: WithId<Resource>, keys: readonly string[]): void {
    const index = this.indexFor(resource.resourceType);
    for (const key of keys) {
      let ids = index.get(key);
      if (!ids) {
        ids = new Set();
        index.set(key, ids);
      }
      ids.add(resource.id);
    }
  }

  /** Starts indexing the references of a type: its resources stored so far, then every write. */
  private async indexReferences(resourceType: string): Promise<void> {
    if (this.referenceTypes.has(resourceType)) return;
    this.referenceTypes.add(resourceType);
    const all = await super.search({ resourceType } as SearchRequest);
    for (const entry of all.entry ?? []) if (entry.resource) this.add(entry.resource as WithId<Resource>, referenceKeysOf(entry.resource));
  }

  private unindex(resource: Resource | undefined): void {
    if (!resource?.id) return;
    const index = this.indexFor(resource.resourceType);
    for (const key of this.keysOf(resource)) {
      const ids = index.get(key);
      ids?.delete(resource.id);
      if (ids?.size === 0) index.delete(key);
    }
  }

  override async readResource<T extends Resource>(resourceType: string, id: string): Promise<T> {
    if (!this.order.has(`${resourceType}/${id}`)) throw NOT_FOUND;
    return super.readResource<T>(resourceType, id);
  }

  private async current(resourceType: string, id: string | undefined): Promise<Resource | undefined> {
    if (!id || !this.order.has(`${resourceType}/${id}`)) return undefined;
    try {
      return await super.readResource(resourceType, id);
    } catch {
      return undefined;
    }
  }

  // updateResource and patchResource store through createResource.
  override async createResource<T extends Resource>(resource: T): Promise<WithId<T>> {
    const previous = await this.current(resource.resourceType, resource.id);
    const stored = await super.createResource(resource);
    this.unindex(previous);
    this.add(stored, this.keysOf(stored));
    const address = `${stored.resourceType}/${stored.id}`;
    if (!this.order.has(address)) this.order.set(address, this.stored++);
    return stored;
  }

  override async deleteResource(resourceType: string, id: string): Promise<void> {
    const previous = await this.current(resourceType, id);
    await super.deleteResource(resourceType, id);
    this.unindex(previous);
    this.order.delete(`${resourceType}/${id}`);
  }

  override clear(): void {
    super.clear();
    this.index.clear();
    this.order.clear();
  }

  /** The ids a search can match, from its most selective indexed filter; undefined: no indexed filter. */
  private candidates(request: SearchRequest): Set<string> | undefined {
    const index = this.indexFor(request.resourceType);
    let best: Set<string> | undefined;
    for (const filter of request.filters ?? []) {
      if (filter.operator !== 'eq' || filter.value.includes('\\')) continue;
      let keys: string[] | undefined;
      if (TOKEN_CODES.has(filter.code)) {
        const values = filter.value.split(',').map(tokenFilterKey);
        if (values.some((value) => value === undefined)) continue;
        keys = (values as string[]).map((value) => `${filter.code}\u0000${value}`);
      } else if (REFERENCE_CODE_SET.has(filter.code) && this.referenceTypes.has(request.resourceType) && referenceExpression(request.resourceType, filter.code)) {
        keys = filter.value.split(',').map((value) => `${filter.code}\u0000${value}`);
      }
      if (!keys) continue;
      const ids = new Set<string>();
      for (const key of keys) for (const id of index.get(key) ?? []) ids.add(id);
      if (!best || ids.size < best.size) best = ids;
    }
    return best;
  }

  override async search<T extends Resource>(request: SearchRequest<T>): Promise<Bundle<WithId<T>>> {
    if (request.sortRules?.length || request.types?.length) return super.search(request);
    if (!this.referenceTypes.has(request.resourceType) && request.filters?.some((filter) => REFERENCE_CODE_SET.has(filter.code) && filter.operator === 'eq')) {
      await this.indexReferences(request.resourceType);
    }
    const candidates = this.candidates(request);
    if (!candidates) return super.search(request);
    const ordered = [...candidates].sort((a, b) => (this.order.get(`${request.resourceType}/${a}`) ?? 0) - (this.order.get(`${request.resourceType}/${b}`) ?? 0));
    const matches: WithId<T>[] = [];
    for (const id of ordered) {
      const resource = (await this.current(request.resourceType, id)) as WithId<T> | undefined;
      if (resource && matchesSearchRequest(resource, request)) matches.push(resource);
    }
    let page = matches;
    if (request.offset !== undefined) page = page.slice(request.offset);
    if (request.count !== undefined) page = page.slice(0, request.count);
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(page.length ? { entry: page.map((resource) => ({ resource })) } : {}),
      total: matches.length,
    } as Bundle<WithId<T>>;
  }
}
