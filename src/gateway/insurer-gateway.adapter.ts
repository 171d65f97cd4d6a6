/**
 * InsurerGateway over HTTP with the native fetch: one request per call (no retry loop here:
 * the claim queue retries for hours), a per-request timeout (timeoutSignal), no redirects
 * followed, and every failure turned into a GatewayError classified transient or permanent,
 * with the gateway's `Retry-After` and OperationOutcome kept. The contract is in
 * `insurer-gateway.port.ts`.
 */
import { timeoutSignal } from '../infra/timeout-signal.js';
import { parseRetryAfter } from '../fhir/fhir-server.adapter.js';
import { createMtlsFetch, type MtlsMaterial, type MtlsRequestInit } from '../infra/mtls.js';
import { SmartTokenError, toAccessTokenProvider, type AccessTokenProvider, type TokenProviderOption } from '../infra/smart-backend.js';
import {
  CLAIM_RESPONSE_OUTCOMES,
  GatewayError,
  claimBusinessIdentifier,
  identifierKey,
  type InsurerGateway,
} from './insurer-gateway.port.js';

// The pure Bundle builder lives with the contract; re-exported for callers that import the adapter.
export { submissionBundle } from './insurer-gateway.port.js';

/**
 * The gateway is unavailable rather than refusing this one request: no answer (connection
 * refused, network error, timeout), 429, 503 or 504. The claims queue then pauses as a whole
 * (every claim would meet the same outage) instead of retrying claim by claim.
 */
export function isGatewayUnavailable(error: unknown): error is GatewayError {
  return error instanceof GatewayError && error.transient && [0, 429, 503, 504].includes(error.status);
}

export interface InsurerGatewayOptions {
  /** `GATEWAY_BASE_URL`: `{baseUrl}/Claim/$submit`, `{baseUrl}/ClaimResponse?...`. */
  baseUrl: string;
  /** Timeout of one request, ms (connection, answer and body together). */
  timeoutMs: number;
  /** Sent as `Authorization: Bearer <token>` when set. */
  bearerToken?: string;
  /** Extra headers sent with every request (e.g. an API key the insurer requires). */
  headers?: Record<string, string>;
  /**
   * An access token per request (SMART Backend Services, `createSmartBackendTokenProvider`),
   * sent as `Authorization: Bearer`; on a 401 the token is invalidated and the request sent
   * once more with a new one. Exclusive with `bearerToken`.
   */
  tokenProvider?: TokenProviderOption;
  /** Mutual TLS: the client certificate, its key and the CA of the gateway (see `loadMtlsMaterial`). */
  tls?: MtlsMaterial;
}

const FHIR_JSON = 'application/fhir+json';
/** The status of a GatewayError for an answer that breaks the contract (a bad gateway, in HTTP's words). */
const INVALID_ANSWER = 502;

function isResource<T extends fhir4.Resource>(value: unknown, resourceType: T['resourceType']): value is T {
  return typeof value === 'object' && value !== null && (value as { resourceType?: unknown }).resourceType === resourceType;
}

/** FHIR search escaping of a token part (`\`, `|`, `,`, `$`). */
function escapeSearch(value: string): string {
  return value.replace(/[\\|,$]/g, (char) => `\\${char}`);
}

interface Answer {
  status: number;
  headers: Headers;
  /** Parsed JSON, or undefined when the body was empty or not JSON. */
  body: unknown;
  /** The first characters of a body that was not JSON, for messages. */
  text: string;
}

export class HttpInsurerGateway implements InsurerGateway {
  private readonly baseUrl: string;
  private readonly tokens: AccessTokenProvider | undefined;
  private readonly fetch: (url: string, init: MtlsRequestInit) => Promise<Response>;

  constructor(private readonly options: InsurerGatewayOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    if (options.bearerToken && options.tokenProvider) throw new Error('HttpInsurerGateway: set bearerToken or tokenProvider, not both');
    this.tokens = options.tokenProvider ? toAccessTokenProvider(options.tokenProvider) : undefined;
    if (options.tls && !this.baseUrl.startsWith('https:')) throw new Error('HttpInsurerGateway: tls needs an https base URL');
    this.fetch = options.tls ? createMtlsFetch(options.tls) : (url, init) => fetch(url, init);
  }

  async submit(bundle: fhir4.Bundle): Promise<fhir4.ClaimResponse> {
    const claim = bundle.entry?.[0]?.resource;
    const identifier = isResource<fhir4.Claim>(claim, 'Claim') ? claimBusinessIdentifier(claim) : undefined;
    if (bundle.resourceType !== 'Bundle' || bundle.type !== 'collection' || !identifier) {
      // Our own mistake, found before sending: nothing to retry.
      throw new GatewayError(
        'gateway submit: refusing to send, the Bundle must be a collection whose first entry is a Claim with identifier[0].system and .value',
        { status: 0, transient: false },
      );
    }
    const label = `submit ${identifierKey(identifier)}`;
    const answer = await this.request(label, `${this.baseUrl}/Claim/$submit`, { method: 'POST', body: JSON.stringify(bundle) });
    const response = answer.body;
    if (!isResource<fhir4.ClaimResponse>(response, 'ClaimResponse')) {
      throw this.invalid(label, answer, `expected a ClaimResponse, got ${this.describe(answer)}`);
    }
    this.checkClaimResponse(label, answer, response, identifier);
    return response;
  }

  async status(identifier: fhir4.Identifier): Promise<fhir4.ClaimResponse | undefined> {
    if (!identifier.system || !identifier.value) {
      throw new GatewayError('gateway status: the identifier needs a system and a value', { status: 0, transient: false });
    }
    const label = `status ${identifierKey(identifier)}`;
    const query = new URLSearchParams({ 'request.identifier': `${escapeSearch(identifier.system)}|${escapeSearch(identifier.value)}` });
    const answer = await this.request(label, `${this.baseUrl}/ClaimResponse?${query.toString()}`, { method: 'GET' });
    const bundle = answer.body;
    if (!isResource<fhir4.Bundle>(bundle, 'Bundle') || bundle.type !== 'searchset') {
      throw this.invalid(label, answer, `expected a searchset Bundle, got ${this.describe(answer)}`);
    }
    // Entries with search.mode `include` or `outcome` (an OperationOutcome with warnings) are not results.
    const found = (bundle.entry ?? [])
      .filter((entry) => entry.search?.mode !== 'include' && entry.search?.mode !== 'outcome')
      .map((entry) => entry.resource)
      .filter((resource): resource is fhir4.ClaimResponse => isResource<fhir4.ClaimResponse>(resource, 'ClaimResponse'));
    if (found.length > 1) {
      throw this.invalid(label, answer, `expected 0 or 1 ClaimResponse, got ${found.length}`);
    }
    const [response] = found;
    if (response) this.checkClaimResponse(label, answer, response, identifier);
    return response;
  }

  /** One HTTP request (twice after a 401 with a token provider); every failure becomes a GatewayError. Resolves only for a 2xx answer. */
  private async request(label: string, url: string, init: { method: 'GET' | 'POST'; body?: string }): Promise<Answer> {
    const { timeoutMs } = this.options;
    const headers: Record<string, string> = { ...this.options.headers, Accept: FHIR_JSON };
    if (init.body !== undefined) headers['Content-Type'] = FHIR_JSON;
    if (this.options.bearerToken) headers['Authorization'] = `Bearer ${this.options.bearerToken}`;

    let response: Response;
    let text: string;
    for (let reauthenticated = false; ; reauthenticated = true) {
      const token = this.tokens ? await this.accessToken(label) : undefined;
      if (token !== undefined) headers['Authorization'] = `Bearer ${token}`;
      ({ response, text } = await this.send(label, url, { ...init, headers }, timeoutMs));
      // A 401 means the request was not processed: safe to send again, once, with a new token.
      if (response.status !== 401 || token === undefined || reauthenticated) break;
      this.tokens?.invalidate(token);
    }

    let body: unknown;
    try {
      body = text ? (JSON.parse(text) as unknown) : undefined;
    } catch {
      body = undefined;
    }
    const answer: Answer = { status: response.status, headers: response.headers, body, text: text.slice(0, 200) };
    if (response.status >= 200 && response.status <= 299) return answer;

    const outcome = isResource<fhir4.OperationOutcome>(body, 'OperationOutcome') ? body : undefined;
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
    // The gateway's own text may repeat patient data: it travels only in `outcome` (kept on the
    // submission Task on the FHIR server), never in the message, which reaches logs and Redis.
    const issueCodes = outcome?.issue?.map((issue) => issue.code).join(', ');
    const redirect = response.status >= 300 && response.status <= 399 ? ' (redirect not followed: check GATEWAY_BASE_URL)' : '';
    throw new GatewayError(`gateway ${label}: HTTP ${response.status}${redirect}${issueCodes ? ` (issues: ${issueCodes})` : ''}`, {
      status: response.status,
      retryAfterMs,
      outcome,
    });
  }

  /** The provider's token; its failure is a GatewayError with status 0 (nothing was sent). */
  private async accessToken(label: string): Promise<string | undefined> {
    try {
      return await this.tokens?.token();
    } catch (raw) {
      const error = raw as Error;
      throw new GatewayError(`gateway ${label}: no access token (${error.message})`, {
        status: 0,
        transient: error instanceof SmartTokenError ? error.transient : true,
      });
    }
  }

  /** Sends one request and reads its body; a network failure or a timeout becomes a GatewayError. */
  private async send(label: string, url: string, init: MtlsRequestInit, timeoutMs: number): Promise<{ response: Response; text: string }> {
    let response: Response;
    let text: string;
    const timeout = timeoutSignal(timeoutMs);
    try {
      // `manual`: a redirect would be a second request (and a POST replayed elsewhere).
      response = await this.fetch(url, { ...init, redirect: 'manual', signal: timeout.signal });
      // Same signal: a body that trickles in past the timeout fails too.
      text = await response.text();
    } catch (raw) {
      const error = raw as Error & { cause?: { code?: string; message?: string } };
      const timedOut = error.name === 'TimeoutError' || error.name === 'AbortError';
      const reason = timedOut ? `timed out after ${timeoutMs} ms` : `network error (${error.cause?.code ?? error.cause?.message ?? error.message})`;
      throw new GatewayError(`gateway ${label}: ${reason}`, { status: 0 });
    } finally {
      timeout.clear();
    }
    return { response, text };
  }

  /** A 2xx answer must name the Claim asked about and carry a valid outcome, or it cannot be linked to it. */
  private checkClaimResponse(label: string, answer: Answer, response: fhir4.ClaimResponse, identifier: fhir4.Identifier): void {
    if (!(CLAIM_RESPONSE_OUTCOMES as readonly string[]).includes(response.outcome)) {
      throw this.invalid(label, answer, `ClaimResponse.outcome ${JSON.stringify(response.outcome)} is not one of ${CLAIM_RESPONSE_OUTCOMES.join(', ')}`);
    }
    const named = response.request?.identifier;
    // A gateway may echo the value without the system; a different system or value is another claim.
    if (named && (named.value !== identifier.value || (named.system !== undefined && named.system !== identifier.system))) {
      throw this.invalid(label, answer, `the ClaimResponse answers another claim (${identifierKey(named)})`);
    }
    if (!named && !response.request?.reference) {
      throw this.invalid(label, answer, 'the ClaimResponse has neither request.identifier nor request.reference');
    }
  }

  /** An answer that breaks the contract: transient (a gateway mid-deployment may answer a proxy page), outcome kept if any. */
  private invalid(label: string, answer: Answer, reason: string): GatewayError {
    const outcome = isResource<fhir4.OperationOutcome>(answer.body, 'OperationOutcome') ? answer.body : undefined;
    return new GatewayError(`gateway ${label}: invalid answer (HTTP ${answer.status}): ${reason}`, {
      status: INVALID_ANSWER,
      transient: true,
      retryAfterMs: parseRetryAfter(answer.headers.get('retry-after')),
      outcome,
    });
  }

  private describe(answer: Answer): string {
    if (answer.body === undefined) return answer.text ? `a non-JSON body (${JSON.stringify(answer.text.slice(0, 80))})` : 'an empty body';
    const resourceType = (answer.body as { resourceType?: unknown }).resourceType;
    if (typeof resourceType !== 'string') return 'JSON that is not a FHIR resource';
    return `${/^[AEIOU]/.test(resourceType) ? 'an' : 'a'} ${resourceType}`;
  }
}
