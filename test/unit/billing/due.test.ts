/**
 * When forfaits fall due (DOMAIN.md 1 Payment; 2 "When each forfait falls due", "Who is paid"),
 * from enrolments built by the enrolment domain itself.
 */
import { describe, expect, it } from 'vitest';
import { dueClaims } from '../../../src/domain/billing/due.js';
import { sumMoney } from '../../../src/domain/billing/money.js';
import type { DueClaim } from '../../../src/domain/billing/types.js';
import { careTeamId } from '../../../src/domain/enrolment/enrolment-resources.js';
import { addDays } from '../../../src/domain/enrolment/plan-periods.js';
import type { BillingData } from '../../../src/programs/billing-schema.js';
import {
  ASSOCIATION,
  CENTRE,
  CID,
  chargeItemDefinitions,
  EDUCATOR,
  fnmfBilling,
  fnmfEnrolmentAt,
  fnmfInput,
  GP,
  NURSE,
  PODIATRIST,
  rediabBilling,
  rediabEnrolmentAt,
  rediabInput,
} from './fixtures.js';

/** `code date payee amount` per claim, easy to compare in a table. */
function summary(claims: readonly DueClaim[]): string[] {
  return claims.map((claim) => `${claim.forfaitCode} ${claim.dueDate} ${claim.payee.reference} ${claim.total}`);
}

function ofForfait(claims: readonly DueClaim[], code: string): DueClaim[] {
  return claims.filter((claim) => claim.forfaitCode === code);
}

describe('FNMF: 690.60 per patient at inclusion, paid to the centre', () => {
  it('140 enrolments claim 96,684.00 exactly, one claim each', () => {
    const claims = Array.from({ length: 140 }, (_, i) => {
      const start = addDays('2021-09-01', i * 3);
      const result = dueClaims(fnmfInput(fnmfEnrolmentAt({ start, asOf: '2023-12-31', patientId: `p${i}` }), '2023-12-31'));
      expect(result.issues).toEqual([]);
      expect(result.claims).toHaveLength(1);
      return result.claims[0] as DueClaim;
    });
    expect(claims).toHaveLength(140);
    expect(new Set(claims.map((claim) => claim.key)).size).toBe(140);
    expect(sumMoney(claims.map((claim) => claim.total))).toBe('96684.00');
    expect(fnmfBilling.budget?.amount).toBe('96684.00');
    for (const claim of claims) {
      expect(claim.total).toBe('690.60');
      expect(claim.payee).toEqual({ rule: 'centre', reference: CENTRE });
      expect(claim.lines).toEqual([{ forfaitCode: 'FNMF-SEQUENCE', chargeItemDefinition: `${CID}/fnmf-sequence|1.0.0`, amount: '690.60' }]);
    }
  });

  it('is due on the inclusion date, for the 24-month sequence', () => {
    const resources = fnmfEnrolmentAt({ start: '2022-01-31', asOf: '2022-02-01' });
    const [claim] = dueClaims(fnmfInput(resources, '2022-02-01')).claims;
    expect(claim).toMatchObject({
      forfaitCode: 'FNMF-SEQUENCE',
      programId: 'fnmf-prediabetes',
      patientId: 'p1',
      dueDate: '2022-01-31',
      billablePeriod: { start: '2022-01-31', end: '2024-01-30' },
      episode: `EpisodeOfCare/${resources.episode.id as string}`,
    });
    expect(claim?.key).toMatch(/^FNMF-SEQUENCE-[0-9a-f-]{36}$/);
    expect(claim?.carePlan).toBeUndefined();
  });

  it.each<[string, number]>([
    ['2022-01-30', 0],
    ['2022-01-31', 1],
  ])('nothing before the inclusion date: asOf %s → %i claim', (asOf, count) => {
    expect(dueClaims(fnmfInput(fnmfEnrolmentAt({ start: '2022-01-31', asOf: '2022-01-01' }), asOf)).claims).toHaveLength(count);
  });

  it('the centre is the payee: without a managing organization, no claim and a payee-missing issue', () => {
    const result = dueClaims(fnmfInput(fnmfEnrolmentAt({ start: '2022-01-31', asOf: '2022-02-01' }), '2022-02-01', { centreRef: undefined }));
    expect(result.claims).toEqual([]);
    expect(result.issues).toMatchObject([{ rule: 'payee-missing', code: 'required', expression: 'EpisodeOfCare.managingOrganization' }]);
  });
});

describe('a schedule in data: 50 % at inclusion, 50 % when consolidation starts', () => {
  const [forfait] = fnmfBilling.patientForfaits;
  const halves: BillingData = {
    ...fnmfBilling,
    patientForfaits: [
      {
        ...(forfait as BillingData['patientForfaits'][number]),
        dueOn: [
          { event: 'enrolment', share: '0.5' },
          { event: 'plan-start', plan: 'consolidation', share: '0.5' },
        ],
      },
    ],
  };
  const resources = fnmfEnrolmentAt({ start: '2022-01-15', asOf: '2022-01-15' });

  it.each<[string, string[]]>([
    ['2022-05-14', ['FNMF-SEQUENCE 2022-01-15 Organization/centre-1 345.30']],
    [
      '2022-05-15',
      ['FNMF-SEQUENCE 2022-01-15 Organization/centre-1 345.30', 'FNMF-SEQUENCE 2022-05-15 Organization/centre-1 345.30'],
    ],
  ])('asOf %s', (asOf, expected) => {
    const result = dueClaims(fnmfInput(resources, asOf, { billing: halves }));
    expect(result.issues).toEqual([]);
    expect(summary(result.claims)).toEqual(expected);
  });

  it('the two halves add up to the forfait, with distinct keys and their own periods', () => {
    const { claims } = dueClaims(fnmfInput(resources, '2024-06-01', { billing: halves }));
    expect(sumMoney(claims.map((claim) => claim.total))).toBe('690.60');
    expect(new Set(claims.map((claim) => claim.key)).size).toBe(2);
    expect(claims.map((claim) => claim.billablePeriod)).toEqual([
      { start: '2022-01-15', end: '2024-01-14' },
      { start: '2022-05-15', end: '2024-01-14' },
    ]);
    const consolidation = resources.carePlans[1] as fhir4.CarePlan;
    expect(claims[1]?.carePlan).toBe(`CarePlan/${consolidation.id as string}`);
  });
});

describe('REDIAB FEID: one part per category of the team, each to its payee', () => {
  const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2001-09-01' });

  it('GP, nurse and sports educator: 178.36 to the GP, 80.49 to the nurse, 30.18 to the association', () => {
    const result = dueClaims(rediabInput(resources, '2001-09-01'));
    expect(result.issues).toEqual([]);
    expect(summary(result.claims)).toEqual([`FEID 2001-09-01 ${GP} 178.36`, `FEID 2001-09-01 ${NURSE} 80.49`, `FEID 2001-09-01 ${ASSOCIATION} 30.18`]);
    expect(result.claims.map((claim) => claim.payee.rule)).toEqual(['member', 'member', 'association']);
    expect(result.claims.map((claim) => claim.lines.map((line) => line.category))).toEqual([['gp'], ['nurse'], ['sports-educator']]);
    for (const claim of result.claims) {
      expect(claim.billablePeriod).toEqual({ start: '2001-09-01', end: '2001-12-31' });
      expect(claim.carePlan).toBe(`CarePlan/${resources.carePlans[0]?.id as string}`);
    }
    expect(new Set(result.claims.map((claim) => claim.key)).size).toBe(3);
  });

  it('a team without nurse nor sports educator: the GP part only', () => {
    const gpOnly = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2001-09-01', careTeam: [{ reference: GP, role: 'gp' }] });
    expect(summary(dueClaims(rediabInput(gpOnly, '2001-09-01')).claims)).toEqual([`FEID 2001-09-01 ${GP} 178.36`]);
  });

  it('no association configured: the GP and nurse parts, and a payee-missing issue for the educator part', () => {
    const result = dueClaims(rediabInput(resources, '2001-09-01', { associationRef: undefined }));
    expect(summary(result.claims)).toEqual([`FEID 2001-09-01 ${GP} 178.36`, `FEID 2001-09-01 ${NURSE} 80.49`]);
    expect(result.issues).toHaveLength(1);
    expect(result.issues[0]).toMatchObject({ rule: 'payee-missing', code: 'required' });
    expect(result.issues[0]?.diagnostics).toMatch(/association/);
  });

  it('the key is deterministic, and names the payee slot, not the person: a new GP does not make the GP part due again', () => {
    const again = dueClaims(rediabInput(rediabEnrolmentAt({ start: '2001-09-01', asOf: '2001-09-01' }), '2001-09-01'));
    const first = dueClaims(rediabInput(resources, '2001-09-01'));
    expect(again).toEqual(first);
    const careTeam: fhir4.CareTeam = {
      ...resources.careTeam,
      participant: resources.careTeam.participant?.map((p) => (p.member?.reference === GP ? { ...p, member: { reference: 'PractitionerRole/another-gp' } } : p)),
    };
    const changed = dueClaims(rediabInput({ ...resources, careTeam }, '2001-09-01'));
    expect(changed.claims.map((claim) => claim.key)).toEqual(first.claims.map((claim) => claim.key));
    expect(changed.claims[0]?.payee.reference).toBe('PractitionerRole/another-gp');
  });

  it('another patient, another key', () => {
    const other = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2001-09-01', patientId: 'p3' });
    const keys = new Set(dueClaims(rediabInput(resources, '2001-09-01')).claims.map((claim) => claim.key));
    for (const claim of dueClaims(rediabInput(other, '2001-09-01')).claims) expect(keys.has(claim.key)).toBe(false);
  });
});

describe('REDIAB FESD: each follow-up year, inside the approval period, until the exit', () => {
  const payees = [GP, NURSE, ASSOCIATION];
  const year = (start: string, amounts = ['73.17', '50.31', '40.25']): string[] => payees.map((payee, i) => `FESD ${start} ${payee} ${amounts[i] as string}`);

  it('years 1 to 3 (2002, 2003, 2004): 3 claims per payee; the 2005 year starts after the approval end 2004-08-23', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2005-06-01' });
    const fesdPlans = resources.carePlans.filter((carePlan) => carePlan.category?.[0]?.coding?.[0]?.code === 'follow-up');
    expect(fesdPlans.map((carePlan) => carePlan.period?.start)).toEqual(['2002-01-01', '2003-01-01', '2004-01-01', '2005-01-01']);
    const result = dueClaims(rediabInput(resources, '2005-06-01'));
    expect(result.issues).toEqual([]);
    const fesd = ofForfait(result.claims, 'FESD');
    expect(summary(fesd)).toEqual([...year('2002-01-01'), ...year('2003-01-01'), ...year('2004-01-01')]);
    expect(fesd.map((claim) => claim.billablePeriod.start)).not.toContain('2005-01-01');
    expect(fesd[0]?.billablePeriod).toEqual({ start: '2002-01-01', end: '2002-12-31' });
    expect(new Set(fesd.map((claim) => claim.key)).size).toBe(9);
    expect(new Set(fesd.map((claim) => claim.carePlan)).size).toBe(3);
    expect(summary(ofForfait(result.claims, 'FEID'))).toHaveLength(3);
    expect(ofForfait(result.claims, 'FSP')).toEqual([]);
    expect(ofForfait(result.claims, 'FECD')).toEqual([]);
  });

  it.each<[string, string[]]>([
    ['2002-12-31', ['2002-01-01']],
    ['2003-01-01', ['2002-01-01', '2003-01-01']],
  ])('up to asOf %s', (asOf, starts) => {
    const result = dueClaims(rediabInput(rediabEnrolmentAt({ start: '2001-09-01', asOf: '2005-06-01' }), asOf));
    expect([...new Set(ofForfait(result.claims, 'FESD').map((claim) => claim.dueDate))]).toEqual(starts);
  });

  it('nothing after the exit: a patient who left on 2003-06-30 has the 2002 and 2003 years (the started year stays due, though revoked)', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2005-06-01', exit: { date: '2003-06-30' } });
    expect(resources.episode.status).toBe('finished');
    const statuses = resources.carePlans.filter((carePlan) => carePlan.category?.[0]?.coding?.[0]?.code === 'follow-up').map((carePlan) => `${carePlan.period?.start} ${carePlan.status}`);
    expect(statuses).toEqual(['2002-01-01 completed', '2003-01-01 revoked']);
    const fesd = ofForfait(dueClaims(rediabInput(resources, '2005-06-01')).claims, 'FESD');
    expect(summary(fesd)).toEqual([...year('2002-01-01'), ...year('2003-01-01')]);
  });

  it('a plan revoked before it started owes nothing: a patient who left during initial education has the FEID only', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2005-06-01', exit: { date: '2001-11-01' } });
    const followUp = resources.carePlans.find((carePlan) => carePlan.category?.[0]?.coding?.[0]?.code === 'follow-up');
    expect(followUp?.status).toBe('revoked');
    expect(followUp?.period?.start).toBe('2002-01-01');
    expect(summary(dueClaims(rediabInput(resources, '2005-06-01')).claims)).toEqual([`FEID 2001-09-01 ${GP} 178.36`, `FEID 2001-09-01 ${NURSE} 80.49`, `FEID 2001-09-01 ${ASSOCIATION} 30.18`]);
  });

  it('an exit on the first day of a year still owes that year (Period end inclusive)', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2005-06-01', exit: { date: '2003-01-01' } });
    expect([...new Set(ofForfait(dueClaims(rediabInput(resources, '2005-06-01')).claims, 'FESD').map((claim) => claim.dueDate))]).toEqual(['2002-01-01', '2003-01-01']);
  });

  it('a cancelled enrolment (exit before its start) owes nothing', () => {
    const resources = rediabEnrolmentAt({ start: '2002-03-01', asOf: '2002-01-01', exit: { date: '2002-02-01' } });
    expect(resources.episode.status).toBe('cancelled');
    expect(dueClaims(rediabInput(resources, '2005-06-01'))).toEqual({ claims: [], issues: [] });
  });

  it('nothing before the approval start: enrolled on 2001-06-01, no FEID; follow-up years from 2001-10-01', () => {
    const resources = rediabEnrolmentAt({ start: '2001-06-01', asOf: '2005-06-01' });
    const { claims } = dueClaims(rediabInput(resources, '2005-06-01'));
    expect(ofForfait(claims, 'FEID')).toEqual([]);
    expect([...new Set(ofForfait(claims, 'FESD').map((claim) => claim.dueDate))]).toEqual(['2001-10-01', '2002-10-01', '2003-10-01']);
  });

  it('a renewal extending the approval period (billing data) makes the 2005 year due', () => {
    const renewed: BillingData = { ...rediabBilling, approvalPeriod: { start: '2001-08-24', end: '2007-08-23' } };
    const { claims } = dueClaims(rediabInput(rediabEnrolmentAt({ start: '2001-09-01', asOf: '2005-06-01' }), '2005-06-01', { billing: renewed }));
    expect([...new Set(ofForfait(claims, 'FESD').map((claim) => claim.dueDate))]).toEqual(['2002-01-01', '2003-01-01', '2004-01-01', '2005-01-01']);
  });

  it('a CarePlan entered in error is never billed', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2005-06-01' });
    const carePlans = resources.carePlans.map((carePlan) => (carePlan.period?.start === '2003-01-01' ? { ...carePlan, status: 'entered-in-error' as const } : carePlan));
    const fesd = ofForfait(dueClaims(rediabInput({ ...resources, carePlans }, '2005-06-01')).claims, 'FESD');
    expect([...new Set(fesd.map((claim) => claim.dueDate))]).toEqual(['2002-01-01', '2004-01-01']);
  });
});

describe('REDIAB FSP: only for a patient whose team has a podiatrist', () => {
  it('each year of podiatric follow-up: 83.85 to the podiatrist', () => {
    const resources = rediabEnrolmentAt({
      start: '2001-09-01',
      asOf: '2005-06-01',
      careTeam: [
        { reference: GP, role: 'gp' },
        { reference: PODIATRIST, role: 'podiatrist' },
      ],
    });
    const fsp = ofForfait(dueClaims(rediabInput(resources, '2005-06-01')).claims, 'FSP');
    expect(summary(fsp)).toEqual([`FSP 2001-09-01 ${PODIATRIST} 83.85`, `FSP 2002-09-01 ${PODIATRIST} 83.85`, `FSP 2003-09-01 ${PODIATRIST} 83.85`]);
    expect(fsp[0]?.billablePeriod).toEqual({ start: '2001-09-01', end: '2002-08-31' });
  });

  it('no podiatrist: no podiatric plan, no FSP', () => {
    const { claims } = dueClaims(rediabInput(rediabEnrolmentAt({ start: '2001-09-01', asOf: '2005-06-01' }), '2005-06-01'));
    expect(ofForfait(claims, 'FSP')).toEqual([]);
  });
});

describe('REDIAB FECD: when a complementary-education plan opens, one amount to the association', () => {
  it('200.62 to the association for the 6-month plan', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2002-07-01', complementaryEducation: '2002-06-01' });
    const fecd = ofForfait(dueClaims(rediabInput(resources, '2002-07-01')).claims, 'FECD');
    expect(summary(fecd)).toEqual([`FECD 2002-06-01 ${ASSOCIATION} 200.62`]);
    expect(fecd[0]?.lines).toEqual([{ forfaitCode: 'FECD', chargeItemDefinition: `${CID}/rediab-fecd|1.0.0`, amount: '200.62' }]);
    expect(fecd[0]?.billablePeriod).toEqual({ start: '2002-06-01', end: '2002-11-30' });
    const plan = resources.carePlans.at(-1) as fhir4.CarePlan;
    expect(fecd[0]?.carePlan).toBe(`CarePlan/${plan.id as string}`);
  });

  it('no association: no claim, a payee-missing issue', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2002-07-01', complementaryEducation: '2002-06-01' });
    const result = dueClaims(rediabInput(resources, '2002-07-01', { associationRef: undefined }));
    expect(ofForfait(result.claims, 'FECD')).toEqual([]);
    expect(result.issues.filter((issue) => issue.diagnostics.startsWith('The FECD'))).toHaveLength(1);
  });
});

describe('tariffs: the version in force on each due date', () => {
  const v1: fhir4.ChargeItemDefinition = { ...(chargeItemDefinitions.get(`${CID}/fnmf-sequence`)?.[0] as fhir4.ChargeItemDefinition) };
  const retired: fhir4.ChargeItemDefinition = { ...v1, status: 'retired', effectivePeriod: { start: '2020-12-27', end: '2023-12-31' } };
  const v2: fhir4.ChargeItemDefinition = structuredClone({ ...v1, id: 'fnmf-sequence-2.0.0', version: '2.0.0', effectivePeriod: { start: '2024-01-01' } });
  (v2.propertyGroup?.[0]?.priceComponent?.[0] as fhir4.ChargeItemDefinitionPropertyGroupPriceComponent).amount = { value: 700, currency: 'EUR' };
  const versions = new Map([[`${CID}/fnmf-sequence`, [retired, v2]]]);

  it.each<[string, string, string]>([
    ['2023-12-31', '690.60', '1.0.0'],
    ['2024-01-01', '700.00', '2.0.0'],
  ])('an inclusion on %s claims %s (version %s), replayed at any later date', (start, amount, version) => {
    const resources = fnmfEnrolmentAt({ start, asOf: start });
    for (const asOf of [start, '2030-01-01']) {
      const [claim] = dueClaims(fnmfInput(resources, asOf, { chargeItemDefinitions: versions })).claims;
      expect(claim?.total).toBe(amount);
      expect(claim?.lines[0]?.chargeItemDefinition).toBe(`${CID}/fnmf-sequence|${version}`);
    }
  });

  it('no tariff in force on the due date: no claim, a tariff-missing issue', () => {
    const early: BillingData = { ...fnmfBilling, approvalPeriod: { start: '2020-01-01' } };
    const result = dueClaims(fnmfInput(fnmfEnrolmentAt({ start: '2020-06-01', asOf: '2020-06-01' }), '2020-06-01', { billing: early }));
    expect(result.claims).toEqual([]);
    expect(result.issues).toMatchObject([{ rule: 'tariff-missing', code: 'not-found' }]);
    expect(result.issues[0]?.diagnostics).toMatch(/2020-06-01/);
  });

  it('no ChargeItemDefinition at all: a tariff-missing issue per occurrence', () => {
    const result = dueClaims(rediabInput(rediabEnrolmentAt({ start: '2001-09-01', asOf: '2003-06-01' }), '2003-06-01', { chargeItemDefinitions: new Map() }));
    expect(result.claims).toEqual([]);
    // FEID 2001-09-01, FESD 2002-01-01 and 2003-01-01.
    expect(result.issues.map((issue) => issue.rule)).toEqual(['tariff-missing', 'tariff-missing', 'tariff-missing']);
  });
});

describe('robustness', () => {
  it('an episode without id or start, or entered in error, owes nothing', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2002-01-01' });
    expect(dueClaims(rediabInput({ ...resources, episode: { ...resources.episode, status: 'entered-in-error' } }, '2003-01-01')).claims).toEqual([]);
    expect(dueClaims(rediabInput({ ...resources, episode: { ...resources.episode, period: {} } }, '2003-01-01')).claims).toEqual([]);
  });

  it('a CarePlan of another episode is ignored', () => {
    const resources = rediabEnrolmentAt({ start: '2001-09-01', asOf: '2002-01-01' });
    const foreign = resources.carePlans.map((carePlan) => ({
      ...carePlan,
      extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare', valueReference: { reference: 'EpisodeOfCare/other' } }],
    }));
    expect(dueClaims(rediabInput({ ...resources, carePlans: foreign }, '2003-01-01')).claims).toEqual([]);
    expect(careTeamId(resources.episode.id as string)).toBe(resources.careTeam.id);
    expect(EDUCATOR).toBe('Practitioner/educ-2');
  });
});
