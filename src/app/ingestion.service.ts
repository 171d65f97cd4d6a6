/**
 * EHR pushes: check each resource, store it on the FHIR server without duplicates, and tell
 * which patients it touched so their evaluations can be queued.
 *
 * Duplicates: a resource with an identifier is created conditionally on it (If-None-Exist);
 * one without gets a `meta.tag` carrying a SHA-256 of its content and is created
 * conditionally on that tag, so a re-sent resource resolves to the stored version and its
 * deterministic evaluation job id is the same (no second evaluation).
 */
import { createHash } from 'node:crypto';
import { observationUnitIssues } from '../domain/evaluate.js';
import type { DataIssue } from '../domain/types.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import type { ProgramCatalog } from '../programs/schema.js';
import { MAX_ISSUES, validateResource } from '../fhir/validation.js';
import type { IssueInput } from '../http/outcomes.js';
import { isFhirId, tokenSearchValue } from '../http/input-guards.js';
import { referenceForm } from '../domain/references.js';

export const CONTENT_HASH_SYSTEM = 'http://forfait-fhir.org/fhir/CodeSystem/content-sha256';

/** Resource types an EHR may push one by one (`POST /fhir/{type}`) and in Bundles. */
export const PUSHABLE_TYPES = [
  'Patient',
  'Observation',
  'Condition',
  'Coverage',
  'Consent',
  'Specimen',
  'Organization',
  'Practitioner',
  'PractitionerRole',
] as const;
/** Types that change who practises in which centre (the centre directory). */
export const DIRECTORY_TYPES = new Set(['Organization', 'Practitioner', 'PractitionerRole']);

/**
 * Types a transaction may reference conditionally (`Practitioner?identifier=...`, as Synthea
 * bundles do): the directory, never a patient or a patient's data.
 */
export const CONDITIONAL_REFERENCE_TYPES: ReadonlySet<string> = new Set(['Practitioner', 'PractitionerRole', 'Organization', 'Location']);

/** Where a pushed resource stands, for the references it may hold. */
export interface ReferenceContext {
  /** `Bundle.type` when the resource is an entry of a pushed Bundle. */
  bundleType?: 'batch' | 'transaction';
  /** The `urn:uuid:` fullUrls of the entries of the same transaction. */
  fullUrls?: ReadonlySet<string>;
  /** Accepts an absolute reference (a notification's references to the FHIR server of record). */
  isServerOfRecord?: (reference: string) => boolean;
}

const FHIRPATH_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Issues (`invalid`) for every `reference` string of a resource (contained resources and
 * extensions included) that is not: a relative `Type/id[/_history/v]` with valid ids, a
 * contained `#id`, a `urn:uuid:` naming an entry of the same transaction, a conditional
 * `Type?identifier=...` of a directory type in a transaction, or (`isServerOfRecord`) an
 * absolute URL on the FHIR server of record. Absolute URLs to other servers are refused.
 * Iterative; at most `MAX_ISSUES` issues.
 */
export function referenceIssues(resource: unknown, path: string, context: ReferenceContext = {}): IssueInput[] {
  const issues: IssueInput[] = [];
  const stack: [unknown, string][] = [[resource, path]];
  while (stack.length && issues.length < MAX_ISSUES) {
    const [value, at] = stack.pop() as [unknown, string];
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) if (typeof value[i] === 'object' && value[i] !== null) stack.push([value[i], `${at}[${i}]`]);
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    // Members pushed last to first: issues come in document order.
    const members = Object.entries(value as Record<string, unknown>);
    for (let m = members.length - 1; m >= 0; m--) {
      const [key, member] = members[m] as [string, unknown];
      const where = `${at}${FHIRPATH_NAME.test(key) ? `.${key}` : `['${key.replace(/['\\]/g, (c) => `\\${c}`)}']`}`;
      if (key === 'reference' && typeof member === 'string') {
        const problem = referenceProblem(member, context);
        if (problem) issues.push({ code: 'invalid', diagnostics: problem, expression: [where] });
      } else if (typeof member === 'object' && member !== null) {
        stack.push([member, where]);
      }
    }
  }
  return issues;
}

function referenceProblem(reference: string, context: ReferenceContext): string | undefined {
  const shown = JSON.stringify(reference.length > 100 ? `${reference.slice(0, 100)}…` : reference);
  const parsed = referenceForm(reference);
  switch (parsed.form) {
    case 'relative':
    case 'contained':
      return undefined;
    case 'urn-uuid':
      if (context.bundleType === 'transaction' && context.fullUrls?.has(reference)) return undefined;
      return `${shown} names no entry of this transaction Bundle (a urn:uuid reference resolves only to the fullUrl of an entry of the same transaction)`;
    case 'conditional':
      if (context.bundleType === 'transaction' && CONDITIONAL_REFERENCE_TYPES.has(parsed.type)) return undefined;
      return `Conditional reference ${shown} refused: only ${[...CONDITIONAL_REFERENCE_TYPES].join(', ')} may be referenced by identifier, and only in a transaction Bundle`;
    case 'absolute':
      if (context.isServerOfRecord?.(reference)) return undefined;
      return `References to other servers are refused (${shown}); use a relative reference (Type/id)`;
    case 'invalid':
      return `${shown} is not a valid reference (Type/id with a FHIR id, #contained, or urn:uuid: of an entry of the same transaction)`;
  }
}

export interface CheckResult {
  /** 400 structure problems, 422 business-rule problems. */
  status: 400 | 422;
  issues: IssueInput[];
}

/** Versioned reference of a stored resource. */
export function versionedReference(resource: fhir4.Resource): string {
  return resource.meta?.versionId
    ? `${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`
    : `${resource.resourceType}/${resource.id}`;
}

/** JSON with sorted keys: the same content always hashes the same. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The conditional-create query that makes storing this resource idempotent, adding the
 * content-hash tag when the resource has no usable identifier.
 */
export function idempotencyQuery(resource: fhir4.Resource): string {
  const identifiers = (resource as { identifier?: fhir4.Identifier[] | fhir4.Identifier }).identifier;
  const list = Array.isArray(identifiers) ? identifiers : identifiers ? [identifiers] : [];
  const usable = list.find((identifier) => identifier.system && identifier.value);
  if (usable) return new URLSearchParams({ identifier: tokenSearchValue(usable.system as string, usable.value as string) }).toString();
  const { id: _id, meta, ...content } = resource as fhir4.Resource & Record<string, unknown>;
  const hash = createHash('sha256').update(canonicalJson(content)).digest('hex');
  const tags = (meta?.tag ?? []).filter((tag) => tag.system !== CONTENT_HASH_SYSTEM);
  resource.meta = { ...(meta ?? {}), tag: [...tags, { system: CONTENT_HASH_SYSTEM, code: hash }] };
  delete resource.meta.versionId;
  delete resource.meta.lastUpdated;
  return new URLSearchParams({ _tag: `${CONTENT_HASH_SYSTEM}|${hash}` }).toString();
}

/** The reference to the patient a resource is about, as written in it (`Patient/x`, `urn:uuid:...`). */
export function patientReferenceOf(resource: fhir4.Resource): string | undefined {
  if (resource.resourceType === 'Patient') return undefined;
  const candidates = resource as { subject?: fhir4.Reference; patient?: fhir4.Reference; beneficiary?: fhir4.Reference };
  return candidates.subject?.reference ?? candidates.patient?.reference ?? candidates.beneficiary?.reference;
}

function dataIssueToIssue(issue: DataIssue, prefix: string): IssueInput {
  return {
    code: issue.code as IssueInput['code'],
    severity: issue.severity,
    diagnostics: issue.diagnostics,
    ...(issue.expression ? { expression: [prefix ? `${prefix}.${issue.expression.replace(/^[A-Za-z]+\./, '')}` : issue.expression] } : {}),
  };
}

export class IngestionService {
  constructor(
    private readonly fhir: FhirServer,
    private readonly catalog: ProgramCatalog,
    /** Called after a directory resource was stored (bumps the shared directory generation). */
    readonly directoryChanged: () => Promise<void>,
  ) {}

  /**
   * Checks one pushed resource. `path` is the FHIRPath prefix for issues (`Observation`, or
   * `Bundle.entry[3].resource`); `context` tells which references can be resolved here
   * (`referenceIssues`): relative ones always, a `urn:uuid` of the same transaction, ...
   */
  check(resource: unknown, path: string, expectedType?: string, context: ReferenceContext = {}): CheckResult | undefined {
    if (typeof resource !== 'object' || resource === null || Array.isArray(resource)) {
      return { status: 400, issues: [{ code: 'structure', diagnostics: 'Expected a FHIR resource (a JSON object)', expression: [path] }] };
    }
    const resourceType = (resource as { resourceType?: unknown }).resourceType;
    if (typeof resourceType !== 'string') {
      return { status: 400, issues: [{ code: 'structure', diagnostics: 'Missing resourceType', expression: [path] }] };
    }
    if (expectedType && resourceType !== expectedType) {
      return { status: 400, issues: [{ code: 'invalid', diagnostics: `resourceType "${resourceType}" does not match the endpoint (${expectedType})`, expression: [`${path}.resourceType`] }] };
    }
    if (!(PUSHABLE_TYPES as readonly string[]).includes(resourceType)) {
      return { status: 422, issues: [{ code: 'not-supported', diagnostics: `This adapter does not accept ${resourceType}; it accepts ${PUSHABLE_TYPES.join(', ')}`, expression: [path] }] };
    }
    const typed = resource as fhir4.Resource;
    // The id is the server's on create (dropped), but an id that is not FHIR id syntax is invalid input.
    if (typed.id !== undefined && (typeof typed.id !== 'string' || !isFhirId(typed.id))) {
      return { status: 400, issues: [{ code: 'value', diagnostics: 'Resource.id is not a valid FHIR id ([A-Za-z0-9-.]{1,64})', expression: [`${path}.id`] }] };
    }
    const structural = validateResource(typed).filter((issue) => issue.severity === 'error' || issue.severity === 'fatal');
    if (structural.length) {
      return {
        status: 400,
        issues: structural.map((issue) => ({
          code: issue.code,
          diagnostics: issue.diagnostics ?? issue.details?.text ?? 'Invalid resource',
          expression: (issue.expression ?? [resourceType]).map((e) => e.replace(new RegExp(`^${resourceType}`), path)),
        })),
      };
    }
    const business: IssueInput[] = referenceIssues(typed, path, context);
    if (business.length) return { status: 422, issues: business };
    const patientRef = patientReferenceOf(typed);
    if (['Observation', 'Condition', 'Coverage', 'Consent'].includes(resourceType)) {
      const form = patientRef === undefined ? undefined : referenceForm(patientRef);
      if (!patientRef) {
        business.push({ code: 'required', diagnostics: `${resourceType} must name the patient it is about (${resourceType === 'Coverage' ? 'beneficiary' : resourceType === 'Consent' ? 'patient' : 'subject'})`, expression: [path] });
      } else if (!((form?.form === 'relative' && form.type === 'Patient') || form?.form === 'urn-uuid' || (form?.form === 'absolute' && /\/Patient\/[^/]+$/.test(patientRef)))) {
        business.push({ code: 'invalid', diagnostics: `The patient reference must point to a Patient`, expression: [path] });
      }
    }
    if (resourceType === 'Observation') {
      business.push(...observationUnitIssues(typed as fhir4.Observation, this.catalog.programs.values(), this.catalog).map((issue) => dataIssueToIssue(issue, path)));
    }
    return business.length ? { status: 422, issues: business } : undefined;
  }

  /** Stores one checked resource idempotently; returns what the server holds and whether it was new. */
  async store<T extends fhir4.Resource>(resource: T): Promise<{ resource: T; created: boolean }> {
    stripServerFields(resource);
    const ifNoneExist = idempotencyQuery(resource);
    const { resource: stored, status } = await this.fhir.create(resource, { ifNoneExist });
    if (DIRECTORY_TYPES.has(resource.resourceType)) await this.directoryChanged();
    return { resource: stored, created: status === 201 };
  }

  /** Adds idempotency conditions to a Bundle's POST entries (in place); tells whether it holds directory resources. */
  prepareBundle(bundle: fhir4.Bundle): { touchesDirectory: boolean } {
    let touchesDirectory = false;
    for (const entry of bundle.entry ?? []) {
      // A create never takes the client's id: some servers (Medplum's in-memory one) would keep it and overwrite.
      if (entry.resource && entry.request?.method === 'POST') stripServerFields(entry.resource);
      if (entry.resource && entry.request?.method === 'POST' && !entry.request.ifNoneExist) {
        entry.request.ifNoneExist = idempotencyQuery(entry.resource);
      }
      if (entry.resource && DIRECTORY_TYPES.has(entry.resource.resourceType)) touchesDirectory = true;
    }
    return { touchesDirectory };
  }
}

/**
 * The server assigns ids and versions on create: a client-supplied `id` (or meta.versionId /
 * lastUpdated) is dropped, never forwarded, so a push cannot overwrite another resource.
 */
export function stripServerFields(resource: fhir4.Resource): void {
  delete resource.id;
  if (resource.meta) {
    delete resource.meta.versionId;
    delete resource.meta.lastUpdated;
  }
}

export function isRelativeReference(reference: string): boolean {
  return /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}(\/_history\/[A-Za-z0-9\-.]{1,64})?$/.test(reference) && !/\/\.{1,2}(\/|$)/.test(reference);
}

/** `Patient/x`, `Patient/x/_history/1` → `x`. */
export function patientIdOf(reference: string | undefined): string | undefined {
  return reference ? /^Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/.+)?$/.exec(reference)?.[1] : undefined;
}
