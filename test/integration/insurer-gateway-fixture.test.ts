/**
 * The local insurer gateway (test/fixtures/insurer-gateway.ts) driven by HttpInsurerGateway
 * over a real socket: every contract answer and every fault mode the claim tests rely on.
 * Waits use `settled()` (every request answered or dropped), never a clock.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpInsurerGateway, submissionBundle } from '../../src/gateway/insurer-gateway.adapter.js';
import { GatewayError, identifierKey } from '../../src/gateway/insurer-gateway.port.js';
import { InsurerGatewayFixture, parseTokenParameter } from '../fixtures/insurer-gateway.js';

const SYSTEM = 'http://forfait-fhir.org/fhir/program/rediab/claim';

const referenced: fhir4.Resource[] = [
  { resourceType: 'Patient', id: 'p1' },
  { resourceType: 'Coverage', id: 'cov1' } as fhir4.Coverage,
  { resourceType: 'PractitionerRole', id: 'gp1' },
  { resourceType: 'Organization', id: 'insurer' },
];

const money = (value: number): fhir4.Money => ({ value, currency: 'EUR' });

/** A Claim with two lines (100.00 + 78.36 EUR). */
function claim(value: string): fhir4.Claim {
  return {
    resourceType: 'Claim',
    id: `claim-${value}`,
    identifier: [{ system: SYSTEM, value }],
    status: 'active',
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
    use: 'claim',
    patient: { reference: 'Patient/p1' },
    created: '2026-03-02',
    insurer: { reference: 'Organization/insurer' },
    provider: { reference: 'PractitionerRole/gp1' },
    payee: { type: { coding: [{ code: 'provider' }] }, party: { reference: 'PractitionerRole/gp1' } },
    priority: { coding: [{ code: 'normal' }] },
    insurance: [{ sequence: 1, focal: true, coverage: { reference: 'Coverage/cov1' } }],
    item: [
      { sequence: 1, productOrService: { text: 'FEID part 1' }, unitPrice: money(100), net: money(100) },
      { sequence: 2, productOrService: { text: 'FEID part 2' }, unitPrice: money(78.36), net: money(78.36) },
    ],
    total: money(178.36),
  };
}

const bundleOf = (value: string): fhir4.Bundle => submissionBundle(claim(value), referenced);
const keyOf = (value: string): string => identifierKey({ system: SYSTEM, value });

async function failure(promise: Promise<unknown>): Promise<GatewayError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(GatewayError);
  return error as GatewayError;
}

let fixture: InsurerGatewayFixture;
let gateway: HttpInsurerGateway;

beforeEach(async () => {
  fixture = await InsurerGatewayFixture.start();
  gateway = new HttpInsurerGateway({ baseUrl: fixture.baseUrl, timeoutMs: 2000 });
});

afterEach(async () => {
  await fixture.close();
});

describe('contract', () => {
  it('complete: paid the sum of the lines, named by the Claim identifier, findable by status()', async () => {
    const response = await gateway.submit(bundleOf('a'));
    expect(response).toMatchObject({
      resourceType: 'ClaimResponse',
      outcome: 'complete',
      request: { identifier: { system: SYSTEM, value: 'a' } },
      payment: { amount: { value: 178.36, currency: 'EUR' } },
    });
    expect(fixture.uniqueClaims()).toBe(1);
    expect(fixture.submissionsOf(keyOf('a'))).toBe(1);
    expect(fixture.claims.get(keyOf('a'))?.id).toBe('claim-a');
    await expect(gateway.status({ system: SYSTEM, value: 'a' })).resolves.toEqual(response);
    await expect(gateway.status({ system: SYSTEM, value: 'never-sent' })).resolves.toBeUndefined();
  });

  it('idempotent on the identifier: a resubmission gets the same ClaimResponse and no second claim', async () => {
    const first = await gateway.submit(bundleOf('a'));
    const second = await gateway.submit(bundleOf('a'));
    expect(second).toEqual(first);
    expect(fixture.submissionsOf(keyOf('a'))).toBe(2);
    expect(fixture.uniqueClaims()).toBe(1);
  });

  it('a Bundle whose Claim references are missing is refused 400 (permanent), nothing stored', async () => {
    const incomplete = submissionBundle(claim('a'), referenced.slice(0, 2));
    const error = await failure(gateway.submit(incomplete));
    expect(error).toMatchObject({ status: 400, transient: false });
    expect(error.outcome?.issue[0]?.diagnostics).toContain('Claim.payee.party (PractitionerRole/gp1)');
    expect(error.outcome?.issue[0]?.diagnostics).toContain('Claim.insurer (Organization/insurer)');
    expect(fixture.uniqueClaims()).toBe(0);
  });

  it('a bearer token, when the gateway requires one', async () => {
    const secured = await InsurerGatewayFixture.start({ bearerToken: 't0k3n', basePath: '/api/v1' });
    try {
      const anonymous = new HttpInsurerGateway({ baseUrl: secured.baseUrl, timeoutMs: 2000 });
      await expect(failure(anonymous.submit(bundleOf('a')))).resolves.toMatchObject({ status: 401, transient: false });
      const authorised = new HttpInsurerGateway({ baseUrl: secured.baseUrl, timeoutMs: 2000, bearerToken: 't0k3n', headers: { 'X-Centre': 'c1' } });
      await expect(authorised.submit(bundleOf('a'))).resolves.toMatchObject({ outcome: 'complete' });
      expect(secured.requests.at(-1)?.headers['x-centre']).toBe('c1');
      expect(secured.uniqueClaims()).toBe(1);
    } finally {
      await secured.close();
    }
  });

  it('identifiers with search-special characters round-trip through status()', async () => {
    await gateway.submit(bundleOf('odd|value,with$chars\\'));
    await expect(gateway.status({ system: SYSTEM, value: 'odd|value,with$chars\\' })).resolves.toMatchObject({ outcome: 'complete' });
    expect(parseTokenParameter('s|a\\|b')).toEqual({ system: 's', value: 'a|b' });
  });
});

describe('outcome rules', () => {
  it('error: the reasons are in ClaimResponse.error, nothing paid; a resubmission gets the same', async () => {
    const reasons: fhir4.ClaimResponseError[] = [{ code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/adjudication-error', code: 'a001' }] } }];
    fixture.respondOutcome((key) => key === keyOf('bad'), 'error', reasons);
    const response = await gateway.submit(bundleOf('bad'));
    expect(response.outcome).toBe('error');
    expect(response.error).toEqual(reasons);
    expect(response.payment).toBeUndefined();
    await expect(gateway.submit(bundleOf('bad'))).resolves.toEqual(response);
    // Other claims are unaffected.
    await expect(gateway.submit(bundleOf('good'))).resolves.toMatchObject({ outcome: 'complete' });
  });

  it('partial: the items named in the errors are not paid', async () => {
    fixture.respondOutcome(() => true, 'partial', [{ itemSequence: 1, code: { text: 'part 1 already paid' } }]);
    const response = await gateway.submit(bundleOf('a'));
    expect(response.outcome).toBe('partial');
    expect(response.payment?.amount).toEqual(money(78.36));
    expect(response.error?.[0]?.itemSequence).toBe(1);
  });

  it('queued, then complete: polling with status() sees the change, and so does a resubmission', async () => {
    fixture.respondOutcome(() => true, 'queued');
    const queued = await gateway.submit(bundleOf('a'));
    expect(queued.outcome).toBe('queued');
    expect(queued.payment).toBeUndefined();
    await expect(gateway.status({ system: SYSTEM, value: 'a' })).resolves.toMatchObject({ outcome: 'queued' });
    fixture.complete(keyOf('a'));
    const polled = await gateway.status({ system: SYSTEM, value: 'a' });
    expect(polled).toMatchObject({ outcome: 'complete', id: queued.id, payment: { amount: money(178.36) } });
    await expect(gateway.submit(bundleOf('a'))).resolves.toEqual(polled);
    expect(fixture.uniqueClaims()).toBe(1);
    expect(() => fixture.complete(keyOf('a'))).toThrow(/no queued claim/);
  });

  it('reject: a permanent 4xx with the OperationOutcome, replayed on resubmission, nothing stored', async () => {
    const refusal: fhir4.OperationOutcome = {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'business-rule', diagnostics: 'the professional has no RPPS number' }],
    };
    fixture.reject((key) => key.endsWith('|no-rpps'), refusal, 422);
    const error = await failure(gateway.submit(bundleOf('no-rpps')));
    expect(error).toMatchObject({ status: 422, transient: false, outcome: refusal });
    const again = await failure(gateway.submit(bundleOf('no-rpps')));
    expect(again).toMatchObject({ status: 422, outcome: refusal });
    await expect(gateway.status({ system: SYSTEM, value: 'no-rpps' })).resolves.toBeUndefined();
    expect(fixture.uniqueClaims()).toBe(0);
    expect(fixture.submissionsOf(keyOf('no-rpps'))).toBe(2);
  });
});

describe('fault modes', () => {
  it('failNext(2, 503, 7): two transient answers with Retry-After, nothing stored, then the claim goes through', async () => {
    fixture.failNext(2, 503, 7);
    for (let i = 0; i < 2; i++) {
      const error = await failure(gateway.submit(bundleOf('a')));
      expect(error).toMatchObject({ status: 503, transient: true, retryAfterMs: 7000 });
      expect(fixture.uniqueClaims()).toBe(0);
    }
    await expect(gateway.submit(bundleOf('a'))).resolves.toMatchObject({ outcome: 'complete' });
    expect(fixture.submissionsOf(keyOf('a'))).toBe(3);
    expect(fixture.uniqueClaims()).toBe(1);
  });

  it('failNext(1, 429, HTTP date) on status queries only', async () => {
    const later = new Date(Date.now() + 3_600_000).toUTCString();
    fixture.failNext(1, 429, later, 'status');
    const error = await failure(gateway.status({ system: SYSTEM, value: 'a' }));
    expect(error.status).toBe(429);
    expect(error.transient).toBe(true);
    expect(error.retryAfterMs).toBeGreaterThan(3_000_000);
    await expect(gateway.submit(bundleOf('a'))).resolves.toMatchObject({ outcome: 'complete' });
  });

  it("down('refuse'): connection refused, transient status 0; up() serves again on the same URL", async () => {
    await gateway.submit(bundleOf('warm-up')); // a kept-alive connection must not survive down()
    await fixture.down('refuse');
    const error = await failure(gateway.submit(bundleOf('a')));
    expect(error).toMatchObject({ status: 0, transient: true });
    expect(error.message).toContain('ECONNREFUSED');
    expect(fixture.submissionsOf(keyOf('a'))).toBe(0);
    await fixture.up();
    await expect(gateway.submit(bundleOf('a'))).resolves.toMatchObject({ outcome: 'complete' });
  });

  it("down('reset'): each connection dropped, transient status 0, nothing read", async () => {
    await fixture.down('reset');
    const error = await failure(gateway.submit(bundleOf('a')));
    expect(error).toMatchObject({ status: 0, transient: true });
    expect(error.message).toContain('network error');
    expect(fixture.requests.at(-1)?.answer).toBe('reset');
    expect(fixture.uniqueClaims()).toBe(0);
    await fixture.up();
    await expect(gateway.submit(bundleOf('a'))).resolves.toMatchObject({ outcome: 'complete' });
  });

  it('slow within the timeout: answered', async () => {
    fixture.slow(50);
    await expect(gateway.submit(bundleOf('a'))).resolves.toMatchObject({ outcome: 'complete' });
  });

  it('slow beyond the timeout: the client times out and the gateway drops the request unprocessed', async () => {
    fixture.slow(600);
    const impatient = new HttpInsurerGateway({ baseUrl: fixture.baseUrl, timeoutMs: 100 });
    const error = await failure(impatient.submit(bundleOf('a')));
    expect(error).toMatchObject({ status: 0, transient: true });
    expect(error.message).toContain('timed out after 100 ms');
    await fixture.settled();
    expect(fixture.requests.at(-1)).toMatchObject({ route: 'submit', answer: 'dropped' });
    expect(fixture.uniqueClaims()).toBe(0);
    fixture.slow(0);
    await expect(gateway.status({ system: SYSTEM, value: 'a' })).resolves.toBeUndefined();
  });

  it('acceptThenTimeout: the client times out, yet the claim is stored; status() finds it and a resubmission creates nothing', async () => {
    fixture.acceptThenTimeout(1000);
    const impatient = new HttpInsurerGateway({ baseUrl: fixture.baseUrl, timeoutMs: 100 });
    const error = await failure(impatient.submit(bundleOf('a')));
    expect(error).toMatchObject({ status: 0, transient: true });
    expect(fixture.uniqueClaims()).toBe(1);
    const known = await gateway.status({ system: SYSTEM, value: 'a' });
    expect(known).toMatchObject({ outcome: 'complete' });
    // Only the next submission was delayed: a resubmission is answered at once, with the same response.
    await expect(gateway.submit(bundleOf('a'))).resolves.toEqual(known);
    expect(fixture.uniqueClaims()).toBe(1);
    expect(fixture.submissionsOf(keyOf('a'))).toBe(2);
  });

  it('reset() clears faults and rules but keeps what was received', async () => {
    fixture.failNext(5, 500);
    fixture.respondOutcome(() => true, 'error');
    await failure(gateway.submit(bundleOf('a')));
    await fixture.reset();
    await expect(gateway.submit(bundleOf('a'))).resolves.toMatchObject({ outcome: 'complete' });
    expect(fixture.submissionsOf(keyOf('a'))).toBe(2);
  });
});
