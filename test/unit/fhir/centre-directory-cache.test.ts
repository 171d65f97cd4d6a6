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

/**
 * A directory whose Organization search answers what `orgs` holds at the time, each search held
 * until released; the generation is fixed unless changed. The clock is `clock.now`.
 */
function directorySetUp() {
  const orgs = { ids: ['o1'], down: false };
  const held: (() => void)[] = [];
  let searches = 0;
  const fhir = {
    async searchAll(type: string) {
      if (type !== 'Organization') return [];
      searches += 1;
      const answer = orgs.ids.map((id) => ({ resourceType: 'Organization', id }));
      const down = orgs.down;
      await new Promise<void>((resolve) => held.push(resolve));
      if (down) throw new Error('FHIR server unavailable');
      return answer;
    },
  } as unknown as FhirServer;
  const clock = { now: 0 };
  const generation = { value: '1' as string | null };
  const cache = new CentreDirectoryCache(fhir, 60_000, async () => generation.value, () => clock.now);
  const releaseAll = async (): Promise<void> => {
    await tick();
    for (const release of held.splice(0)) release();
    await tick();
  };
  const members = async (promise: Promise<{ members: ReadonlyMap<string, unknown> }>): Promise<string[]> => [...(await promise).members.keys()];
  return { cache, orgs, clock, generation, releaseAll, members, searches: () => searches, held };
}

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

describe('CentreDirectoryCache expiry', () => {
  it('an entry older than the TTL serves at once while one refresh runs, then the refreshed directory serves', async () => {
    const { cache, orgs, clock, releaseAll, members, searches } = directorySetUp();
    const first = cache.get(program);
    await releaseAll();
    expect(await members(first)).toEqual(['Organization/o1']);

    orgs.ids = ['o2']; // changed on the FHIR server, behind the adapter's back
    clock.now = 61_000;
    const during = await Promise.race([cache.get(program).then((d) => [...d.members.keys()]), tick().then(() => 'waiting')]);
    expect(during, 'served at once from the expired entry').toEqual(['Organization/o1']);
    expect(await members(cache.get(program)), 'still the old one while the refresh runs').toEqual(['Organization/o1']);
    expect(searches(), 'one refresh, not one per call').toBe(2);
    await releaseAll();
    expect(await members(cache.get(program))).toEqual(['Organization/o2']);
    expect(searches()).toBe(2);
  });

  it('a failed refresh keeps the expired entry serving, and the next call tries again', async () => {
    const { cache, orgs, clock, releaseAll, members, searches } = directorySetUp();
    const first = cache.get(program);
    await releaseAll();
    await first;
    clock.now = 61_000;
    orgs.down = true;
    expect(await members(cache.get(program))).toEqual(['Organization/o1']);
    await releaseAll(); // the refresh fails
    expect(searches()).toBe(2);
    orgs.down = false;
    orgs.ids = ['o4'];
    expect(await members(cache.get(program)), 'the expired entry still serves').toEqual(['Organization/o1']);
    expect(searches(), 'and a new refresh started').toBe(3);
    await releaseAll();
    expect(await members(cache.get(program))).toEqual(['Organization/o4']);
  });

  it('a new generation is waited for: the next call never sees the old directory', async () => {
    const { cache, orgs, generation, releaseAll, members } = directorySetUp();
    const first = cache.get(program);
    await releaseAll();
    await first;
    orgs.ids = ['o3'];
    generation.value = '2'; // a directory resource stored through the adapter
    const next = cache.get(program);
    const early = await Promise.race([next.then(() => 'resolved'), tick().then(() => 'waiting')]);
    expect(early).toBe('waiting');
    await releaseAll();
    expect(await members(next)).toEqual(['Organization/o3']);
  });
});

