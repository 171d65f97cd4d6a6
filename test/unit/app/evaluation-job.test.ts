/**
 * One evaluation job evaluates a push for every program (src/queue/workers.ts runEvaluationJob):
 * its result, when it is retried, when it fails at once, what its log keeps and what the metrics
 * count. The eligibility service is replaced by a scripted one: what is tested here is the job's
 * handling of each program's outcome, not the evaluation (tested with the real service in
 * test/integration).
 */
import { UnrecoverableError } from 'bullmq';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { EligibilityService, RecordedVerdict } from '../../../src/app/eligibility.service.js';
import { FhirServerError } from '../../../src/fhir/fhir-server.port.js';
import { PatientNotFoundError } from '../../../src/fhir/patient-record.js';
import { createMetrics } from '../../../src/infra/metrics.js';
import { programsOfJob, type EvaluationJobData } from '../../../src/queue/queues.js';
import type { ScreeningStore } from '../../../src/queue/screening-store.js';
import { runEvaluationJob } from '../../../src/queue/workers.js';
import { evaluationJobId } from '../../../src/queue/job-ids.js';

type Script = Record<string, 'eligible' | 'not-eligible' | Error>;

function recorded(programId: string, outcome: 'eligible' | 'not-eligible'): RecordedVerdict {
  return {
    verdict: { outcome } as RecordedVerdict['verdict'],
    guidanceResponse: `GuidanceResponse/${programId}-gr`,
    guidanceResponseWritten: true,
    ...(outcome === 'eligible' ? { task: `Task/${programId}-task` } : {}),
    taskWritten: outcome === 'eligible',
  };
}

function setUp(script: Script) {
  const calls: string[] = [];
  const service = {
    async evaluateAndRecord(programId: string) {
      calls.push(programId);
      const step = script[programId];
      if (step instanceof Error) throw step;
      return recorded(programId, step ?? 'not-eligible');
    },
  } as unknown as EligibilityService;
  const outcomes: [string, string, string][] = [];
  const screenings = {
    async recordOutcome(screenId: string, patientId: string, outcome: string) {
      outcomes.push([screenId, patientId, outcome]);
    },
  } as unknown as ScreeningStore;
  const metrics = createMetrics();
  const logs: string[] = [];
  const deps = { service, screenings, metrics, log: pino({ level: 'silent' }) };
  const job = (data: EvaluationJobData, attemptsMade = 0) => ({
    id: 'ev.test',
    data,
    attemptsMade,
    opts: { attempts: 10 },
    async log(row: string) {
      logs.push(row);
      return logs.length;
    },
  });
  const counted = async (): Promise<Record<string, number>> => {
    const metric = (await metrics.registry.getSingleMetric('forfait_evaluations_total')?.get()) ?? { values: [] };
    return Object.fromEntries(metric.values.map((v) => [`${v.labels['program']} ${v.labels['outcome']}`, v.value]));
  };
  return { deps, job, calls, outcomes, logs, counted };
}

const data = (programIds: string[], extra: Partial<EvaluationJobData> = {}): EvaluationJobData => ({ programIds, patientId: 'p1', trigger: ['Observation/o1/_history/1'], ...extra });

describe('one evaluation job for every program of a push', () => {
  it('evaluates each program and returns their results in the job order; the metrics count each program once', async () => {
    const { deps, job, calls, counted } = setUp({ a: 'eligible', b: 'not-eligible' });
    const result = await runEvaluationJob(deps, job(data(['a', 'b'])));
    expect(calls.sort()).toEqual(['a', 'b']);
    expect(result).toEqual({
      evaluations: [
        { programId: 'a', outcome: 'eligible', guidanceResponse: 'GuidanceResponse/a-gr', task: 'Task/a-task' },
        { programId: 'b', outcome: 'not-eligible', guidanceResponse: 'GuidanceResponse/b-gr' },
      ],
    });
    expect(await counted()).toEqual({ 'a eligible': 1, 'b not-eligible': 1 });
  });

  it('one program failing transiently retries the whole job, and counts nothing until the job is settled', async () => {
    const { deps, job, logs, counted } = setUp({ a: 'eligible', b: new FhirServerError('FHIR server unavailable', 503, undefined, true) });
    const error = await runEvaluationJob(deps, job(data(['a', 'b']), 0)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FhirServerError);
    expect(error).not.toBeInstanceOf(UnrecoverableError);
    expect(logs).toEqual([]);
    expect(await counted()).toEqual({});
  });

  it('a transient failure at the last attempt fails the job, keeps an OperationOutcome naming the program, and counts both programs', async () => {
    const { deps, job, logs, counted } = setUp({ a: 'eligible', b: new FhirServerError('FHIR server unavailable', 503, undefined, true) });
    await expect(runEvaluationJob(deps, job(data(['a', 'b']), 9))).rejects.toThrow('FHIR server unavailable');
    const outcome = JSON.parse(logs[0] as string) as fhir4.OperationOutcome;
    expect(outcome.issue).toEqual([{ severity: 'error', code: 'transient', diagnostics: 'b: FHIR server unavailable' }]);
    expect(await counted()).toEqual({ 'a eligible': 1, 'b error': 1 });
  });

  it('a permanent failure of one program fails the job at once (no retry of the other), the other program counted as evaluated', async () => {
    const { deps, job, logs, counted } = setUp({ a: 'eligible', b: new FhirServerError('GuidanceResponse refused', 422, undefined, false) });
    const error = await runEvaluationJob(deps, job(data(['a', 'b']))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnrecoverableError);
    expect((error as Error).message).toBe('GuidanceResponse refused');
    expect(JSON.parse(logs[0] as string).issue[0].diagnostics).toBe('b: GuidanceResponse refused');
    expect(await counted()).toEqual({ 'a eligible': 1, 'b error': 1 });
  });

  it('a transient and a permanent failure together: retried (the transient one may still succeed)', async () => {
    const { deps, job, logs } = setUp({ a: new FhirServerError('timeout', 0, undefined, true), b: new UnrecoverableError('never') });
    const error = await runEvaluationJob(deps, job(data(['a', 'b']))).catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(UnrecoverableError);
    expect(logs).toEqual([]);
  });

  it('a patient the FHIR server does not have: every program fails permanently, one not-found issue per program', async () => {
    const { deps, job, logs, counted } = setUp({ a: new PatientNotFoundError('Patient/p1 not found'), b: new PatientNotFoundError('Patient/p1 not found') });
    const error = await runEvaluationJob(deps, job(data(['a', 'b']))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnrecoverableError);
    expect((error as Error).message).toBe('a: Patient/p1 not found; b: Patient/p1 not found');
    const outcome = JSON.parse(logs[0] as string) as fhir4.OperationOutcome;
    expect(outcome.issue.map((issue) => [issue.code, issue.diagnostics])).toEqual([
      ['not-found', 'a: Patient/p1 not found'],
      ['not-found', 'b: Patient/p1 not found'],
    ]);
    expect(await counted()).toEqual({ 'a error': 1, 'b error': 1 });
  });

  it('a job naming one program (a $screen child, or a job queued before programIds) keeps its outcome unprefixed and records the screening outcome', async () => {
    const { deps, job, outcomes, logs } = setUp({ a: 'eligible', b: new PatientNotFoundError('Patient/p1 not found') });
    expect(await runEvaluationJob(deps, job({ programId: 'a', patientId: 'p1', trigger: ['screen/s1'], screenId: 's1' }))).toEqual({
      evaluations: [{ programId: 'a', outcome: 'eligible', guidanceResponse: 'GuidanceResponse/a-gr', task: 'Task/a-task' }],
    });
    await expect(runEvaluationJob(deps, job({ programId: 'b', patientId: 'p1', trigger: ['screen/s1'], screenId: 's1' }))).rejects.toThrow(UnrecoverableError);
    expect(JSON.parse(logs[0] as string).issue[0].diagnostics).toBe('Patient/p1 not found');
    expect(outcomes).toEqual([
      ['s1', 'p1', 'eligible'],
      ['s1', 'p1', 'error'],
    ]);
  });

  it('a job naming no program fails at once', async () => {
    const { deps, job, calls } = setUp({});
    await expect(runEvaluationJob(deps, job({ patientId: 'p1', trigger: [] }))).rejects.toThrow(UnrecoverableError);
    expect(calls).toEqual([]);
  });
});

describe('evaluation job ids and data', () => {
  it('one id for the programs in any order; another for another program set or trigger', () => {
    const id = evaluationJobId(['rediab', 'fnmf-prediabetes'], 'p1', ['Observation/o1/_history/1']);
    expect(id).toMatch(/^ev\.fnmf-prediabetes\+rediab\.p1\.[A-Za-z0-9_-]{22}$/);
    expect(evaluationJobId(['fnmf-prediabetes', 'rediab'], 'p1', ['Observation/o1/_history/1'])).toBe(id);
    expect(evaluationJobId(['fnmf-prediabetes'], 'p1', ['Observation/o1/_history/1'])).not.toBe(id);
    expect(evaluationJobId(['fnmf-prediabetes', 'rediab'], 'p1', ['Observation/o1/_history/2'])).not.toBe(id);
  });

  it('programsOfJob reads programIds, else the single programId of older jobs', () => {
    expect(programsOfJob({ programIds: ['a', 'b'] })).toEqual(['a', 'b']);
    expect(programsOfJob({ programId: 'a' })).toEqual(['a']);
    expect(programsOfJob({})).toEqual([]);
  });
});
