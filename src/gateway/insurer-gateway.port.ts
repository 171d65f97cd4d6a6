/**
 * What the adapter needs from an insurer's claim gateway (issue #4). The HTTP implementation
 * is `insurer-gateway.adapter.ts`; `test/fixtures/insurer-gateway.ts` is a real local gateway
 * for integration tests that implements the same contract.
 *
 * ## Gateway contract
 *
 * Submission: `POST {GATEWAY_BASE_URL}/Claim/$submit`, `Content-Type: application/fhir+json`,
 * body a FHIR R4 `Bundle` of type `collection`:
 * - first entry: the `Claim`, with a business identifier `Claim.identifier[0]` (`system` and
 *   `value` both present);
 * - then the resources it references: the `Patient`, the `Coverage`, the payee
 *   (`Practitioner`, `PractitionerRole` or `Organization`), the insurer `Organization`;
 * - each entry's `fullUrl` is the form the Claim's references use, so they resolve inside the
 *   Bundle: `urn:uuid:<id>` when the Claim refers to `urn:uuid:<id>`, otherwise the resource's
 *   `Type/id` (or the absolute `{FHIR base}/Type/id`, against which `Type/id` also resolves).
 *
 * Answers:
 * - `200` with a `ClaimResponse`: `outcome` is `complete` | `error` | `partial` | `queued`;
 *   `request.identifier` (or `request.reference`) names the Claim; `error[]` holds the reasons
 *   when the claim is rejected (`error`, `partial`); `payment.amount` is set when paid.
 *   `queued` means adjudication is pending: poll with the status query below.
 * - `4xx` (other than 408, 425, 429) with an `OperationOutcome`: a permanent refusal. Sending
 *   the same Claim again will not change it; the OperationOutcome is kept as the reason.
 * - `408`, `425`, `429`, `5xx`, or no answer (connection refused or reset, timeout): transient,
 *   may carry `Retry-After` (seconds or an HTTP date). The sender retries later, for hours.
 *
 * Idempotence: the gateway is idempotent on the Claim's business identifier
 * (`Claim.identifier[0]`, `system|value`). A resubmission of an identifier it has already seen
 * returns the same ClaimResponse (as it stands now: a `queued` claim may since have become
 * `complete`) and never creates a second claim.
 *
 * Status query, used before any resubmission (a timeout may hide an accepted claim) and to poll
 * a `queued` claim:
 * `GET {GATEWAY_BASE_URL}/ClaimResponse?request.identifier={system}|{value}` (FHIR search
 * escaping: `\`, `|`, `,` and `$` inside system or value are preceded by `\`) → `200` with a
 * `searchset` Bundle holding 0 ClaimResponse (the gateway never accepted that identifier) or 1.
 *
 * Both requests send `Accept: application/fhir+json`, and `Authorization: Bearer <token>` when
 * a token is configured. Each call of `InsurerGateway` makes exactly one HTTP request and never
 * follows a redirect; retries belong to the queue.
 */

/** The four `ClaimResponse.outcome` codes (R4 value set `remittance-outcome`). */
export const CLAIM_RESPONSE_OUTCOMES = ['queued', 'complete', 'error', 'partial'] as const;
export type ClaimResponseOutcome = (typeof CLAIM_RESPONSE_OUTCOMES)[number];

/** HTTP statuses worth retrying later (0: no HTTP answer). */
export function isTransientStatus(status: number): boolean {
  return status === 0 || status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599);
}

/** An error from the gateway, classified so the queue knows whether to retry. */
export class GatewayError extends Error {
  override name = 'GatewayError';
  /** HTTP status, or 0 when there was no HTTP answer (network failure, timeout, or a request refused before sending). */
  readonly status: number;
  /** True for 0/408/425/429/5xx and for answers that are not what the contract promises: try again later. */
  readonly transient: boolean;
  /** The wait the gateway asked for (`Retry-After`), in ms from when the answer arrived. */
  readonly retryAfterMs: number | undefined;
  /** The gateway's OperationOutcome when it sent one: the reason of a refusal. */
  readonly outcome: fhir4.OperationOutcome | undefined;

  constructor(
    message: string,
    details: { status: number; transient?: boolean; retryAfterMs?: number | undefined; outcome?: fhir4.OperationOutcome | undefined },
  ) {
    super(message);
    this.status = details.status;
    this.transient = details.transient ?? isTransientStatus(details.status);
    this.retryAfterMs = details.retryAfterMs;
    this.outcome = details.outcome;
  }
}

export interface InsurerGateway {
  /**
   * `POST Claim/$submit` with a submission Bundle (see `submissionBundle`). Resolves with the
   * ClaimResponse whatever its outcome (`error` is an answer, not an exception); rejects with a
   * GatewayError otherwise. One HTTP request, no retry.
   */
  submit(bundle: fhir4.Bundle): Promise<fhir4.ClaimResponse>;
  /** The gateway's ClaimResponse for a Claim business identifier, undefined when it has none. One HTTP request. */
  status(identifier: fhir4.Identifier): Promise<fhir4.ClaimResponse | undefined>;
}

/** `system|value`: the key the gateway dedupes on (and the fixture's map key). */
export function identifierKey(identifier: fhir4.Identifier): string {
  return `${identifier.system ?? ''}|${identifier.value ?? ''}`;
}

/** The Claim's business identifier (`identifier[0]` with system and value), undefined when it has none. */
export function claimBusinessIdentifier(claim: fhir4.Claim): (fhir4.Identifier & { system: string; value: string }) | undefined {
  const first = claim.identifier?.[0];
  return first?.system && first.value ? { ...first, system: first.system, value: first.value } : undefined;
}

/** Every `reference` string anywhere inside a resource. */
function referencesIn(value: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) referencesIn(item, into);
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (key === 'reference' && typeof item === 'string') into.add(item);
      else referencesIn(item, into);
    }
  }
  return into;
}

/**
 * The Bundle to submit: a `collection` with the Claim first, then each referenced resource
 * once (duplicates by `Type/id` and the Claim itself are dropped). Each `fullUrl` is the form
 * the Claim's references use, so they resolve inside the Bundle: `urn:uuid:<id>` when the
 * Claim refers to the resource that way, else `Type/id` (`{baseUrl}/Type/id` with a base: the
 * absolute form R4 prefers, against which a relative `Type/id` reference also resolves). Pure.
 * Throws when the Claim has no business identifier or a resource has no id.
 */
export function submissionBundle(claim: fhir4.Claim, referenced: fhir4.Resource[], options: { baseUrl?: string } = {}): fhir4.Bundle {
  if (!claimBusinessIdentifier(claim)) {
    throw new Error('submission bundle: the Claim needs a business identifier (identifier[0] with system and value)');
  }
  const references = referencesIn(claim);
  const base = options.baseUrl?.replace(/\/+$/, '');
  const seen = new Set<string>();
  const entry: fhir4.BundleEntry[] = [];
  for (const resource of [claim, ...referenced]) {
    if (!resource.id) throw new Error(`submission bundle: a ${resource.resourceType} has no id, so nothing can reference it`);
    const relative = `${resource.resourceType}/${resource.id}`;
    if (seen.has(relative)) continue;
    seen.add(relative);
    const urn = `urn:uuid:${resource.id}`;
    const fullUrl = references.has(urn) ? urn : base ? `${base}/${relative}` : relative;
    entry.push({ fullUrl, resource });
  }
  return { resourceType: 'Bundle', type: 'collection', entry };
}
