/**
 * Phases move by themselves: a BullMQ job scheduler (stored in Redis, so durable across
 * restarts, and upserted idempotently at every boot) runs `advance` every day shortly after
 * midnight in the programs' time zone. It completes ended CarePlans, activates started ones,
 * opens the next yearly periods and ends finished care sequences; it is idempotent, so a
 * missed day is caught up by the next run and a re-run changes nothing. Exited episodes are
 * never advanced: nothing stays scheduled for a patient who left.
 */
import { Queue, Worker } from 'bullmq';
import type { Logger } from 'pino';
import type { EnrolmentService } from '../app/enrolment.service.js';
import type { RedisSettings } from '../service.js';

export const LIFECYCLE_QUEUE = 'lifecycle';
export const DAILY_ADVANCE_SCHEDULER = 'daily-advance';

export interface LifecycleJobData {
  /** Absent: today in each program's time zone. */
  asOf?: string;
}

export async function startLifecycle(deps: {
  connection: RedisSettings;
  prefix: string;
  timeZone: string;
  enrolment: EnrolmentService;
  log: Logger;
  /** Only worker processes run jobs; every process may (idempotently) declare the schedule. */
  runWorker: boolean;
}): Promise<{ queue: Queue<LifecycleJobData>; close(): Promise<void> }> {
  const queue = new Queue<LifecycleJobData>(LIFECYCLE_QUEUE, { connection: deps.connection, prefix: deps.prefix });
  queue.on('error', (error) => deps.log.error({ err: { message: error.message } }, 'lifecycle queue error'));
  await queue.upsertJobScheduler(
    DAILY_ADVANCE_SCHEDULER,
    { pattern: '5 0 * * *', tz: deps.timeZone },
    { name: 'advance', data: {}, opts: { attempts: 5, backoff: { type: 'exponential', delay: 60_000 }, removeOnComplete: { age: 30 * 24 * 3600 }, removeOnFail: { age: 90 * 24 * 3600 } } },
  );
  let worker: Worker<LifecycleJobData> | undefined;
  if (deps.runWorker) {
    worker = new Worker<LifecycleJobData>(
      LIFECYCLE_QUEUE,
      async (job) => {
        const summary = await deps.enrolment.advanceAll(job.data.asOf);
        deps.log.info({ jobId: job.id, ...summary }, 'enrolments advanced');
        return summary;
      },
      { connection: deps.connection, prefix: deps.prefix, concurrency: 1 },
    );
    worker.on('error', (error) => deps.log.error({ err: { message: error.message } }, 'lifecycle worker error'));
  }
  return {
    queue,
    close: async () => {
      await worker?.close();
      await queue.close();
    },
  };
}
