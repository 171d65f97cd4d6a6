/**
 * Prometheus metrics (prom-client): HTTP, evaluations, queue depths. Labels never carry
 * patient data: programs, outcomes, routes (templates, not raw paths) and status codes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue } from 'bullmq';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpSeconds: Histogram<'method' | 'route'>;
  evaluations: Counter<'program' | 'outcome'>;
  evaluationSeconds: Histogram<string>;
  ingested: Counter<'resource_type' | 'result'>;
  /** Registers queue depth gauges, read from Redis at scrape time. */
  watchQueues(queues: Queue[]): void;
}

/**
 * Milliseconds left of a manual rate limit (`queue.rateLimit`, which stores MAX_SAFE_INTEGER as
 * the count): asking with that count ignores an ordinary limiter's counting. <= 0 when none.
 */
async function pausedMs(queue: Queue): Promise<number> {
  return queue.getRateLimitTtl(Number.MAX_SAFE_INTEGER);
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const queues: Queue[] = [];
  new Gauge({
    name: 'forfait_queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      for (const queue of queues) {
        const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children');
        for (const [state, count] of Object.entries(counts)) this.set({ queue: queue.name, state }, count);
      }
    },
  });
  new Gauge({
    name: 'forfait_queue_paused_seconds',
    help: 'Seconds left of a queue-wide pause (claims: the insurer gateway is unavailable); 0 when running',
    labelNames: ['queue'],
    registers: [registry],
    async collect() {
      for (const queue of queues) this.set({ queue: queue.name }, Math.max(0, await pausedMs(queue)) / 1000);
    },
  });
  new Gauge({
    name: 'forfait_gateway_paused',
    help: '1 while claim submissions are paused because the insurer gateway is unavailable, else 0 (the backlog: forfait_queue_jobs{queue="claims",state="waiting"})',
    registers: [registry],
    async collect() {
      const claims = queues.find((queue) => queue.name === 'claims');
      this.set(claims && (await pausedMs(claims)) > 0 ? 1 : 0);
    },
  });
  return {
    registry,
    httpRequests: new Counter({ name: 'forfait_http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers: [registry] }),
    httpSeconds: new Histogram({ name: 'forfait_http_request_seconds', help: 'HTTP request duration', labelNames: ['method', 'route'], registers: [registry] }),
    evaluations: new Counter({ name: 'forfait_evaluations_total', help: 'Eligibility evaluations recorded by the workers', labelNames: ['program', 'outcome'], registers: [registry] }),
    evaluationSeconds: new Histogram({
      name: 'forfait_evaluation_seconds',
      help: 'Duration of one queued evaluation (fetch, evaluate, record)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    ingested: new Counter({ name: 'forfait_ingested_resources_total', help: 'Resources pushed by EHRs', labelNames: ['resource_type', 'result'], registers: [registry] }),
    watchQueues(list) {
      queues.push(...list);
    },
  };
}
