import { parseSearchRequest } from '@medplum/core';
import type { Observation } from '@medplum/fhirtypes';
import { MemoryRepository } from '@medplum/fhir-router';
import { beforeAll, describe, expect, it } from 'vitest';
import { indexDefinitions } from '../../../src/fhir-server/embedded-server.js';
import { IndexedMemoryRepository } from '../../../src/fhir-server/indexed-memory-repository.js';

const observation = (value: string, tag = 'h1'): Observation => ({
  resourceType: 'Observation',
  status: 'final',
  code: { text: 'x' },
  identifier: [{ system: 'urn:lab', value }],
  meta: { tag: [{ system: 'urn:hash', code: tag }] },
});

beforeAll(() => indexDefinitions());

async function ids(repo: MemoryRepository, query: string): Promise<string[]> {
  const bundle = await repo.search(parseSearchRequest(query));
  return (bundle.entry ?? []).map((e) => e.resource?.id as string).sort();
}

describe('IndexedMemoryRepository', () => {
  it('finds by identifier (system|value, bare value, |value) and by _tag, like the base scan', async () => {
    const repo = new IndexedMemoryRepository();
    const a = await repo.createResource(observation('A1'));
    await repo.createResource(observation('B2', 'h2'));
    const noSystem = await repo.createResource({ resourceType: 'Observation', status: 'final', code: { text: 'y' }, identifier: [{ value: 'A1' }] } as Observation);
    expect(await ids(repo, 'Observation?identifier=urn:lab|A1')).toEqual([a.id]);
    expect(await ids(repo, 'Observation?identifier=A1')).toEqual([a.id, noSystem.id].sort());
    expect(await ids(repo, 'Observation?identifier=|A1')).toEqual([noSystem.id]);
    expect(await ids(repo, 'Observation?_tag=urn:hash|h1')).toEqual([a.id, noSystem.id].filter((id) => id === a.id));
    expect(await ids(repo, 'Observation?identifier=urn:lab|nope')).toEqual([]);
    expect(await ids(repo, 'Patient?identifier=urn:lab|A1')).toEqual([]);
  });

  it('answers exactly as the base scan does', async () => {
    const indexed = new IndexedMemoryRepository();
    const base = new MemoryRepository();
    for (const repo of [indexed, base]) {
      await repo.createResource({ ...observation('A1'), id: 'a' });
      await repo.createResource({ ...observation('B2', 'h2'), id: 'b' });
      await repo.createResource({ resourceType: 'Observation', id: 'c', status: 'final', code: { text: 'y' }, identifier: [{ value: 'A1' }] } as Observation);
    }
    for (const query of ['Observation?identifier=urn:lab|A1', 'Observation?identifier=A1', 'Observation?_tag=urn:hash|h2', 'Observation?identifier=urn:lab|Z', 'Observation?identifier=urn:lab|']) {
      expect(await ids(indexed, query), query).toEqual(await ids(base, query));
    }
  });

  it('keeps the index right through updates and deletes', async () => {
    const repo = new IndexedMemoryRepository();
    const stored = await repo.createResource(observation('C3'));
    await repo.updateResource({ ...stored, identifier: [{ system: 'urn:lab', value: 'C4' }] });
    expect(await ids(repo, 'Observation?identifier=urn:lab|C3')).toEqual([]);
    expect(await ids(repo, 'Observation?identifier=urn:lab|C4')).toEqual([stored.id]);
    await repo.deleteResource('Observation', stored.id);
    expect(await ids(repo, 'Observation?identifier=urn:lab|C4')).toEqual([]);
  });

  it('conditional create resolves to the existing resource', async () => {
    const repo = new IndexedMemoryRepository();
    const first = await repo.conditionalCreate(observation('D5'), parseSearchRequest('Observation?identifier=urn:lab|D5'));
    const second = await repo.conditionalCreate(observation('D5'), parseSearchRequest('Observation?identifier=urn:lab|D5'));
    expect(second.resource.id).toBe(first.resource.id);
    expect(second.outcome.id).not.toBe(first.outcome.id);
  });

  it('leaves other searches to the base implementation', async () => {
    const repo = new IndexedMemoryRepository();
    const stored = await repo.createResource(observation('E6'));
    expect(await ids(repo, 'Observation?status=final')).toEqual([stored.id]);
    expect(await ids(repo, 'Observation?identifier=urn:lab|E6&status=final')).toEqual([stored.id]);
  });
});
