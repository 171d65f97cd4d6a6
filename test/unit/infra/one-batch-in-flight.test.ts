/** oneBatchInFlight with a real DataLoader: batches by back-pressure, never two in flight. */
import DataLoader from 'dataloader';
import { describe, expect, it } from 'vitest';
import { oneBatchInFlight } from '../../../src/infra/one-batch-in-flight.js';

function setUp(maxBatchSize = 100) {
  const batches: number[][] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const releases: (() => void)[] = [];
  const failNext = { value: false };
  const scheduler = oneBatchInFlight();
  const loader = new DataLoader<number, number>(
    (keys) =>
      scheduler.run(async () => {
        batches.push([...keys]);
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise<void>((resolve) => releases.push(resolve));
        inFlight -= 1;
        if (failNext.value) {
          failNext.value = false;
          throw new Error('Redis down');
        }
        return keys.map((key) => key * 10);
      }),
    { cache: false, maxBatchSize, batchScheduleFn: (callback) => scheduler.schedule(callback) },
  );
  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const releaseOne = async (): Promise<void> => {
    releases.shift()?.();
    await tick();
    await tick();
  };
  return { loader, batches, releaseOne, tick, failNext, maxInFlight: () => maxInFlight };
}

describe('oneBatchInFlight', () => {
  it('a lone load is dispatched at the next turn, without waiting for anything', async () => {
    const { loader, batches, releaseOne, tick } = setUp();
    const one = loader.load(1);
    await tick();
    expect(batches).toEqual([[1]]);
    await releaseOne();
    await expect(one).resolves.toBe(10);
  });

  it('loads made while a batch is in flight wait for it, then go together', async () => {
    const { loader, batches, releaseOne, tick, maxInFlight } = setUp();
    const first = loader.load(1);
    await tick();
    const later = [loader.load(2), loader.load(3)];
    await tick();
    const evenLater = loader.load(4);
    await tick();
    expect(batches, 'nothing more dispatched while the first is in flight').toEqual([[1]]);
    await releaseOne();
    expect(batches).toEqual([[1], [2, 3, 4]]);
    await releaseOne();
    await expect(Promise.all([first, ...later, evenLater])).resolves.toEqual([10, 20, 30, 40]);
    expect(maxInFlight()).toBe(1);
  });

  it('full batches queue up behind the one in flight, one at a time', async () => {
    const { loader, batches, releaseOne, tick, maxInFlight } = setUp(2);
    const loads = [1, 2, 3, 4, 5].map((key) => loader.load(key));
    await tick();
    expect(batches).toEqual([[1, 2]]);
    await releaseOne();
    expect(batches).toEqual([[1, 2], [3, 4]]);
    await releaseOne();
    expect(batches).toEqual([[1, 2], [3, 4], [5]]);
    await releaseOne();
    await expect(Promise.all(loads)).resolves.toEqual([10, 20, 30, 40, 50]);
    expect(maxInFlight()).toBe(1);
  });

  it('a failed batch rejects its own loads only, and the next batch still goes', async () => {
    const { loader, batches, releaseOne, tick, failNext } = setUp();
    failNext.value = true;
    const failed = loader.load(1);
    const failedSeen = failed.catch((error: Error) => error.message);
    await tick();
    const after = loader.load(2);
    await releaseOne();
    expect(await failedSeen).toBe('Redis down');
    expect(batches).toEqual([[1], [2]]);
    await releaseOne();
    await expect(after).resolves.toBe(20);
  });
});
