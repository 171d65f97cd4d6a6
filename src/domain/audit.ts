/**
 * Audit trail (issue #6, point 4): the `AuditEvent` of a request and the `Provenance` of a
 * resource the adapter generates, as plain FHIR R4 resources.
 *
 * No patient data by construction: the builders' inputs are literal references
 * (`Type/id`, `Type/id/_history/v`), ids, codes and instants, checked at run time too; a
 * name, a birth date, an identifier value or a clinical value has nowhere to go. An
 * AuditEvent is therefore safe to queue in Redis (BullMQ keeps job data in clear) and to log
 * by id. Profiles: `profiles/StructureDefinition-adapter-audit-event.json` and
 * `profiles/StructureDefinition-adapter-provenance.json`.
 *
 * Pure: no I/O, no clock (the caller passes `recorded`), no randomness (the caller passes the
 * AuditEvent id; a Provenance id is derived from its targets).
 */
import { isIP } from 'node:net';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from './ids.js';

export const AUDIT_EVENT_PROFILE = 'http://forfait-fhir.org/fhir/StructureDefinition/adapter-audit-event';
export const PROVENANCE_PROFILE = 'http://forfait-fhir.org/fhir/StructureDefinition/adapter-provenance';

/** Identifier system of an authenticated API client (its OAuth `client_id`). */
export const CLIENT_SYSTEM = 'urn:forfait-fhir:client';
/** Identifier system of this adapter as a device (Provenance agent, AuditEvent observer). */
export const ADAPTER_SYSTEM = 'urn:forfait-fhir:adapter';
/** This adapter's identifier value in ADAPTER_SYSTEM. */
export const ADAPTER_ID = 'forfait-fhir';
/** Identifier system of the request id (`X-Request-Id`) recorded in an AuditEvent. */
export const REQUEST_ID_SYSTEM = 'urn:forfait-fhir:request-id';
/** Operation names (`$enroll`, ...) in `AuditEvent.subtype`, beside the restful-interaction code. */
export const OPERATION_SYSTEM = 'urn:forfait-fhir:operation';

export const SYSTEMS = {
  auditEventType: 'http://terminology.hl7.org/CodeSystem/audit-event-type',
  restfulInteraction: 'http://hl7.org/fhir/restful-interaction',
  auditEntityType: 'http://terminology.hl7.org/CodeSystem/audit-entity-type',
  objectRole: 'http://terminology.hl7.org/CodeSystem/object-role',
  balpEntityType: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType',
  dicom: 'http://dicom.nema.org/resources/ontology/DCM',
  participationType: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType',
  securitySourceType: 'http://terminology.hl7.org/CodeSystem/security-source-type',
  dataOperation: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation',
  provenanceParticipantType: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type',
} as const;

/** R4 resource type names. */
export type ResourceType = fhir4.FhirResource['resourceType'];
/** A relative literal reference, `Type/id` or `Type/id/_history/version`: never a value. */
export type LiteralReference = `${ResourceType}/${string}`;
/** A version-specific relative reference, `Type/id/_history/version`. */
export type VersionedReference = `${ResourceType}/${string}/_history/${string}`;

export type AuditAction = NonNullable<fhir4.AuditEvent['action']>;
export type AuditOutcome = NonNullable<fhir4.AuditEvent['outcome']>;
/** Codes of http://hl7.org/fhir/restful-interaction. */
export type RestfulInteraction =
  | 'read'
  | 'vread'
  | 'update'
  | 'patch'
  | 'delete'
  | 'history'
  | 'create'
  | 'search'
  | 'search-type'
  | 'search-system'
  | 'capabilities'
  | 'transaction'
  | 'batch'
  | 'operation';

/** The caller of the API, as authenticated. Structurally compatible with `ClientIdentity`. */
export interface AuditClient {
  /** OAuth client id; `unauthenticated` when no valid token was given. */
  clientId: string;
  /** Centre the client is bound to, `system|value` of its identifier. */
  centre?: string;
  /** Network address the request came from (IP), when known. */
  address?: string;
}

export interface AuditEventInput {
  /** A random FHIR id chosen by the caller (one AuditEvent per request). */
  id: string;
  action: AuditAction;
  /** Restful interaction; default: `operation` when `subtype` is given, else from `action`. */
  interaction?: RestfulInteraction;
  /** Operation name, e.g. `$enroll`. */
  subtype?: string;
  outcome: AuditOutcome;
  client: AuditClient;
  /** When the event happened (an instant). */
  recorded: string;
  /** Resources involved, read or written: literal references only (no values, no names). */
  entities: readonly LiteralReference[];
  /** The request id (`X-Request-Id`), to join the AuditEvent with the adapter's log line. */
  requestId: string;
  /** Who observed the event: this adapter (a display name) and its site (deployment name). */
  source: { observer: string; site: string };
}

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const LITERAL_REFERENCE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(\/_history\/([A-Za-z0-9\-.]{1,64}))?$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const REQUEST_ID = /^[A-Za-z0-9\-_.]{1,64}$/;
const OPERATION_NAME = /^\$?[A-Za-z][A-Za-z0-9-]{0,63}$/;
/** A client id is a token claim, not patient data; bounded and printable. */
const CLIENT_ID = /^[\x21-\x7e]{1,256}$/;
/** Entities beyond this are not recorded (a 2 MB Synthea bundle writes a few thousand resources). */
export const MAX_AUDIT_ENTITIES = 5000;

/** True for a relative literal reference (`Type/id`, `Type/id/_history/v`). */
export function isLiteralReference(value: unknown): value is LiteralReference {
  return typeof value === 'string' && LITERAL_REFERENCE.test(value);
}

/** True for a version-specific relative reference (`Type/id/_history/v`). */
export function isVersionedReference(value: unknown): value is VersionedReference {
  return typeof value === 'string' && LITERAL_REFERENCE.exec(value)?.[4] !== undefined;
}

/** `Type/id` of a literal reference (its version removed). */
export function unversioned(reference: LiteralReference): LiteralReference {
  return reference.replace(/\/_history\/.*$/, '') as LiteralReference;
}

/** `Type/id/_history/v` (or `Type/id` without a version) of a stored resource; undefined without an id. */
export function referenceOf(resource: fhir4.Resource): LiteralReference | undefined {
  if (!resource.id) return undefined;
  const reference = resource.meta?.versionId
    ? `${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`
    : `${resource.resourceType}/${resource.id}`;
  return isLiteralReference(reference) ? reference : undefined;
}

/** The relative reference at the end of a URL or location (`http://x/fhir/Patient/1/_history/2` → `Patient/1/_history/2`). */
export function referenceFromLocation(location: string | undefined): LiteralReference | undefined {
  const match = /(?:^|\/)([A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}(?:\/_history\/[A-Za-z0-9\-.]{1,64})?)$/.exec((location ?? '').split('?')[0] ?? '');
  return match && isLiteralReference(match[1]) ? match[1] : undefined;
}

function fail(what: string): never {
  throw new TypeError(`audit: ${what}`);
}

function checkReferences(references: readonly string[], what: string): LiteralReference[] {
  const unique: LiteralReference[] = [];
  const seen = new Set<string>();
  for (const reference of references) {
    // The offending value is not echoed: it might be the very data that must not be recorded.
    if (!isLiteralReference(reference)) fail(`${what} must be relative literal references (Type/id[/_history/v])`);
    if (seen.has(reference)) continue;
    seen.add(reference);
    unique.push(reference);
  }
  return unique;
}

/** `system|value` → Identifier (a value without system: value only). */
function identifierOf(token: string): fhir4.Identifier {
  const bar = token.indexOf('|');
  return bar < 0 ? { value: token } : { ...(bar > 0 ? { system: token.slice(0, bar) } : {}), value: token.slice(bar + 1) };
}

function interactionFor(action: AuditAction, subtype: string | undefined): RestfulInteraction {
  if (subtype) return 'operation';
  return ({ C: 'create', R: 'read', U: 'update', D: 'delete', E: 'operation' } as const)[action];
}

function entityOf(reference: LiteralReference): fhir4.AuditEventEntity {
  const isPatient = reference.startsWith('Patient/');
  return {
    what: { reference },
    type: isPatient
      ? { system: SYSTEMS.auditEntityType, code: '1', display: 'Person' }
      : { system: SYSTEMS.auditEntityType, code: '2', display: 'System Object' },
    role: isPatient ? { system: SYSTEMS.objectRole, code: '1', display: 'Patient' } : { system: SYSTEMS.objectRole, code: '4', display: 'Domain Resource' },
  };
}

/**
 * The AuditEvent of one request (R4, profile adapter-audit-event): type `rest`, subtype the
 * restful interaction (+ the operation name), action, outcome, the client as requesting agent
 * (and its centre as responsible party), this adapter as source, the resources involved and
 * the request id as entities. Throws a TypeError on an input that is not an id, instant or
 * reference (the message never repeats the input).
 */
export function auditEvent(input: AuditEventInput): fhir4.AuditEvent {
  if (!FHIR_ID.test(input.id)) fail('id must be a FHIR id');
  if (!INSTANT.test(input.recorded)) fail('recorded must be an instant');
  if (!REQUEST_ID.test(input.requestId)) fail('requestId must match [A-Za-z0-9-_.]{1,64}');
  if (!CLIENT_ID.test(input.client.clientId)) fail('clientId must be 1 to 256 printable characters');
  if (input.client.centre !== undefined && !CLIENT_ID.test(input.client.centre)) fail('centre must be system|value');
  if (input.subtype !== undefined && !OPERATION_NAME.test(input.subtype)) fail('subtype must be an operation name ($name)');
  if (!input.source.observer.trim() || !input.source.site.trim()) fail('source needs an observer and a site');
  const entities = checkReferences(input.entities, 'entities').slice(0, MAX_AUDIT_ENTITIES);
  const interaction = input.interaction ?? interactionFor(input.action, input.subtype);

  const address = input.client.address;
  const agents: fhir4.AuditEventAgent[] = [
    {
      type: { coding: [{ system: SYSTEMS.dicom, code: '110150', display: 'Application' }] },
      who: { identifier: { system: CLIENT_SYSTEM, value: input.client.clientId } },
      requestor: true,
      ...(address && address.length <= 256 ? { network: { address, type: isIP(address) ? ('2' as const) : ('1' as const) } } : {}),
    },
  ];
  if (input.client.centre) {
    agents.push({
      type: { coding: [{ system: SYSTEMS.participationType, code: 'RESP', display: 'responsible party' }] },
      who: { type: 'Organization', identifier: identifierOf(input.client.centre) },
      requestor: false,
    });
  }

  return {
    resourceType: 'AuditEvent',
    id: input.id,
    meta: { profile: [AUDIT_EVENT_PROFILE] },
    type: { system: SYSTEMS.auditEventType, code: 'rest', display: 'RESTful Operation' },
    subtype: [
      { system: SYSTEMS.restfulInteraction, code: interaction },
      ...(input.subtype ? [{ system: OPERATION_SYSTEM, code: input.subtype.startsWith('$') ? input.subtype : `$${input.subtype}` }] : []),
    ],
    action: input.action,
    recorded: input.recorded,
    outcome: input.outcome,
    agent: agents,
    source: {
      site: input.source.site,
      observer: { type: 'Device', identifier: { system: ADAPTER_SYSTEM, value: ADAPTER_ID }, display: input.source.observer },
      type: [{ system: SYSTEMS.securitySourceType, code: '4', display: 'Application Server' }],
    },
    entity: [
      ...entities.map(entityOf),
      {
        what: { identifier: { system: REQUEST_ID_SYSTEM, value: input.requestId } },
        type: { system: SYSTEMS.balpEntityType, code: 'XrequestId', display: 'X-Request-Id' },
      },
    ],
  };
}

/** AuditEvent outcome of an HTTP status: 2xx/3xx success, 4xx minor failure, 5xx serious failure. */
export function outcomeOfStatus(status: number): AuditOutcome {
  if (status >= 500) return '8';
  if (status >= 400) return '4';
  return '0';
}

// ---------------------------------------------------------------------------------------------
// Which requests are audited, and as what

export interface AuditedRequest {
  action: AuditAction;
  interaction: RestfulInteraction;
  subtype?: string;
  /** References named by the path (`/fhir/Patient/{id}/$enroll` → `Patient/{id}`). */
  entities: LiteralReference[];
}

const OPERATION_PATH = /^\/fhir\/(?:([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})\/)?\$([A-Za-z][A-Za-z0-9-]{0,63})$/;
const INSTANCE_PATH = /^\/fhir\/([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/;
const TYPE_PATH = /^\/fhir\/([A-Z][A-Za-z]+)$/;

function pathReference(type: string | undefined, id: string | undefined, version?: string): LiteralReference[] {
  if (!type || !id) return [];
  const reference = `${type}/${id}${version ? `/_history/${version}` : ''}`;
  return isLiteralReference(reference) ? [reference] : [];
}

/**
 * How a request is audited, from its method and path (without query string), or undefined
 * for requests that neither write nor disclose patient data (health, metrics, the
 * CapabilityStatement, `$screen` progress, the queue dashboard's pages and assets). The
 * mapping sees the raw path, so it works for requests refused before routing (401, 403).
 * `bundleType` is the `type` of a Bundle posted to `/fhir` (transaction or batch).
 */
export function classifyRequest(method: string, rawPath: string, bundleType?: string): AuditedRequest | undefined {
  let path: string;
  try {
    path = decodeURIComponent(rawPath.split('?')[0] ?? '').replace(/\/+$/, '') || '/';
  } catch {
    path = rawPath.split('?')[0] ?? '/';
  }
  const verb = method.toUpperCase();
  if (path === '/healthz' || path === '/readyz' || path === '/metrics' || path === '/fhir/metadata') return undefined;
  if (path === '/admin/queues' || path.startsWith('/admin/')) {
    // The dashboard's pages and assets are not audited; its actions (retry, clean, promote...) are.
    return verb === 'GET' || verb === 'HEAD' ? undefined : { action: 'E', interaction: 'operation', subtype: '$admin-queues', entities: [] };
  }
  if (path === '/hooks/subscription') return { action: 'E', interaction: 'operation', subtype: '$subscription-notification', entities: [] };
  if (/^\/fhir\/_async\/[^/]+$/.test(path)) return undefined;
  if (path === '/fhir') {
    if (verb !== 'POST') return { action: verb === 'GET' ? 'R' : 'E', interaction: verb === 'GET' ? 'search-system' : 'operation', entities: [] };
    return { action: 'E', interaction: bundleType === 'batch' ? 'batch' : 'transaction', entities: [] };
  }
  const operation = OPERATION_PATH.exec(path);
  if (operation) {
    return { action: 'E', interaction: 'operation', subtype: `$${operation[3] as string}`, entities: pathReference(operation[1], operation[2]) };
  }
  const instance = INSTANCE_PATH.exec(path);
  if (instance) {
    const entities = pathReference(instance[1], instance[2], instance[3]);
    if (verb === 'PUT') return { action: 'U', interaction: 'update', entities };
    if (verb === 'PATCH') return { action: 'U', interaction: 'patch', entities };
    if (verb === 'DELETE') return { action: 'D', interaction: 'delete', entities };
    if (verb === 'POST') return { action: 'C', interaction: 'create', entities };
    return { action: 'R', interaction: instance[3] ? 'vread' : 'read', entities };
  }
  const type = TYPE_PATH.exec(path);
  if (type) {
    if (verb === 'POST') return { action: 'C', interaction: 'create', entities: [] };
    if (verb === 'GET' || verb === 'HEAD') return { action: 'R', interaction: 'search-type', entities: [] };
    return { action: verb === 'DELETE' ? 'D' : 'U', interaction: verb === 'DELETE' ? 'delete' : 'update', entities: [] };
  }
  if (path.startsWith('/fhir/')) {
    const action: AuditAction = verb === 'GET' || verb === 'HEAD' ? 'R' : verb === 'DELETE' ? 'D' : verb === 'POST' ? 'C' : 'U';
    return { action, interaction: action === 'R' ? 'read' : action === 'D' ? 'delete' : action === 'C' ? 'create' : 'update', entities: [] };
  }
  return undefined;
}

/**
 * The references a FHIR body names, for an AuditEvent's entities, and nothing else of it:
 * - Parameters (operation input or answer): every `valueReference`, parts included;
 * - Bundle: the entries' `response.location` (what a transaction or batch wrote);
 * - a stored resource: its own versioned reference, and the patient it is about
 *   (`subject`, `patient`, `beneficiary`) and an Encounter's `episodeOfCare`;
 * - a resource without id (a request body): only the patient and episode it names.
 * Anything that is not a relative literal reference is ignored.
 */
export function referencesIn(body: unknown): LiteralReference[] {
  const found: LiteralReference[] = [];
  const add = (value: unknown): void => {
    if (isLiteralReference(value)) found.push(value);
  };
  if (!body || typeof body !== 'object' || Array.isArray(body)) return [];
  const resource = body as fhir4.Resource;
  if (resource.resourceType === 'Parameters') {
    const walk = (parameters: readonly fhir4.ParametersParameter[] | undefined, depth: number): void => {
      if (!Array.isArray(parameters) || depth > 5) return;
      for (const parameter of parameters) {
        add(parameter?.valueReference?.reference);
        walk(parameter?.part, depth + 1);
      }
    };
    walk((resource as fhir4.Parameters).parameter, 0);
  } else if (resource.resourceType === 'Bundle') {
    const entries = (resource as fhir4.Bundle).entry;
    for (const entry of Array.isArray(entries) ? entries : []) {
      const location = referenceFromLocation(entry?.response?.location);
      if (location) found.push(location);
    }
  } else if (typeof resource.resourceType === 'string' && resource.resourceType !== 'OperationOutcome') {
    const own = referenceOf(resource);
    if (own) found.push(own);
    const about = resource as { subject?: fhir4.Reference; patient?: fhir4.Reference; beneficiary?: fhir4.Reference; episodeOfCare?: fhir4.Reference[] };
    add(about.subject?.reference);
    add(about.patient?.reference);
    add(about.beneficiary?.reference);
    if (Array.isArray(about.episodeOfCare)) for (const episode of about.episodeOfCare) add(episode?.reference);
  }
  return [...new Set(found)];
}

// ---------------------------------------------------------------------------------------------
// Provenance

export type DataOperation = 'CREATE' | 'UPDATE' | 'DELETE';

const DATA_OPERATIONS: Record<DataOperation, fhir4.Coding> = {
  CREATE: { system: SYSTEMS.dataOperation, code: 'CREATE', display: 'create' },
  UPDATE: { system: SYSTEMS.dataOperation, code: 'UPDATE', display: 'revise' },
  DELETE: { system: SYSTEMS.dataOperation, code: 'DELETE', display: 'delete' },
};

/** Who is behind a generated resource: always this adapter (assembler), and the client whose request caused it, if any. */
export interface ProvenanceAgentInput {
  /** The adapter's display name, e.g. `forfait-fhir 0.1.0`. */
  adapter: string;
  /** The client whose request caused the write (absent for queued work: evaluations, the daily jobs). */
  client?: Pick<AuditClient, 'clientId' | 'centre'>;
}

export interface ProvenanceInput {
  /** What was written: version-specific references. */
  target: readonly VersionedReference[];
  recorded: string;
  activity: DataOperation | fhir4.Coding;
  agent: ProvenanceAgentInput;
  /** What it was made from (triggering and evidence resources), as references. */
  entity?: readonly LiteralReference[];
  /** Default: `provenanceId(target)`. */
  id?: string;
}

/** Deterministic id of the Provenance of a set of target versions: re-recording the same write PUTs the same resource. */
export function provenanceId(targets: readonly string[]): string {
  return deterministicUuid(FORFAIT_UUID_NAMESPACE, `Provenance|${[...new Set(targets)].sort().join('|')}`);
}

/**
 * The Provenance of resources the adapter generated (R4, profile adapter-provenance): the
 * versioned targets, when, the data operation, the adapter as assembler (and the requesting
 * client as author, on behalf of its centre), the source resources. Throws a TypeError on an
 * input that is not a reference, instant or id (the message never repeats the input).
 */
export function provenance(input: ProvenanceInput): fhir4.Provenance {
  if (input.target.length === 0) fail('a Provenance needs at least one target');
  const targets = checkReferences(input.target, 'targets');
  if (!targets.every((target) => isVersionedReference(target))) fail('targets must be version-specific references (Type/id/_history/v)');
  const sources = checkReferences(input.entity ?? [], 'entities').slice(0, MAX_AUDIT_ENTITIES);
  if (!INSTANT.test(input.recorded)) fail('recorded must be an instant');
  const id = input.id ?? provenanceId(targets);
  if (!FHIR_ID.test(id)) fail('id must be a FHIR id');
  if (!input.agent.adapter.trim()) fail('the adapter agent needs a name');
  const client = input.agent.client;
  if (client && !CLIENT_ID.test(client.clientId)) fail('clientId must be 1 to 256 printable characters');
  if (client?.centre !== undefined && !CLIENT_ID.test(client.centre)) fail('centre must be system|value');
  const activity = typeof input.activity === 'string' ? DATA_OPERATIONS[input.activity] : input.activity;
  if (!activity?.system || !activity.code) fail('activity must be a coding with system and code');

  const agents: fhir4.ProvenanceAgent[] = [
    {
      type: { coding: [{ system: SYSTEMS.provenanceParticipantType, code: 'assembler', display: 'Assembler' }] },
      who: { type: 'Device', identifier: { system: ADAPTER_SYSTEM, value: ADAPTER_ID }, display: input.agent.adapter },
    },
  ];
  if (client) {
    agents.push({
      type: { coding: [{ system: SYSTEMS.provenanceParticipantType, code: 'author', display: 'Author' }] },
      who: { type: 'Device', identifier: { system: CLIENT_SYSTEM, value: client.clientId } },
      ...(client.centre ? { onBehalfOf: { type: 'Organization', identifier: identifierOf(client.centre) } } : {}),
    });
  }

  return {
    resourceType: 'Provenance',
    id,
    meta: { profile: [PROVENANCE_PROFILE] },
    target: targets.map((reference) => ({ reference })),
    recorded: input.recorded,
    activity: { coding: [{ ...activity }] },
    agent: agents,
    ...(sources.length ? { entity: sources.map((reference) => ({ role: 'source' as const, what: { reference } })) } : {}),
  };
}
