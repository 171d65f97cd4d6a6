/**
 * `latest-observation-in-range`: the most recent qualifying value within a look-back window,
 * converted to the dimension's canonical unit, rounded half-up to the criterion's precision,
 * then compared with its bounds (DOMAIN.md 1, criterion 3 and its Decisions).
 *
 * Which values qualify (DOMAIN.md 1, Decision on fasting): a code in `valueSets` always
 * (a fasting-glucose code, or a lab's local code the site declared fasting); a code in
 * `qualifiedValueSets` only when the Observation itself (method, an extension's
 * valueCodeableConcept, a component's code or value) or its Specimen
 * (`collection.fastingStatusCodeableConcept`) carries a coding of `qualifierValueSet`.
 * A value without that evidence never proves the criterion.
 */
import type { ValueSetData } from '../../programs/schema.js';
import { describeRange, formatDecimal, positionInRange, roundHalfUp, toDecimal, type Decimal } from '../decimal.js';
import { isWithinLookback, lookbackStart } from '../dates.js';
import { referenceKey, versionedReference } from '../references.js';
import type { CriterionResult } from '../types.js';
import { convertQuantity } from '../units.js';
import { enumeratedCodes, findCoding } from '../value-sets.js';
import { valueSetById, type CriterionEvaluator, type CriterionOf, type EvaluationContext, type SharedProgramData } from './context.js';
import { describeQuantity, describeSpan, JudgementMemo, latestOf, quantityId, quantityObservationsIn, type DatedObservation } from './observations.js';

interface Candidate extends DatedObservation {
  /** Undefined: not qualifying; otherwise the extra evidence (e.g. the Specimen) that made it qualify. */
  qualifiedBy: string[] | undefined;
}
type Qualifying = Candidate & { qualifiedBy: string[] };
const isQualifying = (candidate: Candidate): candidate is Qualifying => candidate.qualifiedBy !== undefined;

export const evaluateLatestObservationInRange: CriterionEvaluator<'latest-observation-in-range'> = (
  criterion,
  context,
) => {
  const { asOf } = context;
  const { direct, all, qualifier } = valueSetsOf(criterion, context.shared);

  const candidates: Candidate[] = [];
  for (const found of quantityObservationsIn(context, all)) {
    if (found.date.last > asOf) continue;
    // `found` is a new object of this call: completed in place rather than copied.
    const candidate = found as Candidate;
    candidate.qualifiedBy = findCoding(candidate.observation.code, direct) ? [] : qualifierEvidence(candidate.observation, qualifier, context);
    candidates.push(candidate);
  }
  const inWindow = candidates.filter((candidate) => isWithinLookback(candidate.date, asOf, criterion.lookbackMonths));
  const latest = latestOf(inWindow.filter(isQualifying));
  if (latest) return judge(criterion, context, latest);

  const base = {
    code: criterion.code,
    status: 'unknown' as const,
    missing: [
      {
        type: 'Observation',
        codes: direct.flatMap(enumeratedCodes),
        description: `${criterion.label} within the last ${criterion.lookbackMonths} months`,
      },
    ],
  };
  const window = `within the last ${criterion.lookbackMonths} months (since ${lookbackStart(asOf, criterion.lookbackMonths)})`;
  const unqualified = inWindow.filter((candidate) => !isQualifying(candidate));
  if (unqualified.length > 0) {
    return {
      ...base,
      reason:
        `No ${criterion.label} ${window}: the ${count(unqualified.length, 'value')} found in that period ` +
        `${unqualified.length === 1 ? 'is' : 'are'} not recorded as fasting and cannot prove the criterion.`,
      evidence: unqualified.map((candidate) => candidate.reference),
    };
  }
  const older = latestOf(candidates.filter(isQualifying));
  return {
    ...base,
    reason: older
      ? `No ${criterion.label} ${window}; the latest one, of ${describeSpan(older.date)}, is too old to count.`
      : `No ${criterion.label} ${window}.`,
    evidence: [],
  };
};

interface CriterionValueSets {
  shared: SharedProgramData;
  direct: ValueSetData[];
  /** `direct` then the qualified value sets. */
  all: ValueSetData[];
  qualifier: ValueSetData | undefined;
}

/** Program data is read-only once loaded: each criterion's value sets are looked up once (per shared data). */
const criterionValueSets = new WeakMap<CriterionOf<'latest-observation-in-range'>, CriterionValueSets>();

function valueSetsOf(criterion: CriterionOf<'latest-observation-in-range'>, shared: SharedProgramData): CriterionValueSets {
  const known = criterionValueSets.get(criterion);
  if (known !== undefined && known.shared === shared) return known;
  const direct = criterion.valueSets.map((id) => valueSetById(shared, id));
  const qualified = criterion.qualifiedValueSets.map((id) => valueSetById(shared, id));
  const qualifier = criterion.qualifierValueSet === undefined ? undefined : valueSetById(shared, criterion.qualifierValueSet);
  const sets = { shared, direct, all: [...direct, ...qualified], qualifier };
  criterionValueSets.set(criterion, sets);
  return sets;
}

function judge(
  criterion: CriterionOf<'latest-observation-in-range'>,
  context: EvaluationContext,
  latest: Qualifying,
): CriterionResult {
  const evidence = [latest.reference, ...latest.qualifiedBy];
  const when = describeSpan(latest.date);
  const conversion = convertQuantity(latest.quantity, criterion.dimension, context.shared.units);
  if (!conversion.ok) {
    // The latest value decides: an older value is never judged in its place.
    return {
      code: criterion.code,
      status: 'unknown',
      reason: `The latest ${criterion.label} (${when}) cannot be judged: ${conversion.issue.diagnostics}.`,
      evidence,
      issues: [{ ...conversion.issue, resource: latest.reference }],
    };
  }
  const { shown, canonical, judged, flag } = judgedQuantities.get(criterion, context.shared.units, quantityId(latest.quantity), () =>
    judgeQuantity(criterion, latest.quantity, conversion),
  );
  const result: CriterionResult = {
    code: criterion.code,
    status: judged.status,
    value: { type: 'Quantity', value: shown, unit: canonical, code: canonical },
    reason: `Latest ${criterion.label} (${when}): ${judged.text}`,
    evidence,
  };
  return flag === undefined ? result : { ...result, flags: [flag] };
}

/** What a criterion makes of a converted value: the same for every patient with that quantity. */
interface JudgedQuantity {
  shown: string;
  canonical: string;
  /** Status, and the reason after the date: `{as given} {position} the required range {range}[ (flags)].` */
  judged: { status: 'met' | 'not-met'; text: string };
  /** The criterion's above-range flag, when the value is above. */
  flag: string | undefined;
}

const judgedQuantities = new JudgementMemo<JudgedQuantity>();

function judgeQuantity(
  criterion: CriterionOf<'latest-observation-in-range'>,
  quantity: fhir4.Quantity & { value: number },
  conversion: { value: Decimal; canonical: string; fromCode: string },
): JudgedQuantity {
  const rounded = roundHalfUp(conversion.value, criterion.precision);
  const shown = formatDecimal(rounded, criterion.precision);
  const asGiven =
    conversion.fromCode === conversion.canonical && toDecimal(quantity.value).equals(rounded)
      ? `${shown} ${conversion.canonical}`
      : `${describeQuantity(quantity)}, i.e. ${shown} ${conversion.canonical},`;
  const position = positionInRange(rounded, criterion.low, criterion.high);
  const range = describeRange(criterion.low, criterion.high, conversion.canonical);
  const flags = position === 'above' && criterion.aboveRangeFlag !== undefined ? [criterion.aboveRangeFlag] : [];
  return {
    shown,
    canonical: conversion.canonical,
    judged: {
      status: position === 'within' ? 'met' : 'not-met',
      text: `${asGiven} ${position} the required range ${range}${flags.length > 0 ? ` (${flags.join('; ')})` : ''}.`,
    },
    flag: flags[0],
  };
}

/**
 * The references that show a `qualifiedValueSets` value was taken fasting: `[]` when the
 * Observation itself says so, `[Specimen ref]` when its Specimen does; undefined when
 * nothing does (or the criterion has no `qualifierValueSet`).
 */
function qualifierEvidence(
  observation: fhir4.Observation,
  qualifier: ValueSetData | undefined,
  context: EvaluationContext,
): string[] | undefined {
  if (!qualifier) return undefined;
  const onObservation = [
    observation.method,
    ...(observation.extension ?? []).map((extension) => extension.valueCodeableConcept),
    ...(observation.component ?? []).flatMap((component) => [component.code, component.valueCodeableConcept]),
  ];
  if (onObservation.some((concept) => findCoding(concept, [qualifier]))) return [];
  const specimen = specimenOf(observation, context);
  if (specimen && findCoding(specimen.collection?.fastingStatusCodeableConcept, [qualifier])) {
    // A contained Specimen is part of the Observation's own version.
    return observation.specimen?.reference?.startsWith('#') ? [] : [versionedReference(specimen)];
  }
  return undefined;
}

/** The Observation's Specimen: contained (`#id`) or among the record's specimens. */
function specimenOf(observation: fhir4.Observation, context: EvaluationContext): fhir4.Specimen | undefined {
  const reference = observation.specimen?.reference;
  if (reference === undefined) return undefined;
  if (reference.startsWith('#')) {
    return observation.contained?.find(
      (resource): resource is fhir4.Specimen => resource.resourceType === 'Specimen' && resource.id === reference.slice(1),
    );
  }
  const key = referenceKey(reference);
  return context.record.specimens.find((specimen) => `Specimen/${specimen.id}` === key);
}

function count(n: number, noun: string): string {
  return n === 1 ? `1 ${noun}` : `${n} ${noun}s`;
}
