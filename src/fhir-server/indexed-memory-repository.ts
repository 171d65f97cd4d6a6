/**
 * Medplum's MemoryRepository with an exact-match index for token searches on `identifier`
 * and `_tag`: the searches a conditional create (`If-None-Exist`) runs. The base repository
 * scans every resource of the type and evaluates FHIRPath on each, so a Synthea bundle of
 * 300 conditional creates cost seconds and grew with the data; with the index each is a
 * map lookup. Every other search goes to the base implementation unchanged.
 */
import { MemoryRepository } from '@medplum/fhir-router';
import type { Resource, Bundle } from '@medplum/fhirtypes';
import type { SearchRequest, WithId } from '@medplum/core';

type Tokenised = { system?: string; value?: string; code?: string };

const INDEXED_CODES = new Set(['identifier', '_tag']);

/** Index keys of a token: `system|value`, bare `value` (any system), and `|value` when it has no system. */
function tokenKeys(system: string | undefined, value: string | undefined): string[] {
  if (!value) return [];
  return system ? [`${system}|${value}`, value] : [`|${value}`, value];
}

function keysOf(resource: Resource): string[] {
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

export class IndexedMemoryRepository extends MemoryRepository {
  /** resourceType → index key → ids. */
  private readonly tokenIndex = new Map<string, Map<string, Set<string>>>();

  private indexFor(resourceType: string): Map<string, Set<string>> {
    let index = this.tokenIndex.get(resourceType);
    if (!index) {
      index = new Map();
      this.tokenIndex.set(resourceType, index);
    }
    return index;
  }

  private unindex(resource: Resource | undefined): void {
    if (!resource?.id) return;
    const index = this.indexFor(resource.resourceType);
    for (const key of keysOf(resource)) {
      const ids = index.get(key);
      ids?.delete(resource.id);
      if (ids?.size === 0) index.delete(key);
    }
  }

  private async current(resourceType: string, id: string | undefined): Promise<Resource | undefined> {
    if (!id) return undefined;
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
    const index = this.indexFor(stored.resourceType);
    for (const key of keysOf(stored)) {
      let ids = index.get(key);
      if (!ids) {
        ids = new Set();
        index.set(key, ids);
      }
      ids.add(stored.id);
    }
    return stored;
  }

  override async deleteResource(resourceType: string, id: string): Promise<void> {
    const previous = await this.current(resourceType, id);
    await super.deleteResource(resourceType, id);
    this.unindex(previous);
  }

  override clear(): void {
    super.clear();
    this.tokenIndex.clear();
  }

  override async search<T extends Resource>(request: SearchRequest<T>): Promise<Bundle<WithId<T>>> {
    const [filter, ...others] = request.filters ?? [];
    const simple =
      filter &&
      others.length === 0 &&
      INDEXED_CODES.has(filter.code) &&
      filter.operator === 'eq' &&
      !filter.value.includes(',') &&
      // `system|` (any value of a system) is not an exact token: leave it to the scan.
      !filter.value.endsWith('|') &&
      !request.sortRules?.length &&
      !request.offset &&
      !request.include?.length &&
      !request.revInclude?.length &&
      !request.summary &&
      !request.fields?.length &&
      !request.types?.length;
    if (!simple) return super.search(request);
    const ids = [...(this.indexFor(request.resourceType).get(`${filter.code}\u0000${filter.value}`) ?? [])];
    const resources: WithId<T>[] = [];
    for (const id of ids) {
      const resource = (await this.current(request.resourceType, id)) as WithId<T> | undefined;
      if (resource) resources.push(resource);
    }
    const page = request.count !== undefined ? resources.slice(0, request.count) : resources;
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(page.length ? { entry: page.map((resource) => ({ resource })) } : {}),
      total: resources.length,
    } as Bundle<WithId<T>>;
  }
}
