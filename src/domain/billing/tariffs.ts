/**
 * Tariffs as program data (issue #4, point 1): each forfait is a FHIR ChargeItemDefinition in
 * `profiles/`, one resource per dated version (same `url`, its own `version` and
 * `effectivePeriod`), so a tariff change is a new version with a later start (the old one gets
 * an `end`) and any past date replays the amounts then in force.
 *
 * Shape read here (see types.ts): one `propertyGroup` per professional category, with
 * - extension CATEGORY_EXTENSION (valueCode, a care-team-role code), absent for a forfait paid
 *   as one amount (FNMF sequence, REDIAB FECD);
 * - extension PAYEE_RULE_EXTENSION (valueCode `member` | `association` | `centre`);
 * - exactly one `priceComponent` {type `base`, code = the forfait coding, amount {value, currency
 *   EUR}}, the value written with two decimals in JSON and read exactly (money.ts): at most two
 *   decimals, never rounded.
 *
 * Pure: no I/O, no clock.
 */
import { CATEGORY_EXTENSION, FORFAIT_CODE_SYSTEM, PAYEE_RULE_EXTENSION } from '../../programs/billing-schema.js';
import { dateSpanOf, periodCovers } from '../dates.js';
import type { CalendarDate } from '../types.js';
import { formatMoney, isMoney } from './money.js';
import type { BillingIssue, Payee } from './types.js';

export type PayeeRule = Payee['rule'];
export const PAYEE_RULES: readonly PayeeRule[] = ['member', 'association', 'centre'];

/** One priced part of a forfait: a `propertyGroup` read. */
export interface PriceComponent {
  /** Care-team-role code; absent for a single amount. */
  category?: string;
  payeeRule: PayeeRule;
  /** Exact amount, two decimals ("12.30"). */
  amount: string;
}

/**
 * Versions that may be in force: `active`, and `retired` (an old version kept for replays).
 * `draft` and `unknown` never are.
 */
const IN_FORCE_STATUSES = new Set<fhir4.ChargeItemDefinition['status']>(['active', 'retired']);

/** `url|version` of a ChargeItemDefinition (a versioned canonical). */
export function canonicalOf(definition: fhir4.ChargeItemDefinition): string {
  return definition.version ? `${definition.url}|${definition.version}` : definition.url;
}

/** The forfait code of a ChargeItemDefinition (its CodeSystem/forfait coding). */
export function forfaitCodeOf(definition: fhir4.ChargeItemDefinition): string | undefined {
  return definition.code?.coding?.find((coding) => coding.system === FORFAIT_CODE_SYSTEM && coding.code)?.code;
}

/**
 * The version in force on `date` among `definitions` (all versions of one url): status active
 * or retired, `effectivePeriod.start` given and both bounds inclusive (FHIR Period). A version
 * without a start is not dated and never in force. Should several cover the date (overlapping
 * versions, which `tariffVersionProblems` reports), the one with the latest start wins.
 * Undefined when none is in force: no tariff, no claim (`tariff-missing`).
 *
 * `zone` reads bounds written as instants (a date-only bound is taken as is); default UTC.
 */
export function tariffAt(
  definitions: readonly fhir4.ChargeItemDefinition[],
  date: CalendarDate,
  zone = 'UTC',
): fhir4.ChargeItemDefinition | undefined {
  let best: { definition: fhir4.ChargeItemDefinition; start: CalendarDate } | undefined;
  for (const definition of definitions) {
    if (!IN_FORCE_STATUSES.has(definition.status)) continue;
    const start = dateSpanOf(definition.effectivePeriod?.start, zone)?.first;
    if (start === undefined || !periodCovers(definition.effectivePeriod, date, zone)) continue;
    if (!best || start > best.start) best = { definition, start };
  }
  return best?.definition;
}

function extensionCode(group: fhir4.ChargeItemDefinitionPropertyGroup, url: string): string | undefined {
  return group.extension?.find((extension) => extension.url === url)?.valueCode;
}

function readGroup(group: fhir4.ChargeItemDefinitionPropertyGroup, where: string): { component?: PriceComponent; problems: string[] } {
  const problems: string[] = [];
  const categories = (group.extension ?? []).filter((extension) => extension.url === CATEGORY_EXTENSION);
  const category = categories[0]?.valueCode;
  if (categories.length > 1 || (categories.length === 1 && !category)) problems.push(`${where}: at most one professional-category extension, with a valueCode`);
  const payeeRule = extensionCode(group, PAYEE_RULE_EXTENSION);
  if (!PAYEE_RULES.includes(payeeRule as PayeeRule)) {
    problems.push(`${where}: payee-rule extension must be one of ${PAYEE_RULES.join(', ')} (found ${payeeRule ?? 'none'})`);
  }
  const base = (group.priceComponent ?? []).filter((component) => component.type === 'base');
  if (base.length !== 1 || (group.priceComponent ?? []).length !== 1) problems.push(`${where}: exactly one priceComponent, of type base`);
  const money = base[0]?.amount;
  if (money?.currency !== 'EUR') problems.push(`${where}: amount currency must be EUR (found ${money?.currency ?? 'none'})`);
  if (!isMoney(money?.value)) problems.push(`${where}: amount must be a non-negative number with at most 2 decimals (found ${String(money?.value)})`);
  if (problems.length > 0) return { problems };
  return {
    component: { ...(category !== undefined ? { category } : {}), payeeRule: payeeRule as PayeeRule, amount: formatMoney(money?.value as number) },
    problems,
  };
}

/**
 * What is wrong with one tariff version (empty: fine), for start-up checks of program data:
 * url, version, status, a dated `effectivePeriod` (end not before start), a forfait coding
 * (`expectedCode` when given), and `propertyGroup`s as the module comment describes, with
 * distinct categories, and a group without category only as the sole group.
 */
export function chargeItemDefinitionProblems(definition: fhir4.ChargeItemDefinition, expectedCode?: string): string[] {
  const name = `ChargeItemDefinition ${definition.id ?? definition.url ?? '(no url)'}`;
  const problems: string[] = [];
  if (!definition.url) problems.push(`${name}: url is required`);
  if (!definition.version) problems.push(`${name}: version is required (one resource per dated version)`);
  const start = dateSpanOf(definition.effectivePeriod?.start, 'UTC');
  const end = definition.effectivePeriod?.end === undefined ? undefined : dateSpanOf(definition.effectivePeriod.end, 'UTC');
  if (!start) problems.push(`${name}: effectivePeriod.start is required (a calendar date)`);
  if (definition.effectivePeriod?.end !== undefined && !end) problems.push(`${name}: effectivePeriod.end is not a date`);
  if (start && end && end.last < start.first) problems.push(`${name}: effectivePeriod ends before it starts`);
  const code = forfaitCodeOf(definition);
  if (!code) problems.push(`${name}: code must have a coding of ${FORFAIT_CODE_SYSTEM}`);
  else if (expectedCode !== undefined && code !== expectedCode) problems.push(`${name}: forfait code ${code}, expected ${expectedCode}`);
  const groups = definition.propertyGroup ?? [];
  if (groups.length === 0) problems.push(`${name}: at least one propertyGroup`);
  const seen = new Set<string | undefined>();
  groups.forEach((group, index) => {
    const read = readGroup(group, `${name} propertyGroup[${index}]`);
    problems.push(...read.problems);
    const category = read.component ? read.component.category : extensionCode(group, CATEGORY_EXTENSION);
    if (seen.has(category)) problems.push(`${name} propertyGroup[${index}]: category ${category ?? '(none)'} appears twice`);
    seen.add(category);
    const components = group.priceComponent ?? [];
    if (code && components.some((component) => !component.code?.coding?.some((c) => c.system === FORFAIT_CODE_SYSTEM && c.code === code))) {
      problems.push(`${name} propertyGroup[${index}]: priceComponent.code must be the forfait coding ${code}`);
    }
  });
  if (seen.has(undefined) && groups.length > 1) problems.push(`${name}: a group without category must be the only one`);
  return problems;
}

/**
 * What is wrong with the versions of one url taken together: each valid on its own, distinct
 * versions, one forfait code, and effective periods that do not overlap (only one version is
 * in force on any date; a version without end must be the latest).
 */
export function tariffVersionProblems(definitions: readonly fhir4.ChargeItemDefinition[]): string[] {
  const problems = definitions.flatMap((definition) => chargeItemDefinitionProblems(definition));
  if (problems.length > 0) return problems;
  const versions = new Set<string>();
  const codes = new Set(definitions.map(forfaitCodeOf));
  if (codes.size > 1) problems.push(`${definitions[0]?.url ?? ''}: versions with different forfait codes (${[...codes].join(', ')})`);
  for (const definition of definitions) {
    if (versions.has(definition.version as string)) problems.push(`${canonicalOf(definition)}: version appears twice`);
    versions.add(definition.version as string);
  }
  const dated = definitions
    .filter((definition) => IN_FORCE_STATUSES.has(definition.status))
    .map((definition) => ({
      canonical: canonicalOf(definition),
      start: (dateSpanOf(definition.effectivePeriod?.start, 'UTC') as { first: CalendarDate }).first,
      end: definition.effectivePeriod?.end === undefined ? undefined : dateSpanOf(definition.effectivePeriod.end, 'UTC')?.last,
    }))
    .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  for (let i = 1; i < dated.length; i += 1) {
    const previous = dated[i - 1] as (typeof dated)[number];
    const current = dated[i] as (typeof dated)[number];
    if (previous.end === undefined || previous.end >= current.start) {
      problems.push(`${previous.canonical} overlaps ${current.canonical}: give the older version an effectivePeriod.end before ${current.start}`);
    }
  }
  return problems;
}

/**
 * Every price component of a tariff version, in `propertyGroup` order.
 *
 * @throws RangeError when the version is malformed (`chargeItemDefinitionProblems`): program
 * data is checked at start-up, so this is a bug, not a user error.
 */
export function priceComponents(definition: fhir4.ChargeItemDefinition): PriceComponent[] {
  return (definition.propertyGroup ?? []).map((group, index) => {
    const read = readGroup(group, `ChargeItemDefinition ${canonicalOf(definition)} propertyGroup[${index}]`);
    if (!read.component) throw new RangeError(read.problems.join('; '));
    return read.component;
  });
}

/**
 * The amount and payee rule of `category` in a tariff version; `category` undefined asks for
 * the single amount (a group without category). Undefined when the forfait has no such part
 * (FEID has no podiatrist part).
 *
 * @throws RangeError when the version is malformed (see `priceComponents`).
 */
export function priceFor(definition: fhir4.ChargeItemDefinition, category: string | undefined): { amount: string; payeeRule: PayeeRule } | undefined {
  const component = priceComponents(definition).find((candidate) => candidate.category === category);
  return component && { amount: component.amount, payeeRule: component.payeeRule };
}

/**
 * The well-formed tariff of a forfait in force on `date`, or the `tariff-missing` issue that
 * stops it being claimed (none in force, or the one in force malformed).
 */
export function tariffInForce(
  forfait: { code: string; chargeItemDefinition: string },
  versions: readonly fhir4.ChargeItemDefinition[],
  date: CalendarDate,
  zone?: string,
): { tariff: fhir4.ChargeItemDefinition } | { issue: BillingIssue } {
  const tariff = tariffAt(versions, date, zone);
  const problems = tariff ? chargeItemDefinitionProblems(tariff) : [];
  if (tariff && problems.length === 0) return { tariff };
  return {
    issue: {
      rule: 'tariff-missing',
      code: 'not-found',
      diagnostics: tariff
        ? `The ${forfait.code} tariff in force on ${date} (${canonicalOf(tariff)}) is malformed: ${problems.join('; ')}.`
        : `No ${forfait.code} tariff (ChargeItemDefinition ${forfait.chargeItemDefinition}) is in force on ${date}.`,
      expression: `ChargeItemDefinition?url=${forfait.chargeItemDefinition}`,
    },
  };
}
