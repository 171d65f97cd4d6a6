/**
 * The billing profiles (profiles/StructureDefinition-forfait-{claim,invoice,claim-response}.json):
 * what the builders emit is valid (see the other tests), and each constraint catches the
 * mistake it is there for.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { buildClaim } from '../../../src/domain/billing/claims.js';
import { dueClaims } from '../../../src/domain/billing/due.js';
import { buildInvoice, dueMemberInvoices } from '../../../src/domain/billing/member-forfaits.js';
import { BILLING_PROFILES } from '../../../src/domain/billing/types.js';
import { formatIssue, initValidation, validateResource } from '../../../src/fhir/validation.js';
import { ASSOCIATION, chargeItemDefinitions, coverage, rediabBilling, rediabEnrolmentAt, rediabInput, rediabProgram } from './fixtures.js';

beforeAll(() => {
  initValidation();
}, 30_000);

const [due] = dueClaims(rediabInput(rediabEnrolmentAt({ start: '2001-09-01', asOf: '2001-09-01' }), '2001-09-01')).claims;
const built = buildClaim(due as NonNullable<typeof due>, { programUrl: rediabProgram.url, coverage: coverage('p2') });
if (!built.ok) throw new Error('claim not built');
const claim = built.claim;

const [dueInvoice] = dueMemberInvoices({
  program: { id: rediabProgram.id, url: rediabProgram.url },
  billing: rediabBilling,
  definitions: chargeItemDefinitions,
  members: [{ reference: 'Practitioner/educator', category: 'sports-educator', joined: '2001-09-01' }],
  associationRef: ASSOCIATION,
  payer: { display: 'CPAM' },
  asOf: '2001-09-01',
}).invoices;
const invoice = buildInvoice(dueInvoice as NonNullable<typeof dueInvoice>, { programUrl: rediabProgram.url });

const claimResponse: fhir4.ClaimResponse = {
  resourceType: 'ClaimResponse',
  id: 'r1',
  meta: { profile: [BILLING_PROFILES.claimResponse] },
  status: 'active',
  type: claim.type,
  use: 'claim',
  patient: claim.patient,
  created: '2001-09-02T08:00:00Z',
  insurer: claim.insurer as fhir4.Reference,
  request: { reference: `Claim/${claim.id as string}` },
  outcome: 'complete',
  total: [{ category: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/adjudication', code: 'benefit' }] }, amount: { value: 178.36, currency: 'EUR' } }],
};

function errors(resource: fhir4.Resource): string {
  return validateResource(resource).map(formatIssue).join('\n');
}

function mutated<T extends fhir4.Resource>(resource: T, mutate: (copy: T) => void): T {
  const copy = structuredClone(resource);
  mutate(copy);
  return copy;
}

describe('valid as built', () => {
  it.each<[string, fhir4.Resource]>([
    ['Claim', claim],
    ['Invoice', invoice],
    ['ClaimResponse', claimResponse],
  ])('%s', (_label, resource) => {
    expect(errors(resource)).toBe('');
  });
});

describe('forfait-claim', () => {
  it.each<[string, (c: fhir4.Claim) => void, string]>([
    ['a draft claim', (c) => (c.status = 'draft'), 'fcl-1'],
    ['an identifier without system', (c) => (c.identifier = [{ value: 'x' }]), 'fcl-2'],
    ['a payee other than the provider', (c) => (c.payee = { type: { text: 'provider' }, party: { reference: 'Organization/other' } }), 'fcl-3'],
    ['no focal insurance', (c) => (c.insurance = [{ sequence: 1, focal: false, coverage: { reference: 'Coverage/c' } }]), 'fcl-4'],
    ['an item not coded as a forfait', (c) => ((c.item?.[0] as fhir4.ClaimItem).productOrService = { text: 'FEID' }), 'fcl-5'],
    ['an item in another currency', (c) => ((c.item?.[0] as fhir4.ClaimItem).net = { value: 178.36, currency: 'USD' }), 'fcl-5'],
    ['two forfaits in one claim', (c) => c.item?.push({ ...structuredClone(c.item[0] as fhir4.ClaimItem), sequence: 2, productOrService: { coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/forfait', code: 'FESD' }] } }), 'fcl-6'],
    ['a total that is not the item', (c) => (c.total = { value: 178.37, currency: 'EUR' }), 'fcl-7'],
    ['an open billable period', (c) => (c.billablePeriod = { start: '2001-09-01' }), 'fcl-8'],
    ['no episode in the supporting info', (c) => (c.supportingInfo = c.supportingInfo?.slice(1)), 'fcl-9'],
    ['a patient by identifier only', (c) => (c.patient = { identifier: { system: 'urn:x', value: '1' } }), 'fcl-10'],
    ['no total', (c) => delete c.total, 'Claim.total'],
    ['no billable period', (c) => delete c.billablePeriod, 'Claim.billablePeriod'],
    ['no payee', (c) => delete c.payee, 'Claim.payee'],
    ['no insurer', (c) => delete c.insurer, 'Claim.insurer'],
    ['no identifier', (c) => delete c.identifier, 'Claim.identifier'],
    ['a preauthorization', (c) => (c.use = 'preauthorization'), 'Claim.use'],
    ['an institutional claim', (c) => (c.type = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'institutional' }] }), 'Claim.type'],
  ])('%s', (_label, mutate, expected) => {
    expect(errors(mutated(claim, mutate))).toContain(expected);
  });
});

describe('forfait-invoice', () => {
  const payeeRole = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/payeetype', code: 'provider' }] };
  it.each<[string, (i: fhir4.Invoice) => void, string]>([
    ['a draft invoice', (i) => (i.status = 'draft'), 'fin-1'],
    ['an identifier without value', (i) => (i.identifier = [{ system: 'urn:x' }]), 'fin-2'],
    ['a type that is not a forfait', (i) => (i.type = { text: 'COOP' }), 'fin-3'],
    ['two payees', (i) => i.participant?.push({ role: payeeRole, actor: { reference: 'Organization/x' } }), 'fin-4'],
    ['an issuer that is not the payee', (i) => (i.issuer = { reference: 'Organization/other' }), 'fin-5'],
    ['a line without base price', (i) => ((i.lineItem?.[0] as fhir4.InvoiceLineItem).priceComponent = [{ type: 'surcharge', amount: { value: 1, currency: 'EUR' } }]), 'fin-6'],
    ['net different from gross', (i) => (i.totalGross = { value: 61, currency: 'EUR' }), 'fin-7'],
    ['a total that is not the line', (i) => ((i.totalGross = { value: 61, currency: 'EUR' }), (i.totalNet = { value: 61, currency: 'EUR' })), 'fin-7'],
    ['no recipient', (i) => delete i.recipient, 'Invoice.recipient'],
    ['no date', (i) => delete i.date, 'Invoice.date'],
    ['no line', (i) => delete i.lineItem, 'Invoice.lineItem'],
  ])('%s', (_label, mutate, expected) => {
    expect(errors(mutated(invoice, mutate))).toContain(expected);
  });
});

describe('forfait-claim-response', () => {
  it.each<[string, (r: fhir4.ClaimResponse) => void, string]>([
    ['a rejection without reasons', (r) => (r.outcome = 'error'), 'fcr-1'],
    ['an amount in another currency', (r) => (r.total = [{ category: { text: 'benefit' }, amount: { value: 1, currency: 'USD' } }]), 'fcr-2'],
    ['no literal link to the Claim', (r) => (r.request = { identifier: { system: 'urn:x', value: '1' } }), 'fcr-4'],
    ['no request', (r) => delete r.request, 'ClaimResponse.request'],
  ])('%s', (_label, mutate, expected) => {
    expect(errors(mutated(claimResponse, mutate))).toContain(expected);
  });

  it('a rejection with the gateway reasons is valid', () => {
    expect(errors(mutated(claimResponse, (r) => ((r.outcome = 'error'), (r.error = [{ code: { text: 'insurer refused' } }]))))).toBe('');
  });
});
