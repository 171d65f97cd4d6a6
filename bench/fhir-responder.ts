/**
 * A fast local FHIR R4 responder for the benchmarks: node:http answering, from in-memory data,
 * exactly the requests the adapter makes (reads, the searches it uses, batches of GETs,
 * transactions and batches of PUT/POST, conditional creates, updates), and counting them per
 * kind, so a benchmark measures the adapter's own cost and how many requests it makes.
 *
 * It is not a FHIR server: search supports the parameters the adapter sends (an unknown one
 * answers 400, so a new request shape is noticed, not silently answered wrong), versions are
 * counters, nothing is validated. Control endpoints under `/_bench/` seed data and read counts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';

type Resource = fhir4.Resource & { id: string; [key: string]: unknown };

/** Request kinds counted: `read`, `search`, `batch-read`, `create`, `conditional-create`, `update`, `transaction`, `batch-write`, `other`. */
export interface ResponderStats {
  /** HTTP requests per kind. */
  requests: Record<string, number>;
  /** HTTP requests per `kind resourceType` (updates and creates: the type written; reads and searches: the type read). */
  byType: Record<string, number>;
  /** GuidanceResponse writes seen (their times per id, ms since the epoch: `GET /_bench/gr-writes`). */
  guidanceResponseWrites: number;
}

const FHIR_JSON = 'application/fhir+json';

/** Reference-valued search parameters: which element holds the reference, per type. */
const REFERENCE_PARAMS: Record<string, Record<string, (r: Resource) => unknown>> = {
  subject: {
    Observation: (r) => r['subject'],
    Condition: (r) => r['subject'],
    CarePlan: (r) => r['subject'],
    GuidanceResponse: (r) => r['subject'],
    Encounter: (r) => r['subject'],
    Task: (r) => r['for'],
  },
  patient: {
    Consent: (r) => r['patient'],
    EpisodeOfCare: (r) => r['patient'],
    Claim: (r) => r['patient'],
    Observation: (r) => r['subject'],
    Condition: (r) => r['subject'],
    Encounter: (r) => r['subject'],
    CarePlan: (r) => r['subject'],
  },
  beneficiary: { Coverage: (r) => r['beneficiary'] },
  organization: { PractitionerRole: (r) => r['organization'], EpisodeOfCare: (r) => r['managingOrganization'] },
  'general-practitioner': { Patient: (r) => r['generalPractitioner'] },
  practitioner: { PractitionerRole: (r) => r['practitioner'] },
  focus: { Task: (r) => r['focus'] },
  'episode-of-care': { Encounter: (r) => r['episodeOfCare'] },
};

function references(value: unknown): string[] {
  const list = Array.isArray(value) ? value : value ? [value] : [];
  return list.flatMap((v) => (typeof (v as fhir4.Reference).reference === 'string' ? [(v as fhir4.Reference).reference as string] : []));
}

/** Splits `system|value` on the first unescaped `|` and removes FHIR search escapes. */
function token(raw: string): { system: string | undefined; value: string } {
  let system: string | undefined;
  let current = '';
  for (let i = 0; i < raw.length; i++) {
    const char = raw[i] as string;
    if (char === '\\' && i + 1 < raw.length) current += raw[++i] as string;
    else if (char === '|' && system === undefined) {
      system = current;
      current = '';
    } else current += char;
  }
  return { system, value: current };
}

function codings(value: unknown): fhir4.Coding[] {
  const list = Array.isArray(value) ? value : value ? [value] : [];
  return list.flatMap((c) => ((c as fhir4.CodeableConcept).coding ?? []) as fhir4.Coding[]);
}

function matchesToken(candidates: { system?: string | undefined; value?: string | undefined }[], raw: string): boolean {
  return raw.split(',').some((alternative) => {
    const { system, value } = token(alternative);
    return candidates.some((c) => (system === undefined || c.system === system) && (value === '' || c.value === value));
  });
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function outcome(status: number, diagnostics: string): fhir4.OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: status === 404 ? 'not-found' : status === 400 ? 'invalid' : 'exception', diagnostics }] };
}

export class FhirResponder {
  private readonly data = new Map<string, Map<string, Resource>>();
  /** `type|param|reference` → ids, for reference parameters. */
  private readonly refIndex = new Map<string, Set<string>>();
  /** `type|system|value` → ids. */
  private readonly identifierIndex = new Map<string, Set<string>>();
  /** `type|system|code` of meta.tag → ids. */
  private readonly tagIndex = new Map<string, Set<string>>();
  private readonly requests = new Map<string, number>();
  private readonly byType = new Map<string, number>();
  /** Every write time per GuidanceResponse id (ms since the epoch, sub-ms). */
  readonly guidanceResponseWrites = new Map<string, number[]>();
  private server: Server | undefined;
  baseUrl = '';

  async start(port = 0): Promise<string> {
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server?.listen(port, '127.0.0.1', resolve));
    const address = this.server.address() as AddressInfo;
    this.baseUrl = `http://127.0.0.1:${address.port}/fhir`;
    return this.baseUrl;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  stats(): ResponderStats {
    let writes = 0;
    for (const times of this.guidanceResponseWrites.values()) writes += times.length;
    return { requests: Object.fromEntries(this.requests), byType: Object.fromEntries(this.byType), guidanceResponseWrites: writes };
  }

  resetStats(): void {
    this.requests.clear();
    this.byType.clear();
    this.guidanceResponseWrites.clear();
  }

  count(type: string): number {
    return this.data.get(type)?.size ?? 0;
  }

  all(type: string): Resource[] {
    return [...(this.data.get(type)?.values() ?? [])];
  }

  get(type: string, id: string): Resource | undefined {
    return this.data.get(type)?.get(id);
  }

  private tally(kind: string, type: string): void {
    this.requests.set(kind, (this.requests.get(kind) ?? 0) + 1);
    const key = `${kind} ${type}`;
    this.byType.set(key, (this.byType.get(key) ?? 0) + 1);
  }

  // --- storage --------------------------------------------------------------------------------

  private indexKeys(resource: Resource): { refs: string[]; identifiers: string[]; tags: string[] } {
    const type = resource.resourceType;
    const refs: string[] = [];
    for (const [param, byType] of Object.entries(REFERENCE_PARAMS)) {
      const get = byType[type];
      if (get) for (const reference of references(get(resource))) refs.push(`${type}|${param}|${reference}`);
    }
    const identifierValue = (resource as { identifier?: fhir4.Identifier[] | fhir4.Identifier }).identifier;
    const identifiers = (Array.isArray(identifierValue) ? identifierValue : identifierValue ? [identifierValue] : []).map((i) => `${type}|${i.system ?? ''}|${i.value ?? ''}`);
    const tags = (resource.meta?.tag ?? []).map((t) => `${type}|${t.system ?? ''}|${t.code ?? ''}`);
    return { refs, identifiers, tags };
  }

  private index(resource: Resource, add: boolean): void {
    const { refs, identifiers, tags } = this.indexKeys(resource);
    const apply = (map: Map<string, Set<string>>, keys: string[]): void => {
      for (const key of keys) {
        let set = map.get(key);
        if (add) {
          if (!set) map.set(key, (set = new Set()));
          set.add(resource.id);
        } else set?.delete(resource.id);
      }
    };
    apply(this.refIndex, refs);
    apply(this.identifierIndex, identifiers);
    apply(this.tagIndex, tags);
  }

  /** Stores a resource as given (id kept, version bumped): seeding, PUT and create use it. */
  put(input: fhir4.Resource & { id?: string }): { resource: Resource; created: boolean } {
    const type = input.resourceType;
    let table = this.data.get(type);
    if (!table) this.data.set(type, (table = new Map()));
    const id = input.id ?? randomUUID();
    const previous = table.get(id);
    if (previous) this.index(previous, false);
    const version = previous ? Number(previous.meta?.versionId ?? '0') + 1 : 1;
    const resource = { ...input, id, meta: { ...(input.meta ?? {}), versionId: String(version), lastUpdated: new Date().toISOString() } } as Resource;
    table.set(id, resource);
    this.index(resource, true);
    if (type === 'GuidanceResponse') {
      let times = this.guidanceResponseWrites.get(id);
      if (!times) this.guidanceResponseWrites.set(id, (times = []));
      times.push(performance.timeOrigin + performance.now());
    }
    return { resource, created: !previous };
  }

  /** Seeds many resources at once (control endpoint and in-process use). */
  seed(resources: readonly (fhir4.Resource & { id?: string })[]): void {
    for (const resource of resources) this.put(resource);
  }

  // --- search ---------------------------------------------------------------------------------

  search(type: string, query: URLSearchParams): Resource[] {
    const table = this.data.get(type) ?? new Map<string, Resource>();
    let candidates: Iterable<Resource> | undefined;
    const filters: ((r: Resource) => boolean)[] = [];
    let elements = false;
    for (const [param, raw] of query) {
      if (param === '_count' || param === '_sort' || param === '_total' || param === '_include' || param === '_offset') continue;
      if (param === '_elements' || param === '_summary') {
        elements = true;
        continue;
      }
      const reference = REFERENCE_PARAMS[param]?.[type];
      if (reference) {
        const refs = raw.split(',');
        if (!candidates) {
          const ids = new Set(refs.flatMap((ref) => [...(this.refIndex.get(`${type}|${param}|${ref}`) ?? [])]));
          candidates = [...ids].flatMap((id) => table.get(id) ?? []);
        } else filters.push((r) => references(reference(r)).some((ref) => refs.includes(ref)));
        continue;
      }
      if (param === 'identifier') {
        const { system, value } = token(raw);
        if (!candidates && system !== undefined && value !== '') {
          candidates = [...(this.identifierIndex.get(`${type}|${system}|${value}`) ?? [])].flatMap((id) => table.get(id) ?? []);
        } else {
          filters.push((r) => {
            const ids = (r as { identifier?: fhir4.Identifier[] | fhir4.Identifier }).identifier;
            return matchesToken(Array.isArray(ids) ? ids : ids ? [ids] : [], raw);
          });
        }
        continue;
      }
      if (param === '_tag') {
        const { system, value } = token(raw);
        if (!candidates) candidates = [...(this.tagIndex.get(`${type}|${system ?? ''}|${value}`) ?? [])].flatMap((id) => table.get(id) ?? []);
        else filters.push((r) => matchesToken((r.meta?.tag ?? []).map((t) => ({ system: t.system, value: t.code })), raw));
        continue;
      }
      if (param === 'code') {
        filters.push((r) => matchesToken(codings(r['code']).map((c) => ({ system: c.system, value: c.code })), raw));
        continue;
      }
      if (param === 'type') {
        filters.push((r) => matchesToken(codings(r['type']).map((c) => ({ system: c.system, value: c.code })), raw));
        continue;
      }
      if (param === 'status') {
        const statuses = raw.split(',');
        filters.push((r) => statuses.includes(String(r['status'])));
        continue;
      }
      throw new HttpError(400, `bench responder: unsupported search parameter ${type}?${param}`);
    }
    const list = [...(candidates ?? table.values())].filter((r) => filters.every((f) => f(r)));
    return elements ? list.map((r) => ({ resourceType: r.resourceType, id: r.id, meta: r.meta }) as Resource) : list;
  }

  private searchBundle(type: string, query: URLSearchParams, selfUrl: string): fhir4.Bundle {
    const all = this.search(type, query);
    const count = Math.max(0, Number(query.get('_count') ?? '100'));
    const offset = Math.max(0, Number(query.get('_offset') ?? '0'));
    query.delete('_offset');
    const page = query.get('_summary') === 'count' ? [] : all.slice(offset, offset + count);
    const bundle: fhir4.Bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      total: all.length,
      entry: page.map((resource) => ({ fullUrl: `${this.baseUrl}/${type}/${resource.id}`, resource, search: { mode: 'match' as const } })),
    };
    // `_include=Type:element` where the search parameter is named as the element (specimen, payor).
    const included = new Map<string, Resource>();
    for (const include of query.getAll('_include')) {
      const [from, element] = include.split(':') as [string, string | undefined];
      if (from !== type || !element) throw new HttpError(400, `bench responder: unsupported _include ${include}`);
      for (const resource of page) {
        for (const reference of references(resource[element])) {
          const [refType, refId] = reference.split('/') as [string, string | undefined];
          const target = refId ? this.get(refType, refId) : undefined;
          if (target) included.set(reference, target);
        }
      }
    }
    for (const resource of included.values()) bundle.entry?.push({ fullUrl: `${this.baseUrl}/${resource.resourceType}/${resource.id}`, resource, search: { mode: 'include' } });
    if (offset + count < all.length && count > 0) {
      const next = new URLSearchParams(query);
      next.set('_offset', String(offset + count));
      bundle.link = [{ relation: 'next', url: `${this.baseUrl}/${type}?${next.toString()}` }];
    }
    void selfUrl;
    return bundle;
  }

  // --- HTTP -----------------------------------------------------------------------------------

  private async body(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? (JSON.parse(text) as unknown) : undefined;
  }

  private send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': FHIR_JSON, 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  /** Control endpoints: `GET /_bench/stats`, `POST /_bench/reset`, `POST /_bench/seed` (an array of resources). */
  protected async control(path: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (path === '/_bench/stats') {
      this.send(res, 200, this.stats());
      return true;
    }
    if (path === '/_bench/reset') {
      this.resetStats();
      this.send(res, 200, {});
      return true;
    }
    if (path === '/_bench/seed') {
      this.seed((await this.body(req)) as fhir4.Resource[]);
      this.send(res, 200, {});
      return true;
    }
    if (path === '/_bench/cpu') {
      const used = process.cpuUsage();
      this.send(res, 200, { ms: (used.user + used.system) / 1000 });
      return true;
    }
    if (path === '/_bench/gr-writes') {
      this.send(res, 200, Object.fromEntries(this.guidanceResponseWrites));
      return true;
    }
    return false;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://responder.local');
      if (url.pathname.startsWith('/_bench/') || url.pathname.startsWith('/_world/')) {
        if (await this.control(url.pathname, req, res)) return;
        throw new HttpError(404, 'unknown control endpoint');
      }
      if (!url.pathname.startsWith('/fhir')) throw new HttpError(404, 'not under /fhir');
      const relative = url.pathname.slice('/fhir'.length).replace(/^\//, '');
      const method = req.method ?? 'GET';
      const body = method === 'GET' || method === 'HEAD' ? undefined : await this.body(req);
      const answer = this.interaction(method, relative, url.searchParams, body, req.headers as Record<string, string | undefined>, true);
      const headers: Record<string, string> = {};
      if (answer.location) headers['location'] = answer.location;
      this.send(res, answer.status, answer.body, headers);
    } catch (error) {
      const status = error instanceof HttpError ? error.status : 500;
      this.send(res, status, outcome(status, (error as Error).message));
    }
  }

  /**
   * One interaction, over HTTP (`top`: counted) or inside a batch/transaction (not counted on
   * its own: the enclosing request is).
   */
  private interaction(
    method: string,
    relative: string,
    query: URLSearchParams,
    body: unknown,
    headers: Record<string, string | undefined>,
    top: boolean,
  ): { status: number; body: unknown; location?: string } {
    const parts = relative.split('/').filter(Boolean);
    const [type, id] = parts as [string | undefined, string | undefined];
    if (!type) {
      if (method !== 'POST') throw new HttpError(400, 'bench responder: only POST / (batch, transaction) at the base');
      const bundle = body as fhir4.Bundle;
      const readOnly = (bundle.entry ?? []).every((e) => e.request?.method === 'GET');
      // A batch of writes is counted under the types it writes (`batch-write AuditEvent+Provenance`), so a benchmark can tell the verdict's writes from the audit trail's.
      const written = readOnly || bundle.type === 'transaction' ? 'Bundle' : [...new Set((bundle.entry ?? []).map((e) => e.resource?.resourceType ?? '?'))].sort().join('+');
      if (top) this.tally(bundle.type === 'transaction' ? 'transaction' : readOnly ? 'batch-read' : 'batch-write', written);
      return { status: 200, body: this.bundle(bundle) };
    }
    if (method === 'GET' && id && parts.length === 2) {
      if (top) this.tally('read', type);
      const resource = this.get(type, id);
      if (!resource) throw new HttpError(404, `${type}/${id} not found`);
      return { status: 200, body: resource };
    }
    if (method === 'GET' && !id) {
      if (top) this.tally('search', type);
      return { status: 200, body: this.searchBundle(type, new URLSearchParams(query), relative) };
    }
    if (method === 'PUT' && id) {
      if (top) this.tally('update', type);
      const { resource, created } = this.put({ ...(body as fhir4.Resource), id });
      return { status: created ? 201 : 200, body: resource, location: `${this.baseUrl}/${type}/${id}/_history/${resource.meta?.versionId}` };
    }
    if (method === 'POST' && !id) {
      const condition = headers['if-none-exist'];
      if (top) this.tally(condition ? 'conditional-create' : 'create', type);
      if (condition) {
        const [existing, ...more] = this.search(type, new URLSearchParams(condition));
        if (more.length) throw new HttpError(412, 'conditional create matched several resources');
        if (existing) return { status: 200, body: existing, location: `${this.baseUrl}/${type}/${existing.id}/_history/${existing.meta?.versionId}` };
      }
      const { id: _ignored, ...rest } = body as Resource;
      const { resource } = this.put(rest as fhir4.Resource);
      return { status: 201, body: resource, location: `${this.baseUrl}/${type}/${resource.id}/_history/${resource.meta?.versionId}` };
    }
    if (top) this.tally('other', type);
    throw new HttpError(400, `bench responder: unsupported ${method} ${relative}`);
  }

  private bundle(bundle: fhir4.Bundle): fhir4.Bundle {
    const entries = bundle.entry ?? [];
    // Transactions: urn:uuid fullUrls of POSTed entries become the ids they get.
    const assigned = new Map<string, string>();
    if (bundle.type === 'transaction') {
      for (const entry of entries) {
        if (entry.request?.method === 'POST' && entry.fullUrl?.startsWith('urn:uuid:') && entry.resource) {
          assigned.set(entry.fullUrl, `${entry.resource.resourceType}/${randomUUID()}`);
        }
      }
    }
    const rewrite = (value: unknown): unknown => {
      if (!assigned.size) return value;
      return JSON.parse(JSON.stringify(value), (key, v: unknown) => (key === 'reference' && typeof v === 'string' && assigned.has(v) ? assigned.get(v) : v)) as unknown;
    };
    return {
      resourceType: 'Bundle',
      type: bundle.type === 'transaction' ? 'transaction-response' : 'batch-response',
      entry: entries.map((entry) => {
        try {
          const request = entry.request;
          if (!request) throw new HttpError(400, 'entry without request');
          const url = new URL(request.url, 'http://responder.local/');
          let relative = url.pathname.replace(/^\//, '');
          let resource = entry.resource ? (rewrite(entry.resource) as fhir4.Resource) : undefined;
          if (request.method === 'POST' && entry.fullUrl && assigned.has(entry.fullUrl) && resource) {
            const newId = (assigned.get(entry.fullUrl) as string).split('/')[1] as string;
            // A conditional create that matches keeps the existing resource (no new id).
            if (!request.ifNoneExist || !this.search(resource.resourceType, new URLSearchParams(request.ifNoneExist)).length) {
              relative = `${resource.resourceType}/${newId}`;
              resource = { ...resource, id: newId };
              const answer = this.interaction('PUT', relative, url.searchParams, resource, {}, false);
              return { response: { status: '201 Created', location: answer.location ?? '' }, resource: answer.body as fhir4.Resource };
            }
          }
          const answer = this.interaction(request.method, relative, url.searchParams, resource, { 'if-none-exist': request.ifNoneExist }, false);
          return {
            response: { status: answer.status === 201 ? '201 Created' : '200 OK', ...(answer.location ? { location: answer.location } : {}) },
            resource: answer.body as fhir4.Resource,
          };
        } catch (error) {
          const status = error instanceof HttpError ? error.status : 500;
          return { response: { status: String(status), outcome: outcome(status, (error as Error).message) } };
        }
      }),
    };
  }
}
