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

  async create(id: string, programId: string, asOf: string, createdAt: string, centre?: string): Promise<void> {
    await this.redis
      .multi()
      .hset(this.key(id, 'meta'), { programId, asOf, state: 'queued', createdAt, ...(centre ? { centre } : {}) })
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

  async get(id: string): Promise<ScreenStatus | undefined> {
    const meta = await this.redis.hgetall(this.key(id, 'meta'));
    if (!meta['programId']) return undefined;
    const outcomes = await this.redis.hvals(this.key(id, 'results'));
    const counts: Record<string, number> = Object.fromEntries(OUTCOMES.map((o) => [o, 0]));
    for (const outcome of outcomes) counts[outcome] = (counts[outcome] ?? 0) + 1;
    return {
      id,
      programId: meta['programId'],
      asOf: meta['asOf'] ?? '',
      state: (meta['state'] ?? 'queued') as ScreenState,
      createdAt: meta['createdAt'] ?? '',
      ...(meta['centre'] ? { centre: meta['centre'] } : {}),
      ...(meta['total'] !== undefined ? { total: Number(meta['total']) } : {}),
      done: outcomes.length,
      counts,
      ...(meta['error'] ? { error: meta['error'] } : {}),
    };
  }
}
