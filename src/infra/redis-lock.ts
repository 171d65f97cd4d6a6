/**
 * A short mutual-exclusion lock in Redis, shared by every process of a deployment: `SET NX PX`
 * to take it, a compare-and-delete script to release only our own (it may have expired and been
 * taken by another holder). For read-then-write sequences on the FHIR server that no FHIR
 * precondition can guard (creating a resource with a client-assigned id only if it is absent).
 */
import { randomUUID } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import { FhirServerError } from '../fhir/fhir-server.port.js';

export interface Locks {
  /** Runs `work` holding `name`; waits for it at most `waitMs`, then fails transiently (503, retried). */
  withLock<T>(name: string, work: () => Promise<T>, options?: { waitMs?: number; busyMessage?: string }): Promise<T>;
}

const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/** A connection that knows the release script by its SHA (EVALSHA: the script's text is not sent with every release). */
type ReleasingRedis = Redis & { releaseLock(key: string, token: string): Promise<number> };

function withReleaseCommand(redis: Redis): ReleasingRedis {
  // ioredis sends EVALSHA, and EVAL once when the server does not know the script yet.
  if (!('releaseLock' in redis)) redis.defineCommand('releaseLock', { numberOfKeys: 1, lua: RELEASE });
  return redis as ReleasingRedis;
}

export class RedisLocks implements Locks {
  private readonly redis: ReleasingRedis;

  constructor(
    redis: Redis,
    private readonly prefix: string,
    private readonly ttlMs = 30_000,
  ) {
    this.redis = withReleaseCommand(redis);
  }

  async withLock<T>(name: string, work: () => Promise<T>, options: { waitMs?: number; busyMessage?: string } = {}): Promise<T> {
    const key = `${this.prefix}:lock:${name}`;
    const token = randomUUID();
    const deadline = Date.now() + (options.waitMs ?? 10_000);
    while ((await this.redis.set(key, token, 'PX', this.ttlMs, 'NX')) !== 'OK') {
      if (Date.now() > deadline) throw new FhirServerError(options.busyMessage ?? 'The resource is being written by another request; try again', 503, undefined, true);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    try {
      return await work();
    } finally {
      await this.redis.releaseLock(key, token);
    }
  }
}

/**
 * Takes, without waiting, every lock of `names` that is free (one pipelined `SET NX PX` each):
 * the names taken, and `release` for them. For batch writers that skip what another writer
 * holds (that writer finishes the work).
 */
export async function tryLockMany(redis: Redis, prefix: string, names: readonly string[], ttlMs = 30_000): Promise<{ taken: Set<string>; release(): Promise<void> }> {
  const token = randomUUID();
  const pipeline = redis.pipeline();
  for (const name of names) pipeline.set(`${prefix}:lock:${name}`, token, 'PX', ttlMs, 'NX');
  const answers = (await pipeline.exec()) ?? [];
  const taken = new Set(names.filter((_, index) => answers[index]?.[1] === 'OK'));
  return {
    taken,
    async release() {
      if (taken.size === 0) return;
      // The same release command as RedisLocks (EVALSHA; ioredis loads the script for a pipeline that needs it).
      const releasing = withReleaseCommand(redis).pipeline() as ChainableCommander & { releaseLock(key: string, token: string): ChainableCommander };
      for (const name of taken) releasing.releaseLock(`${prefix}:lock:${name}`, token);
      await releasing.exec();
    },
  };
}

/** The lock serialising the GP's enrolment-proposal Task of one patient and program (evaluation vs `$decline`). */
export const proposalLockName = (programId: string, patientId: string): string => `proposal:${programId}:${patientId}`;
