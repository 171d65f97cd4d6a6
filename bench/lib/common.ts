/**
 * What the benchmarks share: the Redis they run against, a queue prefix per run (its keys are
 * removed afterwards), number formatting, the load generator's POST, and the raw BullMQ
 * figure the other benchmarks are compared with (measured again right before each one).
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/config.js';
import { redisOptionsFromUrl } from '../../src/service.js';

export function redisUrl(): string {
  return process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
}

/** A queue prefix of its own for one benchmark run (`bench-<name>-<random>`). */
export function newPrefix(name: string): string {
  return `bench-${name}-${randomUUID().slice(0, 8)}`;
}

export async function deleteKeys(prefix: string): Promise<number> {
  const redis = new Redis(redisOptionsFromUrl(redisUrl()));
  let removed = 0;
  try {
    const stream = redis.scanStream({ match: `${prefix}:*`, count: 1000 });
    for await (const keys of stream as AsyncIterable<string[]>) {
      if (keys.length) removed += await redis.unlink(...keys);
    }
  } finally {
    redis.disconnect();
  }
  return removed;
}

/** The concurrency the service runs evaluations at (WORKER_CONCURRENCY, default from the config schema). */
export function serviceConcurrency(): number {
  return loadConfig({ ...(process.env.WORKER_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY } : {}) }).WORKER_CONCURRENCY;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

/** 12 345 (thin spaces are hard to type: a plain space groups thousands). */
export function fmt(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return String(value);
  const [int, frac] = value.toFixed(digits).split('.') as [string, string | undefined];
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
  return frac ? `${grouped}.${frac}` : grouped;
}

export function percent(ratio: number): string {
  return `${fmt(ratio * 100, 1)} %`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `check` is true or the time is up (then throws with `what`). */
export async function until(check: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** CPU time (user + system, ms) this process used since `since` (a process.cpuUsage() value). */
export function cpuMsSince(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

export interface RawBullmq {
  jobsPerSecond: number;
  concurrency: number;
  /** CPU of this process (queue + worker) per job, ms; Redis not counted. */
  cpuMsPerJob: number;
}

/**
 * Raw BullMQ measured again right now (a short run), for a ratio whose two figures are taken
 * seconds apart: on a shared machine the load changes between the first benchmark and the last.
 */
export async function adjacentBaseline(): Promise<RawBullmq> {
  const { measureRawBullmq } = await import('../bullmq-baseline.js');
  return measureRawBullmq(true);
}

export function baselineLabel(baseline: RawBullmq): string {
  return `raw BullMQ ${fmt(baseline.jobsPerSecond)} jobs/s (concurrency ${baseline.concurrency}; ${fmt(baseline.cpuMsPerJob, 3)} ms CPU/job)`;
}

const loadAgent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });

/**
 * The load generator's POST of FHIR JSON: Node http on kept-alive sockets, not fetch, so that
 * the generator, which shares the machine's two cores with the measured processes, costs as
 * little as it can (fetch cost about 0.4 ms of CPU per request here).
 */
export function postFhir(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: 'POST', agent: loadAgent, headers: { 'content-type': 'application/fhir+json', 'content-length': String(Buffer.byteLength(payload)) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: response.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : undefined });
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
          }
        });
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}
