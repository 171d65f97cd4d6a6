/**
 * Composition root: builds the whole service from a Config. `main.ts` runs it as a process;
 * integration tests start it in-process on random ports against real Redis and the embedded
 * FHIR server over HTTP.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { EligibilityService } from './app/eligibility.service.js';
import { EnrolmentService } from './app/enrolment.service.js';
import { IngestionService } from './app/ingestion.service.js';
import { authConfigured, rateLimitPerMinute, type Config } from './config/config.js';
import { createAuthenticator, parseCentreMap, type Authenticator } from './http/auth.js';
import { CentreAccess } from './app/centre-access.js';
import { startAudit } from './queue/audit.js';
import { AuditSink, ProvenanceWriter } from './app/audit.service.js';
import { hostname } from 'node:os';
import { smartBackendFromFiles } from './infra/smart-backend.js';
import { loadMtlsMaterial } from './infra/mtls.js';
import { CentreDirectoryCache } from './fhir/centre-directory.js';
import { CoalescingFhirServer } from './fhir/coalescing-fhir-server.js';
import { HttpFhirServer } from './fhir/fhir-server.adapter.js';
import { startEmbeddedFhirServer, type EmbeddedFhirServer } from './fhir-server/embedded-server.js';
import { createApp } from './http/app.js';
import { createOpsApp } from './http/ops-routes.js';
import { checkMaxmemoryPolicy, ensureRedis, type EnsuredRedis } from './infra/local-redis.js';
import { createMetrics } from './infra/metrics.js';
import { loadProgramCatalog } from './programs/load-programs.js';
import { initValidation } from './fhir/validation.js';
import { createQueues, producerConnection } from './queue/queues.js';
import { ScreeningStore } from './queue/screening-store.js';
import { BulkScreening } from './app/bulk-screening.js';
import os from 'node:os';
import path from 'node:path';
import { startWorkers } from './queue/workers.js';
import { startLifecycle } from './queue/lifecycle.js';
import { startClaims } from './queue/claims.js';
import { BillingService } from './app/billing.service.js';
import { HttpInsurerGateway } from './gateway/insurer-gateway.adapter.js';
import { loadMeasures, ReportsService } from './app/reports.service.js';
import { RedisLocks } from './infra/redis-lock.js';

export interface RunningService {
  /** Adapter base URL (http://host:port), when the role serves the API. */
  url?: string;
  /** A worker-only process's /healthz, /readyz and /metrics (http://host:port), when METRICS_PORT is set. */
  opsUrl?: string;
  fhirBaseUrl: string;
  embeddedFhir?: EmbeddedFhirServer;
  redisUrl: string;
  /** Graceful stop: HTTP stops accepting, workers finish running jobs, connections close. */
  stop(): Promise<void>;
}

/** Seconds the centre directory is cached (adapter-side ingestion of directory resources invalidates it). */
const DIRECTORY_TTL_MS = 60_000;

/** Connection settings both ioredis and BullMQ accept. */
export interface RedisSettings {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  tls?: Record<string, never>;
  maxRetriesPerRequest: null;
}

export function redisOptionsFromUrl(url: string): RedisSettings {
  const parsed = new URL(url);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: Number(parsed.port || 6379),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.pathname.length > 1 ? { db: Number(parsed.pathname.slice(1)) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    // BullMQ workers block on Redis: never give up on a command (LIBRARIES.md).
    maxRetriesPerRequest: null,
  };
}

/** The version in the nearest package.json above this module (from src/ under tsx, or dist/src/). */
function packageVersion(): string {
  for (let url = new URL('./', import.meta.url); url.pathname !== '/'; url = new URL('../', url)) {
    try {
      return (JSON.parse(readFileSync(new URL('package.json', url), 'utf8')) as { version: string }).version;
    } catch {
      // not here: look one folder up
    }
  }
  return '0.0.0';
}

export async function startService(config: Config, log: Logger): Promise<RunningService> {
  const catalog = loadProgramCatalog({
    mappingsDir: config.MAPPINGS_DIR,
    profilesDir: config.PROFILES_DIR,
    ...(config.SITE_DIR ? { siteDir: config.SITE_DIR } : {}),
    ...(config.PROGRAMS ? { programIds: config.PROGRAMS.split(',').map((id) => id.trim()).filter(Boolean) } : {}),
  });
  log.info({ programs: [...catalog.programs.keys()], siteDir: config.SITE_DIR ?? null }, 'program data loaded');
  // Indicator Measures (issue #5): a bad file stops start-up, naming the file and the field.
  const measures = loadMeasures(catalog, config.PROFILES_DIR, config.SITE_DIR);
  // R4 definitions and our profiles (about a second): paid at start-up, not by the first request.
  const profiles = initValidation({ profilesDir: config.PROFILES_DIR });
  log.info({ profiles: profiles.length }, 'profiles loaded');

  // No authentication: refused in production; in development, loopback only, with a warning.
  let authenticator: Authenticator | undefined;
  let host = config.HOST;
  if (authConfigured(config)) {
    authenticator = createAuthenticator({
      ...(config.AUTH_JWKS_URL ? { jwksUrl: config.AUTH_JWKS_URL } : {}),
      ...(config.AUTH_JWKS_FILE ? { jwksFile: config.AUTH_JWKS_FILE } : {}),
      issuer: config.AUTH_ISSUER as string,
      audience: config.AUTH_AUDIENCE as string,
      algorithms: config.AUTH_ALGORITHMS.split(',').map((a) => a.trim()) as ('RS256' | 'ES256')[],
      centreClaim: config.AUTH_CENTRE_CLAIM,
      centres: parseCentreMap(config.AUTH_CENTRES as string),
      clockToleranceSec: config.AUTH_CLOCK_TOLERANCE_S,
    });
  } else if (config.NODE_ENV === 'production') {
    throw new Error('Refusing to start in production without authentication: set AUTH_JWKS_URL or AUTH_JWKS_FILE, AUTH_ISSUER, AUTH_AUDIENCE and AUTH_CENTRES');
  } else if (config.ROLE !== 'worker') {
    if (!['127.0.0.1', 'localhost', '::1'].includes(host)) log.warn({ requestedHost: host }, 'no authentication configured: listening on 127.0.0.1 only');
    host = '127.0.0.1';
    log.warn('no authentication configured (development mode): every request is accepted; never expose this port');
  }

  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        log.warn({ err: { message: (error as Error).message } }, 'error while stopping');
      }
    }
  };

  try {
    let ensured: EnsuredRedis;
    ensured = await ensureRedis(config.REDIS_URL, { log: (msg) => log.info(msg), startLocal: config.REDIS_START_LOCAL, appendOnly: true });
    cleanups.push(() => ensured.stop());

    let embeddedFhir: EmbeddedFhirServer | undefined;
    let fhirBaseUrl = config.FHIR_BASE_URL;
    if (!fhirBaseUrl) {
      embeddedFhir = await startEmbeddedFhirServer({ port: config.EMBEDDED_FHIR_PORT });
      const server = embeddedFhir;
      cleanups.push(() => server.close());
      fhirBaseUrl = embeddedFhir.baseUrl;
      log.warn({ fhirBaseUrl }, 'no FHIR_BASE_URL: started the embedded FHIR server; its data lives in memory and is lost when the process stops');
    }

    const redisOptions = redisOptionsFromUrl(ensured.url);
    // The service's own connection (locks, the directory generation, rate limits; never BullMQ's):
    // the commands of one tick go to Redis in one write (ioredis auto-pipelining), as the
    // programs of one evaluation job take their locks together.
    const redis = new Redis({ ...redisOptions, enableAutoPipelining: true });
    redis.on('error', (error) => log.error({ err: { message: error.message } }, 'redis connection error'));
    cleanups.push(async () => {
      redis.disconnect();
    });
    const warning = await checkMaxmemoryPolicy(redis);
    if (warning) log.warn(warning);

    // Outbound: SMART Backend Services (client credentials, private_key_jwt), tokens cached until expiry.
    const fhirTokens = config.FHIR_AUTH_TOKEN_URL
      ? await smartBackendFromFiles({
          tokenUrl: config.FHIR_AUTH_TOKEN_URL,
          clientId: config.FHIR_AUTH_CLIENT_ID ?? '', // presence enforced by the configuration schema
          privateKeyFile: config.FHIR_AUTH_PRIVATE_KEY_FILE ?? '',
          keyId: config.FHIR_AUTH_KEY_ID ?? '',
          scope: config.FHIR_AUTH_SCOPE ?? '',
          alg: config.FHIR_AUTH_ALG,
        })
      : undefined;
    const fhir = new HttpFhirServer({ baseUrl: fhirBaseUrl, timeoutMs: config.FHIR_TIMEOUT_MS, maxAttempts: config.FHIR_MAX_ATTEMPTS, ...(fhirTokens ? { tokenProvider: fhirTokens } : {}) });
    const directoryGenerationKey = `${config.QUEUE_PREFIX}:centre-directory:generation`;
    const directory = new CentreDirectoryCache(fhir, DIRECTORY_TTL_MS, () => redis.get(directoryGenerationKey));
    // Evaluations run several at a time and read alike: their batches share requests; concurrent
    // pushes' conditional creates travel as one batch (see CoalescingFhirServer).
    const coalescing = new CoalescingFhirServer(fhir);
    const eligibility = new EligibilityService(coalescing, catalog, directory, new RedisLocks(redis, config.QUEUE_PREFIX));
    const enrolment = new EnrolmentService(fhir, catalog, eligibility, redis, config.QUEUE_PREFIX);
    const ingestion = new IngestionService(coalescing, catalog, async () => {
      await redis.incr(directoryGenerationKey);
    });
    const metrics = createMetrics();
    // Producer connection: a push fails fast (503, sent again) while Redis is down; workers keep redisOptions.
    const queues = createQueues(producerConnection(redisOptions), config.QUEUE_PREFIX, (error) => log.error({ err: { message: error.message } }, 'queue error'));
    cleanups.push(() => queues.close());
    const lifecycle = await startLifecycle({
      connection: redisOptions,
      prefix: config.QUEUE_PREFIX,
      timeZone: config.TZ_DEFAULT,
      enrolment,
      log,
      runWorker: config.ROLE !== 'api',
    });
    cleanups.push(() => lifecycle.close());

    const gatewayTokens = config.GATEWAY_AUTH_TOKEN_URL
      ? await smartBackendFromFiles({
          tokenUrl: config.GATEWAY_AUTH_TOKEN_URL,
          clientId: config.GATEWAY_AUTH_CLIENT_ID ?? '',
          privateKeyFile: config.GATEWAY_AUTH_PRIVATE_KEY_FILE ?? '',
          keyId: config.GATEWAY_AUTH_KEY_ID ?? '',
          scope: config.GATEWAY_AUTH_SCOPE ?? '',
          alg: config.GATEWAY_AUTH_ALG,
        })
      : undefined;
    const gatewayTls =
      config.GATEWAY_TLS_CERT_FILE && config.GATEWAY_TLS_KEY_FILE
        ? loadMtlsMaterial({
            certFile: config.GATEWAY_TLS_CERT_FILE,
            keyFile: config.GATEWAY_TLS_KEY_FILE,
            ...(config.GATEWAY_TLS_CA_FILE ? { caFile: config.GATEWAY_TLS_CA_FILE } : {}),
            ...(config.GATEWAY_TLS_KEY_PASSPHRASE ? { passphrase: config.GATEWAY_TLS_KEY_PASSPHRASE } : {}),
          })
        : undefined;
    if (gatewayTls) log.info({ validTo: gatewayTls.validTo.toISOString() }, 'gateway mTLS client certificate loaded');
    const gateway = config.GATEWAY_BASE_URL
      ? new HttpInsurerGateway({
          baseUrl: config.GATEWAY_BASE_URL,
          timeoutMs: config.GATEWAY_TIMEOUT_MS,
          ...(gatewayTokens ? { tokenProvider: gatewayTokens } : config.GATEWAY_TOKEN_FILE ? { bearerToken: readFileSync(config.GATEWAY_TOKEN_FILE, 'utf8').trim() } : {}),
          ...(gatewayTls ? { tls: gatewayTls } : {}),
        })
      : undefined;
    if (!gateway) log.warn('no GATEWAY_BASE_URL: claims are generated and stored, not submitted');
    const billing = new BillingService(fhir, catalog, enrolment, gateway, directory);
    const claims = await startClaims({
      connection: redisOptions,
      prefix: config.QUEUE_PREFIX,
      timeZone: config.TZ_DEFAULT,
      retryHours: config.GATEWAY_RETRY_HOURS,
      handler: billing,
      log,
      runWorker: config.ROLE !== 'api',
    });
    cleanups.push(() => claims.close());
    // Forfaits fall due when plans change: a queued generation per change (plus the daily sweep).
    enrolment.onPlansChanged = (episodeId) => claims.enqueueGeneration(episodeId);

    // Audit trail: one AuditEvent per request, a Provenance per generated resource, written to
    // the FHIR server by a queue so a request never waits for (or fails on) its audit.
    const audit = await startAudit({ connection: redisOptions, prefix: config.QUEUE_PREFIX, fhir, log, runWorker: config.ROLE !== 'api' });
    cleanups.push(() => audit.close());
    const auditSink = new AuditSink(audit.add, log);
    const provenance = new ProvenanceWriter(audit.add, log, `forfait-fhir ${packageVersion()}`);
    // Pushed after audit.close, so it runs before it (cleanups run in reverse).
    cleanups.push(async () => {
      await Promise.all([auditSink.flush(), provenance.flush()]);
    });
    eligibility.provenance = provenance;
    enrolment.provenance = provenance;
    billing.provenance = provenance;
    metrics.watchQueues([queues.evaluation, queues.screening, lifecycle.queue, claims.queue, audit.queue]);
    const screenings = new ScreeningStore(redis, config.QUEUE_PREFIX);
    const bulk = new BulkScreening({
      fhir,
      catalog,
      directory,
      redis,
      prefix: config.QUEUE_PREFIX,
      ...(config.BULK_INPUT_DIR ? { inputDir: config.BULK_INPUT_DIR } : {}),
      outputDir: config.BULK_OUTPUT_DIR ?? path.join(os.tmpdir(), 'forfait-fhir-bulk'),
      workers: config.BULK_WORKERS,
      log,
      ...(fhirTokens ? { accessToken: () => fhirTokens.token() } : {}),
    });

    if (config.ROLE !== 'api') {
      const workers = startWorkers({
        connection: redisOptions,
        prefix: config.QUEUE_PREFIX,
        concurrency: config.WORKER_CONCURRENCY,
        completedRetentionSeconds: config.COMPLETED_JOB_RETENTION_S,
        service: eligibility,
        fhir,
        directory,
        queues,
        screenings,
        metrics,
        log,
        bulk,
      });
      cleanups.push(() => workers.close());
      log.info({ concurrency: config.WORKER_CONCURRENCY }, 'workers started');
    }

    /** Serves `app` on `port` (HOST); resolves with its URL. Stopping closes it first: workers then drain (cleanups run in reverse order). */
    const serve = async (app: http.RequestListener, port: number): Promise<string> => {
      const server = http.createServer(app);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      cleanups.push(
        () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeIdleConnections();
          }),
      );
      const address = server.address() as AddressInfo;
      return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
    };

    let url: string | undefined;
    if (config.ROLE !== 'worker') {
      const app = createApp({
        publicBaseUrl: () => config.PUBLIC_BASE_URL ?? url ?? `http://${host.includes(':') ? `[${host}]` : host}:${config.PORT}`,
        rateLimit: { perMinute: rateLimitPerMinute(config), prefix: config.QUEUE_PREFIX },
        fhir,
        redis,
        queues,
        eligibility,
        enrolment,
        ingestion,
        screenings,
        metrics,
        log,
        maxBodyBytes: config.MAX_BODY_BYTES,
        completedRetentionSeconds: config.COMPLETED_JOB_RETENTION_S,
        version: packageVersion(),
        otherQueues: [lifecycle.queue, claims.queue, audit.queue],
        audit: auditSink,
        auditSite: hostname(),
        billing,
        enqueueSubmissions: claims.enqueueSubmissions,
        centreAccess: new CentreAccess(fhir, catalog, directory),
        bulk,
        reports: new ReportsService(fhir, catalog, directory, measures),
        ...(authenticator ? { authenticator } : {}),
      });
      url = await serve(app, config.PORT);
    }

    let opsUrl: string | undefined;
    if (config.ROLE === 'worker' && config.METRICS_PORT !== undefined) {
      opsUrl = await serve(createOpsApp({ redis, fhir, metrics }), config.METRICS_PORT);
      log.info({ url: opsUrl }, 'worker operations endpoints: /healthz, /readyz, /metrics');
    }

    return {
      ...(url ? { url } : {}),
      ...(opsUrl ? { opsUrl } : {}),
      fhirBaseUrl,
      ...(embeddedFhir ? { embeddedFhir } : {}),
      redisUrl: ensured.url,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
