/**
 * The coalescing enqueuer of the HTTP API (src/queue/queues.ts evaluationEnqueuer) against a
 * real Redis and BullMQ queue: concurrent pushes' jobs travel in fewer addBulk calls than
 * callers, each caller gets its own job ids and its job is in the queue, and a failed addBulk
 * fails every caller whose jobs it carried.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVALUATION_QUEUE, evaluationEnqueuer, type EvaluationJobData, type EvaluationJobResult } from '../../src/queue/queues.js';
import { evaluationJobId } from '../../src/queue/job-ids.js';
import { redisOptionsFromUrl } from '../../src/service.js';

const prefix = `enqueuer-${randomUUID().slice(0, 8)}`;
let queue: Queue<EvaluationJobData, EvaluationJobResult>;

beforeAll(() => {
  queue = new Queue<EvaluationJobData, EvaluationJobResult>(EVALUATION_QUEUE, { connection: redisOptionsFromUrl(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'), prefix });
});

afterAll(async () => {
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
});

describe('evaluationEnqueuer', () => {
  it('sends concurrent callers’ jobs in fewer addBulk calls, and gives each caller its own job ids', async () => {
    const addBulk = queue.addBulk.bind(queue);
    const sizes: number[] = [];
    queue.addBulk = ((jobs: Parameters<typeof addBulk>[0]) => {
      sizes.push(jobs.length);
      return addBulk(jobs);
    }) as typeof queue.addBulk;
    try {
      const enqueue = evaluationEnqueuer(queue, 60);
      const requests = Array.from({ length: 40 }, (_, n) => ({ programIds: ['fnmf-prediabetes', 'rediab'], patientId: `p${n}`, trigger: [`Observation/o${n}/_history/1`] }));
      const ids = await Promise.all([
        ...requests.map((request) => enqueue([request])),
        enqueue([{ programIds: [], patientId: 'nobody', trigger: ['Observation/none/_history/1'] }]),
      ]);
      expect(ids.slice(0, 40)).toEqual(requests.map((request) => [evaluationJobId(request.programIds, request.patientId, request.trigger)]));
      expect(ids[40], 'a request for no program queues nothing').toEqual([]);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(40);
      expect(sizes.length, 'fewer Redis round trips than callers').toBeLessThan(40);
      const jobs = await Promise.all(ids.slice(0, 40).map(([id]) => queue.getJob(id as string)));
      expect(jobs.map((job) => job?.data.patientId)).toEqual(requests.map((request) => request.patientId));
    } finally {
      queue.addBulk = addBulk;
    }
  });

  it('fails every caller whose jobs travelled in a failed addBulk', async () => {
    const addBulk = queue.addBulk.bind(queue);
    queue.addBulk = (() => Promise.reject(new Error('Redis is down'))) as typeof queue.addBulk;
    try {
      const enqueue = evaluationEnqueuer(queue, 60);
      const settled = await Promise.allSettled([1, 2, 3].map((n) => enqueue([{ programIds: ['rediab'], patientId: `f${n}`, trigger: [`Observation/f${n}/_history/1`] }])));
      expect(settled.map((result) => result.status)).toEqual(['rejected', 'rejected', 'rejected']);
      expect((settled[0] as PromiseRejectedResult).reason).toMatchObject({ message: 'Redis is down' });
    } finally {
      queue.addBulk = addBulk;
    }
  });
});
