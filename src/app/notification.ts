/**
 * R4 rest-hook Subscription notifications from a FHIR server that already holds the data.
 * Accepted forms:
 * - the Subscriptions R5 Backport IG for R4: a `history` Bundle whose first entry is the
 *   notification status (`Parameters`, or `SubscriptionStatus`), then one entry per
 *   event, with the resource (`full-resource`) or only its `fullUrl` (`id-only`);
 * - R4 core rest-hook with a payload: the resource itself;
 * - R4 core with no payload (a ping): nothing to evaluate.
 * Handshake and heartbeat notifications queue nothing.
 *
 * A notification is checked like a push (issue #6): the JSON structure of the whole payload,
 * each notified resource against FHIR R4 and, for the types an EHR may push, the same
 * business rules (`IngestionService.check`); references only to this server of record (or
 * relative). The payload is never trusted for what it says about a resource: every notified
 * resource is read back from the server of record by its `Type/id` (ids checked), and one it
 * does not hold is skipped. `authorize` (the centre rules of the client, when it has a
 * centre) is run on each resource read back.
 */
import { badRequest, OperationOutcomeError, operationOutcome, type IssueInput } from '../http/outcomes.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import { isValidFhirId, structuralIssues, validateResource } from '../fhir/validation.js';
import { DIRECTORY_TYPES, PUSHABLE_TYPES, patientIdOf, patientReferenceOf, referenceIssues, versionedReference, type IngestionService, type ReferenceContext } from './ingestion.service.js';

export interface NotificationResult {
  kind: 'ping' | 'handshake' | 'heartbeat' | 'event-notification' | 'resource';
  touched: Map<string, string[]>;
  /** An Organization, Practitioner or PractitionerRole changed: the centre directory must be refreshed. */
  touchesDirectory: boolean;
}

export interface NotificationOptions {
  /** The push checks (`check`) for the types an EHR may push. */
  ingestion?: IngestionService;
  /** Centre rules on each notified resource as read back from the server of record; throws to refuse. */
  authorize?: (resource: fhir4.Resource) => Promise<void>;
}

function notificationType(status: fhir4.Resource | undefined): string | undefined {
  if (!status) return undefined;
  if (status.resourceType === 'Parameters') {
    const parameters = (status as fhir4.Parameters).parameter;
    if (parameters !== undefined && !Array.isArray(parameters)) throw badRequest('Parameters.parameter must be an array', 'Bundle.entry[0].resource.parameter');
    return parameters?.find((p) => p?.name === 'type')?.valueCode;
  }
  const type = (status as { type?: unknown }).type;
  return typeof type === 'string' ? type : undefined;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function add(touched: Map<string, string[]>, resource: fhir4.Resource): void {
  if (DIRECTORY_TYPES.has(resource.resourceType)) touched.set(DIRECTORY_MARK, []);
  const patientId = resource.resourceType === 'Patient' ? resource.id : patientIdOf(patientReferenceOf(resource));
  if (!patientId) return;
  const list = touched.get(patientId) ?? [];
  list.push(versionedReference(resource));
  touched.set(patientId, list);
}

/** Key under which `add` notes a directory change (never a FHIR id: it has a space). */
const DIRECTORY_MARK = 'directory changed';

function result(kind: NotificationResult['kind'], touched: Map<string, string[]>): NotificationResult {
  const touchesDirectory = touched.delete(DIRECTORY_MARK);
  return { kind, touched, touchesDirectory };
}

const TYPE_AND_ID = /^([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/;
const DOT_SEGMENT = /(?:^|\/)\.{1,2}(?:\/|$)/;

/** The FHIR server of record: its base, and what of a URL lies under it. */
class ServerOfRecord {
  readonly base: URL;

  constructor(baseUrl: string) {
    this.base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
  }

  /** `Type/id[/_history/v]` of an absolute URL on this server (no query, fragment or dot segment), else undefined. */
  relativePart(url: string): string | undefined {
    let absolute: URL;
    try {
      absolute = new URL(url);
    } catch {
      return undefined;
    }
    const rawPath = url.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/, '');
    if (DOT_SEGMENT.test(rawPath.split(/[?#]/)[0] ?? '') || absolute.search || absolute.hash || url.includes('#') || url.includes('?')) return undefined;
    if (absolute.origin !== this.base.origin || !absolute.pathname.startsWith(this.base.pathname)) return undefined;
    return absolute.pathname.slice(this.base.pathname.length);
  }

  /** An absolute reference to a resource on this server. */
  holds = (reference: string): boolean => {
    const part = this.relativePart(reference);
    return part !== undefined && TYPE_AND_ID.test(part);
  };
}

/** `{ type, id }` of a notified resource's URL (relative `Type/id` or on the server of record), with a valid id. */
function locate(url: string, server: ServerOfRecord): { type: string; id: string } | undefined {
  const part = /^[A-Za-z][A-Za-z0-9+.-]*:/.test(url) ? server.relativePart(url) : url;
  const match = part === undefined ? null : TYPE_AND_ID.exec(part);
  if (!match) return undefined;
  const [, type, id, version] = match as unknown as [string, string, string, string | undefined];
  if (!isValidFhirId(id) || (version !== undefined && !isValidFhirId(version))) return undefined;
  return { type, id };
}

const refuse = (status: number, issues: IssueInput[]): OperationOutcomeError => new OperationOutcomeError(status, operationOutcome(issues.slice(0, 100)));

/** The checks of a push, on a notified resource (`path`: where it is in the payload). */
function checkNotified(resource: fhir4.Resource, path: string, options: NotificationOptions, context: ReferenceContext): void {
  const type = resource.resourceType;
  if (!isValidFhirId(resource.id)) throw badRequest('A notified resource needs its (valid) id', `${path}.id`);
  if (options.ingestion && (PUSHABLE_TYPES as readonly string[]).includes(type)) {
    const problem = options.ingestion.check(resource, path, undefined, context);
    if (problem) throw refuse(problem.status, problem.issues);
    return;
  }
  const invalid = validateResource(resource);
  if (invalid.length) {
    throw refuse(
      400,
      invalid.map((issue) => ({
        code: issue.code,
        diagnostics: issue.diagnostics ?? issue.details?.text ?? 'Invalid resource',
        expression: (issue.expression ?? [type]).map((e) => (e.startsWith(type) ? path + e.slice(type.length) : e)),
      })),
    );
  }
  const references = referenceIssues(resource, path, context);
  if (references.length) throw refuse(422, references);
}

/** The resource as the server of record holds it now (undefined when it does not), centre rules applied. */
async function readBack(fhir: FhirServer, type: string, id: string, options: NotificationOptions): Promise<fhir4.Resource | undefined> {
  const current = await fhir.readIfExists<fhir4.Resource>(type, id);
  if (!current || current.resourceType !== type || current.id !== id) return undefined;
  if (options.authorize) await options.authorize(current);
  return current;
}

export async function handleNotification(body: unknown, fhir: FhirServer, options: NotificationOptions = {}): Promise<NotificationResult> {
  const touched = new Map<string, string[]>();
  // No body (Express leaves it undefined, or {} for an empty JSON body): an R4 core ping.
  if (body === undefined || (isObject(body) && Object.keys(body).length === 0)) return result('ping', touched);
  if (!isObject(body) || typeof body['resourceType'] !== 'string') throw badRequest('A notification is a Bundle or a FHIR resource', '(root)');
  const server = new ServerOfRecord(fhir.baseUrl);
  const resource = body as unknown as fhir4.Resource;

  if (resource.resourceType !== 'Bundle' || (resource as fhir4.Bundle).type !== 'history') {
    // R4 core: the resource itself, checked like a push, then read back.
    const structure = structuralIssues(resource);
    if (structure.length) throw refuse(400, structure.map((issue) => ({ code: issue.code, diagnostics: issue.details?.text ?? 'Invalid resource', ...(issue.expression ? { expression: issue.expression } : {}) })));
    checkNotified(resource, resource.resourceType, options, { isServerOfRecord: server.holds });
    const current = await readBack(fhir, resource.resourceType, resource.id as string, options);
    if (current) add(touched, current);
    return result('resource', touched);
  }

  const bundle = resource as fhir4.Bundle;
  const entries: unknown = bundle.entry ?? [];
  if (!Array.isArray(entries)) throw badRequest('Bundle.entry must be an array', 'Bundle.entry');
  entries.forEach((entry, index) => {
    if (!isObject(entry)) throw badRequest('Each entry must be an object', `Bundle.entry[${index}]`);
  });
  // The status entry may be an R4B `SubscriptionStatus`, unknown to R4: checked by hand, the rest by the R4 definitions.
  const [statusEntry, ...events] = entries as fhir4.BundleEntry[];
  const statusResource = statusEntry?.resource as unknown;
  const r4bStatus = isObject(statusResource) && statusResource['resourceType'] === 'SubscriptionStatus';
  if (r4bStatus && typeof statusResource['type'] !== 'string') throw badRequest('SubscriptionStatus.type must be a code', 'Bundle.entry[0].resource.type');
  const checked = r4bStatus ? { ...bundle, entry: [withoutResource(statusEntry as fhir4.BundleEntry), ...events] } : bundle;
  const structure = structuralIssues(checked, { path: 'Bundle' });
  if (structure.length) throw refuse(400, structure.map((issue) => ({ code: issue.code, diagnostics: issue.details?.text ?? 'Invalid notification', ...(issue.expression ? { expression: issue.expression } : {}) })));
  const fullUrls = new Set(entries.flatMap((entry) => (typeof entry.fullUrl === 'string' && entry.fullUrl.startsWith('urn:uuid:') ? [entry.fullUrl] : [])));
  const context: ReferenceContext = { isServerOfRecord: server.holds, bundleType: 'transaction', fullUrls };

  // Where each event is, checked before anything else about it (an id-only entry elsewhere is named as such).
  const located: { type: string; id: string }[] = [];
  for (const [index, entry] of events.entries()) {
    const path = `Bundle.entry[${index + 1}]`;
    if (entry.resource) {
      if (!isValidFhirId(entry.resource.id)) throw badRequest('A full-resource event entry needs a resource with its (valid) id', `${path}.resource`);
      located.push({ type: entry.resource.resourceType, id: entry.resource.id });
      continue;
    }
    const url = entry.fullUrl ?? entry.request?.url;
    if (!url) throw badRequest('An id-only event entry needs a fullUrl', `${path}.fullUrl`);
    const at = entry.fullUrl !== undefined ? `${path}.fullUrl` : `${path}.request.url`;
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(url) && server.relativePart(url) === undefined) throw badRequest('The notified resource is not on the FHIR server of record', at);
    const where = locate(url, server);
    if (!where) throw badRequest(`Cannot read a resource reference (Type/id with a valid id) in the ${entry.fullUrl !== undefined ? 'fullUrl' : 'request.url'}`, at);
    located.push(where);
  }
  // References anywhere in the notification (the status's subscription and focus included): this server only.
  const references = referenceIssues(checked, 'Bundle', context);
  if (references.length) throw refuse(400, references);

  const type = notificationType(statusEntry?.resource);
  if (statusEntry?.resource?.resourceType === 'Parameters') {
    const invalid = validateResource(statusEntry.resource, { profiles: [] });
    if (invalid.length) {
      throw refuse(400, invalid.map((issue) => ({ code: issue.code, diagnostics: issue.diagnostics ?? issue.details?.text ?? 'Invalid status', expression: (issue.expression ?? ['Parameters']).map((e) => e.replace(/^Parameters/, 'Bundle.entry[0].resource')) })));
    }
  }
  if (type === 'handshake' || type === 'heartbeat') return result(type, touched);
  if (type !== undefined && type !== 'event-notification') throw badRequest(`Unsupported notification type "${type.slice(0, 40)}"`, 'Bundle.entry[0].resource');
  // Each notified resource checked like a push before any is read back: one bad entry refuses the notification.
  for (const [index, entry] of events.entries()) {
    if (entry.resource) checkNotified(entry.resource, `Bundle.entry[${index + 1}].resource`, options, context);
  }

  for (const { type: resourceType, id } of located) {
    const current = await readBack(fhir, resourceType, id, options);
    if (current) add(touched, current);
  }
  return result('event-notification', touched);
}

function withoutResource(entry: fhir4.BundleEntry): fhir4.BundleEntry {
  const { resource: _resource, ...rest } = entry;
  return rest;
}
