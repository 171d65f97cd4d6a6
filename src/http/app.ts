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
import { AuthError, assertScopes, authMiddleware, sendAuthError, type Authenticator } from './auth.js';
import { bundleScopes, requiredScopes } from './scopes.js';
import { assertFhirId, refuseHostileJson, strictFhirContentType, verifyJsonShape } from './input-guards.js';
import type { CentreAccess, ClientIdentity } from '../app/centre-access.js';
import { auditMiddleware, type AuditSink } from '../app/audit.service.js';
import { BillingRefused, type BillingService } from '../app/billing.service.js';
import { IngestionService, PUSHABLE_TYPES, patientIdOf, patientReferenceOf, versionedReference } from '../app/ingestion.service.js';
import { evaluationsFor, ingestBundle } from '../app/bundle-ingestion.js';
import { handleNotification } from '../app/notification.js';
import { verdictToParameters } from '../domain/verdict-fhir.js';
import { FhirServerError, type FhirServer } from '../fhir/fhir-server.port.js';
import { PatientNotFoundError } from '../fhir/patient-record.js';
import type { Metrics } from '../infra/metrics.js';
import { enqueueEvaluations, type EvaluationRequest, type Queues } from '../queue/queues.js';
import type { ScreeningStore, ScreenStatus } from '../queue/screening-store.js';
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
import { asParameters, dateParameter, parametersFromQuery, referenceParameters, stringParameter } from './parameters.js';

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
}

/** The authenticated client of this request, if authentication is on. */
export const clientOf = (res: Response): ClientIdentity | undefined => res.locals['client'] as ClientIdentity | undefined;

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function sendFhir(res: Response, status: number, body: fhir4.Resource, headers: Record<string, string> = {}): void {
  res.status(status).set({ 'Content-Type': FHIR_JSON, ...headers }).send(JSON.stringify(body));
}

function baseUrlOf(req: Request): string {
  return `${req.protocol}://${req.get('host') ?? 'localhost'}`;
}

function requireId(id: string | undefined, what: string): string {
  return assertFhirId(id, what);
}

function screenParameters(status: ScreenStatus): fhir4.Parameters {
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'id', valueString: status.id },
      { name: 'program', valueString: status.programId },
      { name: 'asOf', valueDate: status.asOf },
      { name: 'state', valueCode: status.state },
      ...(status.total !== undefined ? [{ name: 'total', valueInteger: status.total }] : []),
      { name: 'done', valueInteger: status.done },
      ...Object.entries(status.counts).map(([outcome, count]) => ({
        name: 'count',
        part: [
          { name: 'outcome', valueCode: outcome },
          { name: 'count', valueInteger: count },
        ],
      })),
      ...(status.error ? [{ name: 'error', valueString: status.error }] : []),
    ],
  };
}

export function createApp(deps: AppDeps): express.Express {
  const { eligibility, ingestion, metrics, log } = deps;
  const app = express();
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

  // Authentication before anything reads the body: a request without a valid token stops here.
  if (deps.authenticator) {
    app.use(
      authMiddleware(deps.authenticator, {
        scopeFor: (req) => requiredScopes(req.method, req.path),
        onFailure: (req, error) => log.warn({ reason: error.reason, status: error.status, path: req.path }, 'request refused'),
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

  const enqueue = async (requests: EvaluationRequest[]): Promise<void> => {
    try {
      await enqueueEvaluations(deps.queues.evaluation, requests, deps.completedRetentionSeconds);
    } catch (error) {
      // Stored but not queued: tell the sender to retry; the conditional create makes the retry safe.
      log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'enqueue failed');
      throw dependencyDown('The data was stored but its evaluation could not be queued (queue unavailable); send it again');
    }
  };

  // --- Service endpoints ------------------------------------------------------------
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const checks = await Promise.allSettled([deps.redis.ping(), deps.fhir.ping()]);
    const [redis, fhir] = checks.map((check) => (check.status === 'fulfilled' ? 'ok' : 'unavailable'));
    const ready = redis === 'ok' && fhir === 'ok';
    if (ready) {
      res.json({ status: 'ready', redis, fhir });
      return;
    }
    sendFhir(res, 503, operationOutcome([{ code: 'transient', diagnostics: `Not ready: redis ${redis}, FHIR server ${fhir}` }]));
  });

  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });

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

  app.post('/fhir/Patient/:id/\\$evaluate-eligibility', async (req, res) => {
    await evaluateEligibility(req, res, asParameters(req.body));
  });
  app.get('/fhir/Patient/:id/\\$evaluate-eligibility', async (req, res) => {
    await evaluateEligibility(req, res, parametersFromQuery(req.query as Record<string, unknown>));
  });

  async function evaluateEligibility(req: Request, res: Response, parameters: fhir4.Parameters): Promise<void> {
    const patientId = requireId(req.params['id'] as string | undefined, 'Patient');
    await deps.centreAccess.assertPatient(clientOf(res), patientId);
    const programId = stringParameter(parameters, 'program');
    if (!programId) throw badRequest(`Parameter "program" is required (one of: ${eligibility.programIds.join(', ')})`, `Parameters.parameter.where(name='program')`);
    eligibility.program(programId);
    const asOf = dateParameter(parameters, 'asOf');
    const verdict = await eligibility.evaluate(programId, patientId, asOf);
    sendFhir(res, 200, verdictToParameters(verdict));
  }

  app.post('/fhir/\\$screen', async (req, res) => {
    const parameters = asParameters(req.body);
    const programId = stringParameter(parameters, 'program');
    if (!programId) throw badRequest(`Parameter "program" is required (one of: ${eligibility.programIds.join(', ')})`, `Parameters.parameter.where(name='program')`);
    eligibility.program(programId);
    const asOf = dateParameter(parameters, 'asOf') ?? eligibility.today(programId);
    const patients = referenceParameters(parameters, 'patient').map((reference, index) => {
      const match = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(reference);
      if (!match) throw badRequest(`patient #${index + 1} must be a Patient/{id} reference`, `Parameters.parameter.where(name='patient')[${index}]`);
      return match[1] as string;
    });
    const client = clientOf(res);
    for (const patientId of patients) await deps.centreAccess.assertPatient(client, patientId);
    const screenId = randomUUID();
    await deps.screenings.create(screenId, programId, asOf, new Date().toISOString(), client?.centre);
    await deps.queues.screening.add(
      'screen',
      { screenId, programId, asOf, ...(patients.length ? { patientIds: [...new Set(patients)] } : {}), ...(client?.centre ? { centre: client.centre } : {}) },
      { jobId: `screen.${screenId}`, attempts: 5, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: { age: 7 * 24 * 3600 } },
    );
    const location = `${baseUrlOf(req)}/fhir/_async/${screenId}`;
    sendFhir(res, 202, allOk(`Screening queued; poll ${location}`), { 'Content-Location': location });
  });

  app.get('/fhir/_async/:id', async (req, res) => {
    const id = requireId(req.params['id'], 'screening');
    const status = await deps.screenings.get(id);
    const client = clientOf(res);
    // Another centre's screening is answered as an unknown one.
    if (!status || (client && status.centre !== client.centre)) throw notFound(`No screening ${id} (unknown or expired)`);
    const finished = status.state === 'completed' || status.state === 'failed';
    const progress = `${status.done}/${status.total ?? '?'} evaluated`;
    sendFhir(res, finished ? 200 : 202, screenParameters(status), { 'X-Progress': progress, ...(finished ? {} : { 'Retry-After': '2' }) });
  });

  mountEnrolmentRoutes(app, deps.enrolment, deps.centreAccess);
  mountBillingRoutes(app, deps.billing, deps.enqueueSubmissions);

  /** Every entry of a pushed Bundle must concern the client's centre (or a Patient created in it). */
  const assertBundleInCentre = async (client: ClientIdentity, bundle: fhir4.Bundle): Promise<void> => {
    const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
    const localPatients = new Set<string>();
    for (const entry of entries) {
      const resource = entry?.resource;
      if (!resource || typeof resource !== 'object') continue;
      if (resource.resourceType === 'Patient') {
        await deps.centreAccess.assertPushable(client, resource, undefined);
        if (entry.fullUrl) localPatients.add(entry.fullUrl);
      }
    }
    for (const entry of entries) {
      const resource = entry?.resource;
      if (!resource || typeof resource !== 'object' || resource.resourceType === 'Patient') continue;
      await deps.centreAccess.assertPushable(client, resource, patientReferenceOf(resource), localPatients);
    }
  };

  // A care session inside a batch Bundle goes through the same checks as POST /fhir/Encounter.
  const recordSessionEntryFor = async (client: ClientIdentity | undefined, encounter: fhir4.Encounter): Promise<fhir4.BundleEntry> => {
    try {
      const episodeId = /^EpisodeOfCare\/([A-Za-z0-9\-.]{1,64})$/.exec(encounter.episodeOfCare?.[0]?.reference ?? '')?.[1];
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
    if (client) {
      assertScopes(client, bundleScopes(req.body));
      await assertBundleInCentre(client, req.body as fhir4.Bundle);
    }
    const result = await ingestBundle(req.body, deps.fhir, ingestion, (encounter) => recordSessionEntryFor(client, encounter));
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
      await enqueue(eligibility.programIds.map((programId) => ({ programId, patientId, trigger: [versionedReference(resource)] })));
    }
    metrics.ingested.inc({ resource_type: type, result: created ? 'created' : 'existing' });
    const location = `${baseUrlOf(req)}/fhir/${type}/${resource.id}${resource.meta?.versionId ? `/_history/${resource.meta.versionId}` : ''}`;
    sendFhir(res, created ? 201 : 200, resource, { Location: location, ...(resource.meta?.versionId ? { ETag: `W/"${resource.meta.versionId}"` } : {}) });
  });

  // Rest-hook endpoint to configure in a Subscription's channel.endpoint.
  app.post('/hooks/subscription', async (req, res) => {
    const result = await handleNotification(req.body, deps.fhir);
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
    if (error instanceof OperationOutcomeError) return sendFhir(res, error.status, error.outcome);
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
