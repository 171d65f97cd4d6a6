/**
 * The service as it is deployed: one API process holding the (embedded) FHIR server of
 * record, worker processes pointed at it with FHIR_BASE_URL (directly or through a fault
 * proxy), and the insurer gateway in a process of its own. Plus the queue readers the
 * scenarios use to count what was done.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Queue } from 'bullmq';
import { CLAIMS_QUEUE } from '../../src/queue/claims.js';
import { EVALUATION_QUEUE } from '../../src/queue/queues.js';
import type { TestService } from '../integration/harness.js';
import { eventually, freePort, type NodeProcess, type Scenario, type ServiceProcess } from './harness.js';
import { asTestService } from './seed.js';

export interface Gateway {
  proc: NodeProcess;
  port: number;
  url: string;
  journal: string;
}

export interface JournalEntry {
  at: number;
  route: 'submit' | 'status' | 'other';
  key?: string;
  status: number;
}

/** The insurer gateway fixture in its own process (test/faults/gateway-process.ts); `reject`: a key pattern refused 422. */
export async function startGateway(scenario: Scenario, options: { reject?: string } = {}): Promise<Gateway> {
  const port = await freePort();
  const journal = join(scenario.tempDir(), 'gateway.jsonl');
  const proc = scenario.node('gateway', ['test/faults/gateway-process.ts'], {
    GATEWAY_PORT: String(port),
    GATEWAY_JOURNAL: journal,
    ...(options.reject ? { GATEWAY_REJECT: options.reject } : {}),
  });
  await proc.start(/gateway listening on/);
  return { proc, port, url: `http://127.0.0.1:${port}/fhir`, journal };
}

export function readJournal(gateway: Gateway): JournalEntry[] {
  if (!existsSync(gateway.journal)) return [];
  return readFileSync(gateway.journal, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as JournalEntry);
}

/** Per claim key: how many submissions the gateway received (whatever it answered) and how many it accepted (200). */
export function submissionsPerKey(entries: JournalEntry[]): { received: Map<string, number>; accepted: Map<string, number> } {
  const received = new Map<string, number>();
  const accepted = new Map<string, number>();
  for (const entry of entries) {
    if (entry.route !== 'submit' || !entry.key) continue;
    received.set(entry.key, (received.get(entry.key) ?? 0) + 1);
    if (entry.status === 200) accepted.set(entry.key, (accepted.get(entry.key) ?? 0) + 1);
  }
  return { received, accepted };
}

export interface Stack {
  api: ServiceProcess;
  workers: ServiceProcess[];
  t: TestService;
  evaluations: Queue;
  claims: Queue;
}

/**
 * Starts the API (ROLE=api, embedded FHIR server) then `workers` worker processes; worker i's
 * FHIR server is `workerFhirUrl(apiFhirUrl, i)` (default: the API's embedded server).
 */
export async function startStack(
  scenario: Scenario,
  options: { workers: number; env?: Record<string, string>; workerEnv?: Record<string, string>; workerFhirUrl?: (fhirUrl: string, worker: number) => Promise<string> | string },
): Promise<Stack> {
  const api = scenario.service('api', 'api', options.env ?? {});
  await api.start();
  const workers: ServiceProcess[] = [];
  for (let i = 1; i <= options.workers; i++) {
    const fhirUrl = options.workerFhirUrl ? await options.workerFhirUrl(api.fhirUrl, i) : api.fhirUrl;
    workers.push(scenario.service(`worker${i}`, 'worker', { ...(options.env ?? {}), ...(options.workerEnv ?? {}), FHIR_BASE_URL: fhirUrl }));
  }
  await Promise.all(workers.map((worker) => worker.start()));
  return {
    api,
    workers,
    t: asTestService(api.url, api.fhirUrl, scenario.prefix),
    evaluations: scenario.queue(EVALUATION_QUEUE),
    claims: scenario.queue(CLAIMS_QUEUE),
  };
}

/**
 * Completed evaluation jobs: their ids, the evaluations they made per `program patient` (job ids
 * `ev.<program>[+<program>...].<patient>.<digest>`: one job evaluates a push for every program),
 * and how many evaluations in all.
 */
export async function completedEvaluations(queue: Queue): Promise<{ ids: Set<string>; perPatientProgram: Map<string, number>; evaluations: number }> {
  const ids = new Set<string>();
  const perPatientProgram = new Map<string, number>();
  let evaluations = 0;
  // Ids only: fetching whole jobs would cost far more.
  const members = await queue.getRanges(['completed'], 0, -1);
  for (const id of members) {
    ids.add(id);
    const match = /^ev\.([^.]+)\.([^.]+)\./.exec(id);
    if (match) {
      for (const program of (match[1] as string).split('+')) {
        const key = `${program} ${match[2]}`;
        perPatientProgram.set(key, (perPatientProgram.get(key) ?? 0) + 1);
        evaluations += 1;
      }
    }
  }
  return { ids, perPatientProgram, evaluations };
}

/** Jobs still to run (waiting, active, delayed, prioritized), the daily schedulers' repeat jobs aside. */
export async function pending(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts('waiting', 'active', 'prioritized', 'waiting-children');
  const delayed = await queue.getDelayed();
  return Object.values(counts).reduce((sum, count) => sum + count, 0) + delayed.filter((job) => !job.repeatJobKey && !String(job.id).startsWith('repeat:')).length;
}

/** Waits until a queue has nothing left to run. */
export async function idle(queue: Queue, timeoutMs: number): Promise<void> {
  await eventually(`queue ${queue.name} idle`, async () => ((await pending(queue)) === 0 ? true : undefined), timeoutMs, 500);
}
