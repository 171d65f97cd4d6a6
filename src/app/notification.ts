/**
 * R4 rest-hook Subscription notifications from a FHIR server that already holds the data.
 * Accepted forms:
 * - the Subscriptions R5 Backport IG for R4: a `history` Bundle whose first entry is the
 *   notification status (`Parameters`, or `SubscriptionStatus`), then one entry per
 *   event, with the resource (`full-resource`) or only its `fullUrl` (`id-only`), read back
 *   from the FHIR server of record;
 * - R4 core rest-hook with a payload: the resource itself;
 * - R4 core with no payload (a ping): nothing to evaluate.
 * Handshake and heartbeat notifications queue nothing.
 */
import { badRequest } from '../http/outcomes.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import { DIRECTORY_TYPES, patientIdOf, patientReferenceOf, versionedReference } from './ingestion.service.js';

export interface NotificationResult {
  kind: 'ping' | 'handshake' | 'heartbeat' | 'event-notification' | 'resource';
  touched: Map<string, string[]>;
  /** An Organization, Practitioner or PractitionerRole changed: the centre directory must be refreshed. */
  touchesDirectory: boolean;
}

function notificationType(status: fhir4.Resource | undefined): string | undefined {
  if (!status) return undefined;
  if (status.resourceType === 'Parameters') {
    const parameters = (status as fhir4.Parameters).parameter;
    if (parameters !== undefined && !Array.isArray(parameters)) throw badRequest('Parameters.parameter must be an array', 'Bundle.entry[0].resource.parameter');
    return parameters?.find((p) => p?.name === 'type')?.valueCode;
  }
  return (status as { type?: string }).type;
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

export async function handleNotification(body: unknown, fhir: FhirServer): Promise<NotificationResult> {
  const touched = new Map<string, string[]>();
  // No body (Express leaves it undefined, or {} for an empty JSON body): an R4 core ping.
  if (body === undefined || (isObject(body) && Object.keys(body).length === 0)) return result('ping', touched);
  if (!isObject(body) || typeof body['resourceType'] !== 'string') throw badRequest('A notification is a Bundle or a FHIR resource', '(root)');
  const resource = body as unknown as fhir4.Resource;

  if (resource.resourceType !== 'Bundle' || (resource as fhir4.Bundle).type !== 'history') {
    if (!resource.id) throw badRequest('A notified resource needs its id', `${resource.resourceType}.id`);
    add(touched, resource);
    return result('resource', touched);
  }

  const entries: unknown = (resource as fhir4.Bundle).entry ?? [];
  if (!Array.isArray(entries)) throw badRequest('Bundle.entry must be an array', 'Bundle.entry');
  entries.forEach((entry, index) => {
    if (!isObject(entry)) throw badRequest('Each entry must be an object', `Bundle.entry[${index}]`);
  });
  const [statusEntry, ...events] = entries as fhir4.BundleEntry[];
  const type = notificationType(statusEntry?.resource);
  if (type === 'handshake' || type === 'heartbeat') return result(type, touched);
  if (type !== undefined && type !== 'event-notification') throw badRequest(`Unsupported notification type "${type}"`, 'Bundle.entry[0].resource');

  const server = new URL(fhir.baseUrl.endsWith('/') ? fhir.baseUrl : `${fhir.baseUrl}/`);
  for (const [index, entry] of events.entries()) {
    if (entry.resource) {
      if (!isObject(entry.resource) || typeof entry.resource.resourceType !== 'string' || !entry.resource.id) {
        throw badRequest('A full-resource event entry needs a resource with its id', `Bundle.entry[${index + 1}].resource`);
      }
      add(touched, entry.resource);
      continue;
    }
    const url = entry.fullUrl ?? entry.request?.url;
    if (!url) throw badRequest('An id-only event entry needs a fullUrl', `Bundle.entry[${index + 1}].fullUrl`);
    const absolute = new URL(url, server);
    if (absolute.origin !== server.origin || !absolute.pathname.startsWith(server.pathname)) {
      throw badRequest('The notified resource is not on the FHIR server of record', `Bundle.entry[${index + 1}].fullUrl`);
    }
    const match = /([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(absolute.pathname);
    if (!match) throw badRequest(`Cannot read a resource reference in "${url}"`, `Bundle.entry[${index + 1}].fullUrl`);
    const current = await fhir.readIfExists<fhir4.Resource>(match[1] as string, match[2] as string);
    if (current) add(touched, current);
  }
  return result('event-notification', touched);
}
