/**
 * Progress of a `$screen`, kept in Redis: a hash of metadata and a hash of per-patient
 * outcomes. Writing an outcome is an HSET, so a retried or re-run child evaluation never
 * counts twice. Holds server ids and outcomes only, never patient data.
 */
import type { Redis } from 'ioredis';

export type ScreenState = 'queued' | 'listing' | 'running' | 'completed' | 'failed';

export interface ScreenStatus {
  id: string;
  programId: string;
  asOf: string;
  state: ScreenState;
  createdAt: string;
  /** The centre of the client that asked (`system|value`); only that centre reads it. */
  centre?: string;
  total?: number;
  done: number;
  counts: Record<string, number>;
  error?: string;
  /** `bulk`: a screening of Bulk Data NDJSON (its progress and result are kept here, not per patient). */
  kind?: 'bulk';
  /** Bulk: the phase and what the server's X-Progress says while it runs. */
  phase?: string;
  /** Bulk: input lines read so far. */
  resources?: number;
  /** Bulk: files and figures of the finished run (file names and counts only). */
  result?: BulkStoredResult;
}

/** What a finished bulk screening keeps: enough to build its manifest, nothing about a patient. */
export interface BulkStoredResult {
  transactionTime: string;
  request: string;
  output: { type: string; file: string; count: number }[];
  errors: { type: string; file: string; count: number }[];
  counts: Record<string, number>;
  patients: number;
  resources: number;
  tasksWritten: number;
}

const OUTCOMES = ['eligible', 'not-eligible', 'undetermined', 'error'] as const;

export class ScreeningStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    /** Seconds a finished screening stays readable. */
    private readonly retentionSeconds = 7 * 24 * 3600,
  ) {}

  private key(id: string, part: 'meta' | 'results'): string {
    return `${this.prefix}:screen:${id}:${part}`;
  }

  async create(id: string, programId: string, asOf: string, createdAt: string, centre?: string, kind?: 'bulk'): Promise<void> {
    await this.redis
      .multi()
      .hset(this.key(id, 'meta'), { programId, asOf, state: 'queued', createdAt, ...(centre ? { centre } : {}), ...(kind ? { kind } : {}) })
      .expire(this.key(id, 'meta'), this.retentionSeconds)
      .exec();
  }

  async setState(id: string, state: ScreenState, extra: { total?: number; error?: string } = {}): Promise<void> {
    const fields: Record<string, string> = { state };
    if (extra.total !== undefined) fields['total'] = String(extra.total);
    if (extra.error !== undefined) fields['error'] = extra.error;
    await this.redis.hset(this.key(id, 'meta'), fields);
  }

  /** Records one patient's outcome; marks the screening completed when all are in. */
  async recordOutcome(id: string, patientId: string, outcome: string): Promise<void> {
    const results = this.key(id, 'results');
    const [, , [, done], [, total]] = (await this.redis
      .multi()
      .hset(results, patientId, outcome)
      .expire(results, this.retentionSeconds)
      .hlen(results)
      .hget(this.key(id, 'meta'), 'total')
      .exec()) as [unknown, unknown, [unknown, number], [unknown, string | null]];
    if (total !== null && done >= Number(total)) await this.setState(id, 'completed');
  }

  /** Bulk: progress as counts (one HSET, at most a few per second). */
  async setBulkProgress(id: string, progress: { phase: string; resources: number; evaluated: number; patients?: number; counts: Record<string, number>; exportProgress?: string }): Promise<void> {
    await this.redis.hset(this.key(id, 'meta'), {
      state: 'running',
      phase: progress.exportProgress ? `${progress.phase} (${progress.exportProgress})` : progress.phase,
      resources: String(progress.resources),
      done: String(progress.evaluated),
      counts: JSON.stringify(progress.counts),
      ...(progress.patients !== undefined ? { total: String(progress.patients) } : {}),
    });
  }

  /** Bulk: the finished run; the manifest is built from it when asked. */
  async completeBulk(id: string, result: BulkStoredResult): Promise<void> {
    await this.redis.hset(this.key(id, 'meta'), {
      state: 'completed',
      phase: 'completed',
      result: JSON.stringify(result),
      resources: String(result.resources),
      done: String(result.patients),
      total: String(result.patients),
      counts: JSON.stringify(result.counts),
    });
  }

  async get(id: string): Promise<ScreenStatus | undefined> {
    const meta = await this.redis.hgetall(this.key(id, 'meta'));
    if (!meta['programId']) return undefined;
    // What both kinds of screening store the same way.
    const common = {
      id,
      programId: meta['programId'],
      asOf: meta['asOf'] ?? '',
      state: (meta['state'] ?? 'queued') as ScreenState,
      createdAt: meta['createdAt'] ?? '',
      ...(meta['centre'] ? { centre: meta['centre'] } : {}),
      ...(meta['total'] !== undefined ? { total: Number(meta['total']) } : {}),
      ...(meta['error'] ? { error: meta['error'] } : {}),
    };
    if (meta['kind'] === 'bulk') {
      return {
        ...common,
        kind: 'bulk',
        done: Number(meta['done'] ?? 0),
        counts: meta['counts'] ? (JSON.parse(meta['counts']) as Record<string, number>) : Object.fromEntries(OUTCOMES.map((o) => [o, 0])),
        ...(meta['phase'] ? { phase: meta['phase'] } : {}),
        resources: Number(meta['resources'] ?? 0),
        ...(meta['result'] ? { result: JSON.parse(meta['result']) as BulkStoredResult } : {}),
      };
    }
    const outcomes = await this.redis.hvals(this.key(id, 'results'));
    const counts: Record<string, number> = Object.fromEntries(OUTCOMES.map((o) => [o, 0]));
    for (const outcome of outcomes) counts[outcome] = (counts[outcome] ?? 0) + 1;
    return {
      ...common,
      done: outcomes.length,
      counts,
    };
  }
}
