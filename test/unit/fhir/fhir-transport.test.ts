/**
 * HttpFhirServer's transport (Node http with keep-alive) against a real local HTTP server that
 * misbehaves the way real ones do: closing an idle keep-alive connection just as it is reused,
 * compressing unasked, answering a body that is not JSON.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HttpFhirServer } from '../../../src/fhir/fhir-server.adapter.js';
import { FhirServerError } from '../../../src/fhir/fhir-server.port.js';

type Behaviour = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

let server: http.Server;
let base: string;
let behaviour: Behaviour;
let requests: { method: string; url: string; socket: number }[] = [];
const sockets = new Map<unknown, number>();

const patient = (id: string): fhir4.Patient => ({ resourceType: 'Patient', id, meta: { versionId: '1' } });
const fhirJson = (res: http.ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/fhir+json' });
  res.end(JSON.stringify(body));
};

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (!sockets.has(req.socket)) sockets.set(req.socket, sockets.size + 1);
    requests.push({ method: req.method ?? '', url: req.url ?? '', socket: sockets.get(req.socket) as number });
    req.resume();
    req.on('end', () => behaviour(req, res, requests.length));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  requests = [];
});

const fhir = (maxAttempts = 1): HttpFhirServer => new HttpFhirServer({ baseUrl: base, timeoutMs: 2000, maxAttempts, baseDelayMs: 1 });

describe('HttpFhirServer transport', () => {
  it('reuses one keep-alive connection for successive requests', async () => {
    behaviour = (req, res) => fhirJson(res, 200, patient(req.url?.split('/').pop() ?? ''));
    const client = fhir();
    for (const id of ['a', 'b', 'c']) await expect(client.read('Patient', id)).resolves.toMatchObject({ id });
    expect(new Set(requests.map((r) => r.socket)).size).toBe(1);
  });

  it('a reused connection the server closes before answering: a request safe to repeat is sent once more on a new one', async () => {
    const client = fhir(1);
    behaviour = (_req, res) => fhirJson(res, 201, patient('first'));
    await client.create(patient('first'));
    // The server drops the kept-alive connection as the next request arrives on it.
    behaviour = (req, res, n) => (n === 2 ? req.socket.destroy() : fhirJson(res, 201, patient('second')));
    await expect(client.create(patient('second'), { ifNoneExist: 'identifier=urn:test|2' })).resolves.toMatchObject({ status: 201, resource: { id: 'second' } });
    expect(requests.map((r) => r.method)).toEqual(['POST', 'POST', 'POST']);
    expect(requests[2]?.socket).not.toBe(requests[1]?.socket);
  });

  it('the same for a plain create (it may have been processed): not resent, it fails', async () => {
    const client = fhir(3);
    behaviour = (_req, res) => fhirJson(res, 201, patient('first'));
    await client.create(patient('first'));
    behaviour = (req) => req.socket.destroy();
    await expect(client.create(patient('second'))).rejects.toThrow(/network error/);
    expect(requests).toHaveLength(2);
  });

  it('a connection closed without an answer on a new socket is not resent: a create fails (it may have been processed)', async () => {
    const client = fhir(3);
    behaviour = (req) => req.socket.destroy();
    const error = await client.create(patient('x')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FhirServerError);
    expect((error as FhirServerError).message).toMatch(/network error/);
    expect(requests).toHaveLength(1);
  });

  it('understands a gzip answer it did not ask for', async () => {
    behaviour = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-encoding': 'gzip' });
      res.end(gzipSync(JSON.stringify(patient('zipped'))));
    };
    await expect(fhir().read('Patient', 'zipped')).resolves.toMatchObject({ id: 'zipped' });
  });

  it('a 2xx whose body is not JSON is an error, not a resource; a 4xx keeps its OperationOutcome', async () => {
    behaviour = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>proxy page</html>');
    };
    await expect(fhir().read('Patient', 'p')).rejects.toMatchObject({ status: 200, transient: false });
    const outcome: fhir4.OperationOutcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: 'bad' }] };
    behaviour = (_req, res) => fhirJson(res, 422, outcome);
    await expect(fhir().update(patient('p') as fhir4.Patient & { id: string })).rejects.toMatchObject({ status: 422, outcome, transient: false });
  });

  it('sends FHIR JSON with its length, asks for FHIR JSON, and PUTs to Type/id', async () => {
    let seen: http.IncomingHttpHeaders = {};
    behaviour = (req, res) => {
      seen = req.headers;
      fhirJson(res, 200, patient('p'));
    };
    await fhir().update(patient('p') as fhir4.Patient & { id: string }, { ifMatch: '1' });
    expect(requests.at(-1)).toMatchObject({ method: 'PUT', url: '/fhir/Patient/p' });
    expect(seen['content-type']).toBe('application/fhir+json');
    expect(seen.accept).toBe('application/fhir+json');
    expect(Number(seen['content-length'])).toBe(Buffer.byteLength(JSON.stringify(patient('p'))));
    expect(seen['if-match']).toBe('W/"1"');
  });
});
