/**
 * Vitest global setup of the integration project: makes sure a Redis answers at
 * REDIS_URL (default redis://127.0.0.1:6379), starting a local redis-server when that
 * loopback address has none, and stops it at teardown if it was started here.
 * Test files read the URL from process.env.REDIS_URL: Vitest builds the workers'
 * environment from process.env after global setup has run.
 */
import { ensureRedis, type EnsuredRedis } from '../src/infra/local-redis.js';

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

let redis: EnsuredRedis | undefined;

export async function setup(): Promise<void> {
  const url = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  redis = await ensureRedis(url, {
    log: (msg) => console.log(`[global-setup] ${msg}`),
  });
  process.env.REDIS_URL = redis.url;
}

export async function teardown(): Promise<void> {
  await redis?.stop();
  redis = undefined;
}
