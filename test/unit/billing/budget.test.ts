/**
 * Budget report (issue #4 point 5): claimed, accepted and paid against the program's budget,
 * exact; the reading of ClaimResponse documented in src/domain/billing/budget.ts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { budgetReport } from '../../../src/domain/billing/budget.js';
import { buildClaim } from '../../../src/domain/billing/claims.js';
import { dueClaims } from '../../../src/domain/billing/due.js';
import { BILLING_PROFILES } from '../../../src/domain/billing/types.js';
import { addDays } from '../../../src/domain/enrolment/plan-periods.js';
import { assertValid, initValidation } from '../../../src/fhir/validation.js';
import { coverage, fnmfBilling, fnmfEnrolmentAt, fnmfInput, fnmfProgram } from './fixtures.js';

beforeAll(() => {
  initValidation();
}, 30_000);

function fnmfClaims(count: number): fhir4.Claim[] {
  return Array.from({ length: count }, (_, i) => {
    const patientId = `p${i}`;
    const [due] = dueClaims(fnmfInput(fnmfEnrolmentAt({ start: addDays('2021-09-01', i), asOf: '2023-01-01', patientId }), '2023-01-01')).claims;
    const built = buildClaim(due as NonNullable<typeof due>, { programUrl: fnmfProgram.url, coverage: coverage(patientId, { payor: [{ reference: 'Organization/mutuelle' }] }) });
    if (!built.ok) throw new Error('not built');
    return built.claim;
  });
}

const ADJUDICATION = 'http://terminology.hl7.org/CodeSystem/adjudication';
const benefit = { coding: [{ system: ADJUDICATION, code: 'benefit' }] };
const submitted = { coding: [{ system: ADJUDICATION, code: 'submitted' }] };

function response(claim: fhir4.Claim, overrides: Partial<fhir4.ClaimResponse> = {}): fhir4.ClaimResponse {
  return {
    resourceType: 'ClaimResponse',
    id: `r-${claim.id as string}`,
    meta: { profile: [BILLING_PROFILES.claimResponse] },
    status: 'active',
    type: claim.type,
    use: 'claim',
    patient: claim.patient,
    created: '2023-01-02T10:00:00Z',
    insurer: { reference: 'Organization/mutuelle' },
    request: { reference: `Claim/${claim.id as string}` },
    outcome: 'complete',
    ...overrides,
  };
}

function answersTo(r: fhir4.ClaimResponse, claim: fhir4.Claim): boolean {
  return r.request?.reference === `Claim/${claim.id as string}` || r.request?.identifier?.value === claim.identifier?.[0]?.value;
}

describe('budgetReport', () => {
  const claims = fnmfClaims(140);

  it('FNMF: 140 claims use the whole 96,684.00 budget, to the cent', () => {
    expect(budgetReport({ budget: fnmfBilling.budget?.amount, claims, responses: [] })).toEqual({
      budget: '96684.00',
      claimed: '96684.00',
      accepted: '0.00',
      paid: '0.00',
      remaining: '0.00',
      byForfait: [{ code: 'FNMF-SEQUENCE', claims: 140, claimed: '96684.00', accepted: '0.00', paid: '0.00' }],
    });
  });

  it('reads accepted and paid from each claim\'s latest final answer', () => {
    const [a, b, c, d, e, f, g] = claims as [fhir4.Claim, fhir4.Claim, fhir4.Claim, fhir4.Claim, fhir4.Claim, fhir4.Claim, fhir4.Claim];
    const responses: fhir4.ClaimResponse[] = [
      // complete, total benefit stated, paid
      response(a, { total: [{ category: submitted, amount: { value: 690.6, currency: 'EUR' } }, { category: benefit, amount: { value: 690.6, currency: 'EUR' } }], payment: { type: { text: 'complete' }, amount: { value: 690.6, currency: 'EUR' } } }),
      // partial, item adjudication only
      response(b, { outcome: 'partial', item: [{ itemSequence: 1, adjudication: [{ category: benefit, amount: { value: 345.3, currency: 'EUR' } }] }] }),
      // error: nothing accepted
      response(c, { outcome: 'error', error: [{ code: { text: 'unknown patient' } }] }),
      // queued, then complete without amounts: the claim's total
      response(d, { id: 'd1', outcome: 'queued', created: '2023-01-02T10:00:00Z' }),
      response(d, { id: 'd2', outcome: 'complete', created: '2023-01-03T10:00:00Z' }),
      // queued only: not a decision yet
      response(e, { outcome: 'queued' }),
      // linked by the claim's business identifier; a later error replaces an earlier complete
      response(f, { id: 'f1', request: { identifier: f.identifier?.[0] }, created: '2023-01-02T10:00:00Z', payment: { type: { text: 'x' }, amount: { value: 1, currency: 'EUR' } } }),
      response(f, { id: 'f2', request: { identifier: f.identifier?.[0] }, outcome: 'error', created: '2023-01-04T10:00:00Z', disposition: 'duplicate' }),
      // an answer entered in error does not count
      response(g, { status: 'entered-in-error' }),
    ];
    const cancelled: fhir4.Claim = { ...(claims[7] as fhir4.Claim), status: 'cancelled' };
    const report = budgetReport({ budget: '96684.00', claims: [a, b, c, d, e, f, g, cancelled], responses });
    expect(report).toEqual({
      budget: '96684.00',
      claimed: '4834.20',
      accepted: '1726.50',
      paid: '690.60',
      remaining: '91849.80',
      byForfait: [{ code: 'FNMF-SEQUENCE', claims: 7, claimed: '4834.20', accepted: '1726.50', paid: '690.60' }],
    });
    // As stored by the adapter (a literal link to the Claim), each answer validates against forfait-claim-response.
    for (const r of responses.filter((x) => x.status === 'active')) assertValid({ ...r, request: { reference: `Claim/${claims.find((x) => answersTo(r, x))?.id as string}` } });
  });

  it('sums by forfait, sorted by code; no budget, no remaining; exact with amounts floats get wrong', () => {
    const claim = (id: string, code: string, values: number[]): fhir4.Claim => ({
      resourceType: 'Claim',
      id,
      status: 'active',
      type: { text: 'x' },
      use: 'claim',
      patient: { reference: 'Patient/p' },
      created: '2002-01-01',
      provider: { reference: 'Organization/o' },
      priority: { text: 'normal' },
      insurance: [],
      item: values.map((value, i) => ({ sequence: i + 1, productOrService: { coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/forfait', code }] }, net: { value, currency: 'EUR' } })),
    });
    const report = budgetReport({ claims: [claim('1', 'FESD', [73.17, 50.31, 0.1]), claim('2', 'FEID', [178.36, 80.49, 30.18]), claim('3', 'FESD', [0.2])], responses: [] });
    expect(report).toEqual({
      claimed: '412.81',
      accepted: '0.00',
      paid: '0.00',
      byForfait: [
        { code: 'FEID', claims: 1, claimed: '289.03', accepted: '0.00', paid: '0.00' },
        { code: 'FESD', claims: 2, claimed: '123.78', accepted: '0.00', paid: '0.00' },
      ],
    });
  });

  it('a budget overrun shows as a negative remaining', () => {
    expect(budgetReport({ budget: '1000.00', claims: claims.slice(0, 2), responses: [] }).remaining).toBe('-381.20');
  });
});
