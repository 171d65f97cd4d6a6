/**
 * The Claim of a due forfait (issue #4 point 3) and the checks that stop it (bad data gets a
 * clear issue and no claim). Every Claim built here validates against R4 and forfait-claim.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { buildClaim, checkClaimContext, claimId, RPPS_SYSTEM, type ClaimContext } from '../../../src/domain/billing/claims.js';
import { dueClaims } from '../../../src/domain/billing/due.js';
import { BILLING_EXTENSIONS, BILLING_PROFILES, type DueClaim } from '../../../src/domain/billing/types.js';
import { assertValid, initValidation, validateResource } from '../../../src/fhir/validation.js';
import { CATEGORY_EXTENSION, FORFAIT_CODE_SYSTEM } from '../../../src/programs/billing-schema.js';
import {
  ASSOCIATION,
  CID,
  coverage,
  cpamCalais,
  CPAM_CALAIS_IDENTIFIER,
  fnmfEnrolmentAt,
  fnmfInput,
  fnmfProgram,
  GP,
  PODIATRIST,
  rediabEnrolmentAt,
  rediabInput,
  rediabProgram,
} from './fixtures.js';

beforeAll(() => {
  expect(initValidation()).toEqual(expect.arrayContaining(Object.values(BILLING_PROFILES)));
}, 30_000);

const ACCEPTED = [
  { system: 'http://forfait-fhir.org/fhir/NamingSystem/organisme-assurance-maladie', value: 'CPAM-BOULOGNE-SUR-MER' },
  CPAM_CALAIS_IDENTIFIER,
];

const rediabResources = rediabEnrolmentAt({
  start: '2001-09-01',
  asOf: '2005-06-01',
  careTeam: [
    { reference: GP, role: 'gp' },
    { reference: 'PractitionerRole/nurse-2', role: 'nurse' },
    { reference: 'Practitioner/educ-2', role: 'sports-educator' },
    { reference: PODIATRIST, role: 'podiatrist' },
  ],
  complementaryEducation: '2002-06-01',
});
const rediabDue = dueClaims(rediabInput(rediabResources, '2005-06-01'));
const rediabContext: ClaimContext = { programUrl: rediabProgram.url, coverage: coverage('p2'), insurerOrganization: cpamCalais, acceptedInsurers: ACCEPTED };

function feidGp(): DueClaim {
  return rediabDue.claims.find((claim) => claim.forfaitCode === 'FEID' && claim.payee.reference === GP) as DueClaim;
}

function built(due: DueClaim, ctx: ClaimContext = rediabContext): fhir4.Claim {
  const result = buildClaim(due, ctx);
  if (!result.ok) throw new Error(result.issues.map((issue) => issue.diagnostics).join(' '));
  return result.claim;
}

describe('buildClaim', () => {
  it('the FEID GP part, field by field', () => {
    const due = feidGp();
    const claim = built(due);
    expect(claim).toEqual({
      resourceType: 'Claim',
      id: claimId(rediabProgram.url, due.key),
      meta: { profile: [BILLING_PROFILES.claim] },
      identifier: [{ system: `${rediabProgram.url}/claim`, value: due.key }],
      status: 'active',
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
      use: 'claim',
      patient: { reference: 'Patient/p2' },
      billablePeriod: { start: '2001-09-01', end: '2001-12-31' },
      created: '2001-09-01',
      insurer: { reference: 'Organization/cpam-calais', identifier: CPAM_CALAIS_IDENTIFIER },
      provider: { reference: GP },
      priority: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/processpriority', code: 'normal' }] },
      payee: { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/payeetype', code: 'provider' }] }, party: { reference: GP } },
      supportingInfo: [
        { sequence: 1, category: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claiminformationcategory', code: 'info' }] }, valueReference: { reference: due.episode } },
        { sequence: 2, category: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claiminformationcategory', code: 'info' }] }, valueReference: { reference: due.carePlan } },
      ],
      insurance: [{ sequence: 1, focal: true, coverage: { reference: 'Coverage/cov-p2' } }],
      item: [
        {
          extension: [
            { url: BILLING_EXTENSIONS.chargeItemDefinition, valueCanonical: `${CID}/rediab-feid|1.0.0` },
            { url: CATEGORY_EXTENSION, valueCode: 'gp' },
          ],
          sequence: 1,
          productOrService: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: 'FEID' }] },
          servicedPeriod: { start: '2001-09-01', end: '2001-12-31' },
          quantity: { value: 1 },
          unitPrice: { value: 178.36, currency: 'EUR' },
          net: { value: 178.36, currency: 'EUR' },
        },
      ],
      total: { value: 178.36, currency: 'EUR' },
    });
  });

  it('is deterministic: the same due claim gives the same Claim', () => {
    expect(built(feidGp())).toEqual(built(feidGp()));
  });

  it('every REDIAB claim (FEID, FESD, FSP, FECD) and an FNMF claim validate against R4 and forfait-claim', () => {
    expect(new Set(rediabDue.claims.map((claim) => claim.forfaitCode))).toEqual(new Set(['FEID', 'FESD', 'FSP', 'FECD']));
    for (const due of rediabDue.claims) {
      const claim = built(due);
      assertValid(claim);
      expect(validateResource(claim, { profiles: [] })).toEqual([]);
    }
    const [fnmf] = dueClaims(fnmfInput(fnmfEnrolmentAt({ start: '2022-01-31', asOf: '2022-02-01' }), '2022-02-01')).claims;
    const claim = built(fnmf as DueClaim, { programUrl: fnmfProgram.url, coverage: coverage('p1', { payor: [{ reference: 'Organization/mutuelle' }] }) });
    assertValid(claim);
    expect(claim.provider).toEqual({ reference: 'Organization/centre-1' });
    expect(claim.supportingInfo).toHaveLength(1);
  });

  it('a claim of several lines totals them exactly and validates', () => {
    const due: DueClaim = {
      ...feidGp(),
      lines: [
        { forfaitCode: 'FEID', category: 'gp', chargeItemDefinition: `${CID}/rediab-feid|1.0.0`, amount: '178.36' },
        { forfaitCode: 'FEID', category: 'nurse', chargeItemDefinition: `${CID}/rediab-feid|1.0.0`, amount: '80.49' },
      ],
      total: '258.85',
    };
    const claim = built(due);
    expect(claim.item?.map((item) => item.sequence)).toEqual([1, 2]);
    expect(claim.total).toEqual({ value: 258.85, currency: 'EUR' });
    assertValid(claim);
  });

  it('the association part has the association as provider and payee', () => {
    const due = rediabDue.claims.find((claim) => claim.forfaitCode === 'FECD') as DueClaim;
    const claim = built(due);
    expect(claim.provider).toEqual({ reference: ASSOCIATION });
    expect(claim.payee?.party).toEqual({ reference: ASSOCIATION });
    expect(claim.item?.[0]?.extension).toEqual([{ url: BILLING_EXTENSIONS.chargeItemDefinition, valueCanonical: `${CID}/rediab-fecd|1.0.0` }]);
  });
});

describe('checkClaimContext: bad data, a clear issue, no claim', () => {
  const due = feidGp();
  const practitioner = (identifier?: fhir4.Identifier[]): fhir4.Practitioner => ({ resourceType: 'Practitioner', id: 'gp', ...(identifier ? { identifier } : {}) });

  it.each<[string, Partial<ClaimContext>, string | undefined]>([
    ['all good', {}, undefined],
    ['no Coverage', { coverage: undefined }, 'coverage-missing'],
    ['a cancelled Coverage', { coverage: coverage('p2', { status: 'cancelled' }) }, 'coverage-missing'],
    ["another patient's Coverage", { coverage: coverage('p9') }, 'coverage-missing'],
    ['a Coverage ended before the due date', { coverage: coverage('p2', { period: { end: '2001-08-31' } }) }, 'coverage-missing'],
    ['a Coverage without id', { coverage: { ...coverage('p2'), id: undefined } }, 'coverage-missing'],
    [
      'an insurer not in insurers.json',
      { coverage: coverage('p2', { payor: [{ reference: 'Organization/msa' }] }), insurerOrganization: { resourceType: 'Organization', id: 'msa', identifier: [{ system: 'urn:x', value: 'MSA' }] } },
      'insurer-not-accepted',
    ],
    ['an insurer that cannot be identified', { coverage: coverage('p2', { payor: [{ reference: 'Organization/unknown' }] }), insurerOrganization: undefined }, 'insurer-not-accepted'],
    ['accepted by the Organization identifier', { coverage: coverage('p2', { payor: [{ reference: 'Organization/cpam-calais' }] }) }, undefined],
    ['accepted by the payor reference identifier alone', { coverage: coverage('p2', { payor: [{ identifier: CPAM_CALAIS_IDENTIFIER }] }), insurerOrganization: undefined }, undefined],
    ['no accepted-insurer list (FNMF): any insurer', { coverage: coverage('p2', { payor: [{ reference: 'Organization/msa' }] }), acceptedInsurers: undefined }, undefined],
    ['an empty list (no insurers.json) is no list', { coverage: coverage('p2', { payor: [{ reference: 'Organization/msa' }] }), acceptedInsurers: [] }, undefined],
    ['payee identifier required, none', { payeeIdentifierRequired: true, payeeResource: practitioner() }, 'payee-identifier-missing'],
    ['payee identifier required, payee not found', { payeeIdentifierRequired: true }, 'payee-identifier-missing'],
    ['payee identifier required, one without a value', { payeeIdentifierRequired: true, payeeResource: practitioner([{ system: RPPS_SYSTEM }]) }, 'payee-identifier-missing'],
    ['payee identifier required, RPPS', { payeeIdentifierRequired: true, payeeResource: practitioner([{ system: RPPS_SYSTEM, value: '10001234567' }]) }, undefined],
    ['payee identifier required, any identifier will do', { payeeIdentifierRequired: true, payeeResource: practitioner([{ system: 'urn:x', value: '1' }]) }, undefined],
    ['payee identifier not required', { payeeResource: practitioner() }, undefined],
  ])('%s', (_label, overrides, rule) => {
    const ctx = { ...rediabContext, ...overrides };
    const issues = checkClaimContext(due, ctx);
    expect(issues.map((issue) => issue.rule)).toEqual(rule ? [rule] : []);
    const result = buildClaim(due, ctx);
    expect(result.ok).toBe(rule === undefined);
    if (!result.ok) {
      expect(result.issues).toEqual(issues);
      for (const issue of issues) expect(issue.diagnostics.length).toBeGreaterThan(10);
    }
  });

  it('reports every problem at once', () => {
    const issues = checkClaimContext(due, { ...rediabContext, coverage: coverage('p2', { status: 'draft', payor: [{ reference: 'Organization/msa' }] }), insurerOrganization: undefined, payeeIdentifierRequired: true });
    expect(issues.map((issue) => issue.rule)).toEqual(['coverage-missing', 'insurer-not-accepted', 'payee-identifier-missing']);
  });
});
