/**
 * Deterministic identifiers. A resource the adapter writes gets an id derived from what it
 * is about (program, patient, ...), so a retried or repeated write updates the same resource
 * (`PUT Type/{id}`) instead of creating a duplicate.
 *
 * Pure: hashing with node:crypto performs no I/O and reads no clock.
 */
import { createHash } from 'node:crypto';

/** RFC 4122 appendix C name-space ids. */
export const UUID_NAMESPACE_DNS = '6ba7b810-9dad-11d1-80b4-00c04fd430c8';
export const UUID_NAMESPACE_URL = '6ba7b811-9dad-11d1-80b4-00c04fd430c8';

/**
 * This project's own name space: the UUIDv5 of its FHIR base URL (`http://forfait-fhir.org/fhir`,
 * the base of its canonical URLs) in the URL name space. Names hashed in it should start with
 * the resource type they identify, e.g. `GuidanceResponse|<program url>|<patient id>`.
 */
export const FORFAIT_UUID_NAMESPACE = deterministicUuidUnchecked(UUID_NAMESPACE_URL, 'http://forfait-fhir.org/fhir');

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Name-based UUID, version 5 (SHA-1), as RFC 4122 section 4.3 defines it: the SHA-1 of the
 * name space's 16 bytes followed by the name's UTF-8 bytes, truncated to 16 bytes, with the
 * version (5) and the variant (10xx) bits set. Lower-case, hyphenated.
 *
 * Valid as a FHIR `id` (64 characters of [A-Za-z0-9-.] at most).
 *
 * @throws TypeError when `namespace` is not a UUID.
 */
export function deterministicUuid(namespace: string, name: string): string {
  if (!UUID_PATTERN.test(namespace)) throw new TypeError(`Not a UUID name space: ${namespace}`);
  return deterministicUuidUnchecked(namespace, name);
}

function deterministicUuidUnchecked(namespace: string, name: string): string {
  const hash = createHash('sha1')
    .update(Buffer.from(namespace.replace(/-/g, ''), 'hex'))
    .update(name, 'utf8')
    .digest();
  const bytes = hash.subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50; // version 5
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
