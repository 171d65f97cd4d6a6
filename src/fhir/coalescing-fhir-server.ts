/**
 * A FhirServer that sends the `batch` Bundles asked for in the same turn of the event loop as
 * one request (dataloader, scheduled with setImmediate: no waiting added), and passes every
 * other interaction through.
 *
 * Why: the evaluation worker runs several jobs at once, and the two programs' evaluations of one
 * pushed Observation start together and read the same Patient, Observations, Conditions... A
 * batch's entries are independent of each other (FHIR R4 §3.1.0.11.2), so several batches are
 * one batch; identical GETs are asked for once. Each caller gets back a batch-response of its own
 * entries, in its own order.
 *
 * - Reads (every entry a GET) and writes are merged apart: they have different retry rules.
 * - Writes are merged only when no two of them write the same URL; a merged write the server
 *   refuses as a whole (a 4xx for the Bundle) is sent again caller by caller, so one bad Bundle
 *   fails alone.
 * - A caller that shares a deduplicated entry with an earlier one gets its own copy of the
 *   resource (callers may alter what they read).
 * - Conditional creates (`create` with `ifNoneExist`: the API's pushes) asked for in the same
 *   turn are sent as one batch of conditional POSTs, unless two share a condition (two entries
 *   of one batch could both create). A create whose entry is not a 2xx with its resource (a
 *   refusal, a transient error, a server that answers without the resource) is sent again
 *   alone, with the single create's retries and 409/412 handling: a conditional create is safe
 *   to repeat. A server seen answering without resources gets single creates from then on.
 */
import DataLoader from 'dataloader';
import { FhirServerError, type FhirServer, type FhirWriteResult } from './fhir-server.port.js';

/** At most this many callers' Bundles in one request. */
const MAX_BUNDLES = 16;

const requestKey = (entry: fhir4.BundleEntry): string => `${entry.request?.method ?? ''} ${entry.request?.url ?? ''}`;
const isRead = (bundle: fhir4.Bundle): boolean => (bundle.entry ?? []).every((entry) => entry.request?.method === 'GET');

export class CoalescingFhirServer implements FhirServer {
  private readonly reads: DataLoader<fhir4.Bundle, fhir4.Bundle>;
  private readonly writes: DataLoader<fhir4.Bundle, fhir4.Bundle>;
  private readonly creates: DataLoader<ConditionalCreate, FhirWriteResult<fhir4.Resource>>;
  /** The server answered a merged create without its resource: merging creates would only add requests. */
  private createsAlone = false;
  /** Requests sent for merged Bundles, and the Bundles they carried (for metrics and tests). */
  readonly counts = { requests: 0, bundles: 0 };

  constructor(private readonly inner: FhirServer) {
    const options = { cache: false, maxBatchSize: MAX_BUNDLES, batchScheduleFn: (callback: () => void) => setImmediate(callback) };
    this.reads = new DataLoader((bundles) => this.sendReads(bundles), options);
    this.writes = new DataLoader((bundles) => this.sendWrites(bundles), options);
    this.creates = new DataLoader((creates) => this.sendCreates(creates), options);
  }

  get baseUrl(): string {
    return this.inner.baseUrl;
  }

  batch(bundle: fhir4.Bundle): Promise<fhir4.Bundle> {
    if (bundle.type !== 'batch' || !bundle.entry?.length) return this.inner.batch(bundle);
    return (isRead(bundle) ? this.reads : this.writes).load(bundle);
  }

  read<T extends fhir4.Resource>(resourceType: string, id: string): Promise<T> {
    return this.inner.read<T>(resourceType, id);
  }

  readIfExists<T extends fhir4.Resource>(resourceType: string, id: string): Promise<T | undefined> {
    return this.inner.readIfExists<T>(resourceType, id);
  }

  searchAll<T extends fhir4.Resource>(resourceType: string, params: Record<string, string | string[]>, maxPages?: number): Promise<T[]> {
    return this.inner.searchAll<T>(resourceType, params, maxPages);
  }

  create<T extends fhir4.Resource>(resource: T, options?: { ifNoneExist?: string }): Promise<FhirWriteResult<T>> {
    if (!options?.ifNoneExist || this.createsAlone) return this.inner.create(resource, options);
    return this.creates.load({ resource, ifNoneExist: options.ifNoneExist }) as Promise<FhirWriteResult<T>>;
  }

  update<T extends fhir4.Resource>(resource: T & { id: string }, options?: { ifMatch?: string }): Promise<FhirWriteResult<T>> {
    return this.inner.update(resource, options);
  }

  transaction(bundle: fhir4.Bundle): Promise<fhir4.Bundle> {
    return this.inner.transaction(bundle);
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  private async sendReads(bundles: readonly fhir4.Bundle[]): Promise<(fhir4.Bundle | Error)[]> {
    if (bundles.length === 1) return [await this.inner.batch(bundles[0] as fhir4.Bundle).catch(asError)];
    const merged: fhir4.BundleEntry[] = [];
    const index = new Map<string, number>();
    const positions = bundles.map((bundle) =>
      (bundle.entry ?? []).map((entry) => {
        const key = requestKey(entry);
        let at = index.get(key);
        if (at === undefined) {
          at = merged.push(entry) - 1;
          index.set(key, at);
        }
        return at;
      }),
    );
    const response = await this.send(merged, bundles.length);
    if (response instanceof Error) return bundles.map(() => response);
    const handedOut = new Set<number>();
    return positions.map((at) => ({
      resourceType: 'Bundle' as const,
      type: 'batch-response' as const,
      entry: at.map((position) => {
        const entry = response.entry?.[position] ?? {};
        if (!handedOut.has(position)) {
          handedOut.add(position);
          return entry;
        }
        return structuredClone(entry);
      }),
    }));
  }

  private async sendWrites(bundles: readonly fhir4.Bundle[]): Promise<(fhir4.Bundle | Error)[]> {
    const oneByOne = (): Promise<(fhir4.Bundle | Error)[]> => Promise.all(bundles.map((bundle) => this.inner.batch(bundle).catch(asError)));
    if (bundles.length === 1) return oneByOne();
    const urls = bundles.flatMap((bundle) => (bundle.entry ?? []).map(requestKey));
    if (new Set(urls).size !== urls.length) return oneByOne();
    const response = await this.send(
      bundles.flatMap((bundle) => bundle.entry ?? []),
      bundles.length,
    );
    if (response instanceof FhirServerError && !response.transient) return oneByOne();
    if (response instanceof Error) return bundles.map(() => response);
    let offset = 0;
    return bundles.map((bundle) => {
      const count = bundle.entry?.length ?? 0;
      const entry = (response.entry ?? []).slice(offset, offset + count);
      offset += count;
      return { resourceType: 'Bundle' as const, type: 'batch-response' as const, entry };
    });
  }

  private async sendCreates(creates: readonly ConditionalCreate[]): Promise<(FhirWriteResult<fhir4.Resource> | Error)[]> {
    const alone = (create: ConditionalCreate): Promise<FhirWriteResult<fhir4.Resource> | Error> => this.inner.create(create.resource, { ifNoneExist: create.ifNoneExist }).catch(asError);
    const conditions = creates.map((create) => `${create.resource.resourceType}?${create.ifNoneExist}`);
    if (creates.length === 1 || this.createsAlone || new Set(conditions).size !== conditions.length) return Promise.all(creates.map(alone));
    const response = await this.send(
      creates.map((create) => ({ resource: create.resource, request: { method: 'POST' as const, url: create.resource.resourceType, ifNoneExist: create.ifNoneExist } })),
      creates.length,
    );
    if (response instanceof FhirServerError && !response.transient) return Promise.all(creates.map(alone));
    if (response instanceof Error) return creates.map(() => response);
    return Promise.all(
      creates.map((create, index) => {
        const entry = response.entry?.[index];
        const status = Number.parseInt(entry?.response?.status ?? '', 10) || 0;
        const stored = entry?.resource;
        if ((status === 200 || status === 201) && stored?.resourceType === create.resource.resourceType && stored.id) return { resource: stored, status };
        if (status === 200 || status === 201) this.createsAlone = true;
        return alone(create);
      }),
    );
  }

  private async send(entry: fhir4.BundleEntry[], bundles: number): Promise<fhir4.Bundle | Error> {
    this.counts.requests += 1;
    this.counts.bundles += bundles;
    try {
      const response = await this.inner.batch({ resourceType: 'Bundle', type: 'batch', entry });
      if ((response.entry?.length ?? 0) !== entry.length) {
        return new FhirServerError(`FHIR batch: ${entry.length} entries sent, ${response.entry?.length ?? 0} answered`, 502, undefined, true);
      }
      return response;
    } catch (error) {
      return asError(error);
    }
  }
}

interface ConditionalCreate {
  resource: fhir4.Resource;
  ifNoneExist: string;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
