/**
 * Starts the real service in-process for integration tests: real Redis (REDIS_URL from the
 * global setup), real BullMQ workers, and the embedded FHIR server over HTTP. Each call uses
 * its own queue prefix so test files never see each other's jobs, and removes its keys.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import { EVALUATION_QUEUE } from '../../src/queue/queues.js';
import { redisOptionsFromUrl, startService, type RunningService } from '../../src/service.js';

export interface TestService {
  service: RunningService;
  url: string;
  fhirUrl: string;
  prefix: string;
  redis: Redis;
  evaluationQueue: Queue;
  /** Resolves when no evaluation is waiting, active or delayed. */
  drained(timeoutMs?: number): Promise<void>;
  /** POST/GET JSON helpers against the adapter. Bodies are `any`: arbitrary JSON that each test inspects with assertions. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  get(path: string): Promise<{ status: number; body: any; headers: Headers }>;
  /** GET against the FHIR server of record, bypassing the adapter. */
  fhirGet(path: string): Promise<any>;
  stop(): Promise<void>;
}

/**
 * `env` overrides the configuration; give `QUEUE_PREFIX` to share queues with another
 * service (the caller then owns the clean-up of its keys: `keepKeys`), and `ROLE: 'worker'`
 * for a service without HTTP (its `url` is empty and `post`/`get` must not be used).
 */
export async function startTestService(env: Record<string, string> = {}, options: { keepKeys?: boolean; log?: Logger } = {}): Promise<TestService> {
  const prefix = env['QUEUE_PREFIX'] ?? `t${randomUUID().slice(0, 8)}`;
  const config = loadConfig({
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    PORT: '0',
    EMBEDDED_FHIR_PORT: '0',
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: 'silent',
    WORKER_CONCURRENCY: '4',
    // Tests send thousands of requests from one address: no rate limit unless a test sets one.
    RATE_LIMIT_PER_MINUTE: '0',
    ...env,
  });
  const service = await startService(config, options.log ?? pino({ level: config.LOG_LEVEL }));
  const redis = new Redis(redisOptionsFromUrl(service.redisUrl));
  const evaluationQueue = new Queue(EVALUATION_QUEUE, { connection: redisOptionsFromUrl(service.redisUrl), prefix });
  const url = service.url ?? '';

  const request = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/fhir+json' } : {}), ...headers },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON (metrics, HTML): keep the text
    }
    return { status: response.status, body: parsed as any, headers: response.headers };
  };

  return {
    service,
    url,
    fhirUrl: service.fhirBaseUrl,
    prefix,
    redis,
    evaluationQueue,
    async drained(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const counts = await evaluationQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        if (Object.values(counts).every((count) => count === 0)) return;
        if (Date.now() > deadline) throw new Error(`queue not drained: ${JSON.stringify(counts)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    post: (path, body, headers) => request('POST', path, body, headers),
    get: (path) => request('GET', path),
    async fhirGet(path) {
      const response = await fetch(`${service.fhirBaseUrl}/${path}`);
      return response.json();
    },
    async stop() {
      await evaluationQueue.close();
      await service.stop();
      // Remove this run's keys (job data and screening progress).
      if (!options.keepKeys) await deleteKeys(redis, prefix);
      redis.disconnect();
    },
  };
}

export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  const stream = redis.scanStream({ match: `${prefix}:*`, count: 500 });
  for await (const keys of stream as AsyncIterable<string[]>) if (keys.length) await redis.del(...keys);
}

/** Polls until `check` returns a value (not undefined) or the time is up. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Program evaluations the completed jobs of an evaluation queue made: a push's job evaluates
 * every program (`ev.<program>+<program>.<patient>.<digest>`), a `$screen` child one.
 */
export async function completedEvaluationCount(queue: Queue): Promise<number> {
  const ids = await queue.getRanges(['completed'], 0, -1);
  return ids.reduce((sum, id) => sum + (/^ev\.([^.]+)\./.exec(id)?.[1]?.split('+').length ?? 1), 0);
}
