/**
 * Tariffs as data: the ChargeItemDefinitions of profiles/ say exactly what DOMAIN.md tabulates
 * (FNMF Payment; REDIAB Forfaits Art. 10 and "Who is paid"), are well formed and valid R4, and
 * `tariffAt` replays any date with the version then in force.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  canonicalOf,
  chargeItemDefinitionProblems,
  forfaitCodeOf,
  priceComponents,
  priceFor,
  tariffAt,
  tariffVersionProblems,
} from '../../../src/domain/billing/tariffs.js';
import { formatIssue, initValidation, validateResource } from '../../../src/fhir/validation.js';
import { CATEGORY_EXTENSION, FORFAIT_CODE_SYSTEM } from '../../../src/programs/billing-schema.js';
import { CID, chargeItemDefinitionFiles, chargeItemDefinitions, fnmfBilling, PROFILES_DIR, rediabBilling } from './fixtures.js';

beforeAll(() => {
  initValidation();
}, 30_000);

function only(url: string): fhir4.ChargeItemDefinition {
  const versions = chargeItemDefinitions.get(url) ?? [];
  expect(versions).toHaveLength(1);
  return versions[0] as fhir4.ChargeItemDefinition;
}

describe('the tariffs of profiles/ are DOMAIN.md, exactly', () => {
  it.each<[string, string, string, [string | undefined, string, string][]]>([
    ['fnmf-sequence', 'FNMF-SEQUENCE', '2020-12-27', [[undefined, 'centre', '690.60']]],
    ['rediab-feid', 'FEID', '2001-08-24', [['gp', 'member', '178.36'], ['nurse', 'member', '80.49'], ['sports-educator', 'association', '30.18']]],
    ['rediab-fesd', 'FESD', '2001-08-24', [['gp', 'member', '73.17'], ['nurse', 'member', '50.31'], ['sports-educator', 'association', '40.25']]],
    ['rediab-fecd', 'FECD', '2001-08-24', [[undefined, 'association', '200.62']]],
    ['rediab-fsp', 'FSP', '2001-08-24', [['podiatrist', 'member', '83.85']]],
    [
      'rediab-coop',
      'COOP',
      '2001-08-24',
      [
        ['gp', 'member', '105.19'],
        ['nurse', 'member', '60.37'],
        ['dietitian', 'member', '60.37'],
        ['podiatrist', 'member', '60.37'],
        ['physiotherapist', 'member', '60.37'],
        ['sports-educator', 'association', '60.37'],
        ['diabetologist', 'member', '210.38'],
      ],
    ],
  ])('%s', (id, code, start, parts) => {
    const definition = only(`${CID}/${id}`);
    expect(definition).toMatchObject({ version: '1.0.0', status: 'active', effectivePeriod: { start } });
    expect(definition.effectivePeriod?.end).toBeUndefined();
    expect(forfaitCodeOf(definition)).toBe(code);
    expect(definition.description).toMatch(/DOMAIN\.md/);
    expect(priceComponents(definition)).toEqual(parts.map(([category, payeeRule, amount]) => ({ ...(category ? { category } : {}), payeeRule, amount })));
  });

  it('every forfait of billing.json has its tariff, with the same code', () => {
    for (const forfait of [...fnmfBilling.patientForfaits, ...rediabBilling.patientForfaits, ...rediabBilling.memberForfaits]) {
      const versions = chargeItemDefinitions.get(forfait.chargeItemDefinition) ?? [];
      expect(versions.length, forfait.code).toBeGreaterThan(0);
      for (const version of versions) expect(forfaitCodeOf(version)).toBe(forfait.code);
    }
  });

  it('every code is in CodeSystem-forfait.json', () => {
    const codeSystem = JSON.parse(readFileSync(join(PROFILES_DIR, 'CodeSystem-forfait.json'), 'utf8')) as fhir4.CodeSystem;
    expect(codeSystem.url).toBe(FORFAIT_CODE_SYSTEM);
    expect((codeSystem.concept ?? []).map((concept) => concept.code).sort()).toEqual(['COOP', 'FECD', 'FEID', 'FESD', 'FNMF-SEQUENCE', 'FSP']);
    expect(validateResource(codeSystem, { profiles: [] }).map(formatIssue)).toEqual([]);
  });

  it.each(chargeItemDefinitionFiles)('%s: well formed, valid R4, amounts written with two decimals', (file) => {
    const text = readFileSync(join(PROFILES_DIR, file), 'utf8');
    const definition = JSON.parse(text) as fhir4.ChargeItemDefinition;
    expect(chargeItemDefinitionProblems(definition)).toEqual([]);
    expect(file).toBe(`ChargeItemDefinition-${definition.id}.json`);
    expect(definition.id).toBe(`${definition.url.split('/').at(-1)}-${definition.version}`);
    expect(validateResource(definition, { profiles: [] }).map(formatIssue)).toEqual([]);
    const written = [...text.matchAll(/"value":\s*([0-9.]+)/g)].map((match) => match[1]);
    expect(written.length).toBe(definition.propertyGroup?.length);
    for (const value of written) expect(value).toMatch(/^\d+\.\d{2}$/);
  });

  it('the versions of each url do not overlap', () => {
    for (const versions of chargeItemDefinitions.values()) expect(tariffVersionProblems(versions)).toEqual([]);
  });
});

describe('priceFor', () => {
  const feid = only(`${CID}/rediab-feid`);
  const fnmf = only(`${CID}/fnmf-sequence`);
  it.each<[fhir4.ChargeItemDefinition, string | undefined, { amount: string; payeeRule: string } | undefined]>([
    [feid, 'gp', { amount: '178.36', payeeRule: 'member' }],
    [feid, 'sports-educator', { amount: '30.18', payeeRule: 'association' }],
    [feid, 'podiatrist', undefined],
    [feid, undefined, undefined],
    [fnmf, undefined, { amount: '690.60', payeeRule: 'centre' }],
    [fnmf, 'gp', undefined],
  ])('%#', (definition, category, expected) => {
    expect(priceFor(definition, category)).toEqual(expected);
  });
});

/** A dated version of a single-amount tariff. */
function version(v: string, start: string, end: string | undefined, amount: number, status: fhir4.ChargeItemDefinition['status'] = 'active'): fhir4.ChargeItemDefinition {
  return {
    resourceType: 'ChargeItemDefinition',
    id: `t-${v}`,
    url: `${CID}/test`,
    version: v,
    status,
    effectivePeriod: { start, ...(end ? { end } : {}) },
    code: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: 'T' }] },
    propertyGroup: [
      {
        extension: [{ url: 'http://forfait-fhir.org/fhir/StructureDefinition/forfait-payee-rule', valueCode: 'centre' }],
        priceComponent: [{ type: 'base', code: { coding: [{ system: FORFAIT_CODE_SYSTEM, code: 'T' }] }, amount: { value: amount, currency: 'EUR' } }],
      },
    ],
  };
}

describe('tariffAt: the version in force on a date (replay)', () => {
  // A tariff change: 2.0.0 from 2024-01-01, 1.0.0 ends the day before.
  const versions = [version('1.0.0', '2020-12-27', '2023-12-31', 690.6, 'retired'), version('2.0.0', '2024-01-01', undefined, 700)];

  it.each<[string, string | undefined]>([
    ['2020-12-26', undefined],
    ['2020-12-27', '1.0.0'],
    ['2023-06-01', '1.0.0'],
    ['2023-12-31', '1.0.0'],
    ['2024-01-01', '2.0.0'],
    ['2030-01-01', '2.0.0'],
  ])('%s → %s', (date, expected) => {
    expect(tariffAt(versions, date)?.version).toBe(expected);
    // The order of the versions does not matter.
    expect(tariffAt([...versions].reverse(), date)?.version).toBe(expected);
  });

  it('replays the amount then in force', () => {
    expect(priceFor(tariffAt(versions, '2023-06-01') as fhir4.ChargeItemDefinition, undefined)?.amount).toBe('690.60');
    expect(priceFor(tariffAt(versions, '2024-06-01') as fhir4.ChargeItemDefinition, undefined)?.amount).toBe('700.00');
    expect(canonicalOf(tariffAt(versions, '2024-06-01') as fhir4.ChargeItemDefinition)).toBe(`${CID}/test|2.0.0`);
    expect(tariffVersionProblems(versions)).toEqual([]);
  });

  it('draft and undated versions are never in force', () => {
    expect(tariffAt([version('3.0.0', '2020-01-01', undefined, 1, 'draft')], '2025-01-01')).toBeUndefined();
    const undated = { ...version('1.0.0', '2020-01-01', undefined, 1) };
    delete undated.effectivePeriod;
    expect(tariffAt([undated], '2025-01-01')).toBeUndefined();
    expect(tariffAt([], '2025-01-01')).toBeUndefined();
  });

  it('overlapping versions: the latest start wins, and the overlap is reported', () => {
    const overlapping = [version('1.0.0', '2020-12-27', undefined, 690.6), version('2.0.0', '2024-01-01', undefined, 700)];
    expect(tariffAt(overlapping, '2024-06-01')?.version).toBe('2.0.0');
    expect(tariffVersionProblems(overlapping).join()).toMatch(/overlaps/);
  });
});

describe('chargeItemDefinitionProblems: what a malformed tariff says', () => {
  const good = version('1.0.0', '2020-01-01', undefined, 10);
  function broken(mutate: (d: fhir4.ChargeItemDefinition) => void): string {
    const copy = structuredClone(good);
    mutate(copy);
    return chargeItemDefinitionProblems(copy).join('\n');
  }
  const group = (d: fhir4.ChargeItemDefinition): fhir4.ChargeItemDefinitionPropertyGroup => d.propertyGroup?.[0] as fhir4.ChargeItemDefinitionPropertyGroup;
  const price = (d: fhir4.ChargeItemDefinition): fhir4.ChargeItemDefinitionPropertyGroupPriceComponent => group(d).priceComponent?.[0] as fhir4.ChargeItemDefinitionPropertyGroupPriceComponent;

  it.each<[string, (d: fhir4.ChargeItemDefinition) => void, RegExp]>([
    ['three decimals', (d) => (price(d).amount = { value: 10.005, currency: 'EUR' }), /at most 2 decimals/],
    ['a negative amount', (d) => (price(d).amount = { value: -1, currency: 'EUR' }), /at most 2 decimals/],
    ['another currency', (d) => (price(d).amount = { value: 10, currency: 'USD' }), /EUR/],
    ['no payee rule', (d) => (group(d).extension = []), /payee-rule/],
    ['an unknown payee rule', (d) => (group(d).extension = [{ url: 'http://forfait-fhir.org/fhir/StructureDefinition/forfait-payee-rule', valueCode: 'patient' }]), /payee-rule/],
    ['no version', (d) => delete d.version, /version/],
    ['no start', (d) => (d.effectivePeriod = { end: '2021-01-01' }), /effectivePeriod.start/],
    ['an end before the start', (d) => (d.effectivePeriod = { start: '2021-01-01', end: '2020-01-01' }), /ends before/],
    ['no forfait coding', (d) => (d.code = { text: 'T' }), /CodeSystem\/forfait/],
    ['a surcharge component', (d) => group(d).priceComponent?.push({ type: 'surcharge', amount: { value: 1, currency: 'EUR' } }), /exactly one priceComponent/],
    [
      'a category twice',
      (d) => {
        group(d).extension?.push({ url: CATEGORY_EXTENSION, valueCode: 'gp' });
        d.propertyGroup?.push(structuredClone(group(d)));
      },
      /appears twice/,
    ],
    ['a group without category beside others', (d) => d.propertyGroup?.push({ ...structuredClone(group(d)), extension: [...(group(d).extension ?? []), { url: CATEGORY_EXTENSION, valueCode: 'gp' }] }), /must be the only one/],
  ])('%s', (_label, mutate, expected) => {
    expect(broken(mutate)).toMatch(expected);
  });

  it('priceComponents throws on a malformed tariff (program data is checked at start-up)', () => {
    const copy = structuredClone(good);
    price(copy).amount = { value: 1.234, currency: 'EUR' };
    expect(() => priceComponents(copy)).toThrow(RangeError);
  });
});
