import { describe, expect, it } from 'vitest';
import type { CriterionStatus, PatientRecord } from '../../../src/domain/types.js';
import { INSURER_SYSTEM, REDIAB_POLICY, consent, coverage, criterion, organization, patient, record } from './fhir-fixtures.js';
import { criterionOf, rediab } from './program-fixtures.js';

const byIdentifier = (value: string): fhir4.Reference => ({ identifier: { system: INSURER_SYSTEM, value } });

describe('coverage-payor-accepted', () => {
  it.each<[string, () => Partial<PatientRecord>, CriterionStatus]>([
    ['payor identifier of an accepted fund', () => ({ coverages: [coverage([byIdentifier('CPAM-CALAIS')])] }), 'met'],
    [
      'payor Organization with an accepted identifier',
      () => ({ coverages: [coverage([{ reference: 'Organization/o1' }])], organizations: [organization('o1', 'CPAM-BOULOGNE-SUR-MER')] }),
      'met',
    ],
    [
      'payor Organization by absolute URL',
      () => ({ coverages: [coverage([{ reference: 'https://fhir.example/fhir/Organization/o1' }])], organizations: [organization('o1', 'CPAM-CALAIS')] }),
      'met',
    ],
    [
      'contained payor Organization',
      () => ({ coverages: [coverage([{ reference: '#payor' }], { contained: [organization('payor', 'CPAM-CALAIS')] })] }),
      'met',
    ],
    ['a fund that has not joined', () => ({ coverages: [coverage([byIdentifier('CPAM-LILLE')])] }), 'not-met'],
    [
      'payor Organization of another scheme',
      () => ({ coverages: [coverage([{ reference: 'Organization/o2' }])], organizations: [organization('o2', 'MSA-NORD')] }),
      'not-met',
    ],
    ['self-pay', () => ({ coverages: [coverage([{ reference: 'Patient/p1' }])] }), 'not-met'],
    [
      'an accepted fund among two coverages',
      () => ({ coverages: [coverage([byIdentifier('CPAM-LILLE')]), coverage([byIdentifier('CPAM-CALAIS')])] }),
      'met',
    ],
    ['no coverage at all', () => ({}), 'unknown'],
    ['cancelled coverage only', () => ({ coverages: [coverage([byIdentifier('CPAM-CALAIS')], { status: 'cancelled' })] }), 'unknown'],
    ['draft coverage only', () => ({ coverages: [coverage([byIdentifier('CPAM-CALAIS')], { status: 'draft' })] }), 'unknown'],
    ['coverage ended before asOf', () => ({ coverages: [coverage([byIdentifier('CPAM-CALAIS')], { period: { end: '2024-12-31' } })] }), 'unknown'],
    ['coverage covering asOf', () => ({ coverages: [coverage([byIdentifier('CPAM-CALAIS')], { period: { start: '2020-01-01', end: '2025-12-31' } })] }), 'met'],
    ['coverage of another beneficiary', () => ({ coverages: [coverage([byIdentifier('CPAM-CALAIS')], { beneficiary: { reference: 'Patient/p2' } })] }), 'unknown'],
    ['payor Organization not fetched', () => ({ coverages: [coverage([{ reference: 'Organization/o9' }])] }), 'unknown'],
    ['coverage without payor', () => ({ coverages: [coverage([])] }), 'unknown'],
  ])('%s → %s', (_name, fields, status) => {
    expect(criterion(rediab, 'insurance-scheme', record(fields())).status).toBe(status);
  });

  it('cites the Coverage and the Organization, names the insurer', () => {
    const cov = coverage([{ reference: 'Organization/o1' }]);
    const result = criterion(rediab, 'insurance-scheme', record({ coverages: [cov], organizations: [organization('o1', 'CPAM-CALAIS')] }));
    expect(result.evidence).toEqual([`Coverage/${cov.id}/_history/1`, 'Organization/o1/_history/4']);
    expect(result.value).toEqual({ type: 'Coding', system: INSURER_SYSTEM, code: 'CPAM-CALAIS', display: 'CPAM de Calais (régime général)' });
  });

  it('asks for a Coverage when there is none', () => {
    expect(criterion(rediab, 'insurance-scheme', record()).missing?.[0]?.type).toBe('Coverage');
  });

  it('reports a payor it cannot read as an issue', () => {
    const result = criterion(rediab, 'insurance-scheme', record({ coverages: [coverage([{ reference: 'Organization/o9' }])] }));
    expect(result.issues?.[0]).toMatchObject({ code: 'incomplete', expression: 'Coverage.payor' });
  });
});

describe('residence-in-area', () => {
  it.each<[string, fhir4.Address[] | undefined, CriterionStatus]>([
    ['home in Calais', [{ use: 'home', postalCode: '62100' }], 'met'],
    ['address without use, Boulogne', [{ postalCode: '62200' }], 'met'],
    ['postal code with a space', [{ use: 'home', postalCode: '62 100' }], 'met'],
    ['home in Paris', [{ use: 'home', postalCode: '75015' }], 'not-met'],
    ['old address in the area, home in Paris', [{ use: 'old', postalCode: '62100' }, { use: 'home', postalCode: '75015' }], 'not-met'],
    ['two home addresses, one in the area', [{ use: 'home', postalCode: '75015' }, { use: 'home', postalCode: '62100' }], 'met'],
    ['home address ended before asOf', [{ use: 'home', postalCode: '62100', period: { end: '2024-12-31' } }], 'unknown'],
    ['home address starting after asOf', [{ use: 'home', postalCode: '62100', period: { start: '2025-07-01' } }], 'unknown'],
    ['only a work address', [{ use: 'work', postalCode: '62100' }], 'unknown'],
    ['home address without postal code', [{ use: 'home', city: 'Calais' }], 'unknown'],
    ['no address', undefined, 'unknown'],
  ])('%s → %s', (_name, address, status) => {
    expect(criterion(rediab, 'residence', record({ patient: patient({ address }) })).status).toBe(status);
  });

  it('asks for a postal code when there is none', () => {
    expect(criterion(rediab, 'residence', record()).missing?.[0]?.type).toBe('Patient');
  });
});

describe('active-consent', () => {
  it.each<[string, () => fhir4.Consent[], CriterionStatus]>([
    ['active contract (policy uri)', () => [consent()], 'met'],
    ['active contract (category only)', () => [consent({ policy: [] })], 'met'],
    ['active contract (policy only)', () => [consent({ category: [{ text: 'contrat' }] })], 'met'],
    ['active consent for something else', () => [consent({ policy: [{ uri: 'http://example.org/research' }], category: [{ text: 'research' }] })], 'unknown'],
    ['draft contract', () => [consent({ status: 'draft' })], 'not-met'],
    ['proposed contract', () => [consent({ status: 'proposed' })], 'not-met'],
    ['rejected contract', () => [consent({ status: 'rejected' })], 'not-met'],
    ['inactive contract', () => [consent({ status: 'inactive' })], 'not-met'],
    ['entered in error', () => [consent({ status: 'entered-in-error' })], 'unknown'],
    ['provision period ended', () => [consent({ provision: { period: { start: '2024-01-01', end: '2024-12-31' } } })], 'not-met'],
    ['provision period covering asOf', () => [consent({ provision: { period: { start: '2025-01-01', end: '2027-12-31' } } })], 'met'],
    ['signed after asOf (replay)', () => [consent({ dateTime: '2025-06-16T09:00:00+02:00' })], 'unknown'],
    ["another patient's contract", () => [consent({ patient: { reference: 'Patient/p2' } })], 'unknown'],
    ['inactive old contract and an active new one', () => [consent({ status: 'inactive' }), consent()], 'met'],
    ['no consent', () => [], 'unknown'],
  ])('%s → %s', (_name, consents, status) => {
    expect(criterion(rediab, 'consent', record({ consents: consents() })).status).toBe(status);
  });

  it('cites the consent version and its date', () => {
    const contract = consent();
    const result = criterion(rediab, 'consent', record({ consents: [contract] }));
    expect(result.evidence).toEqual([`Consent/${contract.id}/_history/5`]);
    expect(result.value).toEqual({ type: 'date', value: '2025-01-10' });
  });

  it('asks for the contract when there is none', () => {
    expect(criterion(rediab, 'consent', record()).missing).toEqual([
      {
        type: 'Consent',
        codes: [{ system: 'http://loinc.org', code: '59284-0', display: 'Consent Document' }],
        description: 'Signed contract of engagement and membership (an active Consent).',
      },
    ]);
  });

  it('uses the policy uri of the program data', () => {
    expect(criterionOf(rediab, 'active-consent').policyUris).toEqual([REDIAB_POLICY]);
  });
});
