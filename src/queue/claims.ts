/**
 * The claims queue (issue #4): generation of what falls due, submission to the insurer
 * gateway, and polling of `queued` answers. One queue, three job names, one worker.
 *
 * - `generate` (an episode, or everything): deterministic claim ids and conditional creates
 *   make a re-run a no-op. A daily job scheduler (durable in Redis) sweeps everything, so a
 *   missed event is caught up.
 * - `submit` (one claim): before any (re)submission the gateway is asked whether it already
 *   knows the claim's identifier, so a gateway that accepted and then timed out does not get
 *   it twice. A gateway unavailable (no answer, timeout, 429, 503, 504) pauses the whole queue
 *   (BullMQ manual rate limit; the job goes back to the head of the wait list without using an
 *   attempt), for Retry-After or 30 s doubling to 30 min, so the backlog drains in the order it
 *   fell due; a claim that has waited longer than `GATEWAY_RETRY_HOURS` then fails. Other
 *   transient failures (500, an invalid answer, the FHIR server) are retried per job with
 *   backoff; a 4xx that will not change fails at once (UnrecoverableError). A failed claim keeps
 *   the gateway's OperationOutcome on its submission Task.
 * - `poll` (a `queued` claim): asks again later until the answer is final.
 */
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { isGatewayUnavailable } from '../gateway/insurer-gateway.adapter.js';
import type { RedisSettings } from '../service.js';

export const CLAIMS_QUEUE = 'claims';
export const DAILY_BILLING_SCHEDULER = 'daily-billing';

export type ClaimsJobData =
  | { kind: 'generate'; episodeId?: string; programId?: string; asOf?: string }
  | { kind: 'submit'; claimId: string }
  | { kind: 'poll'; claimId: string };

/** What the worker needs from the billing service. */
export interface ClaimsHandler {
  generateForEpisode(episodeId: string, asOf?: string): Promise<{ claims: string[] }>;
  generateAll(asOf?: string, programId?: string): Promise<{ claims: string[] }>;
  /** Returns 'queued' when the gateway's answer is not final yet. */
  submit(claimId: string): Promise<'final' | 'queued' | 'no-gateway'>;
  poll(claimId: string): Promise<'final' | 'queued'>;
  /** Records a permanent failure (kept on the FHIR server, visible to users). */
  recordFailure(claimId: string, error: Error): Promise<void>;
}

/** An error that carries how long the remote asked us to wait (Retry-After). */
interface WaitHint {
  retryAfterMs?: number;
  transient?: boolean;
}

const FIRST_DELAY_MS = 30_000;
const MAX_DELAY_MS = 30 * 60_000;
const POLL_DELAY_MS = 10 * 60_000;
/** The longest Retry-After honoured (a gateway asking for more is waited for this long). */
const MAX_RETRY_AFTER_MS = 6 * 3_600_000;
/**
 * A limiter that never throttles (a million jobs a second): BullMQ honours a manual rate limit
 * (`queue.rateLimit`) only for a worker that has one.
 */
const NO_THROTTLE = { max: 1_000_000, duration: 1_000 };

/** Exponential from 30 s, capped at 30 min, jittered: a delay for attempt n (1-based). */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + random() / 2));
}

/** Attempts needed so that retries span at least `hours` (worst case, shortest jitter). */
export function attemptsFor(hours: number): number {
  let total = 0;
  let attempts = 1;
  while (total < hours * 3_600_000) {
    total += Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempts - 1)) * 0.75;
    attempts += 1;
  }
  return attempts;
}

export function submitJobId(claimId: string): string {
  return `submit.${claimId}`;
}

export async function startClaims(deps: {
  connection: RedisSettings;
  prefix: string;
  timeZone: string;
  retryHours: number;
  handler: ClaimsHandler;
  log: Logger;
  runWorker: boolean;
}): Promise<{ queue: Queue<ClaimsJobData>; enqueueSubmissions(claimIds: string[]): Promise<void>; enqueueGeneration(episodeId: string, asOf?: string): Promise<void>; close(): Promise<void> }> {
  const queue = new Queue<ClaimsJobData>(CLAIMS_QUEUE, { connection: deps.connection, prefix: deps.prefix });
  queue.on('error', (error) => deps.log.error({ err: { message: error.message } }, 'claims queue error'));
  const submitAttempts = attemptsFor(deps.retryHours);
  const keep = { removeOnComplete: { age: 90 * 24 * 3600 }, removeOnFail: { age: 365 * 24 * 3600 } };

  await queue.upsertJobScheduler(
    DAILY_BILLING_SCHEDULER,
    { pattern: '30 0 * * *', tz: deps.timeZone },
    { name: 'generate', data: { kind: 'generate' }, opts: { attempts: 5, backoff: { type: 'custom' }, ...keep } },
  );

  const enqueueSubmissions = async (claimIds: string[]): Promise<void> => {
    if (!claimIds.length) return;
    // Deterministic ids: a claim is submitted by one job, however often generation runs.
    await queue.addBulk(claimIds.map((claimId) => ({ name: 'submit', data: { kind: 'submit' as const, claimId }, opts: { jobId: submitJobId(claimId), attempts: submitAttempts, backoff: { type: 'custom' }, ...keep } })));
  };
  const enqueueGeneration = async (episodeId: string, asOf?: string): Promise<void> => {
    await queue.add('generate', { kind: 'generate', episodeId, ...(asOf ? { asOf } : {}) }, { jobId: `generate.${episodeId}.${asOf ?? 'today'}.${Date.now()}`, attempts: 10, backoff: { type: 'custom' }, ...keep });
  };

  // While the gateway is unavailable the whole queue pauses (a rate limit kept in Redis, shared
  // by every worker process), so the backlog is taken again in the order it fell due. The pause
  // grows like a claim's backoff (30 s doubling to 30 min, without jitter), or lasts Retry-After.
  let outageStep = 0;
  let pausedUntil = 0;
  const pauseSubmissions = async (retryAfterMs: number | undefined): Promise<number> => {
    const now = Date.now();
    const asked = Math.min(retryAfterMs ?? 0, MAX_RETRY_AFTER_MS);
    if (pausedUntil <= now) {
      // A new pause; the claims that were running alongside this one extend it, never step it again.
      outageStep += 1;
      pausedUntil = now + Math.max(backoffDelay(outageStep, () => 0.5), asked);
    } else {
      pausedUntil = Math.max(pausedUntil, now + asked);
    }
    const pauseMs = Math.max(1, pausedUntil - now);
    await queue.rateLimit(pauseMs);
    return pauseMs;
  };

  let worker: Worker<ClaimsJobData> | undefined;
  if (deps.runWorker) {
    worker = new Worker<ClaimsJobData>(
      CLAIMS_QUEUE,
      async (job: Job<ClaimsJobData>) => {
        const data = job.data;
        if (data.kind === 'generate') {
          const { claims } = data.episodeId ? await deps.handler.generateForEpisode(data.episodeId, data.asOf) : await deps.handler.generateAll(data.asOf, data.programId);
          await enqueueSubmissions(claims);
          return { claims: claims.length };
        }
        try {
          const state = data.kind === 'submit' ? await deps.handler.submit(data.claimId) : await deps.handler.poll(data.claimId);
          // The gateway answered: the next outage starts a new pause from its first step.
          outageStep = 0;
          pausedUntil = 0;
          if (state === 'queued') {
            await queue.add('poll', { kind: 'poll', claimId: data.claimId }, { jobId: `poll.${data.claimId}.${Date.now()}`, delay: POLL_DELAY_MS, attempts: submitAttempts, backoff: { type: 'custom' }, ...keep });
          }
          return { state };
        } catch (error) {
          const hint = error as WaitHint & Error;
          if (isGatewayUnavailable(error)) {
            // Back to the head of the wait list, no attempt used; the limit is how long the claim has waited.
            if (Date.now() - job.timestamp < deps.retryHours * 3_600_000) {
              const pauseMs = await pauseSubmissions(error.retryAfterMs);
              deps.log.warn({ jobId: job.id, pauseMs, err: { message: error.message } }, 'insurer gateway unavailable: claims queue paused');
              throw Worker.RateLimitError();
            }
            await deps.handler.recordFailure(data.claimId, error);
            throw new UnrecoverableError(`${error.message}; gave up after GATEWAY_RETRY_HOURS (${deps.retryHours} h)`);
          }
          const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
          if (hint.transient === false || error instanceof UnrecoverableError || last) {
            await deps.handler.recordFailure(data.claimId, hint);
            if (hint.transient === false) throw new UnrecoverableError(hint.message);
          }
          throw error;
        }
      },
      {
        connection: deps.connection,
        prefix: deps.prefix,
        concurrency: 4,
        limiter: NO_THROTTLE,
        // While paused, look at the shared limit every second: lifting it (queue.removeRateLimitKey) resumes at once.
        maximumRateLimitDelay: 1_000,
        settings: {
          // Honour Retry-After when the gateway gives one; never retry sooner than the backoff.
          backoffStrategy: (attemptsMade: number, _type?: string, error?: Error) =>
            Math.max(backoffDelay(attemptsMade), Math.min((error as WaitHint | undefined)?.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS)),
        },
      },
    );
    worker.on('error', (error) => deps.log.error({ err: { message: error.message } }, 'claims worker error'));
    worker.on('failed', (job, error) => deps.log.warn({ jobId: job?.id, err: { name: error.name, message: error.message } }, 'claims job failed'));
  }
  return {
    queue,
    enqueueSubmissions,
    enqueueGeneration,
    close: async () => {
      await worker?.close();
      await queue.close();
    },
  };
}
