import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Two projects sharing one run:
 * - unit: test/unit, no Redis, default (short) timeouts;
 * - integration: every other `*.test.ts` under test/, with test/global-setup.ts making sure a
 *   Redis answers at REDIS_URL (starting a local redis-server if needed), and generous
 *   timeouts for real Redis / FHIR servers over HTTP.
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
          exclude: [...configDefaults.exclude, 'test/unit/**'],
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
