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
  return match ? `${match[1]}/${match[2]}` : undefined;
}

/** True when `reference` points at `resource` (same type and id, any version, any base URL). */
export function refersTo(reference: fhir4.Reference | undefined, resource: fhir4.Resource): boolean {
  return resource.id !== undefined && referenceKey(reference) === `${resource.resourceType}/${resource.id}`;
}
