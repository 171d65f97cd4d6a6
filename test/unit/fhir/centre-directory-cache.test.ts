/**
 * CentreDirectoryCache and the shared generation: the calls of one tick share one read of the
 * generation, and a read already sent is never shared by a later call (which could then miss a
 * directory change counted before it).
 */
import { describe, expect, it } from 'vitest';
import { CentreDirectoryCache } from '../../../src/fhir/centre-directory.js';
import type { FhirServer } from '../../../src/fhir/fhir-server.port.js';
import type { LoadedProgram } from '../../../src/programs/schema.js';

const program = { definition: { id: 'p' }, centres: [{ identifier: { system: 'urn:centre', value: 'c1' } }] } as unknown as LoadedProgram;

function setUp() {
  let searches = 0;
  const fhir = {
    async searchAll() {
      searches += 1;
      return [];
    },
  } as unknown as FhirServer;
  /** The shared counter, and the reads sent: each answers the counter as Redis had it when the read was sent, once released. */
  const state = { counter: 0, reads: [] as { value: string; release: () => void }[] };
  const generation = (): Promise<string | null> => {
    const value = String(state.counter);
    return new Promise((resolve) => state.reads.push({ value, release: () => resolve(value) }));
  };
  const releaseAll = (): void => {
    for (const read of state.reads.splice(0)) read.release();
  };
  const cache = new CentreDirectoryCache(fhir, 60_000, generation);
  return { cache, state, releaseAll, searches: () => searches };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('CentreDirectoryCache generation reads', () => {
  it('the calls of one tick share one read; the directory is resolved once while the generation holds', async () => {
    const { cache, state, releaseAll, searches } = setUp();
    const first = cache.get(program);
    const second = cache.get(program);
    await tick();
    expect(state.reads).toHaveLength(1);
    releaseAll();
    await Promise.all([first, second]);
    expect(searches()).toBe(1);

    const third = cache.get(program);
    await tick();
    expect(state.reads, 'a later call reads again').toHaveLength(1);
    releaseAll();
    await third;
    expect(searches(), 'same generation: cached').toBe(1);
  });

  it('a call made while a read is in flight does not share it: a change counted before the call is seen', async () => {
    const { cache, state, releaseAll, searches } = setUp();
    const before = cache.get(program);
    await tick(); // the first read is sent, with generation 0
    expect(state.reads.map((r) => r.value)).toEqual(['0']);
    state.counter += 1; // a directory resource stored (INCR answered)
    const after = cache.get(program);
    await tick();
    expect(state.reads.map((r) => r.value), 'a read of its own, sent after the change').toEqual(['0', '1']);
    releaseAll();
    await Promise.all([before, after]);
    expect(searches(), 'the change forced a refresh').toBe(2);
  });
});
