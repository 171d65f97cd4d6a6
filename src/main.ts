/**
 * Process entry point: `node dist/src/main.js [--demo]`. Reads the environment, starts the
 * service, optionally loads demo data through the service's own API, and drains on
 * SIGTERM/SIGINT (HTTP stops accepting, workers finish running jobs, then exit).
 */
import { DateTime } from 'luxon';
import { loadConfig } from './config/config.js';
import { demoBundle } from './demo/demo-data.js';
import { createLogger } from './infra/logger.js';
import { startService, type RunningService } from './service.js';

async function main(): Promise<void> {
  const demo = process.argv.includes('--demo');
  const config = loadConfig({ ...process.env, ...(demo ? { DEMO_DATA: 'true' } : {}) });
  const log = createLogger(config.LOG_LEVEL);

  // Handlers first: a SIGTERM during start-up stops the service once it is up, drained as usual.
  let service: RunningService | undefined;
  let stopRequested: string | undefined;
  let stopping = false;
  const stop = (signal: string): void => {
    if (!service) {
      stopRequested = signal;
      return;
    }
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: draining HTTP and workers');
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: { message: (error as Error).message } }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  service = await startService(config, log);
  if (stopRequested) {
    stop(stopRequested);
    return;
  }

  if (config.DEMO_DATA && service.url) {
    const today = DateTime.now().setZone(config.TZ_DEFAULT).toISODate() as string;
    const response = await fetch(`${service.url}/fhir`, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify(demoBundle(today)),
    });
    if (!response.ok) throw new Error(`Demo data was refused: HTTP ${response.status} ${await response.text()}`);
    log.info('demo data loaded: a participating centre, its GP and 4 patients (FNMF eligible, undetermined, not eligible; REDIAB eligible)');
  }
  const lines = [
    `forfait-fhir ${service.url ? `listening on ${service.url}` : 'worker running'} (role ${config.ROLE})`,
    `  FHIR server of record: ${service.fhirBaseUrl}${service.embeddedFhir ? ' (embedded, in memory)' : ''}`,
    `  Redis: ${service.redisUrl.replace(/\/\/[^@]*@/, '//***@')}`,
  ];
  if (service.url) {
    lines.push(`  CapabilityStatement: ${service.url}/fhir/metadata`, `  Queues: ${service.url}/admin/queues   Metrics: ${service.url}/metrics`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`forfait-fhir failed to start: ${(error as Error).message}\n`);
  process.exit(1);
});
