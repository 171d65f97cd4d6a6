import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Three projects sharing one run:
 * - unit: test/unit, no Redis, default (short) timeouts;
 * - integration: every other `*.test.ts` under test/, with test/global-setup.ts making sure a
 *   Redis answers at REDIS_URL (starting a local redis-server if needed), and generous
 *   timeouts for real Redis / FHIR servers over HTTP.
 * - faults: test/faults, the fault-injection suite (real processes spawned and killed, see
 *   test/faults/harness.ts), files one at a time; `npm run test:faults` runs it alone.
 * Vitest runs a project's global setup only when that project has files to run, so
 * `vitest run test/unit` never touches Redis.
 */
export default defineConfig({
  test: {
    pool: 'forks',
    // Global teardown stops the redis-server it may have started (SIGTERM, then SIGKILL after 5 s).
    teardownTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, 'test/unit/**', 'test/faults/**'],
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'faults',
          include: ['test/faults/**/*.test.ts'],
          globalSetup: ['test/global-setup.ts'],
          // Each file spawns its own processes (API, workers, gateway, a Redis of its own): one
          // file at a time, after the other projects (group 1), on a 2-core machine; generous
          // timeouts (never timing assertions).
          fileParallelism: false,
          sequence: { groupOrder: 1 },
          testTimeout: 600_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
