/**
 * Expenses (REDIAB Art. 14 "dépenses par nature"; FNMF forfaits claimed against the budget):
 * the forfait Claims (and REDIAB's per-member Invoices) the adapter generated, with exact sums
 * (decimal.js, src/domain/billing/). Pure.
 */
import { z } from 'zod';
import { CATEGORY_EXTENSION, FORFAIT_CODE_SYSTEM } from '../../../programs/billing-schema.js';
import { CARE_TEAM_ROLE_SYSTEM } from '../../../programs/enrolment-schema.js';
import { budgetReport } from '../../billing/budget.js';
import { Decimal } from '../../decimal.js';
import { firstDay, inPeriod, monthsOf } from '../records.js';
import { NO_CODE, type DataKey, type IndicatorKind } from '../types.js';
import { codeList, codedStrata, parseWith, population, ratio } from './shared.js';

const claimsSchema = z.strictObject({
  kind: z.literal('claims-by-forfait-and-category'),
  forfaits: codeList,
  categories: codeList,
  includeInvoices: z.boolean().default(false),
  stratifiers: z.array(z.enum(['forfait', 'category', 'month'])).default(['forfait', 'category']),
});

interface Line {
  forfait: string;
  category: string;
  /** `YYYY-MM` of the due day. */
  month: string;
  amount: Decimal;
}

/** An exact EUR amount of a FHIR Money (its JSON number read through its shortest string); 0 otherwise. */
function amountOf(money: fhir4.Money | undefined): Decimal {
  if (money?.value === undefined || (money.currency !== undefined && money.currency !== 'EUR')) return new Decimal(0);
  const value = new Decimal(String(money.value));
  return value.isFinite() ? value : new Decimal(0);
}

function categoryOf(extension: fhir4.Extension[] | undefined): string {
  return extension?.find((e) => e.url === CATEGORY_EXTENSION)?.valueCode ?? NO_CODE;
}

function forfaitOf(concept: fhir4.CodeableConcept | undefined): string {
  return concept?.coding?.find((coding) => coding.system === FORFAIT_CODE_SYSTEM && coding.code)?.code ?? NO_CODE;
}

const hasSystem = (identifiers: fhir4.Identifier[] | undefined, system: string): boolean => (identifiers ?? []).some((identifier) => identifier.system === system);

/** The program's active Claims (`<program url>/claim`) whose due day (`created`) passes `keep`. */
export function programClaims(claims: readonly fhir4.Claim[], programUrl: string, zone: string, keep: (day: string) => boolean): fhir4.Claim[] {
  return claims.filter((claim) => {
    const day = firstDay(claim.created, zone);
    return claim.status === 'active' && hasSystem(claim.identifier, `${programUrl}/claim`) && day !== undefined && keep(day);
  });
}

/**
 * Claims due in the period (status `active`, `created` in it) and, with `includeInvoices`, the
 * program's Invoices (`issued` or `balanced`, `date` in it): count and EUR total; by forfait
 * and by professional category, line by line (a line without category counts under `(none)`),
 * and optionally by month of the due day.
 */
export const claimsByForfaitAndCategory: IndicatorKind<z.infer<typeof claimsSchema>> = {
  parse: (parameters) => parseWith(claimsSchema, parameters),
  needs: (parameters) => (parameters.includeInvoices ? ['claims', 'invoices'] : ['claims']),
  evaluate(parameters, data, { program, period }) {
    const lines: Line[] = [];
    let documents = 0;
    let total = new Decimal(0);
    for (const claim of programClaims(data.claims, program.url, program.timeZone, (day) => inPeriod(day, period))) {
      documents += 1;
      const month = (firstDay(claim.created, program.timeZone) as string).slice(0, 7);
      for (const item of claim.item ?? []) {
        const amount = amountOf(item.net ?? item.unitPrice);
        lines.push({ forfait: forfaitOf(item.productOrService), category: categoryOf(item.extension), month, amount });
        total = total.plus(amount);
      }
    }
    if (parameters.includeInvoices) {
      for (const invoice of data.invoices) {
        if ((invoice.status !== 'issued' && invoice.status !== 'balanced') || !hasSystem(invoice.identifier, `${program.url}/invoice`)) continue;
        const day = firstDay(invoice.date, program.timeZone);
        if (!inPeriod(day, period)) continue;
        documents += 1;
        for (const item of invoice.lineItem ?? []) {
          const amount = (item.priceComponent ?? []).filter((component) => component.type === 'base').reduce((sum, component) => sum.plus(amountOf(component.amount)), new Decimal(0));
          lines.push({ forfait: forfaitOf(item.chargeItemCodeableConcept), category: categoryOf(item.extension), month: day.slice(0, 7), amount });
          total = total.plus(amount);
        }
      }
    }
    const sumsBy = (keyOf: (line: Line) => string): Map<string, { count: number; amount: Decimal }> => {
      const sums = new Map<string, { count: number; amount: Decimal }>();
      for (const line of lines) {
        const key = keyOf(line);
        const sum = sums.get(key) ?? { count: 0, amount: new Decimal(0) };
        sums.set(key, { count: sum.count + 1, amount: sum.amount.plus(line.amount) });
      }
      return sums;
    };
    const stratum = (sums: Map<string, { count: number; amount: Decimal }>, key: string) => ({
      populations: [population('initial-population', sums.get(key)?.count ?? 0)],
      score: { type: 'money' as const, value: sums.get(key)?.amount ?? new Decimal(0) },
    });
    const strata = (keyOf: (line: Line) => string, listed: readonly string[], system: string | undefined) => {
      const sums = sumsBy(keyOf);
      return codedStrata(system, listed, sums.keys(), (key) => stratum(sums, key));
    };
    return {
      populations: [population('initial-population', documents)],
      score: { type: 'money', value: total },
      stratifiers: parameters.stratifiers.map((code) => {
        if (code === 'forfait') return { code, strata: strata((line) => line.forfait, parameters.forfaits, FORFAIT_CODE_SYSTEM) };
        if (code === 'category') return { code, strata: strata((line) => line.category, parameters.categories, CARE_TEAM_ROLE_SYSTEM) };
        // Lines by month of their due day (every month of the period, zeros included): stratum initial-population = lines.
        const sums = sumsBy((line) => line.month);
        return { code, strata: monthsOf(period).map((month) => ({ key: month, ...stratum(sums, month) })) };
      }),
    };
  },
};

const budgetSchema = z.strictObject({
  kind: z.literal('budget'),
  figure: z.enum(['budget', 'claimed-to-date', 'accepted-to-date', 'paid-to-date', 'remaining', 'used-ratio']),
  budget: z.union([z.literal('program'), z.string().regex(/^\d+(\.\d{1,2})?$/, 'a decimal amount with at most 2 decimals')]).default('program'),
});

/**
 * One figure of the budget follow-up (initial-population: the active Claims due up to the
 * period's last day, from the start): the budget (billing.json or the Measure), what was claimed
 * (accepted, paid: the insurer's latest final answers, as `$budget`) from the start up to the
 * period's last day, what remains (budget − claimed, negative on an overrun), the share used.
 */
export const budget: IndicatorKind<z.infer<typeof budgetSchema>> = {
  parse: (parameters) => parseWith(budgetSchema, parameters),
  needs: (parameters) => {
    const keys: DataKey[] = ['claims'];
    if (parameters.figure === 'accepted-to-date' || parameters.figure === 'paid-to-date') keys.push('claimResponses');
    return keys;
  },
  evaluate(parameters, data, { program, period }) {
    const amount = parameters.budget === 'program' ? program.budget : parameters.budget;
    const claims = programClaims(data.claims, program.url, program.timeZone, (day) => day <= period.end);
    const report = budgetReport({ ...(amount !== undefined ? { budget: amount } : {}), claims, responses: data.claimResponses });
    const count = [population('initial-population', claims.length)];
    switch (parameters.figure) {
      case 'budget':
        return { populations: count, ...(amount !== undefined ? { score: { type: 'money', value: new Decimal(amount) } } : {}), stratifiers: [] };
      case 'claimed-to-date':
        return { populations: count, score: { type: 'money', value: new Decimal(report.claimed) }, stratifiers: [] };
      case 'accepted-to-date':
        return { populations: count, score: { type: 'money', value: new Decimal(report.accepted) }, stratifiers: [] };
      case 'paid-to-date':
        return { populations: count, score: { type: 'money', value: new Decimal(report.paid) }, stratifiers: [] };
      case 'remaining':
        return { populations: count, ...(report.remaining !== undefined ? { score: { type: 'money', value: new Decimal(report.remaining) } } : {}), stratifiers: [] };
      case 'used-ratio': {
        const score = amount === undefined ? undefined : ratio(new Decimal(report.claimed), new Decimal(amount));
        return { populations: count, ...(score ? { score } : {}), stratifiers: [] };
      }
    }
  },
};
