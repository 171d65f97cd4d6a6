/**
 * REDIAB COOP (DOMAIN.md 2, Forfaits Art. 10 and "When each forfait falls due"): per member
 * professional, on joining and each anniversary while a member, inside the approval period; an
 * Invoice (no patient), valid against R4 and forfait-invoice.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { buildInvoice, dueMemberInvoices, type MemberInvoicesInput, type NetworkMember } from '../../../src/domain/billing/member-forfaits.js';
import { sumMoney } from '../../../src/domain/billing/money.js';
import { BILLING_EXTENSIONS, BILLING_PROFILES, type DueInvoice } from '../../../src/domain/billing/types.js';
import { assertValid, initValidation, validateResource } from '../../../src/fhir/validation.js';
import { CATEGORY_EXTENSION, FORFAIT_CODE_SYSTEM } from '../../../src/programs/billing-schema.js';
import { ASSOCIATION, CID, chargeItemDefinitions, rediabBilling, rediabProgram } from './fixtures.js';

beforeAll(() => {
  initValidation();
}, 30_000);

const PAYER: fhir4.Reference = {
  identifier: rediabBilling.memberForfaitsPayer?.identifier as fhir4.Identifier,
  display: rediabBilling.memberForfaitsPayer?.name as string,
};

const members: NetworkMember[] = [
  { reference: 'PractitionerRole/gp', category: 'gp', joined: '2001-10-01' },
  { reference: 'PractitionerRole/nurse', category: 'nurse', joined: '2002-03-15', left: '2003-06-01' },
  { reference: 'Practitioner/educator', category: 'sports-educator', joined: '2001-09-01' },
  { reference: 'PractitionerRole/diabetologist', category: 'diabetologist', joined: '2000-01-01' },
  { reference: 'PractitionerRole/apa', category: 'apa-teacher', joined: '2001-09-01' },
  { reference: 'PractitionerRole/kine', category: 'physiotherapist', joined: '2004-02-29' },
];

function input(overrides: Partial<MemberInvoicesInput> = {}): MemberInvoicesInput {
  return {
    program: { id: rediabProgram.id, url: rediabProgram.url },
    billing: rediabBilling,
    definitions: chargeItemDefinitions,
    members,
    associationRef: ASSOCIATION,
    payer: PAYER,
    asOf: '2005-01-01',
    ...overrides,
  };
}

const summary = (invoices: readonly DueInvoice[]): string[] => invoices.map((invoice) => `${invoice.member.category} ${invoice.dueDate} ${invoice.payee.reference} ${invoice.total}`);

describe('dueMemberInvoices', () => {
  it('per member per membership year, inside the approval period (2001-08-24 to 2004-08-23), while a member', () => {
    const result = dueMemberInvoices(input());
    expect(result.issues).toEqual([]);
    expect(summary(result.invoices)).toEqual([
      'gp 2001-10-01 PractitionerRole/gp 105.19',
      'gp 2002-10-01 PractitionerRole/gp 105.19',
      'gp 2003-10-01 PractitionerRole/gp 105.19',
      // Left on 2003-06-01: the 2003-03-15 year began while a member.
      'nurse 2002-03-15 PractitionerRole/nurse 60.37',
      'nurse 2003-03-15 PractitionerRole/nurse 60.37',
      // The sports educator's part is paid to the association.
      `sports-educator 2001-09-01 ${ASSOCIATION} 60.37`,
      `sports-educator 2002-09-01 ${ASSOCIATION} 60.37`,
      `sports-educator 2003-09-01 ${ASSOCIATION} 60.37`,
      // Joined before the approval: the years starting before 2001-08-24 are not due.
      'diabetologist 2002-01-01 PractitionerRole/diabetologist 210.38',
      'diabetologist 2003-01-01 PractitionerRole/diabetologist 210.38',
      'diabetologist 2004-01-01 PractitionerRole/diabetologist 210.38',
      // An APA teacher is no COOP category: nothing.
      'physiotherapist 2004-02-29 PractitionerRole/kine 60.37',
    ]);
    const kine = result.invoices.at(-1) as DueInvoice;
    expect(kine.period).toEqual({ start: '2004-02-29', end: '2005-02-27' });
    expect(result.invoices[0]?.period).toEqual({ start: '2001-10-01', end: '2002-09-30' });
    expect(new Set(result.invoices.map((invoice) => invoice.key)).size).toBe(result.invoices.length);
    expect(sumMoney(result.invoices.map((invoice) => invoice.total))).toBe('1308.93');
  });

  it.each<[string, number]>([
    ['2001-09-30', 1],
    ['2001-10-01', 2],
    ['2002-09-30', 5],
  ])('up to asOf %s: %i invoices', (asOf, count) => {
    expect(dueMemberInvoices(input({ asOf })).invoices).toHaveLength(count);
  });

  it('is deterministic', () => {
    expect(dueMemberInvoices(input())).toEqual(dueMemberInvoices(input()));
  });

  it('no association: the sports educator parts are a payee-missing issue', () => {
    const result = dueMemberInvoices(input({ associationRef: undefined }));
    expect(result.invoices.filter((invoice) => invoice.member.category === 'sports-educator')).toEqual([]);
    expect(result.issues.map((issue) => issue.rule)).toEqual(['payee-missing', 'payee-missing', 'payee-missing']);
  });

  it('no tariff: a tariff-missing issue per due year', () => {
    const result = dueMemberInvoices(input({ definitions: new Map(), members: members.slice(0, 1) }));
    expect(result.invoices).toEqual([]);
    expect(result.issues.map((issue) => issue.rule)).toEqual(['tariff-missing', 'tariff-missing', 'tariff-missing']);
  });
});

describe('buildInvoice', () => {
  const { invoices } = dueMemberInvoices(input());

  it('the GP invoice, field by field', () => {
    const due = invoices[0] as DueInvoice;
    const invoice = buildInvoice(due, { programUrl: rediabProgram.url });
    expect(invoice).toMatchObject({
      resourceType: 'Invoice',
      meta: { profile: [BILLING_PROFILES.invoice] },
      identifier: [{ system: `${rediabProgram.url}/invoice`, value: due.key }],
      status: 'issued',
      type: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: 'COOP' }] },
      recipient: PAYER,
      date: '2001-10-01',
      participant: [
        { role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/payeetype', code: 'provider' }] }, actor: { reference: 'PractitionerRole/gp' } },
        { role: { coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/care-team-role', code: 'gp' }] }, actor: { reference: 'PractitionerRole/gp' } },
      ],
      lineItem: [
        {
          extension: [
            { url: BILLING_EXTENSIONS.chargeItemDefinition, valueCanonical: `${CID}/rediab-coop|1.0.0` },
            { url: CATEGORY_EXTENSION, valueCode: 'gp' },
          ],
          sequence: 1,
          chargeItemCodeableConcept: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: 'COOP' }] },
          priceComponent: [{ type: 'base', code: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: 'COOP' }] }, amount: { value: 105.19, currency: 'EUR' } }],
        },
      ],
      totalNet: { value: 105.19, currency: 'EUR' },
      totalGross: { value: 105.19, currency: 'EUR' },
    });
    // R4 Invoice.issuer is Reference(Organization): a professional payee is a participant only.
    expect(invoice.issuer).toBeUndefined();
    expect(buildInvoice(due, { programUrl: rediabProgram.url })).toEqual(invoice);
  });

  it('an association payee is also the issuer', () => {
    const due = invoices.find((invoice) => invoice.member.category === 'sports-educator') as DueInvoice;
    const invoice = buildInvoice(due, { programUrl: rediabProgram.url });
    expect(invoice.issuer).toEqual({ reference: ASSOCIATION });
    expect(invoice.participant?.map((participant) => participant.actor.reference)).toEqual([ASSOCIATION, 'Practitioner/educator']);
  });

  it('every invoice validates against R4 and forfait-invoice', () => {
    for (const due of invoices) {
      const invoice = buildInvoice(due, { programUrl: rediabProgram.url });
      assertValid(invoice);
      expect(validateResource(invoice, { profiles: [] })).toEqual([]);
    }
  });
});
