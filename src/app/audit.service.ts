/**
 * Recording the audit trail (issue #6, point 4) without ever getting in the way:
 *
 * - `AuditSink.record(event)` queues an AuditEvent and returns at once. A queue failure is
 *   logged (ids and error class only), never thrown; while Redis does not answer, at most
 *   `maxPending` records wait in memory and later ones are dropped and counted.
 * - `ProvenanceWriter.record(targets, sources, activity, client?)` builds the Provenance of
 *   resources the adapter wrote (deterministic id from the versioned targets) and queues it;
 *   its promise never rejects, so callers may await it or not.
 * - `auditMiddleware(sink, options)` records one AuditEvent per audited request when its
 *   response is finished: action and subtype from the method and path, outcome from the
 *   status, entities from the path, the request body's references and the response's
 *   references (Location, Parameters references, Bundle locations). Only references are kept
 *   from bodies (src/domain/audit.ts referencesIn). It also makes the request's client known
 *   to the code the request runs (`requestClient()`, AsyncLocalStorage), so a Provenance
 *   recorded by a service during a request names the client without the services taking it
 *   as a parameter; queued work (evaluations, daily jobs) has no client.
 *
 * The queue worker (src/queue/audit.ts) writes both to the FHIR server.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import {
  auditEvent,
  classifyRequest,
  isLiteralReference,
  isVersionedReference,
  outcomeOfStatus,
  provenance,
  referenceFromLocation,
  referenceOf,
  referencesIn,
  type AuditClient,
  type DataOperation,
  type LiteralReference,
  type VersionedReference,
} from '../domain/audit.js';

/** Where records go: `startAudit(...).add` (src/queue/audit.ts). */
export type AuditEnqueue = (resource: fhir4.AuditEvent | fhir4.Provenance) => Promise<void>;

type AuditLog = Pick<Logger, 'warn' | 'error'>;

const errorFields = (error: unknown): { name: string; message: string } => ({
  name: error instanceof Error ? error.name : 'Error',
  message: error instanceof Error ? error.message : String(error),
});

/** Fire-and-forget queueing with a bound on what waits in memory. */
class Recorder {
  private pending = new Set<Promise<void>>();
  /** Records dropped because too many were waiting (Redis not answering). */
  dropped = 0;
  private lastDropLog = 0;

  constructor(
    private readonly enqueue: AuditEnqueue,
    private readonly log: AuditLog,
    private readonly maxPending: number,
  ) {}

  submit(resource: fhir4.AuditEvent | fhir4.Provenance): Promise<void> {
    if (this.pending.size >= this.maxPending) {
      this.dropped += 1;
      // One line per 10 s at most, however many are dropped.
      if (Date.now() - this.lastDropLog > 10_000) {
        this.lastDropLog = Date.now();
        this.log.error({ dropped: this.dropped, pending: this.pending.size }, 'audit records dropped: the audit queue does not answer');
      }
      return Promise.resolve();
    }
    const done: Promise<void> = Promise.resolve()
      .then(() => this.enqueue(resource))
      .catch((error: unknown) => {
        this.log.error({ resourceType: resource.resourceType, id: resource.id, err: errorFields(error) }, 'audit record not queued');
      })
      .finally(() => {
        this.pending.delete(done);
      });
    this.pending.add(done);
    return done;
  }

  get waiting(): number {
    return this.pending.size;
  }

  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending.size && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.pending]),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        }),
      ]);
      clearTimeout(timer);
    }
  }
}

/** The client of the request being served, if any (see auditMiddleware). */
const requestContext = new AsyncLocalStorage<{ client: () => Pick<AuditClient, 'clientId' | 'centre'> | undefined }>();

/** The authenticated client of the HTTP request this code runs for; undefined in queued work or without authentication. */
export function requestClient(): Pick<AuditClient, 'clientId' | 'centre'> | undefined {
  const client = requestContext.getStore()?.client();
  return client?.clientId ? { clientId: client.clientId, ...(client.centre ? { centre: client.centre } : {}) } : undefined;
}

export interface RecorderOptions {
  /** Records waiting for Redis beyond which new ones are dropped. @defaultValue 10000 */
  maxPending?: number;
}

export class AuditSink {
  private readonly recorder: Recorder;

  constructor(enqueue: AuditEnqueue, log: AuditLog, options: RecorderOptions = {}) {
    this.recorder = new Recorder(enqueue, log, options.maxPending ?? 10_000);
  }

  /** Queues the AuditEvent; returns at once, never throws. */
  record(event: fhir4.AuditEvent): void {
    void this.recorder.submit(event);
  }

  get dropped(): number {
    return this.recorder.dropped;
  }

  get waiting(): number {
    return this.recorder.waiting;
  }

  /** Resolves when every record submitted so far is queued or has failed, or after `timeoutMs` (tests, shutdown). */
  flush(timeoutMs = 5000): Promise<void> {
    return this.recorder.flush(timeoutMs);
  }
}

export class ProvenanceWriter {
  private readonly recorder: Recorder;

  constructor(
    enqueue: AuditEnqueue,
    private readonly log: AuditLog,
    /** The adapter's display name in the Provenance, e.g. `forfait-fhir 0.1.0`. */
    private readonly adapter: string,
    private readonly now: () => Date = () => new Date(),
    options: RecorderOptions = {},
  ) {
    this.recorder = new Recorder(enqueue, log, options.maxPending ?? 10_000);
  }

  /**
   * Records that `targets` (what was just written, version-specific references) were made
   * from `sources` (triggering resources, evidence; other strings such as `screen/<id>` are
   * skipped), by this adapter and at the request of `client` (default: the client of the
   * HTTP request being served, `requestClient()`; none in queued work). Targets without a
   * version are skipped (logged); nothing is recorded when none is left. Resolves once queued
   * (or failed, logged); never rejects.
   */
  record(
    targets: readonly string[],
    sources: readonly string[],
    activity: DataOperation | fhir4.Coding,
    client?: Pick<AuditClient, 'clientId' | 'centre'>,
  ): Promise<void> {
    try {
      const versioned = targets.filter((target): target is VersionedReference => isVersionedReference(target));
      if (versioned.length < targets.length) {
        this.log.warn({ skipped: targets.length - versioned.length }, 'provenance: targets without a version skipped');
      }
      if (!versioned.length) return Promise.resolve();
      const author = client ?? requestClient();
      const record = provenance({
        target: versioned,
        recorded: this.now().toISOString(),
        activity,
        agent: { adapter: this.adapter, ...(author ? { client: author } : {}) },
        entity: sources.filter((source): source is LiteralReference => isLiteralReference(source) && !versioned.includes(source as VersionedReference)),
      });
      return this.recorder.submit(record);
    } catch (error) {
      this.log.error({ err: errorFields(error) }, 'provenance not recorded');
      return Promise.resolve();
    }
  }

  get dropped(): number {
    return this.recorder.dropped;
  }

  flush(timeoutMs = 5000): Promise<void> {
    return this.recorder.flush(timeoutMs);
  }
}

/**
 * Version-specific references of what a write returned: a stored resource (the `resource` of
 * `FhirServer.create`/`update`), or a transaction/batch response Bundle (its locations).
 */
export function writtenReferences(written: fhir4.Resource | undefined): VersionedReference[] {
  if (!written) return [];
  const references =
    written.resourceType === 'Bundle'
      ? ((written as fhir4.Bundle).entry ?? []).map((entry) => referenceFromLocation(entry.response?.location))
      : [referenceOf(written)];
  return references.filter((reference): reference is VersionedReference => isVersionedReference(reference));
}

// ---------------------------------------------------------------------------------------------
// HTTP

export interface AuditMiddlewareOptions {
  /** The authenticated client of a request, once authentication ran; undefined when there is none. */
  clientOf: (req: Request, res: Response) => Pick<AuditClient, 'clientId' | 'centre'> | undefined;
  /** The AuditEvent source: the adapter's display name and the deployment's site name. */
  source: { observer: string; site: string };
  log: AuditLog;
  now?: () => Date;
  newId?: () => string;
  /** Response bodies larger than this are not read for references (bytes). @defaultValue 8 MiB */
  maxBodyBytes?: number;
}

/** `clientId` recorded when the request carried no valid credentials. */
export const UNAUTHENTICATED_CLIENT = 'unauthenticated';

const REQUEST_ID = /^[A-Za-z0-9\-_.]{1,64}$/;

function bodyOf(sent: unknown, maxBytes: number): unknown {
  if (sent === undefined || sent === null) return undefined;
  if (typeof sent === 'object' && !Buffer.isBuffer(sent)) return sent;
  const text = Buffer.isBuffer(sent) ? (sent.length <= maxBytes ? sent.toString('utf8') : '') : typeof sent === 'string' && sent.length <= maxBytes ? sent : '';
  if (!text || (text[0] !== '{' && text[0] !== '[')) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Express middleware recording one AuditEvent per audited request (see classifyRequest in
 * src/domain/audit.ts for which), once the response is sent (or abandoned). Mount it right after the
 * request logger (it reads `req.id`) and before authentication, so refused requests (401,
 * 403) are recorded too; `clientOf` is read when the response finishes, and by
 * `requestClient()` while the request runs.
 */
export function auditMiddleware(sink: AuditSink, options: AuditMiddlewareOptions): RequestHandler {
  const now = options.now ?? (() => new Date());
  const newId = options.newId ?? randomUUID;
  const maxBodyBytes = options.maxBodyBytes ?? 8 * 1024 * 1024;
  return (req: Request, res: Response, next: NextFunction): void => {
    let sent: unknown;
    let captured = false;
    const send = res.send.bind(res);
    res.send = ((body?: unknown) => {
      // res.json calls res.send again with the serialised text: keep the first.
      if (!captured) {
        captured = true;
        sent = body;
      }
      return send(body);
    }) as Response['send'];

    // 'close' comes after 'finish', and also when the client goes away before the answer.
    res.once('close', () => {
      try {
        const requestBody: unknown = req.body;
        const bundleType = (requestBody as { resourceType?: unknown; type?: unknown } | undefined)?.resourceType === 'Bundle' ? String((requestBody as { type?: unknown }).type) : undefined;
        // An answer never completed (the client went away): a minor failure, whatever status was set.
        const status = res.writableFinished ? res.statusCode : Math.max(res.statusCode, 499);
        const kind =
          classifyRequest(req.method, req.originalUrl, bundleType) ??
          (status === 401 || status === 403 ? classifyRequest(req.method, '/fhir/_unrouted') : undefined);
        if (!kind) return;
        const client = options.clientOf(req, res);
        const entities = new Set<LiteralReference>(kind.entities);
        // Request: only the references it names (a pushed resource's patient, $enroll's team, $screen's patients).
        for (const reference of referencesIn(requestBody)) entities.add(reference);
        if (status < 400) {
          const location = referenceFromLocation(String(res.getHeader('Location') ?? res.getHeader('Content-Location') ?? ''));
          if (location) entities.add(location);
          for (const reference of referencesIn(bodyOf(sent, maxBodyBytes))) entities.add(reference);
        }
        const given = (req as { id?: unknown }).id ?? res.getHeader('X-Request-Id');
        const requestId = typeof given === 'string' && REQUEST_ID.test(given) ? given : newId();
        sink.record(
          auditEvent({
            id: newId(),
            action: kind.action,
            interaction: kind.interaction,
            ...(kind.subtype ? { subtype: kind.subtype } : {}),
            outcome: outcomeOfStatus(status),
            client: {
              clientId: client?.clientId ?? UNAUTHENTICATED_CLIENT,
              ...(client?.centre ? { centre: client.centre } : {}),
              ...(req.ip ? { address: req.ip } : {}),
            },
            recorded: now().toISOString(),
            entities: [...entities],
            requestId,
            source: options.source,
          }),
        );
      } catch (error) {
        options.log.error({ err: errorFields(error) }, 'audit event not built');
      }
    });
    requestContext.run({ client: () => options.clientOf(req, res) }, next);
  };
}
