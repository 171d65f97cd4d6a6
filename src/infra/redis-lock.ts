/**
 * A short mutual-exclusion lock in Redis, shared by every process of a deployment: `SET NX PX`
 * to take it, a compare-and-delete script to release only our own (it may have expired and been
 * taken by another holder). For read-then-write sequences on the FHIR server that no FHIR
 * precondition can guard (creating a resource with a client-assigned id only if it is absent).
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { FhirServerError } from '../fhir/fhir-server.port.js';

export interface Locks {
  /** Runs `work` holding `name`; waits for it at most `waitMs`, then fails transiently (503, retried). */
  withLock<T>(name: string, work: () => Promise<T>, options?: { waitMs?: number; busyMessage?: string }): Promise<T>;
}

const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export class RedisLocks implements Locks {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlMs = 30_000,
  ) {}

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
      await this.redis.eval(RELEASE, 1, key, token);
    }
  }
}

/** The lock serialising the GP's enrolment-proposal Task of one patient and program (evaluation vs `$decline`). */
export const proposalLockName = (programId: string, patientId: string): string => `proposal:${programId}:${patientId}`;
