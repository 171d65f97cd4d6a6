/**
 * The HTTP layer: translates requests into service calls and results (or errors) into FHIR
 * responses. Every error leaves as an OperationOutcome with `application/fhir+json`.
 */
import { randomUUID } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { pinoHttp } from 'pino-http';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { EligibilityService, UnknownProgramError } from '../app/eligibility.service.js';
import { EnrolmentRefused, type EnrolmentService } from '../app/enrolment.service.js';
import { mountEnrolmentRoutes, refusalOutcome } from './enrolment-routes.js';
import { mountBillingRoutes } from './billing-routes.js';
import { mountReportRoutes } from './report-routes.js';
import { mountDashboard } from './dashboard-routes.js';
import type { ReportsService } from '../app/reports.service.js';
import { AuthError, assertScopes, authMiddleware, sendAuthError, type Authenticator } from './auth.js';
import { bundleScopes, requiredScopes } from './scopes.js';
import { assertFhirId, ipKeyGenerator, rateLimitPerClient, refuseHostileJson, strictFhirContentType, verifyJsonShape } from './input-guards.js';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { CentreAccess, ClientIdentity } from '../app/centre-access.js';
import { auditMiddleware, type AuditSink } from '../app/audit.service.js';
import { BillingRefused, type BillingService } from '../app/billing.service.js';
import { IngestionService, PUSHABLE_TYPES, patientIdOf, patientReferenceOf, versionedReference } from '../app/ingestion.service.js';
import { assertBundleInCentre, evaluationsFor, ingestBundle } from '../app/bundle-ingestion.js';
import { localId } from '../domain/references.js';
import { handleNotification } from '../app/notification.js';
import { verdictToParameters } from '../domain/verdict-fhir.js';
import { FhirServerError, type FhirServer } from '../fhir/fhir-server.port.js';
import { PatientNotFoundError } from '../fhir/patient-record.js';
import type { Metrics } from '../infra/metrics.js';
import { evaluationEnqueuer, type EvaluationRequest, type Queues } from '../queue/queues.js';
import type { ScreeningStore } from '../queue/screening-store.js';
import type { BulkScreening } from '../app/bulk-screening.js';
import { mountScreeningRoutes } from './screening-routes.js';
import { mountOpsRoutes } from './ops-routes.js';
import { sendFhir } from './send-fhir.js';
import { capabilityStatement } from './capability.js';
import {
  OperationOutcomeError,
  allOk,
  badRequest,
  dependencyDown,
  notFound,
  operationOutcome,
  unsupportedMediaType,
} from './outcomes.js';
import { dateParameter, parametersFromQuery, readParameters, stringParameter, type OperationDeclaration } from './parameters.js';

export interface AppDeps {
  fhir: FhirServer;
  redis: Redis;
  queues: Queues;
  eligibility: EligibilityService;
  enrolment: EnrolmentService;
  ingestion: IngestionService;
  screenings: ScreeningStore;
  metrics: Metrics;
  log: Logger;
  maxBodyBytes: number;
  completedRetentionSeconds: number;
  version: string;
  /** Further queues shown in /admin/queues (the lifecycle scheduler's). */
  otherQueues?: Queue[];
  billing: BillingService;
  enqueueSubmissions: (claimIds: string[]) => Promise<void>;
  centreAccess: CentreAccess;
  audit: AuditSink;
  /** Site name in AuditEvent.source (the host). */
  auditSite?: string;
  /** Absent: authentication disabled (development, loopback only). */
  authenticator?: Authenticator;
  /** Program evaluation reports (issue #5); absent: the report routes are not served. */
  reports?: ReportsService;
  /**
   * Base URL of this API as clients reach it (PUBLIC_BASE_URL, or the bound address): every
   * URL of ours in an answer is built on it, never on the request's Host header.
   */
  publicBaseUrl: () => string;
  /** Bulk Data `$screen` (absent: NDJSON input refused). */
  bulk?: BulkScreening;
  /** Requests per minute per client on /fhir and /hooks (0 or absent: no limit); counters in `redis` under `prefix`. */
  rateLimit?: { perMinute: number; prefix: string };
}

/** The authenticated client of this request, if authentication is on. */
export const clientOf = (res: Response): ClientIdentity | undefined => res.locals['client'] as ClientIdentity | undefined;


/** Our base URL (see `AppDeps.publicBaseUrl`, kept in `app.locals`): the Host header is never reflected. */
export function baseUrlOf(req: Request): string {
  return (req.app.locals['publicBaseUrl'] as () => string)();
}

function requireId(id: string | undefined, what: string): string {
  return assertFhirId(id, what);
}

export function createApp(deps: AppDeps): express.Express {
  const { eligibility, ingestion, metrics, log } = deps;
  const app = express();
  app.locals['publicBaseUrl'] = deps.publicBaseUrl;
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');

  app.use(
    pinoHttp({
      logger: log,
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && /^[A-Za-z0-9\-_.]{1,64}$/.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      // Path only: query strings may carry identifiers; bodies are never logged.
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/metrics' },
    }),
  );

  app.use((req, res, next) => {
    const end = metrics.httpSeconds.startTimer();
    res.on('finish', () => {
      const route = (req.route as { path?: string } | undefined)?.path ?? 'unmatched';
      metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
      end({ method: req.method, route });
    });
    next();
  });

  // One AuditEvent per request (mounted before authentication, so refusals are recorded too).
  app.use(auditMiddleware(deps.audit, { clientOf: (_req, res) => clientOf(res), source: { observer: `forfait-fhir ${deps.version}`, site: deps.auditSite ?? 'forfait-fhir' }, log }));

  mountDashboard(app); // Static page, public like /fhir/metadata: every figure it shows comes from the report API, with the user's token.
  // Authentication before anything reads the body: a request without a valid token stops here.
  if (deps.authenticator) {
    app.use(
      authMiddleware(deps.authenticator, {
        scopeFor: (req) => requiredScopes(req.method, req.path),
        onFailure: (req, error) => log.warn({ reason: error.reason, status: error.status, path: req.path }, 'request refused'),
      }),
    );
  }

  // Per-client rate limit, after authentication (the verified client id is the key; the IP
  // without authentication), before any body is read. Counters live in Redis so every API
  // process shares them.
  if (deps.rateLimit && deps.rateLimit.perMinute > 0) {
    const redis = deps.redis;
    app.use(
      ['/fhir', '/hooks'],
      rateLimitPerClient({
        windowMs: 60_000,
        limit: deps.rateLimit.perMinute,
        keyOf: (req, res) => {
          const client = clientOf(res);
          return client ? `client:${client.clientId}` : `ip:${ipKeyGenerator(req.ip ?? '')}`;
        },
        store: new RedisStore({
          prefix: `${deps.rateLimit.prefix}:ratelimit:`,
          sendCommand: (command: string, ...args: string[]) => redis.call(command, ...args) as Promise<RedisReply>,
        }),
        // Redis down: serve (the readiness probe reports it) rather than refuse everything.
        passOnStoreError: true,
      }),
    );
  }

  // FHIR endpoints and the rest-hook accept FHIR JSON only (415 otherwise): a body we would
  // not parse must never be mistaken for an empty notification. The shape of the JSON (depth,
  // width) is checked on the raw bytes before parsing; prototype keys and control characters
  // are refused after.
  app.use(['/fhir', '/hooks'], strictFhirContentType());
  app.use(
    express.json({
      type: ['application/fhir+json', 'application/json'],
      limit: deps.maxBodyBytes,
      strict: true,
      verify: verifyJsonShape({ maxDepth: 64, maxArrayItems: 50_000, maxKeys: 1_000 }),
    }),
  );
  app.use(['/fhir', '/hooks'], refuseHostileJson());

  // Concurrent pushes' jobs travel to Redis in one addBulk.
  const enqueueTogether = evaluationEnqueuer(deps.queues.evaluation, deps.completedRetentionSeconds);
  const enqueue = async (requests: EvaluationRequest[]): Promise<void> => {
    try {
      await enqueueTogether(requests);
    } catch (error) {
      // Stored but not queued: tell the sender to retry; the conditional create makes the retry safe.
      log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'enqueue failed');
      throw dependencyDown('The data was stored but its evaluation could not be queued (queue unavailable); send it again');
    }
  };

  // --- Service endpoints ------------------------------------------------------------
  mountOpsRoutes(app, { redis: deps.redis, fhir: deps.fhir, metrics });

  const board = new ExpressAdapter();
  board.setBasePath('/admin/queues');
  createBullBoard({
    queues: [deps.queues.evaluation, deps.queues.screening, ...(deps.otherQueues ?? [])].map((queue) => new BullMQAdapter(queue)),
    serverAdapter: board,
  });
  app.use('/admin/queues', board.getRouter());

  // --- FHIR endpoints ---------------------------------------------------------------
  app.get('/fhir/metadata', (req, res) => {
    sendFhir(res, 200, capabilityStatement({ version: deps.version, baseUrl: `${baseUrlOf(req)}/fhir`, programs: eligibility.programIds, enrolmentPrograms: deps.enrolment.programIds }));
  });

  /** `$evaluate-eligibility` (POST body or GET query): `program` (required), `asOf`. */
  const EVALUATE_ELIGIBILITY: OperationDeclaration = {
    name: '$evaluate-eligibility',
    parameters: [
      { name: 'program', types: ['code', 'string'], min: 1 },
      { name: 'asOf', types: ['date'] },
    ],
  };
  app.post('/fhir/Patient/:id/\\$evaluate-eligibility', async (req, res) => {
    const patientId = requireId(req.params['id'], 'Patient');
    await evaluateEligibility(res, patientId, readParameters(req.body, EVALUATE_ELIGIBILITY));
  });
  app.get('/fhir/Patient/:id/\\$evaluate-eligibility', async (req, res) => {
    const patientId = requireId(req.params['id'], 'Patient');
    await evaluateEligibility(res, patientId, parametersFromQuery(req.query as Record<string, unknown>, EVALUATE_ELIGIBILITY));
  });

  async function evaluateEligibility(res: Response, patientId: string, parameters: fhir4.Parameters): Promise<void> {
    const programId = stringParameter(parameters, 'program') as string;
    const asOf = dateParameter(parameters, 'asOf');
    await deps.centreAccess.assertPatient(clientOf(res), patientId);
    eligibility.program(programId);
    const verdict = await eligibility.evaluate(programId, patientId, asOf);
    sendFhir(res, 200, verdictToParameters(verdict));
  }

  mountScreeningRoutes(app, { eligibility, screenings: deps.screenings, queues: deps.queues, centreAccess: deps.centreAccess, publicBaseUrl: deps.publicBaseUrl, authenticated: Boolean(deps.authenticator), ...(deps.bulk ? { bulk: deps.bulk } : {}) });
  mountEnrolmentRoutes(app, deps.enrolment, deps.centreAccess);
  mountBillingRoutes(app, deps.billing, deps.enqueueSubmissions);
  if (deps.reports) mountReportRoutes(app, deps.reports);

  // A care session inside a batch Bundle goes through the same checks as POST /fhir/Encounter.
  const recordSessionEntryFor = async (client: ClientIdentity | undefined, encounter: fhir4.Encounter): Promise<fhir4.BundleEntry> => {
    try {
      const episodeId = localId(encounter.episodeOfCare?.[0], 'EpisodeOfCare');
      if (episodeId) await deps.centreAccess.assertEpisode(client, episodeId);
      const { encounter: stored, created } = await deps.enrolment.recordSession(encounter);
      const version = stored.meta?.versionId ? `/_history/${stored.meta.versionId}` : '';
      return { response: { status: created ? '201 Created' : '200 OK', location: `Encounter/${stored.id}${version}` } };
    } catch (error) {
      if (error instanceof EnrolmentRefused) return { response: { status: String(error.status), outcome: refusalOutcome(error) } };
      if (error instanceof OperationOutcomeError) return { response: { status: String(error.status), outcome: error.outcome } };
      throw error;
    }
  };

  app.post('/fhir', async (req, res) => {
    if (req.body === undefined) throw badRequest('POST /fhir takes a Bundle (batch or transaction)', 'Bundle');
    const client = clientOf(res);
    if (client) assertScopes(client, bundleScopes(req.body));
    // Every entry checked first (400/422), then the centre of what would be written (403), then written.
    const result = await ingestBundle(req.body, deps.fhir, ingestion, {
      recordSession: (encounter) => recordSessionEntryFor(client, encounter),
      ...(client
        ? {
            authorize: (forwarded, indexes) => assertBundleInCentre(client, forwarded, indexes, deps),
            authorizeExisting: (stored) => deps.centreAccess.assertPushable(client, stored, stored.resourceType === 'Patient' ? undefined : patientReferenceOf(stored)),
          }
        : {}),
    });
    await enqueue(evaluationsFor(result.touched, eligibility.programIds));
    sendFhir(res, 200, result.response);
  });

  app.post('/fhir/:type', async (req, res) => {
    const type = req.params['type'] as string;
    if (!(PUSHABLE_TYPES as readonly string[]).includes(type)) {
      throw notFound(`POST /fhir/${type} is not served; pushable types: ${PUSHABLE_TYPES.join(', ')}`);
    }
    if (req.body === undefined) throw badRequest(`POST /fhir/${type} takes a ${type} resource`, type);
    const problem = ingestion.check(req.body, type, type);
    if (!problem) await deps.centreAccess.assertPushable(clientOf(res), req.body as fhir4.Resource, patientReferenceOf(req.body as fhir4.Resource));
    if (problem) {
      metrics.ingested.inc({ resource_type: type, result: 'rejected' });
      throw new OperationOutcomeError(problem.status, operationOutcome(problem.issues));
    }
    const { resource, created } = await ingestion.store(req.body as fhir4.Resource);
    // A conditional create that resolved to an existing resource answers with it: only if it is
    // the client's own (a push whose identifier matches another centre's data reveals nothing).
    const client = clientOf(res);
    if (!created && client) {
      try {
        if (type === 'Patient') await deps.centreAccess.assertPatient(client, resource.id as string);
        else await deps.centreAccess.assertPushable(client, resource, patientReferenceOf(resource));
      } catch {
        throw new OperationOutcomeError(403, operationOutcome([{ code: 'forbidden', diagnostics: 'This resource cannot be stored by this client' }]));
      }
    }
    const patientId = type === 'Patient' ? resource.id : patientIdOf(patientReferenceOf(resource));
    if (patientId) {
      await enqueue([{ programIds: eligibility.programIds, patientId, trigger: [versionedReference(resource)] }]);
    }
    metrics.ingested.inc({ resource_type: type, result: created ? 'created' : 'existing' });
    const location = `${baseUrlOf(req)}/fhir/${type}/${resource.id}${resource.meta?.versionId ? `/_history/${resource.meta.versionId}` : ''}`;
    sendFhir(res, created ? 201 : 200, resource, { Location: location, ...(resource.meta?.versionId ? { ETag: `W/"${resource.meta.versionId}"` } : {}) });
  });

  // Rest-hook endpoint to configure in a Subscription's channel.endpoint.
  app.post('/hooks/subscription', async (req, res) => {
    const client = clientOf(res);
    const result = await handleNotification(req.body, deps.fhir, {
      ingestion,
      // A notifier bound to a centre is held to that centre's rules; the server of record's own notifier (no centre) is not.
      ...(client?.centre ? { authorize: (resource: fhir4.Resource) => deps.centreAccess.assertPushable(client, resource, resource.resourceType === 'Patient' ? undefined : patientReferenceOf(resource)) } : {}),
    });
    if (result.touchesDirectory) await ingestion.directoryChanged();
    await enqueue(evaluationsFor(result.touched, eligibility.programIds));
    sendFhir(res, 200, allOk(`${result.kind}: ${result.touched.size} patient(s) queued for evaluation`));
  });

  app.use('/fhir', (req, _res, next) => {
    next(notFound(`${req.method} ${req.path} is not served by this adapter (see /fhir/metadata)`));
  });

  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof AuthError) return sendAuthError(res, error);
    const type = (error as { type?: string }).type;
    if (error instanceof OperationOutcomeError) return sendFhir(res, error.status, error.outcome, error.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(error.retryAfterSeconds) });
    if (error instanceof EnrolmentRefused) return sendFhir(res, error.status, refusalOutcome(error));
    if (error instanceof BillingRefused) return sendFhir(res, 404, operationOutcome(error.issues.map((i) => ({ code: i.code, diagnostics: i.diagnostics }))));
    if (type === 'entity.parse.failed') return sendFhir(res, 400, operationOutcome([{ code: 'structure', diagnostics: 'The body is not valid JSON' }]));
    if (type === 'entity.too.large') return sendFhir(res, 413, operationOutcome([{ code: 'too-costly', diagnostics: `The body is larger than ${deps.maxBodyBytes} bytes` }]));
    if (type === 'encoding.unsupported' || type === 'charset.unsupported') return sendFhir(res, 415, operationOutcome([{ code: 'not-supported', diagnostics: 'Unsupported body encoding' }]));
    // Other client errors raised by Express or body-parser (e.g. a path that cannot be percent-decoded).
    const clientStatus = (error as { status?: unknown; statusCode?: unknown }).status ?? (error as { statusCode?: unknown }).statusCode;
    if (error instanceof URIError || (typeof clientStatus === 'number' && clientStatus >= 400 && clientStatus < 500)) {
      return sendFhir(res, 400, operationOutcome([{ code: 'invalid', diagnostics: 'Malformed request (the path or a header cannot be decoded)' }]));
    }
    if (error instanceof UnknownProgramError) return sendFhir(res, 400, operationOutcome([{ code: 'not-found', diagnostics: error.message, expression: [`Parameters.parameter.where(name='program')`] }]));
    if (error instanceof PatientNotFoundError) return sendFhir(res, 404, operationOutcome([{ code: 'not-found', diagnostics: error.message }]));
    if (error instanceof FhirServerError) {
      if (error.transient) return sendFhir(res, 503, operationOutcome([{ code: 'transient', diagnostics: `FHIR server unavailable: ${error.message}` }]), { 'Retry-After': '5' });
      // A 4xx from the FHIR server on data we forwarded: pass its outcome through.
      if (error.status >= 400 && error.status < 500) {
        return sendFhir(res, error.status === 404 ? 404 : 422, error.outcome ?? operationOutcome([{ code: 'processing', diagnostics: error.message }]));
      }
    }
    log.error({ err: { name: (error as Error).name, message: (error as Error).message, stack: (error as Error).stack } }, 'unhandled error');
    return sendFhir(res, 500, operationOutcome([{ code: 'exception', diagnostics: 'Internal error (see the adapter log with this request id)' }]));
  });

  return app;
}
