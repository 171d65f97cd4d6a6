/**
 * Benchmark 2, push mode end to end: an EHR's `POST /fhir/Observation` to the adapter, the
 * queued evaluation of the patient for every program, and the stored verdict (a
 * GuidanceResponse written on the FHIR server). The real service runs in-process (HTTP API,
 * BullMQ workers at WORKER_CONCURRENCY, audit queue), auth off (development).
 *
 * Run three times: against the fast FHIR responder (bench/fhir-responder.ts, its own process, so
 * the adapter's cost is what is measured, and it counts the FHIR requests); the same with the
 * service split as it scales out, ROLE=api in this process and ROLE=worker in a second one
 * (bench/lib/worker-process.ts; CPU of both counted), so that the API and the workers use both
 * cores; then against the embedded FHIR server (reported separately: its linear-scan searches
 * dominate).
 *
 * Phases per run: warm-up; maximum rate (16 clients each pushing, waiting for its push's
 * verdicts and pushing again, for a fixed time; timed from the first push to the last
 * evaluation completed); FHIR requests per evaluation (responder counts
 * over the maximum-rate phase, audit queue drained); latency at half the maximum rate (pushes
 * sent on a fixed schedule, open loop; push-to-verdict = from sending the push to the BullMQ
 * completion event of its evaluation job, which comes after every program's GuidanceResponse
 * write).
 */
import { Queue, QueueEvents } from 'bullmq';
import { DateTime } from 'luxon';
import { loadProgramCatalog } from '../src/programs/load-programs.js';
import { evaluationJobId } from '../src/queue/job-ids.js';
import { EVALUATION_QUEUE } from '../src/queue/queues.js';
import { AUDIT_QUEUE } from '../src/queue/audit.js';
import { redisOptionsFromUrl, type RunningService } from '../src/service.js';
import type { ResponderStats } from './fhir-responder.js';
import {
  adjacentBaseline,
  baselineLabel,
  cpuMsSince,
  deleteKeys,
  fmt,
  newPrefix,
  percent,
  percentile,
  postFhir,
  redisUrl,
  sleep,
  startBenchService,
  until,
} from './lib/common.js';
import type { RawBullmq } from './lib/common.js';
import { cloneTemplate, demoResources, patientResources, putAll } from './lib/seed.js';
import { startOutsideWorld, type OutsideWorld } from './lib/world.js';
import { startWorkerProcess, type WorkerProcess } from './lib/worker-process.js';
import type { Bench, BenchRow } from './types.js';

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const GOAL_RATIO = 0.25;
const GOAL_P99_MS = 50;
const CLIENTS = 16;

interface Sizes {
  patients: number;
  /** Duration of the maximum-rate phase. */
  maxSeconds: number;
  latencySeconds: number;
}

interface Target {
  label: string;
  service: RunningService;
  world?: OutsideWorld;
  /** The workers' process, when the service runs as ROLE=api here and ROLE=worker there. */
  workers?: WorkerProcess;
  patients: string[];
}

type TargetKind = 'responder' | 'split' | 'embedded';

const now = (): number => performance.timeOrigin + performance.now();

/** The demo population, each demo patient copied `copies` times (all four outcomes represented). */
function population(copies: number): { shared: fhir4.Resource[]; patients: fhir4.Resource[]; patientIds: string[] } {
  const demo = demoResources(DateTime.now().setZone('Europe/Paris').toISODate() as string);
  const demoPatients = demo.filter((r) => r.resourceType === 'Patient').map((r) => r.id as string);
  const owned = new Set(demoPatients.flatMap((id) => patientResources(demo, id)));
  const shared = demo.filter((r) => !owned.has(r));
  const patients: fhir4.Resource[] = [];
  for (let n = 0; n < copies; n++) {
    for (const id of demoPatients) patients.push(...cloneTemplate(patientResources(demo, id), n));
  }
  const patientIds = patients.filter((r) => r.resourceType === 'Patient').map((r) => r.id as string);
  return { shared, patients, patientIds };
}

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

class Driver {
  /** When each push's evaluation job (all its programs) completed. */
  private readonly completions = new Map<string, number>();
  private readonly waiters = new Map<string, () => void>();
  private readonly events: QueueEvents;
  private readonly audit: Queue;
  private readonly evaluation: Queue;
  failed = 0;
  private n = 0;
  private readonly runId = Math.random().toString(36).slice(2, 8);

  constructor(
    private readonly target: Target,
    prefix: string,
    private readonly programs: string[],
  ) {
    const connection = redisOptionsFromUrl(redisUrl());
    this.events = new QueueEvents(EVALUATION_QUEUE, { connection, prefix });
    this.audit = new Queue(AUDIT_QUEUE, { connection, prefix });
    this.evaluation = new Queue(EVALUATION_QUEUE, { connection, prefix });
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

  async ready(): Promise<void> {
    await this.events.waitUntilReady();
  }

  /** One push; resolves with the key its evaluations complete under and when it was sent. */
  async push(): Promise<{ key: string; sent: number }> {
    const n = this.n++;
    const patientId = this.target.patients[n % this.target.patients.length] as string;
    const sent = now();
    const response = await postFhir(`${this.target.service.url}/fhir/Observation`, observation(this.runId, n, patientId));
    const body = response.body as fhir4.Observation;
    if (response.status !== 201) throw new Error(`push answered ${response.status}: ${JSON.stringify(body).slice(0, 300)}`);
    const trigger = `Observation/${body.id}${body.meta?.versionId ? `/_history/${body.meta.versionId}` : ''}`;
    return { key: evaluationJobId(this.programs, patientId, [trigger]), sent };
  }

  /** When the last evaluation of a push completed, once all have. */
  doneAt(key: string): number | undefined {
    return this.completions.get(key);
  }

  /** Resolves when every evaluation of the push has completed. */
  done(key: string): Promise<void> {
    if (this.doneAt(key) !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.waiters.set(key, resolve));
  }

  async allDone(keys: readonly string[], timeoutMs: number): Promise<void> {
    await until(async () => {
      if (this.failed) throw new Error(`${this.failed} evaluation(s) failed`);
      return keys.every((key) => this.doneAt(key) !== undefined);
    }, timeoutMs, 'evaluations to complete', 20);
  }

  async auditDrained(timeoutMs: number): Promise<void> {
    await until(async () => {
      const counts = await this.audit.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return Object.values(counts).every((c) => c === 0);
    }, timeoutMs, 'the audit queue to drain', 100);
  }

  async close(): Promise<void> {
    await Promise.all([this.events.close(), this.audit.close(), this.evaluation.close()]);
  }
}

/**
 * CLIENTS clients, each pushing, waiting for its push's verdicts, and pushing again, until
 * `seconds` have passed: enough evaluations in flight to keep every worker busy, with no
 * backlog to drain at the end (so the phase lasts what it says on a slow machine too).
 */
async function closedLoop(driver: Driver, seconds: number, maxPushes = Number.POSITIVE_INFINITY): Promise<{ keys: string[]; started: number }> {
  const keys: string[] = [];
  const started = now();
  const deadline = started + seconds * 1000;
  let pushes = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (now() < deadline && pushes < maxPushes) {
        pushes += 1;
        const { key } = await driver.push();
        keys.push(key);
        await driver.done(key);
      }
    }),
  );
  return { keys, started };
}

interface Measured {
  evaluationsPerSecond: number;
  evaluations: number;
  p50: number;
  p99: number;
  latencyRate: number;
  latencyPushes: number;
  stats?: ResponderStats;
  pushesMeasured: number;
  /** CPU of the adapter's processes (with the load generator) per evaluation, ms. */
  cpuMsPerEvaluation: number;
  /** Share of one core the adapter's processes used during the maximum-rate phase. */
  cores: number;
  /** Raw BullMQ measured just before the maximum-rate phase. */
  baseline: RawBullmq;
}

async function measure(target: Target, prefix: string, programs: string[], sizes: Sizes): Promise<Measured> {
  const driver = new Driver(target, prefix, programs);
  try {
    await driver.ready();
    // Warm-up: JIT, connections, the centre directory cache.
    const warm = await closedLoop(driver, 60, 40);
    await driver.allDone(warm.keys, 60_000);
    await driver.auditDrained(60_000);
    const baseline = await adjacentBaseline();
    await target.world?.resetStats();

    // Maximum rate.
    const cpu = process.cpuUsage();
    const workersCpu = target.workers?.cpuMs();
    const max = await closedLoop(driver, sizes.maxSeconds);
    await driver.allDone(max.keys, 600_000);
    const workersCpuNow = target.workers?.cpuMs();
    const cpuMs = cpuMsSince(cpu) + (workersCpu !== undefined && workersCpuNow !== undefined ? workersCpuNow - workersCpu : 0);
    const finished = Math.max(...max.keys.map((key) => driver.doneAt(key) as number));
    const evaluations = max.keys.length * programs.length;
    const evaluationsPerSecond = evaluations / ((finished - max.started) / 1000);
    await driver.auditDrained(120_000);
    const stats = await target.world?.stats();

    // Latency at half the maximum rate, open loop (BENCH_PUSH_LATENCY_RATE: at that many pushes/s
    // instead, to compare with a run whose maximum rate differed).
    await sleep(500);
    const rate = Number(process.env.BENCH_PUSH_LATENCY_RATE) > 0 ? Number(process.env.BENCH_PUSH_LATENCY_RATE) : evaluationsPerSecond / programs.length / 2;
    const count = Math.max(20, Math.round(rate * sizes.latencySeconds));
    const sends: Promise<{ key: string; sent: number }>[] = [];
    const start = now();
    for (let i = 0; i < count; i++) {
      const due = start + (i * 1000) / rate;
      const wait = due - now();
      if (wait > 1) await sleep(wait);
      sends.push(driver.push());
    }
    const sent = await Promise.all(sends);
    await driver.allDone(sent.map((s) => s.key), 600_000);
    const latencies = sent.map((s) => (driver.doneAt(s.key) as number) - s.sent).sort((a, b) => a - b);
    await driver.auditDrained(120_000);
    return {
      evaluationsPerSecond,
      evaluations,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      latencyRate: rate,
      latencyPushes: count,
      pushesMeasured: max.keys.length,
      cpuMsPerEvaluation: cpuMs / evaluations,
      cores: cpuMs / (finished - max.started),
      baseline,
      ...(stats ? { stats } : {}),
    };
  } finally {
    await driver.close();
  }
}

const READ_KINDS = ['read', 'search', 'batch-read'];
const WRITE_KINDS = ['update', 'create', 'conditional-create', 'transaction', 'batch-write'];

interface PerEvaluation {
  /** Requests reading the patient's data (the batch, and any other read or search). */
  reads: number;
  /** Centre directory searches (cached, shared by every patient), amortised. */
  directory: number;
  /** Writes of the verdict: GuidanceResponse, Task, or both in one batch. */
  verdictWrites: number;
  /** Provenance writes (the audit queue's). */
  provenance: number;
  detail: string;
  perPush: string;
}

function perEvaluation(stats: ResponderStats, pushes: number, evaluations: number): PerEvaluation {
  const result = { reads: 0, directory: 0, verdictWrites: 0, provenance: 0 };
  const detail: string[] = [];
  let auditEvents = 0;
  let ingestCreates = 0;
  for (const [key, count] of Object.entries(stats.byType)) {
    const [kind, type] = key.split(' ') as [string, string];
    if (kind === 'conditional-create' && type === 'Observation') ingestCreates += count;
    else if ((kind === 'update' || kind === 'batch-write') && type === 'AuditEvent') auditEvents += count;
    else {
      if (READ_KINDS.includes(kind)) {
        if (type === 'Organization' || type === 'PractitionerRole' || type === 'Practitioner') result.directory += count;
        else result.reads += count;
      } else if (WRITE_KINDS.includes(kind)) {
        // The audit worker's batches hold AuditEvents and Provenances: counted as Provenance writes.
        if (type.split('+').includes('Provenance')) result.provenance += count;
        else result.verdictWrites += count;
      }
      detail.push(`${key} ${fmt(count / evaluations, 2)}`);
    }
  }
  return {
    reads: result.reads / evaluations,
    directory: result.directory / evaluations,
    verdictWrites: result.verdictWrites / evaluations,
    provenance: result.provenance / evaluations,
    detail: detail.sort().join(', '),
    perPush: `conditional create of the Observation ${fmt(ingestCreates / pushes, 2)}, AuditEvent ${fmt(auditEvents / pushes, 2)}`,
  };
}

const LABELS: Record<TargetKind, string> = {
  responder: 'fast FHIR responder',
  split: 'fast FHIR responder; ROLE=api here, ROLE=worker in a second process',
  embedded: 'embedded FHIR server',
};

async function runTarget(kind: TargetKind, sizes: Sizes, programs: string[]): Promise<{ label: string; measured: Measured }> {
  const prefix = newPrefix(`push-${kind}`);
  const copies = Math.ceil(sizes.patients / 4);
  const { shared, patients, patientIds } = population(copies);
  let world: OutsideWorld | undefined;
  let service: RunningService | undefined;
  let workers: WorkerProcess | undefined;
  try {
    if (kind === 'embedded') {
      service = await startBenchService(prefix, {});
      await putAll(service.fhirBaseUrl, [...shared, ...patients]);
    } else {
      world = await startOutsideWorld();
      await world.seed([...shared, ...patients]);
      service = await startBenchService(prefix, { FHIR_BASE_URL: world.fhirBaseUrl, ...(kind === 'split' ? { ROLE: 'api' } : {}) });
      if (kind === 'split') {
        workers = await startWorkerProcess(prefix, { FHIR_BASE_URL: world.fhirBaseUrl, ...(process.env.WORKER_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY } : {}) });
      }
    }
    const label = LABELS[kind];
    const measured = await measure({ label, service, patients: patientIds, ...(world ? { world } : {}), ...(workers ? { workers } : {}) }, prefix, programs, sizes);
    return { label, measured };
  } finally {
    await workers?.stop();
    await service?.stop();
    await world?.stop();
    await deleteKeys(prefix);
  }
}

export const run: Bench = async ({ quick }) => {
  const catalog = loadProgramCatalog({ mappingsDir: 'mappings', profilesDir: 'profiles' });
  const programs = [...catalog.programs.keys()];
  const rows: BenchRow[] = [];
  const responderSizes: Sizes = quick ? { patients: 200, maxSeconds: 5, latencySeconds: 3 } : { patients: 2000, maxSeconds: 30, latencySeconds: 20 };
  const targets: [TargetKind, Sizes][] = [
    ['responder', responderSizes],
    ['split', responderSizes],
    ['embedded', quick ? { patients: 40, maxSeconds: 3, latencySeconds: 2 } : { patients: 200, maxSeconds: 15, latencySeconds: 10 }],
  ];
  const only = process.env.BENCH_PUSH_TARGETS?.split(',');
  for (const [kind, sizes] of targets) {
    if (only && !only.includes(kind)) continue;
    const { label, measured } = await runTarget(kind, sizes, programs);
    const baseline = measured.baseline;
    const ratio = measured.evaluationsPerSecond / baseline.jobsPerSecond;
    rows.push({
      name: `push mode (${label}): evaluations/s, POST /fhir/Observation to stored verdict (${fmt(measured.pushesMeasured)} pushes × ${programs.length} programs in ${fmt(sizes.maxSeconds)} s, ${CLIENTS} clients each waiting for its verdicts)`,
      value: `${fmt(measured.evaluationsPerSecond)} evaluations/s (${fmt(measured.cpuMsPerEvaluation, 2)} ms CPU/evaluation, ${fmt(measured.cores * 100, 0)} % of a core)`,
      baseline: `${baselineLabel(baseline)}, measured just before`,
      ratio: percent(ratio),
      goal: kind !== 'embedded' ? `>= ${GOAL_RATIO * 100} %` : '(reported separately)',
      met: kind !== 'embedded' ? ratio >= GOAL_RATIO : null,
    });
    rows.push({
      name: `push mode (${label}): push-to-verdict latency at ${Number(process.env.BENCH_PUSH_LATENCY_RATE) > 0 ? 'a set rate (BENCH_PUSH_LATENCY_RATE)' : 'half the maximum rate'} (${fmt(measured.latencyRate, 0)} pushes/s, ${fmt(measured.latencyPushes)} pushes)`,
      value: `p50 ${fmt(measured.p50, 1)} ms, p99 ${fmt(measured.p99, 1)} ms`,
      baseline: '',
      ratio: '',
      goal: kind !== 'embedded' ? `p99 < ${GOAL_P99_MS} ms` : '',
      met: kind !== 'embedded' ? measured.p99 < GOAL_P99_MS : null,
    });
    if (measured.stats) {
      const counts = perEvaluation(measured.stats, measured.pushesMeasured, measured.evaluations);
      const writes = counts.verdictWrites + counts.provenance;
      rows.push({
        name:
          `push mode (${label}): FHIR requests per evaluation, counted by the responder (${counts.detail}); ` +
          `the centre directory (cached) ${fmt(counts.directory, 3)}; per push, not counted here: ${counts.perPush}`,
        value: `${fmt(counts.reads, 2)} read, ${fmt(writes, 2)} write (verdict ${fmt(counts.verdictWrites, 2)} + Provenance ${fmt(counts.provenance, 2)})`,
        baseline: '',
        ratio: '',
        goal: '<= 1 read, <= 1 write',
        met: counts.reads <= 1.0001 && writes <= 1.0001,
      });
    }
  }
  return rows;
};
