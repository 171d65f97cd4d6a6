import { OperationOutcomeError, parseSearchRequest } from '@medplum/core';
import type { Observation, Resource } from '@medplum/fhirtypes';
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

  it('answers a read of an absent or deleted resource as the base does: a not-found OperationOutcomeError', async () => {
    const indexed = new IndexedMemoryRepository();
    const base = new MemoryRepository();
    for (const repo of [indexed, base]) {
      await repo.createResource({ ...observation('F7'), id: 'gone' });
      await repo.deleteResource('Observation', 'gone');
      for (const id of ['gone', 'never']) {
        const error = await repo.readResource('Observation', id).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(OperationOutcomeError);
        expect((error as OperationOutcomeError).outcome.issue?.[0]?.code).toBe('not-found');
      }
    }
    const stored = await indexed.createResource({ ...observation('F8'), id: 'kept' });
    expect((await indexed.readResource('Observation', 'kept')).id).toBe(stored.id);
  });

  it('leaves other searches to the base implementation', async () => {
    const repo = new IndexedMemoryRepository();
    const stored = await repo.createResource(observation('E6'));
    expect(await ids(repo, 'Observation?status=final')).toEqual([stored.id]);
    expect(await ids(repo, 'Observation?identifier=urn:lab|E6&status=final')).toEqual([stored.id]);
  });

  it('narrows by subject, patient and beneficiary and answers exactly as the base scan: same resources, order, total and pages', async () => {
    // A seeded mix of references (relative, absolute, versioned, bare id, contained, identifier,
    // display only), token cases, updates and deletes, written to both repositories alike.
    let seed = 7;
    // mulberry32
    const random = (n: number): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
    };
    const pick = <T>(items: readonly T[]): T => items[random(items.length)] as T;
    const references: fhir4.Reference[] = [
      { reference: 'Patient/p1' },
      { reference: 'Patient/p2' },
      { reference: 'Patient/p1/_history/2' },
      { reference: 'http://example.org/fhir/Patient/p1' },
      { reference: 'Group/g1' },
      { reference: '#contained' },
      { identifier: { system: 'urn:ins', value: 'P1' } },
      { display: 'no reference' },
    ];
    const indexed = new IndexedMemoryRepository();
    const base = new MemoryRepository();
    const make = (n: number): Resource => {
      const kind = random(4);
      const reference = pick(references);
      const identifier = [{ system: pick(['urn:lab', 'URN:LAB', undefined]), value: pick(['a1', 'A1', 'b2']) }];
      if (kind === 0) return { resourceType: 'Observation', id: `o${n}`, status: pick(['final', 'amended']), code: { coding: [{ system: 'http://loinc.org', code: pick(['1558-6', '39156-5']) }] }, subject: reference, identifier, meta: { tag: [{ system: 'urn:hash', code: pick(['h1', 'H1']) }] } } as Resource;
      if (kind === 1) return { resourceType: 'Condition', id: `c${n}`, subject: reference, identifier } as Resource;
      if (kind === 2) return { resourceType: 'Coverage', id: `v${n}`, status: 'active', beneficiary: reference, payor: [{ reference: 'Organization/o' }], identifier } as Resource;
      return { resourceType: 'EpisodeOfCare', id: `e${n}`, status: pick(['active', 'finished']), patient: reference } as Resource;
    };
    const queries = [
      'Observation?subject=Patient/p1',
      'Observation?subject=Patient/p1,Patient/p2',
      'Observation?patient=Patient/p1',
      'Observation?subject=p1',
      'Observation?subject=http://example.org/fhir/Patient/p1',
      'Observation?subject=Patient/p1/_history/2',
      'Observation?subject=identifier:urn:ins|P1',
      'Observation?subject=Patient/p1&code=http://loinc.org|1558-6,http://loinc.org|39156-5&_count=2',
      'Observation?subject=Patient/p2&status=final&_offset=1&_count=3',
      'Observation?identifier=urn:lab|a1',
      'Observation?identifier=URN:LAB|A1',
      'Observation?identifier=|a1',
      'Observation?identifier=A1',
      'Observation?identifier=urn:lab|',
      'Observation?_tag=urn:hash|h1&subject=Patient/p1',
      'Condition?subject=Patient/p1&_count=100',
      'Condition?patient=Patient/p2',
      'Coverage?beneficiary=Patient/p1&_include=Coverage:payor',
      'Coverage?patient=Patient/p1',
      'EpisodeOfCare?patient=Patient/p1&status=planned,waitlist,active,onhold&_count=100',
      'EpisodeOfCare?patient=Patient/p1&_sort=status',
      'Observation?subject:missing=true',
    ];
    // Two rounds: the second writes (updates moving resources between patients, deletes) after
    // the first round's searches have started indexing references.
    for (let round = 0; round < 2; round++) {
      for (let n = 0; n < 300; n++) {
        const resource = make(random(120));
        for (const repo of [indexed, base]) await repo.createResource(structuredClone(resource) as Resource);
        if (random(10) === 0) {
          const gone = make(random(120));
          for (const repo of [indexed, base]) await repo.deleteResource(gone.resourceType, gone.id as string).catch(() => undefined);
        }
      }
      for (const query of queries) {
        const [got, want] = await Promise.all([indexed.search(parseSearchRequest(query)), base.search(parseSearchRequest(query))]);
        expect({ total: got.total, ids: (got.entry ?? []).map((e) => e.resource?.id) }, `round ${round}: ${query}`).toEqual({ total: want.total, ids: (want.entry ?? []).map((e) => e.resource?.id) });
      }
    }
  });
});
