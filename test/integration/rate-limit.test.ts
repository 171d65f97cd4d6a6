/**
 * Per-client rate limits and our own base URL (issue #6, point 5), over HTTP against the real
 * service with authentication on and a real Redis:
 * - a client over RATE_LIMIT_PER_MINUTE gets 429 with an OperationOutcome and Retry-After,
 *   and nothing runs; another client is unaffected; without a token the address is the key;
 * - two API processes sharing the Redis (same QUEUE_PREFIX) share the counters;
 * - URLs we answer with (Location, Content-Location, CapabilityStatement.url) are built on
 *   PUBLIC_BASE_URL (default: the bound address), never on the request's Host header.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CENTRE_VAUGIRARD, getAuthFixture, type AuthFixture } from '../fixtures/auth.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import { deleteKeys, startTestService, type TestService } from './harness.js';

const LIMIT = 5;
const PUBLIC = 'https://adapter.example.org/base';
const SCOPES = ['system/Patient.rs', 'system/Patient.c'];

let fixture: AuthFixture;
let dir: string;
let prefix: string;
let a: TestService;
let b: TestService;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
}

/** One request with raw headers (fetch would not let us set Host). */
function send(base: string, method: string, path: string, options: { token?: string; host?: string; body?: unknown } = {}): Promise<Answer> {
  const url = new URL(base);
  const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: {
          ...(options.host ? { host: options.host } : {}),
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...(payload ? { 'content-type': 'application/fhir+json', 'content-length': String(payload.length) } : {}),
          'x-forwarded-host': 'forwarded.evil.example',
          'x-forwarded-proto': 'gopher',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const evaluate = (base: string, token?: string): Promise<Answer> => send(base, 'GET', '/fhir/Patient/nobody-here/$evaluate-eligibility?program=fnmf-prediabetes', token ? { token } : {});

const minted: string[] = [];
async function mint(sub: string): Promise<string> {
  const token = await fixture.mintToken({ scopes: SCOPES, centre: CENTRE_VAUGIRARD.claim, sub });
  minted.push(token);
  return token;
}

function expectThrottled(answer: Answer): void {
  expect(answer.status).toBe(429);
  expect(answer.headers['content-type']).toMatch(/^application\/fhir\+json/);
  expect(answer.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'throttled' }] });
  expect(Number(answer.headers['retry-after'])).toBeGreaterThan(0);
  expect(Number(answer.headers['retry-after'])).toBeLessThanOrEqual(60);
}

beforeAll(async () => {
  fixture = await getAuthFixture();
  dir = mkdtempSync(join(tmpdir(), 'rate-limit-'));
  const jwksFile = fixture.writeJwksFile(dir);
  prefix = `t${randomUUID().slice(0, 8)}`;
  const env = { ...fixture.env({ jwksFile }), QUEUE_PREFIX: prefix, RATE_LIMIT_PER_MINUTE: String(LIMIT), ROLE: 'api' };
  // Two API processes on one Redis and one prefix; A has a public base URL, B derives it.
  a = await startTestService({ ...env, PUBLIC_BASE_URL: `${PUBLIC}/` }, { keepKeys: true });
  b = await startTestService(env, { keepKeys: true });
});

afterAll(async () => {
  const redisUrl = a?.service.redisUrl;
  await a?.stop();
  await b?.stop();
  if (redisUrl) {
    const redis = new Redis(redisOptionsFromUrl(redisUrl));
    await deleteKeys(redis, prefix);
    redis.disconnect();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('our base URL is never taken from the Host header', () => {
  it('PUBLIC_BASE_URL: CapabilityStatement.implementation.url is built on it, not on Host', async () => {
    // One request of this address's budget (the address test below counts it).
    const metadata = await send(a.url, 'GET', '/fhir/metadata', { host: 'evil.example:8443' });
    expect(metadata.status).toBe(200);
    expect(metadata.body.implementation?.url).toBe(`${PUBLIC}/fhir`);
  });

  it('the default is the bound address: a hostile Host header is not reflected', async () => {
    const c = await startTestService({ RATE_LIMIT_PER_MINUTE: '0' });
    try {
      const metadata = await send(c.url, 'GET', '/fhir/metadata', { host: 'evil.example' });
      expect(metadata.status).toBe(200);
      expect(JSON.stringify(metadata.body)).not.toContain('evil.example');
      expect(metadata.body.implementation?.url).toBe(`${c.url}/fhir`);
      const created = await send(c.url, 'POST', '/fhir/Patient', {
        host: 'evil.example',
        body: { resourceType: 'Patient', identifier: [{ system: 'urn:test:rate-limit-host', value: randomUUID() }], gender: 'male' },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(created.headers.location).toBe(`${c.url}/fhir/Patient/${created.body.id}${created.body.meta?.versionId ? `/_history/${created.body.meta.versionId}` : ''}`);
      expect(JSON.stringify(created.headers)).not.toContain('evil.example');
    } finally {
      await c.stop();
    }
  });
});

describe('rate limit per client', () => {
  it('counts a client across both API processes, answers 429 past the limit, and leaves other clients alone', async () => {
    const [first, second] = await Promise.all([mint(`rl-first-${randomUUID()}`), mint(`rl-second-${randomUUID()}`)]);
    // LIMIT requests, alternating processes: all served (the patient does not exist: 404).
    for (let i = 0; i < LIMIT; i++) {
      const answer = await evaluate(i % 2 === 0 ? a.url : b.url, first);
      expect(answer.status, JSON.stringify(answer.body)).toBe(404);
      expect(answer.headers['ratelimit-policy']).toBeDefined();
    }
    // The next one, on either process, is over the shared count.
    expectThrottled(await evaluate(b.url, first));
    expectThrottled(await evaluate(a.url, first));
    // Another client has its own count.
    expect((await evaluate(a.url, second)).status).toBe(404);
    expect((await evaluate(b.url, second)).status).toBe(404);
  });

  it('limits the rest-hook too', async () => {
    const token = await fixture.mintToken({ scopes: ['system/Subscription.notify'], sub: `rl-hook-${randomUUID()}` });
    minted.push(token);
    // `{}` is an R4 rest-hook ping: answered 200, nothing queued.
    for (let i = 0; i < LIMIT; i++) expect((await send(i % 2 ? a.url : b.url, 'POST', '/hooks/subscription', { token, body: {} })).status).toBe(200);
    expectThrottled(await send(a.url, 'POST', '/hooks/subscription', { token, body: {} }));
  });

  it('refuses a write over the limit before anything runs (nothing stored)', async () => {
    const token = await mint(`rl-write-${randomUUID()}`);
    for (let i = 0; i < LIMIT; i++) expect((await evaluate(a.url, token)).status).toBe(404);
    const identifier = `rl-${randomUUID()}`;
    const answer = await send(a.url, 'POST', '/fhir/Patient', {
      token,
      body: { resourceType: 'Patient', identifier: [{ system: 'urn:test:rate-limit', value: identifier }], gender: 'female' },
    });
    expectThrottled(answer);
    const found = (await a.fhirGet(`Patient?identifier=urn:test:rate-limit|${identifier}`)) as fhir4.Bundle;
    expect(found.entry ?? []).toHaveLength(0);
  });

  it('without a token, the address is the key (public routes and refused tokens alike)', async () => {
    // The metadata request of the base-URL test above spent one of this address's requests.
    let served = 0;
    let last: Answer | undefined;
    for (let i = 0; i < LIMIT + 1; i++) {
      last = await send(b.url, 'GET', '/fhir/metadata');
      if (last.status === 200) served += 1;
      else break;
    }
    expect(served).toBe(LIMIT - 1);
    expectThrottled(last as Answer);
  });

  it('keeps its counters in the service Redis under the queue prefix, keyed by client id (no token in a key)', async () => {
    const keys = await a.redis.keys(`${prefix}:ratelimit:*`);
    expect(keys.some((key) => key.startsWith(`${prefix}:ratelimit:client:rl-first-`))).toBe(true);
    expect(keys.some((key) => key.startsWith(`${prefix}:ratelimit:ip:`))).toBe(true);
    expect(keys.every((key) => !minted.some((token) => key.includes(token.split('.')[2] as string)))).toBe(true);
  });
});
