/**
 * `body-mass-index` (DOMAIN.md 1, criterion 4 and Decision on BMI): the latest BMI
 * Observation within the look-back window, or a BMI computed as weight / height² from the
 * latest body weight within the window and the latest body height (within
 * `heightLookbackMonths`, or of any date: adults' height does not change). A weight more
 * recent than the latest BMI Observation is preferred, so a new weighing is never hidden by
 * an older BMI. The comparison is exact unless the criterion gives a `precision`.
 */
import type { UnitsData, ValueSetData } from '../../programs/schema.js';
import { describeRange, formatDecimal, positionInRange, roundHalfUp, type Decimal, type RangePosition } from '../decimal.js';
import { judgeQuotient } from '../scaled-quotient.js';
import { isWithinLookback } from '../dates.js';
import type { CriterionResult, DataIssue, MissingData } from '../types.js';
import { convertQuantity, resolveUnitCode } from '../units.js';
import { enumeratedCodes } from '../value-sets.js';
import { valueSetById, type CriterionEvaluator, type CriterionOf, type EvaluationContext, type SharedProgramData } from './context.js';
import { describeQuantity, describeSpan, JudgementMemo, latestOf, quantityId, quantityPairId, quantityObservationsIn, type DatedObservation } from './observations.js';

/** The units.json dimensions of the three measures (the schema gives this kind no `dimension`). */
export const BMI_DIMENSIONS = { bmi: 'body-mass-index', weight: 'mass', height: 'length' } as const;

/** Decimals shown for a computed BMI when the criterion has no `precision` (display only: the comparison stays exact). */
const COMPUTED_DISPLAY_DECIMALS = 4;

const LABEL = 'body-mass index';

type Criterion = CriterionOf<'body-mass-index'>;

export const evaluateBodyMassIndex: CriterionEvaluator<'body-mass-index'> = (criterion, context) => {
  const { shared } = context;
  const months = criterion.lookbackMonths;
  const bmi = latestOf(measures(context, criterion.bmiValueSet, months));
  const weight = latestOf(measures(context, criterion.weightValueSet, months));
  const height = latestOf(measures(context, criterion.heightValueSet, criterion.heightLookbackMonths));

  if (weight && height && (!bmi || weight.date.latestInstant > bmi.date.latestInstant)) {
    return judgeComputed(criterion, shared.units, weight, height);
  }
  if (bmi) return judgeObserved(criterion, shared.units, bmi);

  const heightWindow =
    criterion.heightLookbackMonths === undefined ? '' : ` within the last ${criterion.heightLookbackMonths} months`;
  const codes = (valueSetId: string): ReturnType<typeof enumeratedCodes> => enumeratedCodes(valueSetById(shared, valueSetId));
  const missing: MissingData[] = [
    { type: 'Observation', codes: codes(criterion.bmiValueSet), description: `${LABEL} within the last ${months} months` },
  ];
  if (!weight) {
    missing.push({
      type: 'Observation',
      codes: codes(criterion.weightValueSet),
      description: `body weight within the last ${months} months, with a body height, to compute the ${LABEL}`,
    });
  }
  if (!height) {
    missing.push({ type: 'Observation', codes: codes(criterion.heightValueSet), description: `body height${heightWindow}` });
  }
  return {
    code: criterion.code,
    status: 'unknown',
    reason: weight
      ? `No ${LABEL} within the last ${months} months, and no body height${heightWindow} to compute it from the body weight of ${describeSpan(weight.date)}.`
      : `No ${LABEL} nor body weight within the last ${months} months.`,
    evidence: weight ? [weight.reference] : [],
    missing,
  };
};

/** The value set's judgeable measures within the look-back window (`lookback` undefined: any date up to asOf). */
function measures(context: EvaluationContext, valueSetId: string, lookback: number | undefined): DatedObservation[] {
  const found = quantityObservationsIn(context, valueSetList(context.shared, valueSetId));
  const inWindow: DatedObservation[] = [];
  for (const candidate of found) if (isWithinLookback(candidate.date, context.asOf, lookback)) inWindow.push(candidate);
  return inWindow;
}

/** `[valueSetById(shared, id)]`, looked up once per shared program data (read-only once loaded). */
const valueSetLists = new WeakMap<SharedProgramData, Map<string, readonly ValueSetData[]>>();

function valueSetList(shared: SharedProgramData, valueSetId: string): readonly ValueSetData[] {
  let lists = valueSetLists.get(shared);
  if (lists === undefined) {
    lists = new Map();
    valueSetLists.set(shared, lists);
  }
  let list = lists.get(valueSetId);
  if (list === undefined) {
    list = [valueSetById(shared, valueSetId)];
    lists.set(valueSetId, list);
  }
  return list;
}

/** Judgements of an observed BMI, and of a weight and height, per criterion: the same for every patient with those values. */
const judgedValues = new JudgementMemo<Judged>();
const computedValues = new JudgementMemo<Judged>();

function judgeObserved(criterion: Criterion, units: UnitsData, bmi: DatedObservation): CriterionResult {
  const conversion = convertQuantity(bmi.quantity, BMI_DIMENSIONS.bmi, units);
  if (!conversion.ok) {
    return cannotJudge(criterion, `the latest ${LABEL} (${describeSpan(bmi.date)})`, [bmi.reference], [
      { ...conversion.issue, resource: bmi.reference },
    ]);
  }
  const judged = judgedValues.get(criterion, units, quantityId(bmi.quantity), () =>
    judge(criterion, conversion.value, conversion.canonical, false),
  );
  return result(criterion, judged, [bmi.reference], `Latest ${LABEL} (${describeSpan(bmi.date)}): ${judged.shown} ${judged.unit}`);
}

function judgeComputed(
  criterion: Criterion,
  units: UnitsData,
  weight: DatedObservation,
  height: DatedObservation,
): CriterionResult {
  const evidence = [weight.reference, height.reference];
  const mass = convertQuantity(weight.quantity, BMI_DIMENSIONS.weight, units);
  const length = convertQuantity(height.quantity, BMI_DIMENSIONS.height, units);
  const issues: DataIssue[] = [
    ...(mass.ok ? [] : [{ ...mass.issue, resource: weight.reference }]),
    ...(length.ok ? [] : [{ ...length.issue, resource: height.reference }]),
  ];
  if (!mass.ok || !length.ok) {
    return cannotJudge(criterion, `the ${LABEL} computed from the latest body weight and height`, evidence, issues);
  }
  if (mass.value.lte(0) || length.value.lte(0)) {
    return cannotJudge(criterion, `the ${LABEL} computed from the latest body weight and height`, evidence, [
      {
        severity: 'error',
        code: 'value',
        diagnostics: 'A body weight or height that is not positive cannot give a body-mass index',
        resource: mass.value.lte(0) ? weight.reference : height.reference,
        expression: 'Observation.valueQuantity.value',
      },
    ]);
  }
  // kg / m² in the BMI dimension's canonical unit: the ratio's own unit must be one it knows.
  const ratioUnit = `${mass.canonical}/${length.canonical}2`;
  const bmiDimension = units.dimensions[BMI_DIMENSIONS.bmi];
  const ratioCode = resolveUnitCode(ratioUnit, BMI_DIMENSIONS.bmi, units);
  const factor = ratioCode === undefined ? undefined : bmiDimension?.factors[ratioCode];
  if (!bmiDimension || factor === undefined) {
    throw new Error(`units.json: dimension "${BMI_DIMENSIONS.bmi}" must accept "${ratioUnit}"`);
  }
  const key = quantityPairId(quantityId(weight.quantity), quantityId(height.quantity));
  const judged = computedValues.get(criterion, units, key, () => judgeComputedValue(criterion, mass.value, length.value, factor, bmiDimension.canonical));
  return result(
    criterion,
    judged,
    evidence,
    `${capitalize(LABEL)} ${judged.shown} ${judged.unit} computed from the body weight of ${describeSpan(weight.date)} ` +
      `(${describeQuantity(weight.quantity)}) and the body height of ${describeSpan(height.date)} (${describeQuantity(height.quantity)})`,
  );
}

/**
 * `judge` of the BMI `mass / length² × factor`: with scaled integers when the factor is 1 and
 * the numbers are small decimals (src/domain/scaled-quotient.ts: the same answer as decimal.js,
 * proved and tested), else with decimal.js.
 */
function judgeComputedValue(criterion: Criterion, mass: Decimal, length: Decimal, factor: string, unit: string): Judged {
  const exact = factor === '1' ? judgeQuotient(mass, length, criterion.precision, COMPUTED_DISPLAY_DECIMALS, criterion.low, criterion.high) : undefined;
  if (exact === undefined) return judge(criterion, mass.dividedBy(length.pow(2)).times(factor), unit, true);
  return { status: exact.position === 'within' ? 'met' : 'not-met', shown: exact.shown, unit, tail: tailOf(criterion, exact.position, unit) };
}

/** A value judged against the criterion's range: what the reason and the result take of it. */
interface Judged {
  status: 'met' | 'not-met';
  shown: string;
  unit: string;
  /** `, {position} the required range {range}.` */
  tail: string;
}

function judge(criterion: Criterion, exact: Decimal, unit: string, computed: boolean): Judged {
  const rounded = roundHalfUp(exact, criterion.precision);
  const shown =
    criterion.precision !== undefined
      ? formatDecimal(rounded, criterion.precision)
      : formatDecimal(computed ? roundHalfUp(exact, COMPUTED_DISPLAY_DECIMALS) : exact);
  const position = positionInRange(rounded, criterion.low, criterion.high);
  return { status: position === 'within' ? 'met' : 'not-met', shown, unit, tail: tailOf(criterion, position, unit) };
}

/** `, {position} the required range {range}.` */
function tailOf(criterion: Criterion, position: RangePosition, unit: string): string {
  return `, ${position} the required range ${describeRange(criterion.low, criterion.high, unit)}.`;
}

function result(criterion: Criterion, judged: Judged, evidence: string[], described: string): CriterionResult {
  return {
    code: criterion.code,
    status: judged.status,
    value: { type: 'Quantity', value: judged.shown, unit: judged.unit, code: judged.unit },
    reason: `${described}${judged.tail}`,
    evidence,
  };
}

function cannotJudge(criterion: Criterion, what: string, evidence: string[], issues: DataIssue[]): CriterionResult {
  return {
    code: criterion.code,
    status: 'unknown',
    reason: `${capitalize(what)} cannot be judged: ${issues.map((issue) => issue.diagnostics).join('; ')}.`,
    evidence,
    issues,
  };
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
