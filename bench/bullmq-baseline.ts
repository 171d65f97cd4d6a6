/**
 * Benchmark 1, the baseline of every ratio: raw BullMQ on this machine and this Redis. No-op
 * jobs are added with `addBulk` in chunks while one Worker processes them at the concurrency
 * the service runs evaluations at (WORKER_CONCURRENCY). Completed jobs are kept by age as the
 * service keeps its evaluation jobs, so the figure is what BullMQ itself costs the service.
 */
import { Queue, Worker } from 'bullmq';
import { redisOptionsFromUrl } from '../src/service.js';
import { cpuMsSince, deleteKeys, fmt, newPrefix, redisUrl, serviceConcurrency, type RawBullmq } from './lib/common.js';
import type { Bench } from './types.js';

const CHUNK = 500;

export async function measureRawBullmq(quick: boolean): Promise<RawBullmq & { jobs: number; seconds: number }> {
  const jobs = quick ? 3_000 : 20_000;
  const concurrency = serviceConcurrency();
  const prefix = newPrefix('raw');
  const connection = redisOptionsFromUrl(redisUrl());
  const queue = new Queue('noop', { connection, prefix });
  let done = 0;
  let resolveDone: () => void = () => {};
  const allDone = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  const worker = new Worker(
    'noop',
    async () => {
      done += 1;
      if (done === jobs) resolveDone();
      return null;
    },
    { connection, prefix, concurrency, autorun: false },
  );
  try {
    await queue.waitUntilReady();
    await worker.waitUntilReady();
    const started = performance.now();
    const cpu = process.cpuUsage();
    void worker.run();
    for (let i = 0; i < jobs; i += CHUNK) {
      const size = Math.min(CHUNK, jobs - i);
      await queue.addBulk(
        Array.from({ length: size }, (_, k) => ({
          name: 'noop',
          data: { n: i + k },
          opts: { jobId: `noop.${i + k}`, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } },
        })),
      );
    }
    await allDone;
    const seconds = (performance.now() - started) / 1000;
    return { jobsPerSecond: jobs / seconds, concurrency, cpuMsPerJob: cpuMsSince(cpu) / jobs, jobs, seconds };
  } finally {
    await worker.close();
    await queue.close();
    await deleteKeys(prefix);
  }
}

export const run: Bench = async ({ quick }) => {
  const result = await measureRawBullmq(quick);
  return [
    {
      name: `raw BullMQ: no-op jobs, addBulk in chunks of ${CHUNK}, one Worker at concurrency ${result.concurrency} (${fmt(result.jobs)} jobs)`,
      value: `${fmt(result.jobsPerSecond)} jobs/s (${fmt(result.cpuMsPerJob, 3)} ms CPU/job in this process)`,
      baseline: '',
      ratio: '',
      goal: '',
      met: null,
    },
  ];
};
