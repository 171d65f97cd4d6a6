import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuthError,
  assertScopes,
  authMiddleware,
  clientOf,
  createAuthenticator,
  parseCentreMap,
  sendAuthError,
  type AuthFailureReason,
  type Authenticator,
} from '../../../src/http/auth.js';
import { ADMIN_SCOPE, bundleScopes, requiredScopes } from '../../../src/http/scopes.js';
import { CENTRE_CALAIS, CENTRE_VAUGIRARD, createAuthFixture, getAuthFixture, type AuthFixture, type JwksServer, type MintOptions } from '../../fixtures/auth.js';

const WRITER: MintOptions = { scopes: ['system/Observation.c', 'system/Patient.rs'], centre: CENTRE_VAUGIRARD.claim, sub: 'ehr-vaugirard' };

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: { resourceType?: string; issue?: { severity: string; code: string; diagnostics: string }[]; clientId?: string; centre?: string | null; scopes?: string[] };
}

/** Every token sent and every answer received, checked at the end: no answer may echo a token. */
const sentTokens: string[] = [];
const answers: string[] = [];

let fixture: AuthFixture;
let other: AuthFixture;

beforeAll(async () => {
  [fixture, other] = await Promise.all([getAuthFixture(), createAuthFixture('other')]);
});

function tinyApp(authenticator: Authenticator, failures: AuthFailureReason[] = []): express.Express {
  const app = express();
  app.use(
    authMiddleware(authenticator, {
      scopeFor: (req) => requiredScopes(req.method, req.path),
      onFailure: (_req, error) => failures.push(error.reason),
    }),
  );
  app.use(express.json({ type: ['application/fhir+json', 'application/json'] }));
  const whoAmI = (_req: Request, res: Response): void => {
    const client = clientOf(res);
    res.json({ clientId: client.clientId, centre: client.centre ?? null, scopes: client.scopes });
  };
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/metrics', whoAmI);
  app.post('/fhir/Patient/:id/\\$evaluate-eligibility', whoAmI);
  app.post('/fhir', (req, res) => {
    assertScopes(clientOf(res), bundleScopes(req.body));
    whoAmI(req, res);
  });
  app.post('/fhir/:type', whoAmI);
  app.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (error instanceof AuthError) {
      sendAuthError(res, error);
      return;
    }
    next(error);
  });
  return app;
}

async function listen(app: express.Express): Promise<{ base: string; close: () => Promise<void> }> {
  const server: Server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function call(base: string, path: string, authorization?: string, init: { method?: string; body?: unknown } = {}): Promise<Answer> {
  const credentials = authorization?.split(/\s+/).slice(1).join(' ');
  if (credentials) sentTokens.push(credentials);
  const response = await fetch(`${base}${path}`, {
    method: init.method ?? 'POST',
    headers: {
      ...(authorization !== undefined ? { Authorization: authorization } : {}),
      ...(init.body !== undefined ? { 'Content-Type': 'application/fhir+json' } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await response.text();
  answers.push(text, JSON.stringify([...response.headers]));
  return { status: response.status, headers: response.headers, text, json: text ? (JSON.parse(text) as Answer['json']) : {} };
}

function expectRefusal(answer: Answer, status: 401 | 403 | 503, code: string, challenge?: RegExp): void {
  expect(answer.status).toBe(status);
  expect(answer.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
  expect(answer.headers.get('cache-control')).toBe('no-store');
  expect(answer.json.resourceType).toBe('OperationOutcome');
  expect(answer.json.issue).toHaveLength(1);
  expect(answer.json.issue?.[0]).toMatchObject({ severity: 'error', code });
  if (challenge) expect(answer.headers.get('www-authenticate')).toMatch(challenge);
  // Nothing but the outcome: no identity leaks out of a refusal.
  expect(answer.json.clientId).toBeUndefined();
}

describe('authMiddleware over HTTP (local JWKS)', () => {
  let base: string;
  let close: () => Promise<void>;
  const failures: AuthFailureReason[] = [];

  beforeAll(async () => {
    ({ base, close } = await listen(tinyApp(createAuthenticator(fixture.authenticatorOptions()), failures)));
  });
  afterAll(() => close());

  it('accepts a valid RS256 token with the identity it carries', async () => {
    const answer = await call(base, '/fhir/Observation', await fixture.bearer(WRITER));
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ clientId: 'ehr-vaugirard', centre: CENTRE_VAUGIRARD.identifier, scopes: WRITER.scopes });
  });

  it('accepts a valid ES256 token', async () => {
    const answer = await call(base, '/fhir/Observation', await fixture.bearer({ ...WRITER, alg: 'ES256', centre: CENTRE_CALAIS.claim, sub: 'ehr-calais' }));
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ clientId: 'ehr-calais', centre: CENTRE_CALAIS.identifier, scopes: WRITER.scopes });
  });

  it('names the client by client_id before sub, and accepts a lower-case scheme', async () => {
    const token = await fixture.mintToken({ ...WRITER, clientId: 'ehr-app', sub: 'service-account-42' });
    const answer = await call(base, '/fhir/Observation', `bearer ${token}`);
    expect(answer.status).toBe(200);
    expect(answer.json.clientId).toBe('ehr-app');
  });

  it('lets a public route through without a token', async () => {
    const answer = await call(base, '/healthz', undefined, { method: 'GET' });
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ status: 'ok' });
  });

  it('answers 401 with a bare challenge when there is no token', async () => {
    const answer = await call(base, '/fhir/Observation');
    expectRefusal(answer, 401, 'login', /^Bearer$/);
  });

  it('answers 401 to another scheme', async () => {
    const answer = await call(base, '/fhir/Observation', 'Basic ZWhyOnNlY3JldA==');
    expectRefusal(answer, 401, 'login', /^Bearer$/);
  });

  it('answers 401 invalid_request to "Bearer" with no token', async () => {
    expectRefusal(await call(base, '/fhir/Observation', 'Bearer'), 401, 'login', /^Bearer error="invalid_request"/);
    expectRefusal(await call(base, '/fhir/Observation', 'Bearer two tokens'), 401, 'login', /^Bearer error="invalid_request"/);
  });

  const invalid: [label: string, token: () => Promise<string> | string, code?: string][] = [
    ['garbage', () => 'not-a-jwt'],
    ['three garbage parts', () => 'aaa.bbb.ccc'],
    ['an expired token', () => fixture.mintToken({ ...WRITER, expiresIn: -120 }), 'expired'],
    ['a token not valid yet', () => fixture.mintToken({ ...WRITER, notBefore: 600 })],
    ['a token without exp', () => fixture.mintToken({ ...WRITER, expiresIn: null })],
    ['a token of another issuer', () => fixture.mintToken({ ...WRITER, issuer: 'https://evil.example/realms/forfait' })],
    ['a token for another audience', () => fixture.mintToken({ ...WRITER, audience: 'https://other-service.example/fhir' })],
    ['a token signed by another key with a trusted kid', () => fixture.mintToken({ ...WRITER, key: other.keys.RS256.privateKey })],
    ['a token signed by another key with its own kid', () => other.mintToken(WRITER)],
    ['a token signed by another ES256 key', () => fixture.mintToken({ ...WRITER, alg: 'ES256', key: other.keys.ES256.privateKey })],
    ['a token without kid signed by another key', () => fixture.mintToken({ ...WRITER, key: other.keys.RS256.privateKey, kid: null })],
    ['alg none', () => fixture.unsecuredToken(WRITER)],
    ['HS256 keyed with the public key', () => fixture.hs256WithPublicKey(WRITER)],
    [
      'a tampered payload',
      async () => {
        const [header, , signature] = (await fixture.mintToken(WRITER)).split('.');
        const payload = Buffer.from(JSON.stringify({ iss: fixture.issuer, aud: fixture.audience, sub: 'x', exp: 9_999_999_999, scope: 'system/*.*', centre: CENTRE_VAUGIRARD.claim })).toString('base64url');
        return `${header}.${payload}.${signature}`;
      },
    ],
  ];
  it.each(invalid)('answers 401 invalid_token to %s', async (_label, token, code = 'login') => {
    const answer = await call(base, '/fhir/Observation', `Bearer ${await token()}`);
    expectRefusal(answer, 401, code, /^Bearer error="invalid_token", error_description="[^"]+"$/);
  });

  it('answers 403 insufficient_scope to an under-scoped token, naming the missing scope', async () => {
    const answer = await call(base, '/fhir/Observation', await fixture.bearer({ ...WRITER, scopes: ['system/Patient.rs', 'system/Observation.r'] }));
    expectRefusal(answer, 403, 'forbidden', /^Bearer error="insufficient_scope", error_description="[^"]+", scope="system\/Observation.c"$/);
  });

  it('answers 403 to a token without scopes', async () => {
    expectRefusal(await call(base, '/fhir/Observation', await fixture.bearer({ ...WRITER, scopes: [] })), 403, 'forbidden');
  });

  it('answers 403 to a token without a centre claim, with an unknown centre or a non-string one', async () => {
    expectRefusal(await call(base, '/fhir/Observation', await fixture.bearer({ ...WRITER, centre: undefined })), 403, 'forbidden', /insufficient_scope/);
    expectRefusal(await call(base, '/fhir/Observation', await fixture.bearer({ ...WRITER, centre: 'CDS-ELSEWHERE' })), 403, 'forbidden', /insufficient_scope/);
    expectRefusal(await call(base, '/fhir/Observation', await fixture.bearer({ ...WRITER, claims: { centre: [CENTRE_VAUGIRARD.claim] } })), 403, 'forbidden');
    expectRefusal(await call(base, '/fhir/Observation', await fixture.bearer({ ...WRITER, centre: 'constructor' })), 403, 'forbidden');
  });

  it('lets an operator in without a centre on operator-only routes, but not with an unknown one', async () => {
    const admin = await call(base, '/metrics', await fixture.bearer({ scopes: [ADMIN_SCOPE], sub: 'ops' }), { method: 'GET' });
    expect(admin.status).toBe(200);
    expect(admin.json).toEqual({ clientId: 'ops', centre: null, scopes: [ADMIN_SCOPE] });
    expectRefusal(await call(base, '/metrics', await fixture.bearer({ scopes: [ADMIN_SCOPE], centre: 'CDS-ELSEWHERE' }), { method: 'GET' }), 403, 'forbidden');
    expectRefusal(await call(base, '/metrics', await fixture.bearer({ ...WRITER, scopes: ['system/*.*'] }), { method: 'GET' }), 403, 'forbidden');
  });

  it('refuses a route outside the table to all but operators (fail closed)', async () => {
    expectRefusal(await call(base, '/fhir/Patient/p1', await fixture.bearer({ ...WRITER, scopes: ['system/*.*'] }), { method: 'GET' }), 403, 'forbidden');
  });

  it('checks the scopes of each Bundle entry in the handler', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: { resourceType: 'Observation' }, request: { method: 'POST', url: 'Observation' } },
        { resource: { resourceType: 'Condition' }, request: { method: 'POST', url: 'Condition' } },
      ],
    };
    const refused = await call(base, '/fhir', await fixture.bearer(WRITER), { body: bundle });
    expectRefusal(refused, 403, 'forbidden', /scope="system\/Condition.c"/);
    const accepted = await call(base, '/fhir', await fixture.bearer({ ...WRITER, scopes: ['system/Observation.c', 'system/Condition.c'] }), { body: bundle });
    expect(accepted.status).toBe(200);
    // Without a valid token the body is never looked at.
    expectRefusal(await call(base, '/fhir', undefined, { body: bundle }), 401, 'login');
  });

  it('reported each refusal, by reason', () => {
    expect(new Set(failures)).toEqual(
      new Set<AuthFailureReason>(['missing', 'malformed', 'expired', 'not-yet-valid', 'bad-claims', 'bad-signature', 'unsupported-alg', 'insufficient-scope', 'no-centre', 'unknown-centre']),
    );
  });
});

describe('authenticate: failure reasons', () => {
  let authenticator: Authenticator;
  beforeAll(() => {
    authenticator = createAuthenticator(fixture.authenticatorOptions());
  });

  const reasonOf = async (header: string | undefined, requireCentre = true): Promise<AuthFailureReason | 'ok'> => {
    try {
      await authenticator.authenticate(header, { requireCentre });
      return 'ok';
    } catch (error) {
      if (error instanceof AuthError) return error.reason;
      throw error;
    }
  };

  it.each<[string, () => Promise<string | undefined> | string | undefined, AuthFailureReason | 'ok']>([
    ['valid', () => fixture.bearer(WRITER), 'ok'],
    ['no header', () => undefined, 'missing'],
    ['blank header', () => '  ', 'missing'],
    ['oversized header', () => `Bearer ${'a'.repeat(20_000)}`, 'malformed'],
    ['expired', () => fixture.bearer({ ...WRITER, expiresIn: -120 }), 'expired'],
    ['expired within the clock tolerance', () => fixture.bearer({ ...WRITER, expiresIn: -10 }), 'ok'],
    ['not yet valid', () => fixture.bearer({ ...WRITER, notBefore: 600 }), 'not-yet-valid'],
    ['wrong issuer', () => fixture.bearer({ ...WRITER, issuer: 'https://evil.example' }), 'bad-claims'],
    ['wrong audience', () => fixture.bearer({ ...WRITER, audience: ['https://a.example', 'https://b.example'] }), 'bad-claims'],
    ['one of several audiences', () => fixture.bearer({ ...WRITER, audience: ['https://a.example', fixture.audience] }), 'ok'],
    ['no exp', () => fixture.bearer({ ...WRITER, expiresIn: null }), 'bad-claims'],
    ['other key, trusted kid', () => fixture.bearer({ ...WRITER, key: other.keys.RS256.privateKey }), 'bad-signature'],
    ['other key, unknown kid', () => other.bearer(WRITER), 'bad-signature'],
    ['alg none', () => `Bearer ${fixture.unsecuredToken(WRITER)}`, 'unsupported-alg'],
    ['HS256 with the public key', async () => `Bearer ${await fixture.hs256WithPublicKey(WRITER)}`, 'unsupported-alg'],
    ['no client id', () => fixture.bearer({ ...WRITER, claims: { sub: undefined } }), 'no-client-id'],
    ['no centre', () => fixture.bearer({ ...WRITER, centre: undefined }), 'no-centre'],
    ['unknown centre', () => fixture.bearer({ ...WRITER, centre: 'CDS-ELSEWHERE' }), 'unknown-centre'],
  ])('%s → %s', async (_label, header, expected) => {
    expect(await reasonOf(await header())).toBe(expected);
  });

  it('lets a token without a centre through when the route needs none, still refusing an unknown centre', async () => {
    expect(await reasonOf(await fixture.bearer({ scopes: [ADMIN_SCOPE] }), false)).toBe('ok');
    expect(await reasonOf(await fixture.bearer({ scopes: [ADMIN_SCOPE], centre: 'CDS-ELSEWHERE' }), false)).toBe('unknown-centre');
  });

  it('accepts only the configured algorithms', async () => {
    const esOnly = createAuthenticator(fixture.authenticatorOptions({ algorithms: ['ES256'] }));
    await expect(esOnly.authenticate(await fixture.bearer(WRITER))).rejects.toMatchObject({ status: 401, reason: 'unsupported-alg' });
    await expect(esOnly.authenticate(await fixture.bearer({ ...WRITER, alg: 'ES256' }))).resolves.toMatchObject({ clientId: 'ehr-vaugirard' });
  });

  it('reads scopes from scp (string or array) when there is no scope claim, without duplicates', async () => {
    const array = await authenticator.authenticate(await fixture.bearer({ ...WRITER, scopes: [], claims: { scp: ['system/Patient.rs', 'system/Patient.rs', 3] } }));
    expect(array.scopes).toEqual(['system/Patient.rs']);
    const spaced = await authenticator.authenticate(await fixture.bearer({ ...WRITER, scopes: ['system/Patient.rs', '', 'system/Claim.r'] }));
    expect(spaced.scopes).toEqual(['system/Patient.rs', 'system/Claim.r']);
  });

  it('never puts the token in an error', async () => {
    const token = await fixture.mintToken({ ...WRITER, expiresIn: -120 });
    const error = (await authenticator.authenticate(`Bearer ${token}`).catch((e: unknown) => e)) as AuthError;
    expect(error).toBeInstanceOf(AuthError);
    expect(JSON.stringify({ ...error, message: error.message, stack: error.stack })).not.toContain(token.split('.')[2]);
    expect(error.cause).toBeUndefined();
  });
});

describe('remote JWKS over HTTP', () => {
  let jwksServer: JwksServer;
  let base: string;
  let close: () => Promise<void>;
  beforeAll(async () => {
    jwksServer = await fixture.startJwksServer();
    ({ base, close } = await listen(tinyApp(createAuthenticator(fixture.authenticatorOptions({ jwks: undefined, jwksUrl: jwksServer.url })))));
  });
  afterAll(async () => {
    await close();
    await jwksServer.close();
  });

  it('verifies RS256 and ES256 tokens against the served key set, fetched once', async () => {
    const rs = await call(base, '/fhir/Observation', await fixture.bearer(WRITER));
    const es = await call(base, '/fhir/Observation', await fixture.bearer({ ...WRITER, alg: 'ES256' }));
    expect([rs.status, es.status]).toEqual([200, 200]);
    expect(es.json.centre).toBe(CENTRE_VAUGIRARD.identifier);
    expect(jwksServer.requests).toBe(1);
  });

  it('still refuses tokens of other keys', async () => {
    expectRefusal(await call(base, '/fhir/Observation', await other.bearer(WRITER)), 401, 'login', /invalid_token/);
  });

  it('answers 503 (not 401) while the key set cannot be fetched', async () => {
    const failing = await fixture.startJwksServer();
    failing.failWith(500);
    const served = await listen(tinyApp(createAuthenticator(fixture.authenticatorOptions({ jwks: undefined, jwksUrl: failing.url }))));
    try {
      const answer = await call(served.base, '/fhir/Observation', await fixture.bearer(WRITER));
      expectRefusal(answer, 503, 'transient');
      expect(answer.headers.get('www-authenticate')).toBeNull();
      expect(answer.headers.get('retry-after')).toBe('5');
    } finally {
      await served.close();
      await failing.close();
    }
  });

  it('answers 503 when the key set server does not answer at all', async () => {
    const gone = await fixture.startJwksServer();
    const url = gone.url;
    await gone.close();
    const authenticator = createAuthenticator(fixture.authenticatorOptions({ jwks: undefined, jwksUrl: url }));
    await expect(authenticator.authenticate(await fixture.bearer(WRITER))).rejects.toMatchObject({ status: 503, reason: 'jwks-unavailable' });
  });
});

describe('createAuthenticator configuration', () => {
  it('reads a JWKS file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jwks-'));
    try {
      const authenticator = createAuthenticator(fixture.authenticatorOptions({ jwks: undefined, jwksFile: fixture.writeJwksFile(dir) }));
      await expect(authenticator.authenticate(await fixture.bearer(WRITER))).resolves.toMatchObject({ centre: CENTRE_VAUGIRARD.identifier });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses bad key sources at creation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jwks-'));
    try {
      const base = fixture.authenticatorOptions({ jwks: undefined });
      expect(() => createAuthenticator(base)).toThrow(/exactly one/);
      expect(() => createAuthenticator({ ...base, jwks: fixture.jwks, jwksUrl: 'https://idp.example/jwks' })).toThrow(/exactly one/);
      expect(() => createAuthenticator({ ...base, jwksUrl: 'http://idp.example/jwks' })).toThrow(/https/);
      expect(() => createAuthenticator({ ...base, jwksUrl: 'https://idp.example/jwks' })).not.toThrow();
      expect(() => createAuthenticator({ ...base, jwksUrl: 'http://localhost:1/jwks' })).not.toThrow();
      expect(() => createAuthenticator({ ...base, jwksFile: join(dir, 'missing.json') })).toThrow(/Cannot read/);
      writeFileSync(join(dir, 'empty.json'), '{"keys":[]}');
      expect(() => createAuthenticator({ ...base, jwksFile: join(dir, 'empty.json') })).toThrow(/non-empty/);
      expect(() => createAuthenticator({ ...base, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } })).toThrow(/public keys only/);
      expect(() => createAuthenticator({ ...base, jwks: fixture.jwks, algorithms: [] })).toThrow(/algorithms/);
      expect(() => createAuthenticator({ ...base, jwks: fixture.jwks, algorithms: ['HS256' as 'RS256'] })).toThrow(/algorithms/);
      expect(() => createAuthenticator({ ...base, jwks: fixture.jwks, issuer: '' })).toThrow(/issuer/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseCentreMap', () => {
  it('reads the list and the JSON forms', () => {
    const expected = new Map([
      ['CDS-MGEN-VAUGIRARD', 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre|CDS-MGEN-VAUGIRARD'],
      ['REDIAB-CALAIS', 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre|REDIAB-CALAIS'],
    ]);
    expect(parseCentreMap(' CDS-MGEN-VAUGIRARD=http://forfait-fhir.org/fhir/NamingSystem/demo-centre|CDS-MGEN-VAUGIRARD , REDIAB-CALAIS=http://forfait-fhir.org/fhir/NamingSystem/demo-centre|REDIAB-CALAIS')).toEqual(expected);
    expect(parseCentreMap(JSON.stringify(Object.fromEntries(expected)))).toEqual(expected);
  });

  it.each(['', 'a', '=x|y', 'a=b', 'a=|b', 'a=b|', 'a=b|c|d', 'a=x|y,a=x|z', '[]', '{"a":1}', '{"a":"x y|z"}'])('refuses %j', (text) => {
    expect(() => parseCentreMap(text)).toThrow();
  });
});

afterAll(() => {
  // The token (or its signature) never comes back, in any body or header of any answer.
  expect(sentTokens.length).toBeGreaterThan(20);
  for (const token of sentTokens) {
    const needles = [token, ...token.split('.').filter((part) => part.length >= 16)];
    for (const answer of answers) for (const needle of needles) expect(answer.includes(needle), `an answer echoes a token: ${needle} in ${answer}`).toBe(false);
  }
});
