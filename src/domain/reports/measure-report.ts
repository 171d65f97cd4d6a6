/**
 * Evaluating a Measure into a `MeasureReport` (type `summary`, status `complete`): each group's
 * kind runs on the resources (scoped to one centre when asked), and its result is written in
 * the shape of notes/report-api.md section 4. Pure: `date` is passed in.
 */
import { UCUM_SYSTEM } from '../units.js';
import { Decimal } from '../decimal.js';
import { MONEY_PLACES } from '../billing/money.js';
import { kindOf } from './measure-definition.js';
import { RATE_PLACES, RATIO_PLACES } from './kinds/shared.js';
import { scopeToCentre } from './records.js';
import {
  MEASURE_GROUP_SYSTEM,
  MEASURE_POPULATION_SYSTEM,
  MEASURE_REPORT_PROFILE,
  MEASURE_STRATIFIER_SYSTEM,
  type CentreScope,
  type GroupResult,
  type KindContext,
  type MeasureDefinition,
  type PopulationResult,
  type ReportData,
  type Score,
} from './types.js';

export interface EvaluationInput {
  measure: MeasureDefinition;
  data: ReportData;
  context: KindContext;
  centre?: CentreScope;
  /** `MeasureReport.date` (FHIR dateTime): the caller's clock. */
  date: string;
}

/** Decimal places a score is written with. */
export function scorePlaces(score: Score): number {
  switch (score.type) {
    case 'money':
      return MONEY_PLACES;
    case 'ratio':
      return RATIO_PLACES;
    case 'rate':
      return RATE_PLACES;
    case 'quantity':
      return score.places;
  }
}

/** The score as a fixed-decimals string (half-up, away from zero): what CSV shows. */
export function formatScore(score: Score): string {
  return score.value.toFixed(scorePlaces(score), Decimal.ROUND_HALF_UP);
}

/** The unit text of a score: EUR, 1, or the UCUM unit. */
export function scoreUnit(score: Score): string {
  switch (score.type) {
    case 'money':
      return 'EUR';
    case 'ratio':
      return '1';
    case 'rate':
    case 'quantity':
      return score.unit;
  }
}

/**
 * `measureScore` as a Quantity. The value is the rounded decimal written as a JSON number: its
 * shortest string is that decimal (few digits), so it stays exact; CSV keeps the fixed places.
 */
export function scoreQuantity(score: Score): fhir4.Quantity {
  const value = Number(formatScore(score));
  if (score.type === 'money') return { value, unit: 'EUR', system: 'urn:iso:std:iso:4217', code: 'EUR' };
  const unit = scoreUnit(score);
  return { value, unit, system: UCUM_SYSTEM, code: unit };
}

const populationCode = (code: string): fhir4.CodeableConcept => ({ coding: [{ system: MEASURE_POPULATION_SYSTEM, code }] });

function populations(list: readonly PopulationResult[]): fhir4.MeasureReportGroupPopulation[] {
  return list.map((p) => ({ code: populationCode(p.code), count: p.count }));
}

function groupOf(id: string, result: GroupResult): fhir4.MeasureReportGroup {
  return {
    id,
    code: { coding: [{ system: MEASURE_GROUP_SYSTEM, code: id }], text: id },
    ...(result.populations.length ? { population: populations(result.populations) } : {}),
    ...(result.score ? { measureScore: scoreQuantity(result.score) } : {}),
    ...(result.stratifiers.length
      ? {
          stratifier: result.stratifiers.map((stratifier) => ({
            code: [{ coding: [{ system: MEASURE_STRATIFIER_SYSTEM, code: stratifier.code }], text: stratifier.code }],
            ...(stratifier.strata.length
              ? {
                  stratum: stratifier.strata.map((stratum) => ({
                    value: { ...(stratum.system ? { coding: [{ system: stratum.system, code: stratum.key }] } : {}), text: stratum.key },
                    ...(stratum.populations.length ? { population: populations(stratum.populations) } : {}),
                    ...(stratum.score ? { measureScore: scoreQuantity(stratum.score) } : {}),
                  })),
                }
              : {}),
          })),
        }
      : {}),
  };
}

/** The group results of a Measure (the data scoped to the centre first, when one is given). */
export function evaluateGroups(input: Omit<EvaluationInput, 'date'>): GroupResults {
  const data = input.centre ? scopeToCentre(input.data, input.centre) : input.data;
  return input.measure.groups.map((group) => ({ id: group.id, result: kindOf(group).evaluate(group.parameters, data, input.context) }));
}

export type GroupResults = { id: string; result: GroupResult }[];

/** The MeasureReport of one Measure over the period (and centre). */
export function evaluateMeasure(input: EvaluationInput): fhir4.MeasureReport {
  return measureReportOf(input, evaluateGroups(input));
}

/** The MeasureReport of group results already computed (`evaluateGroups`). */
export function measureReportOf(input: Omit<EvaluationInput, 'data'>, groups: GroupResults): fhir4.MeasureReport {
  const { measure, context, centre } = input;
  return {
    resourceType: 'MeasureReport',
    meta: { profile: [MEASURE_REPORT_PROFILE] },
    status: 'complete',
    type: 'summary',
    measure: measure.version ? `${measure.url}|${measure.version}` : measure.url,
    date: input.date,
    period: { start: context.period.start, end: context.period.end },
    ...(centre ? { reporter: { ...(centre.organization ? { reference: centre.organization } : {}), ...(centre.identifier ? { identifier: { ...centre.identifier } } : {}) } } : {}),
    group: groups.map(({ id, result }) => groupOf(id, result)),
  };
}
