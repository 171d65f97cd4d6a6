/**
 * The push benchmark's load generator, the EHR, in a process of its own: it POSTs Observations
 * to the adapter and watches the evaluation queue's completion events, as an EHR and an
 * observer outside the adapter would. Run in the adapter's process (as it was), it took a share
 * of the very event loop and core it measured, and its CPU was counted as the adapter's.
 *
 * The parent calls `startEhrProcess`; this file, run as a script, is the child (commands and
 * answers over the IPC channel). Times are taken in the child, so that a push's latency is
 * measured with one clock.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { QueueEvents } from 'bullmq';
import { evaluationJobId } from '../../src/queue/job-ids.js';
import { EVALUATION_QUEUE } from '../../src/queue/queues.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import { postFhir, redisUrl, sleep, until } from './common.js';

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';

export interface EhrSetup {
  serviceUrl: string;
  prefix: string;
  programs: string[];
  patients: string[];
  clients: number;
}

export interface ClosedLoopResult {
  pushes: number;
  /** ms from the first push to the last evaluation job completed. */
  elapsedMs: number;
}

export interface OpenLoopResult {
  /** Push-to-verdict latencies, ms, sorted. */
  latencies: number[];
}

type Command =
  | { id: number; op: 'setup'; setup: EhrSetup }
  | { id: number; op: 'closedLoop'; seconds: number; maxPushes?: number }
  | { id: number; op: 'openLoop'; rate: number; count: number };
type Answer = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

const now = (): number => performance.now();

function observation(runId: string, n: number, patientId: string): fhir4.Observation {
  return {
    resourceType: 'Observation',
    identifier: [{ system: 'urn:bench:observation', value: `${runId}-${n}` }],
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
    code: { coding: [{ system: LOINC, code: '1558-6', display: 'Fasting glucose [Mass/volume] in Serum or Plasma' }] },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: new Date().toISOString(),
    valueQuantity: { value: 100 + (n % 30), unit: 'mg/dL', system: UCUM, code: 'mg/dL' },
  };
}

/** The child's side: pushes, and the completion time of each push's evaluation job. */
class Driver {
  private readonly completions = new Map<string, number>();
  private readonly waiters = new Map<string, () => void>();
  private readonly events: QueueEvents;
  private failed = 0;
  private n = 0;
  private readonly runId = Math.random().toString(36).slice(2, 8);

  constructor(private readonly setup: EhrSetup) {
    this.events = new QueueEvents(EVALUATION_QUEUE, { connection: redisOptionsFromUrl(redisUrl()), prefix: setup.prefix });
    this.events.on('completed', ({ jobId }) => {
      // One job per push evaluates every program: ev.<programs>.<patient>.<digest>.
      this.completions.set(jobId, now());
      this.waiters.get(jobId)?.();
      this.waiters.delete(jobId);
    });
    this.events.on('failed', () => {
      this.failed += 1;
    });
  }

  ready(): Promise<void> {
    return this.events.waitUntilReady().then(() => undefined);
  }

  private async push(): Promise<{ key: string; sent: number }> {
    const n = this.n++;
    const patientId = this.setup.patients[n % this.setup.patients.length] as string;
    const sent = now();
    const response = await postFhir(`${this.setup.serviceUrl}/fhir/Observation`, observation(this.runId, n, patientId));
    const body = response.body as fhir4.Observation;
    if (response.status !== 201) throw new Error(`push answered ${response.status}: ${JSON.stringify(body).slice(0, 300)}`);
    const trigger = `Observation/${body.id}${body.meta?.versionId ? `/_history/${body.meta.versionId}` : ''}`;
    return { key: evaluationJobId(this.setup.programs, patientId, [trigger]), sent };
  }

  private done(key: string): Promise<void> {
    if (this.completions.has(key)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.set(key, resolve));
  }

  private async allDone(keys: readonly string[], timeoutMs: number): Promise<void> {
    await until(async () => {
      if (this.failed) throw new Error(`${this.failed} evaluation(s) failed`);
      return keys.every((key) => this.completions.has(key));
    }, timeoutMs, 'evaluations to complete', 20);
  }

  /**
   * `clients` clients, each pushing, waiting for its push's verdicts, and pushing again, until
   * `seconds` have passed: enough evaluations in flight to keep every worker busy, with no
   * backlog to drain at the end.
   */
  async closedLoop(seconds: number, maxPushes = Number.POSITIVE_INFINITY): Promise<ClosedLoopResult> {
    const keys: string[] = [];
    const started = now();
    const deadline = started + seconds * 1000;
    let pushes = 0;
    await Promise.all(
      Array.from({ length: this.setup.clients }, async () => {
        while (now() < deadline && pushes < maxPushes) {
          pushes += 1;
          const { key } = await this.push();
          keys.push(key);
          await this.done(key);
        }
      }),
    );
    await this.allDone(keys, 600_000);
    const finished = Math.max(...keys.map((key) => this.completions.get(key) as number));
    return { pushes: keys.length, elapsedMs: finished - started };
  }

  /** `count` pushes sent on a fixed schedule at `rate` per second (open loop). */
  async openLoop(rate: number, count: number): Promise<OpenLoopResult> {
    const sends: Promise<{ key: string; sent: number }>[] = [];
    const start = now();
    for (let i = 0; i < count; i++) {
      const wait = start + (i * 1000) / rate - now();
      if (wait > 1) await sleep(wait);
      sends.push(this.push());
    }
    const sent = await Promise.all(sends);
    await this.allDone(sent.map((s) => s.key), 600_000);
    // BENCH_EHR_DUMP: a file that gets each push's send time (epoch ms) and latency, to line up with a GC trace.
    if (process.env.BENCH_EHR_DUMP) {
      writeFileSync(process.env.BENCH_EHR_DUMP, sent.map((s) => `${(performance.timeOrigin + s.sent).toFixed(1)}\t${((this.completions.get(s.key) as number) - s.sent).toFixed(1)}`).join('\n') + '\n');
    }
    const latencies = sent.map((s) => (this.completions.get(s.key) as number) - s.sent).sort((a, b) => a - b);
    return { latencies };
  }

  close(): Promise<void> {
    return this.events.close();
  }
}

export interface EhrProcess {
  closedLoop(seconds: number, maxPushes?: number): Promise<ClosedLoopResult>;
  openLoop(rate: number, count: number): Promise<OpenLoopResult>;
  stop(): Promise<void>;
}

/** Starts the EHR process and sets it up (its queue events connected) before resolving. */
export async function startEhrProcess(setup: EhrSetup): Promise<EhrProcess> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, REDIS_URL: redisUrl() },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let nextId = 0;
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  child.on('message', (message: Answer) => {
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.ok) waiter?.resolve(message.result);
    else waiter?.reject(new Error(`EHR process: ${message.error}`));
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      for (const waiter of pending.values()) waiter.reject(new Error(`the EHR process exited (${code})`));
      pending.clear();
      resolve();
    }),
  );
  const call = <T>(command: Record<string, unknown> & { op: Command['op'] }): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      child.send({ ...command, id });
    });
  try {
    await call({ op: 'setup', setup });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    closedLoop: (seconds, maxPushes) => call<ClosedLoopResult>({ op: 'closedLoop', seconds, ...(maxPushes !== undefined ? { maxPushes } : {}) }),
    openLoop: (rate, count) => call<OpenLoopResult>({ op: 'openLoop', rate, count }),
    async stop() {
      child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// The child: answers the parent's commands one by one.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.send) {
  let driver: Driver | undefined;
  const answer = (message: Answer): void => {
    process.send?.(message);
  };
  process.on('message', (command: Command) => {
    void (async () => {
      try {
        let result: unknown;
        if (command.op === 'setup') {
          driver = new Driver(command.setup);
          await driver.ready();
        } else if (!driver) {
          throw new Error('not set up');
        } else if (command.op === 'closedLoop') {
          result = await driver.closedLoop(command.seconds, command.maxPushes);
        } else {
          result = await driver.openLoop(command.rate, command.count);
        }
        answer({ id: command.id, ok: true, result });
      } catch (error) {
        answer({ id: command.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      }
    })();
  });
  process.on('disconnect', () => {
    void (driver?.close() ?? Promise.resolve()).finally(() => process.exit(0));
  });
}
