/**
 * Benchmark 2, push mode end to end: an EHR's `POST /fhir/Observation` to the adapter, the
 * queued evaluation of the patient for every program, and the stored verdict (a
 * GuidanceResponse written on the FHIR server). The real service runs as users run it, the
 * production build in a process of its own (bench/lib/service-process.ts: HTTP API, BullMQ
 * workers at WORKER_CONCURRENCY, audit queue; auth off, development); its CPU is read from /proc.
 *
 * Run three times: against the fast FHIR responder (bench/fhir-responder.ts, its own process, so
 * the adapter's cost is what is measured, and it counts the FHIR requests); the same with the
 * service split as it scales out, ROLE=api in one process and ROLE=worker in a second one
 * (CPU of both counted), so that the API and the workers use both
 * cores; then against the embedded FHIR server (reported separately: an in-memory server for
 * demos and tests, whose own work dominates).
 *
 * The EHR (the load generator, and the observer of the evaluation queue's completion events)
 * runs in a process of its own (bench/lib/ehr-process.ts): in the adapter's process it took a
 * share of the event loop and core being measured, and its CPU counted as the adapter's.
 *
 * Phases per run: warm-up; maximum rate (16 clients each pushing, waiting for its push's
 * verdicts and pushing again, for a fixed time; timed from the first push to the last
 * evaluation completed); FHIR requests per evaluation (responder counts
 * over the maximum-rate phase, audit queue drained); latency at half the maximum rate (pushes
 * sent on a fixed schedule, open loop; push-to-verdict = from sending the push to the BullMQ
 * completion event of its evaluation job, which comes after every program's GuidanceResponse
 * write).
 */
import { Queue } from 'bullmq';
import { DateTime } from 'luxon';
import { loadProgramCatalog } from '../src/programs/load-programs.js';
import { AUDIT_QUEUE } from '../src/queue/audit.js';
import { redisOptionsFromUrl } from '../src/service.js';
import type { ResponderStats } from './fhir-responder.js';
import {
  adjacentBaseline,
  baselineLabel,
  deleteKeys,
  fmt,
  newPrefix,
  percent,
  percentile,
  redisUrl,
  sleep,
  until,
} from './lib/common.js';
import type { RawBullmq } from './lib/common.js';
import { cloneTemplate, demoResources, patientResources, putAll } from './lib/seed.js';
import { startOutsideWorld, type OutsideWorld } from './lib/world.js';
import { startEhrProcess } from './lib/ehr-process.js';
import { startServiceProcess, type ServiceProcess } from './lib/service-process.js';
import type { Bench, BenchRow } from './types.js';

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
  service: ServiceProcess;
  world?: OutsideWorld;
  /** The workers' process, when the service runs as ROLE=api in one process and ROLE=worker in another. */
  workers?: ServiceProcess;
  patients: string[];
}

type TargetKind = 'responder' | 'split' | 'embedded';

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

/** The audit queue drained: its Provenances and AuditEvents written, before the responder's counts are read. */
async function auditDrained(prefix: string, timeoutMs: number): Promise<void> {
  const audit = new Queue(AUDIT_QUEUE, { connection: redisOptionsFromUrl(redisUrl()), prefix });
  try {
    await until(async () => {
      const counts = await audit.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return Object.values(counts).every((c) => c === 0);
    }, timeoutMs, 'the audit queue to drain', 100);
  } finally {
    await audit.close();
  }
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
  /** CPU of the adapter's processes per evaluation, ms (the EHR, in a process of its own, not counted). */
  cpuMsPerEvaluation: number;
  /** Share of one core the adapter's processes used during the maximum-rate phase. */
  cores: number;
  /** Raw BullMQ measured just before the maximum-rate phase. */
  baseline: RawBullmq;
}

async function measure(target: Target, prefix: string, programs: string[], sizes: Sizes): Promise<Measured> {
  if (!target.service.url) throw new Error('the service has no HTTP API here');
  const ehr = await startEhrProcess({ serviceUrl: target.service.url, prefix, programs, patients: target.patients, clients: CLIENTS });
  try {
    // Warm-up: JIT, connections, the centre directory cache.
    await ehr.closedLoop(60, 40);
    await auditDrained(prefix, 60_000);
    const baseline = await adjacentBaseline();
    await target.world?.resetStats();

    // Maximum rate.
    const processes = [target.service, ...(target.workers ? [target.workers] : [])];
    const cpuBefore = processes.map((process) => process.cpuMs());
    const max = await ehr.closedLoop(sizes.maxSeconds);
    const cpuMs = processes.reduce((sum, process, index) => sum + ((process.cpuMs() ?? Number.NaN) - (cpuBefore[index] ?? Number.NaN)), 0);
    const evaluations = max.pushes * programs.length;
    const evaluationsPerSecond = evaluations / (max.elapsedMs / 1000);
    await auditDrained(prefix, 120_000);
    const stats = await target.world?.stats();

    // Latency at half the maximum rate, open loop (BENCH_PUSH_LATENCY_RATE: at that many pushes/s
    // instead, to compare with a run whose maximum rate differed).
    await sleep(500);
    const rate = Number(process.env.BENCH_PUSH_LATENCY_RATE) > 0 ? Number(process.env.BENCH_PUSH_LATENCY_RATE) : evaluationsPerSecond / programs.length / 2;
    const count = Math.max(20, Math.round(rate * sizes.latencySeconds));
    const { latencies } = await ehr.openLoop(rate, count);
    await auditDrained(prefix, 120_000);
    return {
      evaluationsPerSecond,
      evaluations,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      latencyRate: rate,
      latencyPushes: count,
      pushesMeasured: max.pushes,
      cpuMsPerEvaluation: cpuMs / evaluations,
      cores: cpuMs / max.elapsedMs,
      baseline,
      ...(stats ? { stats } : {}),
    };
  } finally {
    await ehr.stop();
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
    // The pushes' conditional creates, alone or merged with concurrent pushes' in one batch.
    if ((kind === 'conditional-create' || kind === 'batch-write') && type === 'Observation') ingestCreates += count;
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
    perPush: `conditional create of the Observation ${fmt(ingestCreates / pushes, 2)} (requests: alone, or one batch for concurrent pushes), AuditEvent ${fmt(auditEvents / pushes, 2)}`,
  };
}

const LABELS: Record<TargetKind, string> = {
  responder: 'fast FHIR responder',
  split: 'fast FHIR responder; ROLE=api and ROLE=worker in two processes',
  embedded: 'embedded FHIR server',
};

async function runTarget(kind: TargetKind, sizes: Sizes, programs: string[]): Promise<{ label: string; measured: Measured }> {
  const prefix = newPrefix(`push-${kind}`);
  const copies = Math.ceil(sizes.patients / 4);
  const { shared, patients, patientIds } = population(copies);
  let world: OutsideWorld | undefined;
  let service: ServiceProcess | undefined;
  let workers: ServiceProcess | undefined;
  try {
    if (kind === 'embedded') {
      service = await startServiceProcess(prefix, {});
      await putAll(service.fhirBaseUrl, [...shared, ...patients]);
    } else {
      world = await startOutsideWorld();
      await world.seed([...shared, ...patients]);
      service = await startServiceProcess(prefix, { FHIR_BASE_URL: world.fhirBaseUrl, ...(kind === 'split' ? { ROLE: 'api' } : {}) });
      if (kind === 'split') {
        workers = await startServiceProcess(prefix, { ROLE: 'worker', FHIR_BASE_URL: world.fhirBaseUrl, ...(process.env.WORKER_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY } : {}) });
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
