/**
 * The Redis locks (src/infra/redis-lock.ts) against a real Redis: RedisLocks.withLock and the
 * batch writers' tryLockMany take and release through the same release command (EVALSHA), and
 * a release never removes a lock another holder took.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLocks, tryLockMany } from '../../src/infra/redis-lock.js';
import { redisOptionsFromUrl } from '../../src/service.js';

let redis: Redis;
const prefix = `locks-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  // A connection of its own: the release command is defined on it by the first lock (never SCRIPT FLUSH here: other tests share this Redis).
  redis = new Redis(redisOptionsFromUrl(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'));
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

describe('Redis locks', () => {
  it('withLock holds the lock while its work runs and releases it after', async () => {
    const locks = new RedisLocks(redis, prefix);
    const held = await locks.withLock('a', async () => redis.exists(`${prefix}:lock:a`));
    expect(held).toBe(1);
    expect(await redis.exists(`${prefix}:lock:a`)).toBe(0);
  });

  it('tryLockMany takes the free locks only, and its release removes those and no other', async () => {
    await redis.set(`${prefix}:lock:busy`, 'someone-else', 'PX', 30_000);
    const locks = await tryLockMany(redis, prefix, ['x', 'y', 'busy']);
    expect([...locks.taken].sort()).toEqual(['x', 'y']);
    expect(await redis.exists(`${prefix}:lock:x`, `${prefix}:lock:y`)).toBe(2);
    await locks.release();
    expect(await redis.exists(`${prefix}:lock:x`, `${prefix}:lock:y`)).toBe(0);
    expect(await redis.get(`${prefix}:lock:busy`), 'another holder keeps its lock').toBe('someone-else');
  });

  it('a lock that expired and was taken by another holder is not released by the first', async () => {
    const locks = await tryLockMany(redis, prefix, ['z'], 50);
    await new Promise((resolve) => setTimeout(resolve, 120));
    await redis.set(`${prefix}:lock:z`, 'next-holder', 'PX', 30_000);
    await locks.release();
    expect(await redis.get(`${prefix}:lock:z`)).toBe('next-holder');
  });
});
