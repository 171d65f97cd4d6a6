/**
 * FhirServer over HTTP with fhir-kit-client: per-request timeout, retries with exponential
 * backoff and jitter on 408/429/5xx and network errors, honouring `Retry-After`, and paging
 * that refuses `next` links to another origin (fhir-kit-client would send our auth there).
 */
import { Client } from 'fhir-kit-client';
import { SmartTokenError, toAccessTokenProvider, type AccessTokenProvider, type TokenProviderOption } from '../infra/smart-backend.js';
import { timeoutSignal } from '../infra/timeout-signal.js';
import { FhirServerError, type FhirServer, type FhirWriteResult } from './fhir-server.port.js';
import { isFhirId as isValidFhirId } from '../domain/references.js';

export interface FhirServerOptions {
  baseUrl: string;
  timeoutMs: number;
  /** Total attempts for a transient failure (1 = no retry). */
  maxAttempts: number;
  /** First backoff delay, doubled each attempt (jittered). */
  baseDelayMs?: number;
  /** Longest single wait, including a server's Retry-After. */
  maxDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /**
   * An access token per request (SMART Backend Services, `createSmartBackendTokenProvider`),
   * sent as `Authorization: Bearer`; on a 401 the token is invalidated and the request sent
   * once more with a new one (not counted in `maxAttempts`).
   */
  tokenProvider?: TokenProviderOption;
}

interface ClientError {
  response?: { status?: number; data?: unknown };
  config?: { headers?: Headers };
  name?: string;
}

const TRANSIENT_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);
const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Every HTTP-date form (IMF-fixdate, RFC 850, asctime; RFC 9110 §5.6.7) starts with a day name. */
const HTTP_DATE_START = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s/i;

/** Seconds or an HTTP date (RFC 9110 §10.2.3) → milliseconds from now; undefined when it is neither. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  const trimmed = value?.trim();
  if (!trimmed) return undefined;
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // Date.parse alone is lenient ("1.5" and "-5" parse as dates in 2001): require a date's shape first.
  if (!HTTP_DATE_START.test(trimmed)) return undefined;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function asOutcome(data: unknown): fhir4.OperationOutcome | undefined {
  return typeof data === 'object' && data !== null && (data as { resourceType?: unknown }).resourceType === 'OperationOutcome'
    ? (data as fhir4.OperationOutcome)
    : undefined;
}

const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

/**
 * Type and id checked before they go into a URL (issue #6): a FHIR id (not `.` or `..`, which
 * would address the type or the base), a resource type name. A non-transient 400 otherwise.
 */
function assertAddress(operation: string, resourceType: string, id: unknown): void {
  if (!RESOURCE_TYPE.test(resourceType)) throw new FhirServerError(`FHIR ${operation}: invalid resource type`, 400, undefined, false);
  if (!isValidFhirId(id)) throw new FhirServerError(`FHIR ${operation} ${resourceType}: invalid id`, 400, undefined, false);
}

/** A server answering another type (or another id) than the one asked for is an error, never a result. */
function assertAnswer(operation: string, body: fhir4.Resource | undefined, resourceType: string, id?: string): void {
  const type = (body as { resourceType?: unknown } | undefined)?.resourceType;
  if (type !== resourceType) {
    throw new FhirServerError(`FHIR ${operation} ${resourceType}: the server answered ${typeof type === 'string' ? `a ${type.slice(0, 64)}` : 'no resource'}`, 502, undefined, false);
  }
  if (id !== undefined && body?.id !== id) throw new FhirServerError(`FHIR ${operation} ${resourceType}: the server answered another resource`, 502, undefined, false);
}

function isReadOnly(bundle: fhir4.Bundle): boolean {
  return (bundle.entry ?? []).every((entry) => entry.request?.method === 'GET' || entry.request?.method === 'HEAD');
}

export class HttpFhirServer implements FhirServer {
  private readonly client: Client;
  private readonly origin: string;
  private readonly tokens: AccessTokenProvider | undefined;
  /** The token each attempt sent, keyed by the attempt's own AbortSignal: what a 401 invalidates. */
  private readonly tokenSent = new WeakMap<AbortSignal, string>();

  constructor(private readonly options: FhirServerOptions) {
    this.tokens = options.tokenProvider ? toAccessTokenProvider(options.tokenProvider) : undefined;
    const tokens = this.tokens;
    this.client = new Client({
      baseUrl: options.baseUrl,
      // Called by fhir-kit-client for every request it builds (paging included), and awaited.
      ...(tokens
        ? {
            requestSigner: async (_url: string, init: RequestInit): Promise<void> => {
              const token = await tokens.token();
              const headers = new Headers(init.headers);
              headers.set('authorization', `Bearer ${token}`);
              init.headers = headers;
              if (init.signal) this.tokenSent.set(init.signal, token);
            },
          }
        : {}),
    });
    this.origin = new URL(options.baseUrl).origin;
  }

  get baseUrl(): string {
    return this.options.baseUrl;
  }

  /** Runs one request with timeout and retries; returns the body and the HTTP status. */
  private async call(
    label: string,
    run: (signal: AbortSignal) => Promise<unknown>,
    /** For non-idempotent requests: retry only answers that say the request was not processed (429, 503). */
    notProcessedOnly = false,
  ): Promise<{ body: fhir4.Resource; status: number }> {
    const { maxAttempts, timeoutMs } = this.options;
    const baseDelay = this.options.baseDelayMs ?? 200;
    const maxDelay = this.options.maxDelayMs ?? 30_000;
    const sleep = this.options.sleep ?? defaultSleep;
    let reauthenticated = false;
    for (let attempt = 1; ; attempt++) {
      // Not AbortSignal.timeout: see timeoutSignal.
      const timeout = timeoutSignal(timeoutMs);
      const signal = timeout.signal;
      try {
        const body = (await run(signal)) as fhir4.Resource & Record<string, unknown>;
        const response = Client.httpFor(body as never)?.response as Response | undefined;
        return { body, status: response?.status ?? 200 };
      } catch (raw) {
        const error = raw as ClientError & Error;
        const status = error.response?.status ?? 0;
        // A 401 means the request was not processed: once, with a new token, at once.
        if (status === 401 && this.tokens && !reauthenticated) {
          reauthenticated = true;
          this.tokens.invalidate(this.tokenSent.get(signal));
          attempt--;
          continue;
        }
        // No token, nothing sent: safe to retry whatever the request, when the token endpoint may recover.
        const tokenFailure = raw instanceof SmartTokenError;
        const timedOut = error.name === 'TimeoutError' || error.name === 'AbortError';
        const transient = tokenFailure ? raw.transient : status === 0 || TRANSIENT_STATUSES.has(status);
        const retryable = tokenFailure || !notProcessedOnly ? transient : status === 429 || status === 503;
        if (!retryable || attempt >= maxAttempts) {
          const reason = tokenFailure
            ? `no access token (${error.message})`
            : status
              ? `HTTP ${status}`
              : timedOut
                ? `timed out after ${timeoutMs} ms`
                : `network error (${error.message})`;
          throw new FhirServerError(`FHIR ${label}: ${reason}`, status, asOutcome(error.response?.data), transient);
        }
        const backoff = Math.min(maxDelay, baseDelay * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        const retryAfter = parseRetryAfter(error.config?.headers?.get?.('retry-after'));
        await sleep(Math.min(maxDelay, Math.max(backoff, retryAfter ?? 0)));
      } finally {
        timeout.clear();
      }
    }
  }

  async read<T extends fhir4.Resource>(resourceType: string, id: string): Promise<T> {
    assertAddress('read', resourceType, id);
    const { body } = await this.call(`read ${resourceType}`, (signal) => this.client.read({ resourceType, id, options: { signal } }));
    assertAnswer('read', body, resourceType, id);
    return body as T;
  }

  async readIfExists<T extends fhir4.Resource>(resourceType: string, id: string): Promise<T | undefined> {
    try {
      return await this.read<T>(resourceType, id);
    } catch (error) {
      if (error instanceof FhirServerError && (error.status === 404 || error.status === 410)) return undefined;
      throw error;
    }
  }

  async searchAll<T extends fhir4.Resource>(resourceType: string, params: Record<string, string | string[]>, maxPages = 100): Promise<T[]> {
    const results: T[] = [];
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      for (const item of Array.isArray(value) ? value : [value]) query.append(key, item);
    }
    let url: string | undefined = `${resourceType}?${query.toString()}`;
    for (let page = 0; url && page < maxPages; page++) {
      const pageUrl: string = url;
      const { body } = await this.call(`search ${resourceType}`, (signal) => this.client.request(pageUrl, { method: 'GET', options: { signal } }));
      const bundle = body as fhir4.Bundle;
      for (const entry of bundle.entry ?? []) {
        if (entry.resource && entry.resource.resourceType === resourceType && entry.search?.mode !== 'include') {
          results.push(entry.resource as T);
        }
      }
      url = this.sameOriginNext(bundle);
    }
    return results;
  }

  private sameOriginNext(bundle: fhir4.Bundle): string | undefined {
    const next = bundle.link?.find((link) => link.relation === 'next')?.url;
    if (!next) return undefined;
    const absolute = new URL(next, this.options.baseUrl.endsWith('/') ? this.options.baseUrl : `${this.options.baseUrl}/`);
    if (absolute.origin !== this.origin) {
      throw new FhirServerError(`FHIR search: refusing a next link to another origin (${absolute.origin})`, 0, undefined, false);
    }
    return absolute.toString();
  }

  async create<T extends fhir4.Resource>(resource: T, options: { ifNoneExist?: string } = {}): Promise<FhirWriteResult<T>> {
    const headers: Record<string, string> = options.ifNoneExist ? { 'If-None-Exist': options.ifNoneExist } : {};
    try {
      // Only a conditional create is safe to repeat after a timeout.
      const { body, status } = await this.call(
        `create ${resource.resourceType}`,
        (signal) => this.client.create({ resourceType: resource.resourceType, body: resource as never, options: { headers, signal } }),
        !options.ifNoneExist,
      );
      return { resource: body as T, status };
    } catch (error) {
      // A replayed conditional create may answer 409/412 on some servers (HAPI): already done, re-read.
      if (options.ifNoneExist && error instanceof FhirServerError && (error.status === 409 || error.status === 412)) {
        const [existing] = await this.searchAll<T>(resource.resourceType, Object.fromEntries(new URLSearchParams(options.ifNoneExist)), 1);
        if (existing) return { resource: existing, status: 200 };
      }
      throw error;
    }
  }

  async update<T extends fhir4.Resource>(resource: T & { id: string }, options: { ifMatch?: string } = {}): Promise<FhirWriteResult<T>> {
    assertAddress('update', resource.resourceType, resource.id);
    const headers: Record<string, string> = options.ifMatch ? { 'If-Match': `W/"${options.ifMatch}"` } : {};
    const { body, status } = await this.call(`update ${resource.resourceType}`, (signal) =>
      this.client.update({ resourceType: resource.resourceType, id: resource.id, body: resource as never, options: { headers, signal } }),
    );
    assertAnswer('update', body, resource.resourceType, resource.id);
    return { resource: body as T, status };
  }

  async batch(bundle: fhir4.Bundle): Promise<fhir4.Bundle> {
    // A batch may hold creates: same caution as a transaction.
    const { body } = await this.call('batch', (signal) => this.client.batch({ body: bundle as never, options: { signal } }), !isReadOnly(bundle));
    return body as fhir4.Bundle;
  }

  async transaction(bundle: fhir4.Bundle): Promise<fhir4.Bundle> {
    // Not retried on a timeout or a 500: it may have been applied. 429/503 mean it was not.
    const { body } = await this.call('transaction', (signal) => this.client.transaction({ body: bundle as never, options: { signal } }), true);
    return body as fhir4.Bundle;
  }

  async ping(): Promise<void> {
    await this.call('ping', (signal) => this.client.request('Patient?_count=1&_summary=count', { method: 'GET', options: { signal } }));
  }
}
