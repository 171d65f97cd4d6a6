/**
 * HttpInsurerGateway against a fake gateway (nock intercepts the native fetch): each outcome,
 * permanent and transient refusals, Retry-After, timeouts, answers that break the contract,
 * the status query, and exactly one HTTP request per call (a second interceptor declared for
 * the same request must stay unused).
 */
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { HttpInsurerGateway, submissionBundle, type InsurerGatewayOptions } from '../../../src/gateway/insurer-gateway.adapter.js';
import { GatewayError, identifierKey, isTransientStatus } from '../../../src/gateway/insurer-gateway.port.js';

const ORIGIN = 'http://gateway.test';
const BASE = `${ORIGIN}/fhir`;
const SUBMIT = '/fhir/Claim/$submit';
const FHIR_JSON = { 'content-type': 'application/fhir+json' };
const CLAIM_ID = { system: 'http://forfait-fhir.org/fhir/program/fnmf/claim', value: 'p1-fnmf-inclusion-2026-01-05-gp1' };

const claim: fhir4.Claim = {
  resourceType: 'Claim',
  id: 'c1',
  identifier: [CLAIM_ID],
  status: 'active',
  type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
  use: 'claim',
  patient: { reference: 'Patient/p1' },
  created: '2026-01-05',
  insurer: { reference: 'Organization/insurer' },
  provider: { reference: 'PractitionerRole/gp1' },
  payee: { type: { coding: [{ code: 'provider' }] }, party: { reference: 'PractitionerRole/gp1' } },
  priority: { coding: [{ code: 'normal' }] },
  insurance: [{ sequence: 1, focal: true, coverage: { reference: 'Coverage/cov1' } }],
  total: { value: 690.6, currency: 'EUR' },
};
const referenced: fhir4.Resource[] = [
  { resourceType: 'Patient', id: 'p1' },
  { resourceType: 'Coverage', id: 'cov1' } as fhir4.Coverage,
  { resourceType: 'PractitionerRole', id: 'gp1' },
  { resourceType: 'Organization', id: 'insurer' },
];
const bundle = submissionBundle(claim, referenced);

const claimResponse = (outcome: fhir4.ClaimResponse['outcome'], extra: Partial<fhir4.ClaimResponse> = {}): fhir4.ClaimResponse => ({
  resourceType: 'ClaimResponse',
  id: 'cr1',
  status: 'active',
  type: claim.type,
  use: 'claim',
  patient: claim.patient,
  created: '2026-01-06',
  insurer: { reference: 'Organization/insurer' },
  request: { identifier: CLAIM_ID },
  outcome,
  ...extra,
});

const outcome = (code: fhir4.OperationOutcomeIssue['code'], diagnostics: string): fhir4.OperationOutcome => ({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code, diagnostics }],
});

const searchset = (...resources: fhir4.Resource[]): fhir4.Bundle => ({
  resourceType: 'Bundle',
  type: 'searchset',
  total: resources.length,
  entry: resources.map((resource) => ({ resource, search: { mode: 'match' as const } })),
});

function gateway(overrides: Partial<InsurerGatewayOptions> = {}): HttpInsurerGateway {
  return new HttpInsurerGateway({ baseUrl: BASE, timeoutMs: 2000, ...overrides });
}

/** Runs `promise` expecting a GatewayError, and returns it. */
async function failure(promise: Promise<unknown>): Promise<GatewayError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(GatewayError);
  return error as GatewayError;
}

/** A second interceptor for the same request: it must stay unused, proving one request per call. */
function spare(): nock.Scope {
  return nock(ORIGIN).post(SUBMIT).reply(200, claimResponse('complete'), FHIR_JSON);
}

beforeAll(() => {
  nock.disableNetConnect();
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

describe('submit: the ClaimResponse is returned whatever its outcome', () => {
  it('complete: POSTs the Bundle as FHIR JSON and returns the paid ClaimResponse', async () => {
    const paid = claimResponse('complete', { payment: { type: { text: 'complete' }, amount: { value: 690.6, currency: 'EUR' } } });
    let received: unknown;
    nock(ORIGIN)
      .post(SUBMIT, (body: unknown) => {
        received = body;
        return true;
      })
      .matchHeader('content-type', /application\/fhir\+json/)
      .matchHeader('accept', 'application/fhir+json')
      .reply(200, paid, FHIR_JSON);
    await expect(gateway().submit(bundle)).resolves.toEqual(paid);
    expect(received).toEqual(bundle);
  });

  it.each(['error', 'partial', 'queued'] as const)('%s is an answer, not an exception', async (kind) => {
    const errors: fhir4.ClaimResponseError[] =
      kind === 'queued' ? [] : [{ itemSequence: 1, code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/adjudication-error', code: 'a001' }] } }];
    const answer = claimResponse(kind, errors.length ? { error: errors } : {});
    nock(ORIGIN).post(SUBMIT).reply(200, answer, FHIR_JSON);
    const response = await gateway().submit(bundle);
    expect(response.outcome).toBe(kind);
    expect(response.error ?? []).toEqual(errors);
  });

  it('a ClaimResponse naming the Claim by request.reference only is accepted', async () => {
    nock(ORIGIN).post(SUBMIT).reply(200, claimResponse('complete', { request: { reference: 'Claim/gw-123' } }), FHIR_JSON);
    await expect(gateway().submit(bundle)).resolves.toMatchObject({ request: { reference: 'Claim/gw-123' } });
  });

  it('a base URL with a trailing slash still POSTs to {base}/Claim/$submit', async () => {
    nock(ORIGIN).post(SUBMIT).reply(200, claimResponse('complete'), FHIR_JSON);
    await expect(gateway({ baseUrl: `${BASE}/` }).submit(bundle)).resolves.toMatchObject({ outcome: 'complete' });
  });

  it('sends the bearer token and the configured headers', async () => {
    nock(ORIGIN)
      .post(SUBMIT)
      .matchHeader('authorization', 'Bearer s3cret')
      .matchHeader('x-api-key', 'k1')
      .reply(200, claimResponse('complete'), FHIR_JSON);
    await gateway({ bearerToken: 's3cret', headers: { 'X-Api-Key': 'k1' } }).submit(bundle);
  });

  it('sends no Authorization header without a token', async () => {
    nock(ORIGIN, { badheaders: ['authorization'] }).post(SUBMIT).reply(200, claimResponse('complete'), FHIR_JSON);
    await gateway().submit(bundle);
  });

  it('refuses to send a Bundle whose first entry is not a Claim with a business identifier (no request made)', async () => {
    const withoutIdentifier: fhir4.Bundle = { ...bundle, entry: [{ resource: { ...claim, identifier: [] } as fhir4.Claim }] };
    const unused = spare();
    for (const bad of [withoutIdentifier, { ...bundle, type: 'transaction' } as fhir4.Bundle, { ...bundle, entry: bundle.entry?.slice(1) }]) {
      const error = await failure(gateway().submit(bad));
      expect(error.transient).toBe(false);
      expect(error.status).toBe(0);
    }
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });
});

describe('permanent refusals (4xx): not transient, the OperationOutcome kept, one request', () => {
  it.each([400, 401, 403, 404, 409, 422])('%i', async (status) => {
    const refusal = outcome('invalid', `refused with ${status}: the patient's NIR is unknown`);
    nock(ORIGIN).post(SUBMIT).reply(status, refusal, FHIR_JSON);
    const unused = spare();
    const error = await failure(gateway().submit(bundle));
    expect(error.status).toBe(status);
    expect(error.transient).toBe(false);
    expect(error.outcome).toEqual(refusal);
    expect(error.message).toContain(`HTTP ${status}`);
    // The gateway's text may repeat patient data: kept in `outcome`, never in the message (logs, Redis).
    expect(error.message).not.toContain("the patient's NIR is unknown");
    expect(error.outcome?.issue[0]?.diagnostics).toContain("the patient's NIR is unknown");
    expect(error.message).toContain(identifierKey(CLAIM_ID));
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('a 4xx without a FHIR body keeps the status, outcome undefined', async () => {
    nock(ORIGIN).post(SUBMIT).reply(400, '<html>Bad Request</html>', { 'content-type': 'text/html' });
    const error = await failure(gateway().submit(bundle));
    expect(error.status).toBe(400);
    expect(error.transient).toBe(false);
    expect(error.outcome).toBeUndefined();
  });

  it('a redirect is not followed (it would be a second request): permanent, with the location', async () => {
    nock(ORIGIN).post(SUBMIT).reply(307, '', { location: 'http://elsewhere.test/Claim/$submit' });
    const elsewhere = nock('http://elsewhere.test').post('/Claim/$submit').reply(200, claimResponse('complete'), FHIR_JSON);
    const error = await failure(gateway().submit(bundle));
    expect(error.status).toBe(307);
    expect(error.transient).toBe(false);
    expect(error.message).toMatch(/redirect not followed/);
    expect(error.message).not.toContain('elsewhere.test');
    expect(elsewhere.isDone()).toBe(false);
    nock.cleanAll();
  });
});

describe('transient failures: transient, Retry-After kept, one request', () => {
  it.each([408, 425, 429, 500, 502, 503, 504])('%i is transient', async (status) => {
    nock(ORIGIN).post(SUBMIT).reply(status, outcome('transient', 'busy'), FHIR_JSON);
    const unused = spare();
    const error = await failure(gateway().submit(bundle));
    expect(error.status).toBe(status);
    expect(error.transient).toBe(true);
    expect(error.retryAfterMs).toBeUndefined();
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('429 with Retry-After in seconds', async () => {
    nock(ORIGIN).post(SUBMIT).reply(429, outcome('throttled', 'slow down'), { ...FHIR_JSON, 'Retry-After': '120' });
    const unused = spare();
    const error = await failure(gateway().submit(bundle));
    expect(error).toMatchObject({ status: 429, transient: true, retryAfterMs: 120_000 });
    expect(error.outcome?.issue[0]?.code).toBe('throttled');
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('429 with Retry-After as an HTTP date', async () => {
    // Only Date is faked (fetch and nock keep real timers), so "now" is a fixed whole second.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(new Date('2026-11-22T10:00:00Z'));
      nock(ORIGIN).post(SUBMIT).reply(429, outcome('throttled', 'later'), { ...FHIR_JSON, 'Retry-After': 'Sun, 22 Nov 2026 10:05:00 GMT' });
      const error = await failure(gateway().submit(bundle));
      expect(error).toMatchObject({ status: 429, transient: true, retryAfterMs: 300_000 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('503 with an OperationOutcome and Retry-After', async () => {
    const maintenance = outcome('transient', 'maintenance until 02:00');
    nock(ORIGIN).post(SUBMIT).reply(503, maintenance, { ...FHIR_JSON, 'Retry-After': '3600' });
    const error = await failure(gateway().submit(bundle));
    expect(error).toMatchObject({ status: 503, transient: true, retryAfterMs: 3_600_000, outcome: maintenance });
    expect(error.message).not.toContain('maintenance until 02:00');
    expect(error.outcome?.issue[0]?.diagnostics).toBe('maintenance until 02:00');
  });

  it('an answer slower than the timeout: status 0, transient, and no second request', async () => {
    nock(ORIGIN).post(SUBMIT).delay(1000).reply(200, claimResponse('complete'), FHIR_JSON);
    const unused = spare();
    const error = await failure(gateway({ timeoutMs: 100 }).submit(bundle));
    expect(error.status).toBe(0);
    expect(error.transient).toBe(true);
    expect(error.message).toContain('timed out after 100 ms');
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('a network error: status 0, transient, with its code', async () => {
    nock(ORIGIN).post(SUBMIT).replyWithError({ code: 'ECONNRESET', message: 'socket hang up' });
    const unused = spare();
    const error = await failure(gateway().submit(bundle));
    expect(error.status).toBe(0);
    expect(error.transient).toBe(true);
    expect(error.message).toMatch(/network error/);
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });
});

describe('answers that break the contract: transient GatewayError 502', () => {
  it('a 200 that is not JSON (a proxy page)', async () => {
    nock(ORIGIN).post(SUBMIT).reply(200, '<html>Welcome to nginx</html>', { 'content-type': 'text/html' });
    const error = await failure(gateway().submit(bundle));
    expect(error.status).toBe(502);
    expect(error.transient).toBe(true);
    expect(error.message).toContain('expected a ClaimResponse');
    expect(error.message).toContain('non-JSON');
  });

  it('a 200 with an empty body', async () => {
    nock(ORIGIN).post(SUBMIT).reply(200, '');
    const error = await failure(gateway().submit(bundle));
    expect(error).toMatchObject({ status: 502, transient: true });
    expect(error.message).toContain('empty body');
  });

  it('a 200 with JSON that is another resource keeps an OperationOutcome', async () => {
    const warning = outcome('processing', 'accepted for later');
    nock(ORIGIN).post(SUBMIT).reply(200, warning, FHIR_JSON);
    const error = await failure(gateway().submit(bundle));
    expect(error).toMatchObject({ status: 502, transient: true, outcome: warning });
    expect(error.message).toContain('got an OperationOutcome');
  });

  it('a ClaimResponse with an outcome outside the value set', async () => {
    nock(ORIGIN).post(SUBMIT).reply(200, { ...claimResponse('complete'), outcome: 'done' }, FHIR_JSON);
    const error = await failure(gateway().submit(bundle));
    expect(error).toMatchObject({ status: 502, transient: true });
    expect(error.message).toContain('"done"');
  });

  it('a ClaimResponse for another claim', async () => {
    nock(ORIGIN)
      .post(SUBMIT)
      .reply(200, claimResponse('complete', { request: { identifier: { system: CLAIM_ID.system, value: 'someone-else' } } }), FHIR_JSON);
    const error = await failure(gateway().submit(bundle));
    expect(error).toMatchObject({ status: 502, transient: true });
    expect(error.message).toContain('someone-else');
  });

  it('a ClaimResponse that names no claim at all', async () => {
    const { request: _dropped, ...anonymous } = claimResponse('complete');
    nock(ORIGIN).post(SUBMIT).reply(200, anonymous, FHIR_JSON);
    const error = await failure(gateway().submit(bundle));
    expect(error).toMatchObject({ status: 502, transient: true });
  });
});

describe('status query', () => {
  const query = { 'request.identifier': `${CLAIM_ID.system}|${CLAIM_ID.value}` };

  it('found: the ClaimResponse', async () => {
    const queued = claimResponse('queued');
    nock(ORIGIN).get('/fhir/ClaimResponse').query(query).matchHeader('accept', 'application/fhir+json').reply(200, searchset(queued), FHIR_JSON);
    await expect(gateway().status(CLAIM_ID)).resolves.toEqual(queued);
  });

  it('not found: undefined', async () => {
    nock(ORIGIN).get('/fhir/ClaimResponse').query(query).reply(200, searchset(), FHIR_JSON);
    await expect(gateway().status(CLAIM_ID)).resolves.toBeUndefined();
  });

  it('an OperationOutcome entry (search.mode outcome) is not a result', async () => {
    const withWarning: fhir4.Bundle = { ...searchset(), entry: [{ resource: outcome('informational', 'ok'), search: { mode: 'outcome' } }] };
    nock(ORIGIN).get('/fhir/ClaimResponse').query(query).reply(200, withWarning, FHIR_JSON);
    await expect(gateway().status(CLAIM_ID)).resolves.toBeUndefined();
  });

  it('escapes | , $ and \\ in the identifier (FHIR search escaping)', async () => {
    const odd = { system: 'urn:x', value: 'a|b,c$d\\e' };
    nock(ORIGIN).get('/fhir/ClaimResponse').query({ 'request.identifier': 'urn:x|a\\|b\\,c\\$d\\\\e' }).reply(200, searchset(), FHIR_JSON);
    await expect(gateway().status(odd)).resolves.toBeUndefined();
  });

  it('two ClaimResponses for one identifier break the contract', async () => {
    nock(ORIGIN).get('/fhir/ClaimResponse').query(query).reply(200, searchset(claimResponse('complete'), claimResponse('error')), FHIR_JSON);
    const error = await failure(gateway().status(CLAIM_ID));
    expect(error).toMatchObject({ status: 502, transient: true });
    expect(error.message).toContain('got 2');
  });

  it('a ClaimResponse for another identifier breaks the contract', async () => {
    const other = claimResponse('complete', { request: { identifier: { system: CLAIM_ID.system, value: 'other' } } });
    nock(ORIGIN).get('/fhir/ClaimResponse').query(query).reply(200, searchset(other), FHIR_JSON);
    await expect(failure(gateway().status(CLAIM_ID))).resolves.toMatchObject({ status: 502, transient: true });
  });

  it('a body that is not a searchset Bundle', async () => {
    nock(ORIGIN).get('/fhir/ClaimResponse').query(query).reply(200, claimResponse('complete'), FHIR_JSON);
    const error = await failure(gateway().status(CLAIM_ID));
    expect(error).toMatchObject({ status: 502, transient: true });
    expect(error.message).toContain('expected a searchset Bundle');
  });

  it('503 is transient with Retry-After, and makes one request', async () => {
    nock(ORIGIN).get('/fhir/ClaimResponse').query(query).reply(503, outcome('transient', 'busy'), { ...FHIR_JSON, 'Retry-After': '5' });
    const unused = nock(ORIGIN).get('/fhir/ClaimResponse').query(query).reply(200, searchset(), FHIR_JSON);
    const error = await failure(gateway().status(CLAIM_ID));
    expect(error).toMatchObject({ status: 503, transient: true, retryAfterMs: 5000 });
    expect(unused.isDone()).toBe(false);
    nock.cleanAll();
  });

  it('a timeout is transient with status 0', async () => {
    nock(ORIGIN).get('/fhir/ClaimResponse').query(query).delay(1000).reply(200, searchset(), FHIR_JSON);
    const error = await failure(gateway({ timeoutMs: 100 }).status(CLAIM_ID));
    expect(error).toMatchObject({ status: 0, transient: true });
  });

  it('an identifier without system or value is refused before sending', async () => {
    const error = await failure(gateway().status({ value: 'x' }));
    expect(error).toMatchObject({ status: 0, transient: false });
  });
});

describe('isTransientStatus', () => {
  it.each<[number, boolean]>([
    [0, true],
    [408, true],
    [425, true],
    [429, true],
    [500, true],
    [599, true],
    [400, false],
    [404, false],
    [409, false],
    [422, false],
    [307, false],
  ])('%i → %s', (status, expected) => {
    expect(isTransientStatus(status)).toBe(expected);
    expect(new GatewayError('x', { status }).transient).toBe(expected);
  });
});

describe('submissionBundle', () => {
  it('is a collection with the Claim first, then each referenced resource once, fullUrl Type/id', () => {
    const built = submissionBundle(claim, [...referenced, { resourceType: 'Patient', id: 'p1' }, claim]);
    expect(built.resourceType).toBe('Bundle');
    expect(built.type).toBe('collection');
    expect(built.entry?.map((entry) => entry.fullUrl)).toEqual(['Claim/c1', 'Patient/p1', 'Coverage/cov1', 'PractitionerRole/gp1', 'Organization/insurer']);
    expect(built.entry?.[0]?.resource).toBe(claim);
  });

  it('every reference of the Claim to a sent resource resolves to an entry', () => {
    const fullUrls = new Set(bundle.entry?.map((entry) => entry.fullUrl));
    for (const reference of [claim.patient, claim.insurer, claim.provider, claim.payee?.party, claim.insurance[0]?.coverage]) {
      expect(fullUrls.has(reference?.reference)).toBe(true);
    }
  });

  it('uses urn:uuid:<id> where the Claim refers to a resource that way', () => {
    const uuid = '3f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b';
    const built = submissionBundle({ ...claim, patient: { reference: `urn:uuid:${uuid}` } }, [{ resourceType: 'Patient', id: uuid }]);
    expect(built.entry?.[1]?.fullUrl).toBe(`urn:uuid:${uuid}`);
  });

  it('makes fullUrls absolute with a base URL', () => {
    const built = submissionBundle(claim, referenced.slice(0, 1), { baseUrl: 'http://fhir.example/fhir/' });
    expect(built.entry?.map((entry) => entry.fullUrl)).toEqual(['http://fhir.example/fhir/Claim/c1', 'http://fhir.example/fhir/Patient/p1']);
  });

  it('throws for a Claim without a business identifier or a resource without an id', () => {
    expect(() => submissionBundle({ ...claim, identifier: [{ value: 'no-system' }] }, [])).toThrow(/business identifier/);
    expect(() => submissionBundle(claim, [{ resourceType: 'Patient' }])).toThrow(/Patient has no id/);
  });
});
