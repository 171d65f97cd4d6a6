/**
 * What the adapter needs from a FHIR R4 server. The implementation (`fhir-server.adapter.ts`)
 * speaks HTTP (Node http with keep-alive); the embedded server and HAPI FHIR both satisfy it.
 */

export interface FhirWriteResult<T extends fhir4.Resource> {
  resource: T;
  /** HTTP status the server answered: 201 created, 200 existing/updated. */
  status: number;
}

/** An error from the FHIR server, classified so callers and queues know whether to retry. */
export class FhirServerError extends Error {
  override name = 'FhirServerError';
  constructor(
    message: string,
    /** HTTP status, or 0 for a network failure or timeout. */
    readonly status: number,
    /** The server's OperationOutcome when it sent one. */
    readonly outcome: fhir4.OperationOutcome | undefined,
    /** True for 408/429/5xx, network failures and timeouts: the same request may succeed later. */
    readonly transient: boolean,
  ) {
    super(message);
  }
}

/**
 * A batch entry's status (a number, or 0 for no answer) that may succeed if sent again: no
 * answer, 408, 429 or 5xx. Any other 4xx will not change.
 */
export function isTransientEntryStatus(status: number): boolean {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

export interface FhirServer {
  readonly baseUrl: string;
  read<T extends fhir4.Resource>(resourceType: string, id: string): Promise<T>;
  /** Returns undefined on 404/410. */
  readIfExists<T extends fhir4.Resource>(resourceType: string, id: string): Promise<T | undefined>;
  /** Searches and follows `next` links (same origin only) up to `maxPages`. */
  searchAll<T extends fhir4.Resource>(resourceType: string, params: Record<string, string | string[]>, maxPages?: number): Promise<T[]>;
  /** POST with optional `If-None-Exist` (conditional create). */
  create<T extends fhir4.Resource>(resource: T, options?: { ifNoneExist?: string }): Promise<FhirWriteResult<T>>;
  /**
   * PUT `Type/id` (update, or create with a client-assigned id). With `ifMatch` (a versionId)
   * the server refuses with 412 when the resource changed since it was read.
   */
  update<T extends fhir4.Resource>(resource: T & { id: string }, options?: { ifMatch?: string }): Promise<FhirWriteResult<T>>;
  batch(bundle: fhir4.Bundle): Promise<fhir4.Bundle>;
  transaction(bundle: fhir4.Bundle): Promise<fhir4.Bundle>;
  /** Cheap liveness probe (`GET metadata` or a `_count=0` search). */
  ping(): Promise<void>;
}
