/**
 * Fault injection against HttpFhirServer: a fake remote FHIR server (nock intercepts
 * the adapter's http requests) answering errors, delays, Retry-After and paging links. Waits
 * between attempts are recorded through the injected `sleep` instead of slept.
 */
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { HttpFhirServer, parseRetryAfter, type FhirServerOptions } from '../../../src/fhir/fhir-server.adapter.js';
import { FhirServerError } from '../../../src/fhir/fhir-server.port.js';

const ORIGIN = 'http://fhir.test';
const BASE = `${ORIGIN}/fhir`;
const FHIR_JSON = { 'content-type': 'application/fhir+json' };

const outcome = (code: fhir4.OperationOutcomeIssue['code'], diagnostics: string): fhir4.OperationOutcome => ({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code, diagnostics }],
});

const patient = (id: string): fhir4.Patient => ({ resourceType: 'Patient', id, meta: { versionId: '1' } });

/** A server under test with a recording sleep. */
function server(overrides: Partial<FhirServerOptions> = {}): { fhir: HttpFhirServer; waits: number[] } {
  const waits: number[] = [];
  const fhir = new HttpFhirServer({
    baseUrl: BASE,
    timeoutMs: 2000,
    maxAttempts: 3,
    baseDelayMs: 10,
    maxDelayMs: 60_000,
    sleep: async (ms) => {
      waits.push(ms);
    },
    ...overrides,
  });
  return { fhir, waits };
}

/** Runs `promise` expecting a FhirServerError, and returns it. */
async function failure(promise: Promise<unknown>): Promise<FhirServerError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(FhirServerError);
  return error as FhirServerError;
}

beforeAll(() => {
  nock.disableNetConnect();
  nock.enableNetConnect(/127\.0\.0\.1|localhost/);
});

afterEach(() => {
  // Every interceptor a test declared must have been used, and none may leak into the next.
  const pending = nock.pendingMocks();
  nock.cleanAll();
  expect(pending).toEqual([]);
});

afterAll(() => {
  nock.enableNetConnect();
  nock.restore();
});

describe('retries on transient answers', () => {
  it('503 then 200: retried once, the resource is returned', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').reply(503, outcome('transient', 'busy'), FHIR_JSON);
    nock(ORIGIN).get('/fhir/Patient/p1').reply(200, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server();
    const read = await fhir.read<fhir4.Patient>('Patient', 'p1');
    expect(read).toMatchObject({ resourceType: 'Patient', id: 'p1' });
    expect(waits).toHaveLength(1);
  });

  it('429 with Retry-After: 3 waits at least 3000 ms before retrying', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').reply(429, outcome('throttled', 'slow down'), { ...FHIR_JSON, 'Retry-After': '3' });
    nock(ORIGIN).get('/fhir/Patient/p1').reply(200, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server();
    await expect(fhir.read('Patient', 'p1')).resolves.toMatchObject({ id: 'p1' });
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThanOrEqual(3000);
  });

  it('a Retry-After holds the same request for every caller, not only the retry loop that got it', async () => {
    nock(ORIGIN).get('/fhir/Organization?identifier=urn%3Acentre%7C1').reply(429, outcome('throttled', 'slow down'), { ...FHIR_JSON, 'Retry-After': '2' });
    const { fhir, waits } = server({ maxAttempts: 1 });
    await expect(fhir.searchAll('Organization', { identifier: 'urn:centre|1' })).rejects.toMatchObject({ status: 429 });
    expect(waits).toEqual([]);
    // Another request goes at once; the same one (another job asking the same thing) waits.
    nock(ORIGIN).get('/fhir/Patient/p1').reply(200, patient('p1'), FHIR_JSON);
    await fhir.read('Patient', 'p1');
    expect(waits).toEqual([]);
    nock(ORIGIN).get('/fhir/Organization?identifier=urn%3Acentre%7C1').reply(200, { resourceType: 'Bundle', type: 'searchset', entry: [] }, FHIR_JSON);
    await expect(fhir.searchAll('Organization', { identifier: 'urn:centre|1' })).resolves.toEqual([]);
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThan(1900);
    expect(waits[0]).toBeLessThanOrEqual(2000);
  });

  it('Retry-After as an HTTP date is honoured', async () => {
    // Only Date is faked (fetch and nock keep real timers), so "now" is a fixed whole second.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(new Date('2026-11-22T10:00:00Z'));
      nock(ORIGIN).get('/fhir/Patient/p1').reply(503, outcome('transient', 'maintenance'), { ...FHIR_JSON, 'Retry-After': 'Sun, 22 Nov 2026 10:00:10 GMT' });
      nock(ORIGIN).get('/fhir/Patient/p1').reply(200, patient('p1'), FHIR_JSON);
      const { fhir, waits } = server();
      await fhir.read('Patient', 'p1');
      expect(waits).toEqual([10_000]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('Retry-After is capped at maxDelayMs', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').reply(429, outcome('throttled', 'come back tomorrow'), { ...FHIR_JSON, 'Retry-After': '86400' });
    nock(ORIGIN).get('/fhir/Patient/p1').reply(200, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server({ maxDelayMs: 5000 });
    await fhir.read('Patient', 'p1');
    expect(waits).toEqual([5000]);
  });

  it('500 on every attempt: FhirServerError 500, transient, with the server OperationOutcome', async () => {
    const serverOutcome = outcome('exception', 'database unavailable');
    nock(ORIGIN).get('/fhir/Patient/p1').times(3).reply(500, serverOutcome, FHIR_JSON);
    const { fhir, waits } = server({ maxAttempts: 3 });
    const error = await failure(fhir.read('Patient', 'p1'));
    expect(error.status).toBe(500);
    expect(error.transient).toBe(true);
    expect(error.outcome).toEqual(serverOutcome);
    expect(error.message).toContain('HTTP 500');
    // maxAttempts attempts, so one wait fewer; backoff grows (jitter stays within [50 %, 100 %]).
    expect(waits).toHaveLength(2);
    expect(waits[0]).toBeGreaterThanOrEqual(5);
    expect(waits[0]).toBeLessThanOrEqual(10);
    expect(waits[1]).toBeGreaterThanOrEqual(10);
    expect(waits[1]).toBeLessThanOrEqual(20);
  });

  it('maxAttempts 1 means no retry', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').reply(503, outcome('transient', 'busy'), FHIR_JSON);
    const { fhir, waits } = server({ maxAttempts: 1 });
    const error = await failure(fhir.read('Patient', 'p1'));
    expect(error.status).toBe(503);
    expect(error.transient).toBe(true);
    expect(waits).toEqual([]);
  });
});

describe('permanent answers are not retried', () => {
  it.each([400, 404, 422])('%i: one attempt, transient false, outcome kept', async (status) => {
    const serverOutcome = outcome('invalid', `rejected with ${status}`);
    // Declared twice: the second must stay unused (pending) to prove there was no retry.
    nock(ORIGIN).get('/fhir/Patient/p1').reply(status, serverOutcome, FHIR_JSON);
    const unused = nock(ORIGIN).get('/fhir/Patient/p1').reply(200, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server();
    const error = await failure(fhir.read('Patient', 'p1'));
    expect(error.status).toBe(status);
    expect(error.transient).toBe(false);
    expect(error.outcome).toEqual(serverOutcome);
    expect(waits).toEqual([]);
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('a non-FHIR error body leaves outcome undefined but keeps the status', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').reply(400, { error: 'bad' }, { 'content-type': 'application/json' });
    const { fhir } = server();
    const error = await failure(fhir.read('Patient', 'p1'));
    expect(error.status).toBe(400);
    expect(error.outcome).toBeUndefined();
  });
});

describe('timeouts', () => {
  it('a reply slower than timeoutMs is retried, then fails with status 0 (transient)', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').times(2).delay(1000).reply(200, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server({ timeoutMs: 100, maxAttempts: 2 });
    const error = await failure(fhir.read('Patient', 'p1'));
    expect(error.status).toBe(0);
    expect(error.transient).toBe(true);
    expect(error.message).toContain('timed out after 100 ms');
    expect(waits).toHaveLength(1);
  });

  it('a slow first reply, then a fast one: the retry succeeds', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').delay(1000).reply(200, patient('slow'), FHIR_JSON);
    nock(ORIGIN).get('/fhir/Patient/p1').reply(200, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server({ timeoutMs: 100 });
    await expect(fhir.read('Patient', 'p1')).resolves.toMatchObject({ id: 'p1' });
    expect(waits).toHaveLength(1);
  });
});

describe('writes that may have been applied are not replayed', () => {
  it('a plain create answered 500 is not retried (it may have been applied)', async () => {
    nock(ORIGIN).post('/fhir/Patient').reply(500, outcome('exception', 'boom'), FHIR_JSON);
    const unused = nock(ORIGIN).post('/fhir/Patient').reply(201, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server();
    const error = await failure(fhir.create<fhir4.Patient>({ resourceType: 'Patient' }));
    expect(error.status).toBe(500);
    expect(error.transient).toBe(true);
    expect(waits).toEqual([]);
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('a plain create that times out is not retried', async () => {
    nock(ORIGIN).post('/fhir/Patient').delay(1000).reply(201, patient('p1'), FHIR_JSON);
    const unused = nock(ORIGIN).post('/fhir/Patient').reply(201, patient('p2'), FHIR_JSON);
    const { fhir, waits } = server({ timeoutMs: 100 });
    const error = await failure(fhir.create<fhir4.Patient>({ resourceType: 'Patient' }));
    expect(error.status).toBe(0);
    expect(waits).toEqual([]);
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('a plain create answered 503 is retried (the server says it did not process it)', async () => {
    nock(ORIGIN).post('/fhir/Patient').reply(503, outcome('transient', 'busy'), FHIR_JSON);
    nock(ORIGIN).post('/fhir/Patient').reply(201, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server();
    const result = await fhir.create<fhir4.Patient>({ resourceType: 'Patient' });
    expect(result).toMatchObject({ status: 201, resource: { id: 'p1' } });
    expect(waits).toHaveLength(1);
  });

  it('a conditional create sends If-None-Exist, and a 500 is retried', async () => {
    const condition = 'identifier=urn:test|42';
    nock(ORIGIN).post('/fhir/Patient').matchHeader('if-none-exist', condition).reply(500, outcome('exception', 'boom'), FHIR_JSON);
    nock(ORIGIN).post('/fhir/Patient').matchHeader('if-none-exist', condition).reply(201, patient('p1'), FHIR_JSON);
    const { fhir, waits } = server();
    const result = await fhir.create<fhir4.Patient>({ resourceType: 'Patient' }, { ifNoneExist: condition });
    expect(result).toMatchObject({ status: 201, resource: { id: 'p1' } });
    expect(waits).toHaveLength(1);
  });

  it('a conditional create that found a match reports status 200', async () => {
    nock(ORIGIN).post('/fhir/Patient').matchHeader('if-none-exist', 'identifier=urn:test|42').reply(200, patient('existing'), FHIR_JSON);
    const { fhir } = server();
    const result = await fhir.create<fhir4.Patient>({ resourceType: 'Patient' }, { ifNoneExist: 'identifier=urn:test|42' });
    expect(result).toMatchObject({ status: 200, resource: { id: 'existing' } });
  });

  it('a plain create sends no If-None-Exist header', async () => {
    nock(ORIGIN, { badheaders: ['if-none-exist'] }).post('/fhir/Patient').reply(201, patient('p1'), FHIR_JSON);
    const { fhir } = server();
    await expect(fhir.create<fhir4.Patient>({ resourceType: 'Patient' })).resolves.toMatchObject({ status: 201 });
  });

  it.each([412, 409])('a conditional create answered %i re-reads with a search and returns the existing resource with status 200', async (status) => {
    nock(ORIGIN).post('/fhir/Patient').matchHeader('if-none-exist', 'identifier=urn:test|42').reply(status, outcome('duplicate', 'already there'), FHIR_JSON);
    nock(ORIGIN)
      .get('/fhir/Patient')
      .query({ identifier: 'urn:test|42' })
      .reply(200, { resourceType: 'Bundle', type: 'searchset', entry: [{ resource: patient('existing'), search: { mode: 'match' } }] }, FHIR_JSON);
    const { fhir, waits } = server();
    const result = await fhir.create<fhir4.Patient>({ resourceType: 'Patient' }, { ifNoneExist: 'identifier=urn:test|42' });
    expect(result).toEqual({ status: 200, resource: patient('existing') });
    expect(waits).toEqual([]);
  });

  it('a conditional create answered 412 whose re-read finds nothing fails with the 412', async () => {
    nock(ORIGIN).post('/fhir/Patient').reply(412, outcome('duplicate', 'multiple matches'), FHIR_JSON);
    nock(ORIGIN).get('/fhir/Patient').query({ identifier: 'urn:test|42' }).reply(200, { resourceType: 'Bundle', type: 'searchset' }, FHIR_JSON);
    const { fhir } = server();
    const error = await failure(fhir.create<fhir4.Patient>({ resourceType: 'Patient' }, { ifNoneExist: 'identifier=urn:test|42' }));
    expect(error.status).toBe(412);
    expect(error.transient).toBe(false);
  });

  it('a plain create answered 412 is not turned into a re-read', async () => {
    nock(ORIGIN).post('/fhir/Patient').reply(412, outcome('conflict', 'precondition'), FHIR_JSON);
    const { fhir } = server();
    const error = await failure(fhir.create<fhir4.Patient>({ resourceType: 'Patient' }));
    expect(error.status).toBe(412);
  });

  const transaction: fhir4.Bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } }],
  };
  const transactionResponse: fhir4.Bundle = {
    resourceType: 'Bundle',
    type: 'transaction-response',
    entry: [{ response: { status: '201 Created', location: 'Patient/p1/_history/1' } }],
  };

  it('a transaction answered 500 is not retried', async () => {
    nock(ORIGIN).post('/fhir/').reply(500, outcome('exception', 'boom'), FHIR_JSON);
    const unused = nock(ORIGIN).post('/fhir/').reply(200, transactionResponse, FHIR_JSON);
    const { fhir, waits } = server();
    const error = await failure(fhir.transaction(transaction));
    expect(error.status).toBe(500);
    expect(error.outcome?.issue[0]?.diagnostics).toBe('boom');
    expect(waits).toEqual([]);
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('a transaction answered 503 is retried', async () => {
    nock(ORIGIN).post('/fhir/').reply(503, outcome('transient', 'busy'), FHIR_JSON);
    nock(ORIGIN).post('/fhir/').reply(200, transactionResponse, FHIR_JSON);
    const { fhir, waits } = server();
    await expect(fhir.transaction(transaction)).resolves.toEqual(transactionResponse);
    expect(waits).toHaveLength(1);
  });

  const batchOf = (...entry: fhir4.BundleEntry[]): fhir4.Bundle => ({ resourceType: 'Bundle', type: 'batch', entry });
  const put = (ifMatch?: string): fhir4.BundleEntry => ({ resource: patient('p1'), request: { method: 'PUT', url: 'Patient/p1', ...(ifMatch ? { ifMatch } : {}) } });

  it.each([
    ['reads', batchOf({ request: { method: 'GET', url: 'Patient/p1' } }), true],
    ['plain PUTs (client-assigned ids: the same resources written again)', batchOf(put()), true],
    ['a PUT with If-Match (it may have been applied: a repeat would answer 412)', batchOf(put('W/"1"')), false],
    ['creates and writes', { ...transaction, type: 'batch' as const }, false],
  ])('a batch of %s answered 500: retried %s', async (_label, bundle, retried) => {
    const batchResponse: fhir4.Bundle = { resourceType: 'Bundle', type: 'batch-response', entry: [{ resource: patient('p1'), response: { status: '200' } }] };
    nock(ORIGIN).post('/fhir/').reply(500, outcome('exception', 'boom'), FHIR_JSON);
    const { fhir, waits } = server();
    if (retried) {
      nock(ORIGIN).post('/fhir/').reply(200, batchResponse, FHIR_JSON);
      await expect(fhir.batch(bundle)).resolves.toEqual(batchResponse);
      expect(waits).toHaveLength(1);
    } else {
      // One request only: a second would find no interceptor (a network error, not a 500).
      expect((await failure(fhir.batch(bundle))).status).toBe(500);
      expect(waits).toEqual([]);
    }
  });
});

describe('searchAll paging', () => {
  const page = (ids: string[], next?: string): fhir4.Bundle => ({
    resourceType: 'Bundle',
    type: 'searchset',
    entry: ids.map((id) => ({ resource: patient(id), search: { mode: 'match' as const } })),
    ...(next ? { link: [{ relation: 'next', url: next }] } : {}),
  });

  it('follows a same-origin next link across pages, keeping only matches of the searched type', async () => {
    nock(ORIGIN)
      .get('/fhir/Patient')
      .query({ gender: 'female', _count: '2' })
      .reply(
        200,
        {
          ...page(['a', 'b'], `${BASE}/Patient?gender=female&_count=2&_page=2`),
          entry: [
            { resource: patient('a'), search: { mode: 'match' } },
            { resource: patient('b'), search: { mode: 'match' } },
            // An _include'd resource is not a result.
            { resource: { resourceType: 'Organization', id: 'org' }, search: { mode: 'include' } },
          ],
        },
        FHIR_JSON,
      );
    nock(ORIGIN).get('/fhir/Patient').query({ gender: 'female', _count: '2', _page: '2' }).reply(200, page(['c']), FHIR_JSON);
    const { fhir } = server();
    const results = await fhir.searchAll<fhir4.Patient>('Patient', { gender: 'female', _count: '2' });
    expect(results.map((p) => p.id)).toEqual(['a', 'b', 'c']);
  });

  it('repeats a parameter given as an array', async () => {
    nock(ORIGIN).get('/fhir/Observation').query({ code: ['a', 'b'] }).reply(200, page([]), FHIR_JSON);
    const { fhir } = server();
    await expect(fhir.searchAll('Observation', { code: ['a', 'b'] })).resolves.toEqual([]);
  });

  it('stops at maxPages', async () => {
    nock(ORIGIN).get('/fhir/Patient').reply(200, page(['a'], `${BASE}/Patient?_page=2`), FHIR_JSON);
    const { fhir } = server();
    const results = await fhir.searchAll<fhir4.Patient>('Patient', {}, 1);
    expect(results.map((p) => p.id)).toEqual(['a']);
  });

  it('refuses a next link to another origin, without requesting it', async () => {
    nock(ORIGIN).get('/fhir/Patient').reply(200, page(['a'], 'http://evil.test/fhir/Patient?_page=2'), FHIR_JSON);
    const evil = nock('http://evil.test').get('/fhir/Patient').query(true).reply(200, page(['stolen']), FHIR_JSON);
    const { fhir } = server();
    const error = await failure(fhir.searchAll('Patient', {}));
    expect(error.message).toContain('http://evil.test');
    expect(error.transient).toBe(false);
    expect(evil.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('refuses a next link to the same host on another port or scheme', async () => {
    nock(ORIGIN).get('/fhir/Patient').reply(200, page(['a'], 'https://fhir.test/fhir/Patient?_page=2'), FHIR_JSON);
    const { fhir } = server();
    await failure(fhir.searchAll('Patient', {}));
  });
});

describe('readIfExists', () => {
  it('is undefined on 404', async () => {
    nock(ORIGIN).get('/fhir/Patient/missing').reply(404, outcome('not-found', 'no such patient'), FHIR_JSON);
    const { fhir } = server();
    await expect(fhir.readIfExists('Patient', 'missing')).resolves.toBeUndefined();
  });

  it('is undefined on 410 (deleted)', async () => {
    nock(ORIGIN).get('/fhir/Patient/gone').reply(410, outcome('deleted', 'deleted'), FHIR_JSON);
    const { fhir } = server();
    await expect(fhir.readIfExists('Patient', 'gone')).resolves.toBeUndefined();
  });

  it('returns the resource when it exists, and still throws on other errors', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').reply(200, patient('p1'), FHIR_JSON);
    nock(ORIGIN).get('/fhir/Patient/p2').reply(403, outcome('forbidden', 'no'), FHIR_JSON);
    const { fhir } = server();
    await expect(fhir.readIfExists('Patient', 'p1')).resolves.toMatchObject({ id: 'p1' });
    const error = await failure(fhir.readIfExists('Patient', 'p2'));
    expect(error.status).toBe(403);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-11-22T10:00:00Z');
  it.each<[string | null | undefined, number | undefined]>([
    ['3', 3000],
    ['0', 0],
    [' 120 ', 120_000],
    ['Sun, 22 Nov 2026 10:00:30 GMT', 30_000],
    ['Sun, 22 Nov 2026 09:59:00 GMT', 0], // in the past: no negative wait
    ['Sunday, 22-Nov-26 10:01:00 GMT', 60_000], // RFC 850 (obsolete) form
    ['-5', undefined],
    ['1.5', undefined], // Date.parse alone would read these two as dates in 2001
    ['soon', undefined],
    ['', undefined],
    [null, undefined],
    [undefined, undefined],
  ])('%j → %s ms', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});

describe('ids and answers checked (issue #6: an id is checked before it goes into a URL)', () => {
  it.each(['..', '.', 'a/b', 'a b', '', 'é', 'x'.repeat(65), '../metadata', 'a?b=1'])('read and update refuse the id %j before any request (no interceptor is declared)', async (id) => {
    const { fhir } = server();
    const read = await failure(fhir.read('Patient', id));
    expect(read.status).toBe(400);
    expect(read.transient).toBe(false);
    const update = await failure(fhir.update({ resourceType: 'Patient', id }));
    expect(update.status).toBe(400);
  });

  it('readIfExists does not turn an invalid id into "not found": the 400 propagates', async () => {
    const { fhir } = server();
    expect((await failure(fhir.readIfExists('Patient', '..'))).status).toBe(400);
  });

  it('a resource type that is no type name is refused too', async () => {
    const { fhir } = server();
    expect((await failure(fhir.read('../Patient', 'p1'))).status).toBe(400);
  });

  it('a read answered with another resource type, or another id, is an error, never a result', async () => {
    nock(ORIGIN).get('/fhir/Patient/p1').reply(200, { resourceType: 'Observation', id: 'p1' }, FHIR_JSON);
    nock(ORIGIN).get('/fhir/Patient/p2').reply(200, patient('p3'), FHIR_JSON);
    nock(ORIGIN).get('/fhir/Patient/p4').reply(200, { resourceType: 'Bundle', type: 'searchset' }, FHIR_JSON);
    const { fhir } = server();
    const otherType = await failure(fhir.read('Patient', 'p1'));
    expect(otherType.message).toMatch(/answered a Observation/);
    expect(otherType.transient).toBe(false);
    expect((await failure(fhir.read('Patient', 'p2'))).message).toMatch(/another resource/);
    expect((await failure(fhir.readIfExists('Patient', 'p4'))).message).toMatch(/answered a Bundle/);
  });

  it('an update answered with another resource type is an error; the right one is returned', async () => {
    nock(ORIGIN).put('/fhir/Patient/p1').reply(200, { resourceType: 'OperationOutcome', issue: [] }, FHIR_JSON);
    nock(ORIGIN).put('/fhir/Patient/p2').reply(200, patient('p2'), FHIR_JSON);
    const { fhir } = server();
    expect((await failure(fhir.update({ resourceType: 'Patient', id: 'p1' }))).message).toMatch(/answered a OperationOutcome/);
    await expect(fhir.update({ resourceType: 'Patient', id: 'p2' })).resolves.toMatchObject({ resource: { id: 'p2' } });
  });
});
