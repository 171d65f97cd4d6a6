/** FHIR references: the versioned form used as evidence, and the `Type/id` key used to match. */

/** `Type/id/_history/versionId`, or `Type/id` when the resource has no `meta.versionId`. */
export function versionedReference(resource: fhir4.Resource): string {
  const base = `${resource.resourceType}/${resource.id ?? ''}`;
  return resource.meta?.versionId ? `${base}/_history/${resource.meta.versionId}` : base;
}

/** FHIR id syntax, after a resource type (http://hl7.org/fhir/R4/datatypes.html#id). */
const REFERENCE = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/**
 * `Type/id` of a literal reference: relative (`Practitioner/1`), absolute
 * (`https://fhir.example/fhir/Practitioner/1`) or versioned (`.../_history/2`).
 * Undefined for contained (`#x`), conditional (`Type?...`) or logical-only references.
 */
export function referenceKey(reference: fhir4.Reference | string | undefined): string | undefined {
  const text = typeof reference === 'string' ? reference : reference?.reference;
  const match = text === undefined ? null : REFERENCE.exec(text.trim());
  // `Type/.` and `Type/..` are URL dot-segments, not ids.
  return match && isFhirId(match[2]) ? `${match[1]}/${match[2]}` : undefined;
}

/** True when `reference` points at `resource` (same type and id, any version, any base URL). */
export function refersTo(reference: fhir4.Reference | undefined, resource: fhir4.Resource): boolean {
  return resource.id !== undefined && referenceKey(reference) === `${resource.resourceType}/${resource.id}`;
}

// ---------------------------------------------------------------------------------------------
// Ids and local references (issue #6: ids checked before any use in a URL)

const ID_SYNTAX = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * FHIR R4 id syntax (`[A-Za-z0-9\-\.]{1,64}`, http://hl7.org/fhir/R4/datatypes.html#id), minus
 * `.` and `..`: they match the regex but are URL dot-segments (RFC 3986 §5.2.4), so
 * `Patient/..` would address the server's base, not a Patient.
 */
export function isFhirId(value: unknown): value is string {
  return typeof value === 'string' && ID_SYNTAX.test(value) && value !== '.' && value !== '..';
}

/** A parsed literal reference to a resource of this server. */
export interface LocalReference {
  type: string;
  id: string;
  /** `Type/id`. */
  key: string;
}

const RELATIVE = /^([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})$/;
const ANY_BASE = /(?:^|\/)([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;

/**
 * The `Type/id` a literal reference points at, when `type` (one type or several) matches:
 * exactly `Type/id` by default; with `anyBase`, also an absolute URL on any base and a
 * `/_history/v` suffix (for references read from the server of record). Undefined for
 * anything else: contained, conditional, logical references, and the ids `.` and `..`.
 */
export function localReference(
  reference: fhir4.Reference | string | undefined,
  type?: string | readonly string[],
  options: { anyBase?: boolean } = {},
): LocalReference | undefined {
  const text = typeof reference === 'string' ? reference : reference?.reference;
  if (typeof text !== 'string') return undefined;
  const match = (options.anyBase ? ANY_BASE : RELATIVE).exec(text);
  if (!match) return undefined;
  const [, found, id] = match as unknown as [string, string, string];
  if (type !== undefined && (typeof type === 'string' ? found !== type : !type.includes(found))) return undefined;
  if (!isFhirId(id)) return undefined;
  return { type: found, id, key: `${found}/${id}` };
}

/** The id of a `Type/id` reference to a `type` resource (see `localReference`), or undefined. */
export function localId(reference: fhir4.Reference | string | undefined, type: string | readonly string[], options: { anyBase?: boolean } = {}): string | undefined {
  return localReference(reference, type, options)?.id;
}

// ---------------------------------------------------------------------------------------------
// Forms of a reference in pushed data (issue #6: references to other servers are refused)

/** What a `Reference.reference` string is, syntactically. */
export type ReferenceForm =
  /** `Type/id` or `Type/id/_history/v`, ids checked. */
  | { form: 'relative'; type: string; id: string }
  /** `urn:uuid:` + a UUID: an entry of the same Bundle, if its fullUrl. */
  | { form: 'urn-uuid' }
  /** `#id`: a contained resource. */
  | { form: 'contained'; id: string }
  /** `Type?identifier=system|value`: resolved by the server in a transaction (one identifier, no OR). */
  | { form: 'conditional'; type: string }
  /** An absolute URL (`scheme:` or `//host`): another server, unless it is the server of record. */
  | { form: 'absolute' }
  /** Anything else (`Patient/..`, `a b`, `urn:uuid:not-a-uuid`, a search with other parameters). */
  | { form: 'invalid' };

const VERSIONED = /^([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/;
const URN_UUID = /^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const CONTAINED_REFERENCE = /^#([A-Za-z0-9\-.]{1,64})$/;
/** One `identifier` token: no `&` (another parameter), `,` (OR), `#`, spaces or controls. */
const CONDITIONAL = /^([A-Z][A-Za-z]{1,63})\?identifier=([^&,#\s\u0000-\u001f]{1,512})$/;
const ABSOLUTE = /^(?:[A-Za-z][A-Za-z0-9+.-]*:|\/\/)/;

export function referenceForm(reference: string): ReferenceForm {
  const relative = VERSIONED.exec(reference);
  if (relative) {
    const [, type, id, version] = relative as unknown as [string, string, string, string | undefined];
    return isFhirId(id) && (version === undefined || isFhirId(version)) ? { form: 'relative', type, id } : { form: 'invalid' };
  }
  if (URN_UUID.test(reference)) return { form: 'urn-uuid' };
  const contained = CONTAINED_REFERENCE.exec(reference);
  if (contained) return { form: 'contained', id: contained[1] as string };
  const conditional = CONDITIONAL.exec(reference);
  if (conditional) return { form: 'conditional', type: conditional[1] as string };
  return ABSOLUTE.test(reference) ? { form: 'absolute' } : { form: 'invalid' };
}
