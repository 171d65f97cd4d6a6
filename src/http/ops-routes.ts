/**
 * The operations endpoints every process serves: `/healthz` (the process runs), `/readyz`
 * (Redis and the FHIR server answer; 503 with an OperationOutcome otherwise) and `/metrics`
 * (Prometheus). The API mounts them in its app; a worker-only process (ROLE=worker) serves
 * them alone on METRICS_PORT (`createOpsApp`), so that its evaluation and claim metrics, which
 * live in its own registry, can be scraped and its readiness probed.
 */
import express, { type Express, type Router } from 'express';
import type { Redis } from 'ioredis';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import type { Metrics } from '../infra/metrics.js';
import { operationOutcome } from './outcomes.js';
import { sendFhir } from './send-fhir.js';

export interface OpsDeps {
  redis: Pick<Redis, 'ping'>;
  fhir: Pick<FhirServer, 'ping'>;
  metrics: Pick<Metrics, 'registry'>;
}

export function mountOpsRoutes(app: Router, deps: OpsDeps): void {
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const checks = await Promise.allSettled([deps.redis.ping(), deps.fhir.ping()]);
    const [redis, fhir] = checks.map((check) => (check.status === 'fulfilled' ? 'ok' : 'unavailable'));
    if (redis === 'ok' && fhir === 'ok') {
      res.json({ status: 'ready', redis, fhir });
      return;
    }
    sendFhir(res, 503, operationOutcome([{ code: 'transient', diagnostics: `Not ready: redis ${redis}, FHIR server ${fhir}` }]));
  });

  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}

/** A worker process's HTTP app: the operations endpoints only; anything else is a 404 OperationOutcome. */
export function createOpsApp(deps: OpsDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  mountOpsRoutes(app, deps);
  app.use((req, res) => {
    sendFhir(res, 404, operationOutcome([{ code: 'not-found', diagnostics: `${req.method} ${req.path} is not served by a worker process (ROLE=worker): /healthz, /readyz and /metrics only` }]));
  });
  return app;
}
