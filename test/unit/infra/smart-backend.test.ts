/**
 * SMART Backend Services client: a local token endpoint (node:http on 127.0.0.1) verifies
 * every client assertion with the public key (jose jwtVerify: iss, sub, aud, exp, jti, kid)
 * and issues tokens with `expires_in`. Then the two adapters against local servers that
 * accept only the tokens the endpoint issued and not revoked: a 401 costs one new token and
 * one retried request.
 */
import { generateKeyPairSync, type KeyObject as NodeKeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader, exportJWK, exportPKCS8, generateKeyPair, jwtVerify, type CryptoKey } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HttpFhirServer } from '../../../src/fhir/fhir-server.adapter.js';
import { FhirServerError } from '../../../src/fhir/fhir-server.port.js';
import { HttpInsurerGateway, submissionBundle } from '../../../src/gateway/insurer-gateway.adapter.js';
import { GatewayError } from '../../../src/gateway/insurer-gateway.port.js';
import {
  SmartTokenError,
  createSmartBackendTokenProvider,
  importPrivateKey,
  loadPrivateKey,
  smartBackendFromFiles,
  type SmartBackendOptions,
  type SmartSigningAlg,
} from '../../../src/infra/smart-backend.js';

const CLIENT_ID = 'forfait-fhir-backend';
const KID = 'key-2026-11';
const SCOPE = 'system/Patient.rs system/Observation.cruds';

/** Something to listen on 127.0.0.1:0 and close with its kept-alive connections. */
async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string; close: () => Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function json(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

interface TokenEndpoint {
  url: string;
  /** Token requests received (valid or not). */
  calls: number;
  /** Every assertion received, and why any was refused. */
  assertions: string[];
  refusals: string[];
  /** Tokens issued and not revoked. */
  valid: Set<string>;
  /** expires_in of the next tokens. */
  expiresIn: number;
  /** When set, the next answers are this instead of a token (given the form received). */
  override: ((res: ServerResponse, form: URLSearchParams) => void) | undefined;
  close: () => Promise<void>;
}

/** A token endpoint per the SMART Backend Services spec, verifying assertions with `publicKey`. */
async function startTokenEndpoint(publicKey: CryptoKey | NodeKeyObject, alg: SmartSigningAlg): Promise<TokenEndpoint> {
  const seenJti = new Set<string>();
  let issued = 0;
  const state: Omit<TokenEndpoint, 'url' | 'close'> = { calls: 0, assertions: [], refusals: [], valid: new Set(), expiresIn: 300, override: undefined };
  const refuse = (res: ServerResponse, reason: string, error = 'invalid_client'): void => {
    state.refusals.push(reason);
    json(res, 400, { error, error_description: reason });
  };
  const { url, close } = await listen((req, res) => {
    void (async () => {
      state.calls++;
      const body = await readBody(req);
      const form = new URLSearchParams(body);
      if (state.override) return state.override(res, form);
      if (req.method !== 'POST' || req.headers['content-type'] !== 'application/x-www-form-urlencoded') return refuse(res, 'POST form expected', 'invalid_request');
      if (form.get('grant_type') !== 'client_credentials') return refuse(res, 'grant_type', 'unsupported_grant_type');
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') return refuse(res, 'client_assertion_type');
      if (form.get('scope') !== SCOPE) return refuse(res, `scope ${form.get('scope')}`, 'invalid_scope');
      const assertion = form.get('client_assertion') ?? '';
      state.assertions.push(assertion);
      try {
        const header = decodeProtectedHeader(assertion);
        if (header.kid !== KID || header.typ !== 'JWT') return refuse(res, `header ${JSON.stringify(header)}`);
        const { payload } = await jwtVerify(assertion, publicKey, {
          algorithms: [alg],
          issuer: CLIENT_ID,
          subject: CLIENT_ID,
          audience: `${url}/token`,
          requiredClaims: ['exp', 'jti', 'iat'],
          // The tests' injected clock is "now" for both sides.
          currentDate: new Date(clock),
        });
        if ((payload.exp ?? 0) - (payload.iat ?? 0) > 300) return refuse(res, 'exp more than five minutes ahead');
        if (seenJti.has(payload.jti ?? '')) return refuse(res, 'jti replayed');
        seenJti.add(payload.jti ?? '');
      } catch (error) {
        return refuse(res, `assertion: ${(error as Error).message}`);
      }
      const token = `tok-${++issued}`;
      state.valid.add(token);
      json(res, 200, { access_token: token, token_type: 'Bearer', expires_in: state.expiresIn, scope: SCOPE });
    })();
  });
  return Object.assign(state, { url: `${url}/token`, close });
}

const dir = mkdtempSync(join(tmpdir(), 'smart-backend-'));
let es384: { privateKey: CryptoKey; publicKey: CryptoKey };
let endpoint: TokenEndpoint;
let clock: number;

function provider(overrides: Partial<SmartBackendOptions> = {}): ReturnType<typeof createSmartBackendTokenProvider> {
  return createSmartBackendTokenProvider({
    tokenUrl: endpoint.url,
    clientId: CLIENT_ID,
    privateKey: es384.privateKey,
    keyId: KID,
    alg: 'ES384',
    scope: SCOPE,
    now: () => clock,
    ...overrides,
  });
}

beforeAll(async () => {
  es384 = await generateKeyPair('ES384', { extractable: true });
});

beforeEach(async () => {
  clock = Date.now();
  endpoint = await startTokenEndpoint(es384.publicKey, 'ES384');
});

afterEach(async () => {
  await endpoint.close();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('client assertion and token request', () => {
  it('the endpoint verifies the assertion (iss, sub, aud, exp ≤ 5 min, jti, kid) and issues a token', async () => {
    const tokens = provider();
    await expect(tokens.token()).resolves.toBe('tok-1');
    expect(endpoint.refusals).toEqual([]);
    const [assertion] = endpoint.assertions;
    const claims = JSON.parse(Buffer.from(assertion?.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ iss: CLIENT_ID, sub: CLIENT_ID, aud: endpoint.url });
    expect(claims.exp as number).toBeLessThanOrEqual((claims.iat as number) + 300);
    expect(claims.exp as number).toBeGreaterThan(Math.floor(clock / 1000));
  });

  it('every assertion has its own jti (the endpoint refuses a replay)', async () => {
    const tokens = provider();
    for (let i = 0; i < 3; i++) {
      tokens.invalidate();
      await tokens.token();
    }
    expect(endpoint.calls).toBe(3);
    expect(endpoint.refusals).toEqual([]);
  });

  it('an assertion signed with another key is refused: a clear SmartTokenError, permanent', async () => {
    const other = await generateKeyPair('ES384');
    const error = await provider({ privateKey: other.privateKey }).token().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SmartTokenError);
    expect(error).toMatchObject({ status: 400, transient: false, oauthError: 'invalid_client' });
    expect((error as Error).message).toMatch(/^SMART token request to http:\/\/127\.0\.0\.1:\d+\/token: HTTP 400 invalid_client/);
  });

  it('refuses a token URL in clear text other than loopback, and an assertion lifetime over five minutes', () => {
    expect(() => provider({ tokenUrl: 'http://auth.example/token' })).toThrow(/must use https/);
    expect(() => provider({ assertionLifetimeSeconds: 301 })).toThrow(/at most five minutes/);
    expect(() => provider({ tokenUrl: 'https://auth.example/token' })).not.toThrow();
  });
});

describe('caching', () => {
  it('many concurrent and later calls share one token request', async () => {
    const tokens = provider();
    const all = await Promise.all(Array.from({ length: 20 }, () => tokens.token()));
    expect(new Set(all)).toEqual(new Set(['tok-1']));
    clock += 60_000;
    await expect(tokens.token()).resolves.toBe('tok-1');
    expect(endpoint.calls).toBe(1);
    expect(tokens.requests).toBe(1);
  });

  it('a new token once expires_in − skew has passed (injected clock)', async () => {
    endpoint.expiresIn = 300;
    const tokens = provider({ skewSeconds: 60 });
    const start = clock;
    await expect(tokens.token()).resolves.toBe('tok-1');
    clock = start + 239_000;
    await expect(tokens.token()).resolves.toBe('tok-1');
    clock = start + 240_000;
    await expect(tokens.token()).resolves.toBe('tok-2');
    expect(endpoint.calls).toBe(2);
  });

  it('expires_in shorter than the skew: used for half its life, not re-requested on every call', async () => {
    endpoint.expiresIn = 30;
    const tokens = provider({ skewSeconds: 60 });
    const start = clock;
    await tokens.token();
    clock = start + 14_000;
    await expect(tokens.token()).resolves.toBe('tok-1');
    clock = start + 15_000;
    await expect(tokens.token()).resolves.toBe('tok-2');
  });

  it('invalidate(token) drops that token only: a stale 401 does not discard a fresh token', async () => {
    const tokens = provider();
    await tokens.token();
    tokens.invalidate('tok-1');
    await expect(tokens.token()).resolves.toBe('tok-2');
    tokens.invalidate('tok-1');
    await expect(tokens.token()).resolves.toBe('tok-2');
    expect(endpoint.calls).toBe(2);
  });

  it('a failure is not cached: the next call asks again', async () => {
    endpoint.override = (res) => json(res, 503, { error: 'temporarily_unavailable' });
    const tokens = provider();
    await expect(tokens.token()).rejects.toMatchObject({ status: 503, transient: true, oauthError: 'temporarily_unavailable' });
    endpoint.override = undefined;
    await expect(tokens.token()).resolves.toBe('tok-1');
  });
});

describe('token endpoint errors never carry a secret', () => {
  /** Each case answers with the assertion it received wherever it can (ECHO), to prove it is never repeated. */
  const cases: [string, (res: ServerResponse, assertion: string) => void, RegExp, boolean][] = [
    ['a 401 whose description echoes the assertion', (res, a) => json(res, 401, { error: 'invalid_client', error_description: `bad assertion ${a}` }), /HTTP 401 invalid_client: bad assertion \[redacted\]$/, false],
    ['an OAuth error code that is the assertion', (res, a) => json(res, 400, { error: a }), /HTTP 400 \[redacted\]$/, false],
    ['a 502 proxy page', (res, a) => json(res, 502, `<html>bad gateway ${a}</html>`, 'text/html'), /HTTP 502 \(no JSON error body\)$/, true],
    ['a 200 without access_token', (res, a) => json(res, 200, { token_type: 'bearer', note: a }), /invalid answer \(HTTP 200\): no access_token$/, true],
    ['a 200 that is not JSON', (res, a) => res.end(a), /invalid answer \(HTTP 200\): not a JSON object$/, true],
    ['a DPoP token', (res, a) => json(res, 200, { access_token: a, token_type: 'DPoP', expires_in: 60 }), /token_type "DPoP" is not bearer$/, false],
    ['a redirect', (res, a) => res.writeHead(307, { location: `http://127.0.0.1:1/elsewhere?${a}` }).end(), /HTTP 307 \(redirect not followed: check the token URL\)$/, false],
  ];
  it.each(cases)('%s', async (_name, answer, message, transient) => {
    let assertion = '';
    endpoint.override = (res, form) => {
      assertion = form.get('client_assertion') ?? '';
      answer(res, assertion);
    };
    const error = await provider().token().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SmartTokenError);
    expect((error as SmartTokenError).transient).toBe(transient);
    expect((error as Error).message).toMatch(message);
    expect(assertion.length).toBeGreaterThan(100);
    for (const part of assertion.split('.')) expect((error as Error).message).not.toContain(part);
  });

  it('connection refused: transient status 0 naming the endpoint only', async () => {
    const url = endpoint.url;
    await endpoint.close();
    const error = await provider({ tokenUrl: url }).token().catch((caught: unknown) => caught);
    expect(error).toMatchObject({ status: 0, transient: true });
    expect((error as Error).message).toBe(`SMART token request to ${url}: network error (ECONNREFUSED)`);
    endpoint = await startTokenEndpoint(es384.publicKey, 'ES384');
  });

  it('a token endpoint slower than timeoutMs: transient, timed out', async () => {
    endpoint.override = (res) => setTimeout(() => json(res, 200, { access_token: 'late' }), 500);
    await expect(provider({ timeoutMs: 50 }).token()).rejects.toThrow(/timed out after 50 ms/);
  });
});

describe('loadPrivateKey', () => {
  it('reads PKCS#8 PEM and JWK files, whose keys sign assertions the endpoint accepts', async () => {
    writeFileSync(join(dir, 'es384.pem'), await exportPKCS8(es384.privateKey));
    writeFileSync(join(dir, 'es384.jwk.json'), JSON.stringify({ ...(await exportJWK(es384.privateKey)), kid: KID }));
    for (const file of ['es384.pem', 'es384.jwk.json']) {
      const key = await loadPrivateKey(join(dir, file), 'ES384');
      expect(key.extractable).toBe(false);
      await expect(provider({ privateKey: key }).token()).resolves.toMatch(/^tok-/);
    }
    expect(endpoint.refusals).toEqual([]);
  });

  it('smartBackendFromFiles loads the key and builds the provider; importPrivateKey takes the key from memory', async () => {
    writeFileSync(join(dir, 'es384-b.pem'), await exportPKCS8(es384.privateKey));
    const tokens = await smartBackendFromFiles({ tokenUrl: endpoint.url, clientId: CLIENT_ID, privateKeyFile: join(dir, 'es384-b.pem'), keyId: KID, alg: 'ES384', scope: SCOPE, now: () => clock });
    await expect(tokens.token()).resolves.toBe('tok-1');
    const fromEnv = await importPrivateKey(JSON.stringify(await exportJWK(es384.privateKey)), 'ES384', 'FHIR_AUTH_PRIVATE_KEY');
    await expect(provider({ privateKey: fromEnv }).token()).resolves.toBe('tok-2');
    await expect(importPrivateKey('nonsense', 'ES384', 'FHIR_AUTH_PRIVATE_KEY')).rejects.toThrow('private key FHIR_AUTH_PRIVATE_KEY: neither PEM nor a JWK JSON object');
  });

  it('RS384: PKCS#1 PEM (BEGIN RSA PRIVATE KEY) is converted; the endpoint verifies with the public key', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'rsa.pem'), rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }));
    const rsaEndpoint = await startTokenEndpoint(rsa.publicKey, 'RS384');
    try {
      const key = await loadPrivateKey(join(dir, 'rsa.pem'), 'RS384');
      const tokens = provider({ tokenUrl: rsaEndpoint.url, privateKey: key, alg: 'RS384' });
      await expect(tokens.token()).resolves.toBe('tok-1');
      expect(rsaEndpoint.refusals).toEqual([]);
    } finally {
      await rsaEndpoint.close();
    }
  });

  it('clear errors naming the file, never its content', async () => {
    const es256 = await generateKeyPair('ES256', { extractable: true });
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const files: Record<string, string> = {
      'public.jwk.json': JSON.stringify(await exportJWK(es384.publicKey)),
      'p256.pem': await exportPKCS8(es256.privateKey),
      'jwks.json': JSON.stringify({ keys: [await exportJWK(es384.privateKey)] }),
      'garbage.txt': 'SECRET-CONTENT',
      'rsa1024.pem': rsa1024.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    };
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
    const attempt = (name: string, alg: SmartSigningAlg): Promise<unknown> => loadPrivateKey(join(dir, name), alg).catch((caught: unknown) => caught);
    const messages = {
      public: await attempt('public.jwk.json', 'ES384'),
      curve: await attempt('p256.pem', 'ES384'),
      family: await attempt('p256.pem', 'RS256'),
      jwks: await attempt('jwks.json', 'ES384'),
      garbage: await attempt('garbage.txt', 'ES384'),
      short: await attempt('rsa1024.pem', 'RS384'),
      missing: await attempt('nope.pem', 'ES384'),
    };
    expect(Object.fromEntries(Object.entries(messages).map(([key, error]) => [key, (error as Error).message.replace(dir, '<dir>')]))).toEqual({
      public: 'private key <dir>/public.jwk.json: the JWK has no private part (d): it is a public key',
      curve: 'private key <dir>/p256.pem: ES384 needs an EC key on P-384, this one is on prime256v1',
      family: 'private key <dir>/p256.pem: RS256 needs an RSA key, this is ec',
      jwks: 'private key <dir>/jwks.json: expected one JWK object (not a JWKS)',
      garbage: 'private key <dir>/garbage.txt: neither PEM nor a JWK JSON object',
      short: 'private key <dir>/rsa1024.pem: RS384 needs an RSA key of at least 2048 bits, this one has 1024',
      missing: 'private key <dir>/nope.pem: cannot read the file (ENOENT)',
    });
  });
});

/** A protected resource server accepting only tokens the endpoint issued and not revoked. */
async function startProtected(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void) {
  const seen: { method: string; path: string; authorization: string | undefined; status: number }[] = [];
  const server = await listen((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const authorization = req.headers.authorization;
      const token = authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined;
      const ok = token !== undefined && endpoint.valid.has(token);
      seen.push({ method: req.method ?? '', path: req.url ?? '', authorization, status: ok ? 200 : 401 });
      if (!ok) {
        res.writeHead(401, { 'content-type': 'application/fhir+json', 'www-authenticate': 'Bearer error="invalid_token"' });
        res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', diagnostics: 'token' }] }));
        return;
      }
      handler(req, res, body);
    })();
  });
  return { ...server, seen };
}

describe('HttpFhirServer with a token provider', () => {
  const fhirAnswer = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method === 'POST') return json(res, 201, { resourceType: 'Patient', id: 'new' }, 'application/fhir+json');
    json(res, 200, { resourceType: 'Patient', id: 'p1' }, 'application/fhir+json');
  };

  it('sends Authorization: Bearer; a revoked token gets a 401, one new token, and the request once more', async () => {
    const fhirServer = await startProtected(fhirAnswer);
    try {
      const fhir = new HttpFhirServer({ baseUrl: `${fhirServer.url}/fhir`, timeoutMs: 2000, maxAttempts: 1, tokenProvider: provider() });
      await expect(fhir.read('Patient', 'p1')).resolves.toMatchObject({ id: 'p1' });
      await expect(fhir.read('Patient', 'p1')).resolves.toMatchObject({ id: 'p1' });
      expect(endpoint.calls).toBe(1);
      expect(fhirServer.seen.map((request) => request.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-1']);

      endpoint.valid.delete('tok-1');
      // Five at once with the revoked token: five 401s, one token request, five retries with tok-2.
      const reads = await Promise.all(Array.from({ length: 5 }, () => fhir.read('Patient', 'p1')));
      expect(reads).toHaveLength(5);
      expect(endpoint.calls).toBe(2);
      const after = fhirServer.seen.slice(2);
      expect(after.filter((request) => request.status === 401).map((request) => request.authorization)).toEqual(Array(5).fill('Bearer tok-1'));
      expect(after.filter((request) => request.status === 200).map((request) => request.authorization)).toEqual(Array(5).fill('Bearer tok-2'));

      // A plain create (never retried on a 500) is sent again after a 401: it was not processed.
      endpoint.valid.delete('tok-2');
      await expect(fhir.create<fhir4.Patient>({ resourceType: 'Patient' })).resolves.toMatchObject({ status: 201 });
      expect(fhirServer.seen.slice(-2).map((request) => [request.method, request.authorization, request.status])).toEqual([
        ['POST', 'Bearer tok-2', 401],
        ['POST', 'Bearer tok-3', 200],
      ]);
    } finally {
      await fhirServer.close();
    }
  });

  it('a 401 with a fresh token too: FhirServerError 401 after exactly one retry', async () => {
    const fhirServer = await startProtected(fhirAnswer);
    try {
      // Every token is revoked as soon as it is issued.
      const tokens = provider();
      const revoking = {
        token: async (): Promise<string> => {
          const token = await tokens.token();
          endpoint.valid.delete(token);
          return token;
        },
        invalidate: (token?: string): void => tokens.invalidate(token),
      };
      const fhir = new HttpFhirServer({ baseUrl: `${fhirServer.url}/fhir`, timeoutMs: 2000, maxAttempts: 3, tokenProvider: revoking, sleep: async () => undefined });
      const error = await fhir.read('Patient', 'p1').catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(FhirServerError);
      expect(error).toMatchObject({ status: 401, transient: false });
      expect(fhirServer.seen).toHaveLength(2);
      expect(endpoint.calls).toBe(2);
    } finally {
      await fhirServer.close();
    }
  });

  it('a token endpoint refusing the client: FhirServerError, permanent, nothing sent to the FHIR server', async () => {
    const fhirServer = await startProtected(fhirAnswer);
    try {
      endpoint.override = (res) => json(res, 400, { error: 'invalid_client', error_description: 'unknown kid' });
      const waits: number[] = [];
      const fhir = new HttpFhirServer({ baseUrl: `${fhirServer.url}/fhir`, timeoutMs: 2000, maxAttempts: 3, tokenProvider: provider(), sleep: async (ms) => void waits.push(ms) });
      const error = await fhir.read('Patient', 'p1').catch((caught: unknown) => caught);
      expect(error).toMatchObject({ status: 0, transient: false });
      expect((error as Error).message).toMatch(/^FHIR read Patient: no access token \(SMART token request to .*: HTTP 400 invalid_client: unknown kid\)$/);
      expect(waits).toEqual([]);
      expect(fhirServer.seen).toEqual([]);

      // A token endpoint that is down is transient: retried with backoff, then the read goes through.
      let failures = 2;
      endpoint.override = (res) => json(res, 503, { error: 'temporarily_unavailable' });
      const recovering = provider({
        fetch: async (url, init) => {
          if (--failures < 0) endpoint.override = undefined;
          return fetch(url, init);
        },
      });
      const patient = new HttpFhirServer({ baseUrl: `${fhirServer.url}/fhir`, timeoutMs: 2000, maxAttempts: 3, tokenProvider: recovering, sleep: async (ms) => void waits.push(ms) });
      await expect(patient.read('Patient', 'p1')).resolves.toMatchObject({ id: 'p1' });
      expect(waits).toHaveLength(2);
    } finally {
      await fhirServer.close();
    }
  });
});

describe('HttpInsurerGateway with a token provider', () => {
  const SYSTEM = 'urn:test:claim';
  const claim: fhir4.Claim = {
    resourceType: 'Claim',
    id: 'c1',
    identifier: [{ system: SYSTEM, value: 'c1' }],
    status: 'active',
    type: { coding: [{ code: 'professional' }] },
    use: 'claim',
    patient: { reference: 'Patient/p1' },
    created: '2026-11-02',
    provider: { reference: 'Organization/o1' },
    priority: { coding: [{ code: 'normal' }] },
    insurance: [{ sequence: 1, focal: true, coverage: { reference: 'Coverage/cov1' } }],
  };
  const bundle = submissionBundle(claim, [{ resourceType: 'Patient', id: 'p1' }]);
  const gatewayAnswer = (_req: IncomingMessage, res: ServerResponse): void =>
    json(res, 200, { resourceType: 'ClaimResponse', status: 'active', outcome: 'complete', request: { identifier: { system: SYSTEM, value: 'c1' } } }, 'application/fhir+json');

  it('a revoked token: 401, one new token, the submission sent once more and answered', async () => {
    const gatewayServer = await startProtected(gatewayAnswer);
    try {
      const gateway = new HttpInsurerGateway({ baseUrl: `${gatewayServer.url}/fhir`, timeoutMs: 2000, tokenProvider: provider() });
      await expect(gateway.submit(bundle)).resolves.toMatchObject({ outcome: 'complete' });
      endpoint.valid.delete('tok-1');
      await expect(gateway.submit(bundle)).resolves.toMatchObject({ outcome: 'complete' });
      expect(gatewayServer.seen.map((request) => [request.authorization, request.status])).toEqual([
        ['Bearer tok-1', 200],
        ['Bearer tok-1', 401],
        ['Bearer tok-2', 200],
      ]);
      expect(endpoint.calls).toBe(2);
    } finally {
      await gatewayServer.close();
    }
  });

  it('still 401 with a new token: GatewayError 401, permanent, after one retry; a bare function provider works too', async () => {
    const gatewayServer = await startProtected(gatewayAnswer);
    try {
      const gateway = new HttpInsurerGateway({ baseUrl: `${gatewayServer.url}/fhir`, timeoutMs: 2000, tokenProvider: async () => 'never-issued' });
      const error = await gateway.submit(bundle).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ status: 401, transient: false });
      expect(gatewayServer.seen).toHaveLength(2);
    } finally {
      await gatewayServer.close();
    }
  });

  it('no token to be had: GatewayError status 0, transient as the token error says, nothing sent', async () => {
    const gatewayServer = await startProtected(gatewayAnswer);
    try {
      endpoint.override = (res) => json(res, 400, { error: 'invalid_scope' });
      const gateway = new HttpInsurerGateway({ baseUrl: `${gatewayServer.url}/fhir`, timeoutMs: 2000, tokenProvider: provider() });
      const error = await gateway.submit(bundle).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ status: 0, transient: false });
      expect((error as Error).message).toMatch(/^gateway submit urn:test:claim\|c1: no access token \(SMART token request to .*: HTTP 400 invalid_scope\)$/);
      expect(gatewayServer.seen).toEqual([]);
      expect(() => new HttpInsurerGateway({ baseUrl: gatewayServer.url, timeoutMs: 1, bearerToken: 'x', tokenProvider: provider() })).toThrow(/not both/);
    } finally {
      await gatewayServer.close();
    }
  });
});
