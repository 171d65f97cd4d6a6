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
import { patientIdOf, patientReferenceOf, versionedReference } from './ingestion.service.js';

export interface NotificationResult {
  kind: 'ping' | 'handshake' | 'heartbeat' | 'event-notification' | 'resource';
  touched: Map<string, string[]>;
}

function notificationType(status: fhir4.Resource | undefined): string | undefined {
  if (!status) return undefined;
  if (status.resourceType === 'Parameters') {
    return (status as fhir4.Parameters).parameter?.find((p) => p.name === 'type')?.valueCode;
  }
  return (status as { type?: string }).type;
}

function add(touched: Map<string, string[]>, resource: fhir4.Resource): void {
  const patientId = resource.resourceType === 'Patient' ? resource.id : patientIdOf(patientReferenceOf(resource));
  if (!patientId) return;
  const list = touched.get(patientId) ?? [];
  list.push(versionedReference(resource));
  touched.set(patientId, list);
}

export async function handleNotification(body: unknown, fhir: FhirServer): Promise<NotificationResult> {
  const touched = new Map<string, string[]>();
  if (body === undefined || body === null || (typeof body === 'object' && Object.keys(body).length === 0)) return { kind: 'ping', touched };
  const resource = body as fhir4.Resource;
  if (typeof resource.resourceType !== 'string') throw badRequest('A notification is a Bundle or a FHIR resource', '(root)');

  if (resource.resourceType !== 'Bundle' || (resource as fhir4.Bundle).type !== 'history') {
    if (!resource.id) throw badRequest('A notified resource needs its id', `${resource.resourceType}.id`);
    add(touched, resource);
    return { kind: 'resource', touched };
  }

  const [statusEntry, ...events] = (resource as fhir4.Bundle).entry ?? [];
  const type = notificationType(statusEntry?.resource);
  if (type === 'handshake' || type === 'heartbeat') return { kind: type, touched };
  if (type !== undefined && type !== 'event-notification') throw badRequest(`Unsupported notification type "${type}"`, 'Bundle.entry[0].resource');

  const server = new URL(fhir.baseUrl.endsWith('/') ? fhir.baseUrl : `${fhir.baseUrl}/`);
  for (const [index, entry] of events.entries()) {
    if (entry.resource) {
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
  return { kind: 'event-notification', touched };
}
