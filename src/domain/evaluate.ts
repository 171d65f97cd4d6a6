/**
 * Eligibility of one patient for one program at `asOf`: each criterion of the program, in
 * program order, judged by the rule of its kind (`criteria/`). Pure: the record, the
 * directory and the date are arguments.
 *
 * Also the two questions the adapters ask of the same program data: which Observation
 * codes are worth fetching, and whether an incoming Observation has a unit a criterion
 * could not convert.
 */
import type { CriterionDefinition, LoadedProgram, ValueSetData } from '../programs/schema.js';
import { evaluateActiveCondition } from './criteria/active-condition.js';
import { evaluateActiveConsent } from './criteria/active-consent.js';
import { evaluateAge } from './criteria/age.js';
import { BMI_DIMENSIONS, evaluateBodyMassIndex } from './criteria/body-mass-index.js';
import { valueSetById, type EvaluationContext, type SharedProgramData } from './criteria/context.js';
import { evaluateCoveragePayorAccepted } from './criteria/coverage-payor-accepted.js';
import { evaluateGeneralPractitionerInCentre } from './criteria/general-practitioner-in-centre.js';
import { evaluateLatestObservationInRange } from './criteria/latest-observation-in-range.js';
import { evaluateNoActiveCondition } from './criteria/no-active-condition.js';
import { evaluateResidenceInArea } from './criteria/residence-in-area.js';
import { assertValidZone } from './dates.js';
import { versionedReference } from './references.js';
import type {
  CalendarDate,
  CentreDirectory,
  CriterionResult,
  DataIssue,
  EligibilityOutcome,
  EligibilityVerdict,
  PatientRecord,
} from './types.js';
import { convertQuantity } from './units.js';
import { enumeratedCodes, findCoding } from './value-sets.js';

export type { SharedProgramData } from './criteria/context.js';

const CALENDAR_DATE = /^\d{4}-\d{2}-\d{2}$/;

/**
 * @throws Error only for programming errors: an invalid `asOf` or time zone, a value set
 * or unit dimension the loader should have rejected.
 */
export function evaluateEligibility(
  program: LoadedProgram,
  shared: SharedProgramData,
  record: PatientRecord,
  directory: CentreDirectory,
  asOf: CalendarDate,
): EligibilityVerdict {
  if (!CALENDAR_DATE.test(asOf)) throw new Error(`asOf must be a calendar date YYYY-MM-DD, got "${asOf}"`);
  const { definition } = program;
  assertValidZone(definition.timeZone);
  const context: EvaluationContext = {
    program,
    shared,
    record,
    directory,
    asOf,
    zone: definition.timeZone,
    ignoredStatuses: ignoredStatusesOf(definition),
  };
  const criteria = definition.criteria.map((criterion) => evaluateCriterion(criterion, context));
  return { program: definition.id, asOf, outcome: outcomeOf(criteria), criteria };
}

/** Program definitions are read-only once loaded: their `ignoredStatuses` Set is built once. */
const ignoredStatusSets = new WeakMap<LoadedProgram['definition'], ReadonlySet<string>>();

function ignoredStatusesOf(definition: LoadedProgram['definition']): ReadonlySet<string> {
  let statuses = ignoredStatusSets.get(definition);
  if (statuses === undefined) {
    statuses = new Set(definition.ignoredStatuses);
    ignoredStatusSets.set(definition, statuses);
  }
  return statuses;
}

function evaluateCriterion(criterion: CriterionDefinition, context: EvaluationContext): CriterionResult {
  switch (criterion.kind) {
    case 'general-practitioner-in-centre':
      return evaluateGeneralPractitionerInCentre(criterion, context);
    case 'age':
      return evaluateAge(criterion, context);
    case 'latest-observation-in-range':
      return evaluateLatestObservationInRange(criterion, context);
    case 'body-mass-index':
      return evaluateBodyMassIndex(criterion, context);
    case 'no-active-condition':
      return evaluateNoActiveCondition(criterion, context);
    case 'active-condition':
      return evaluateActiveCondition(criterion, context);
    case 'coverage-payor-accepted':
      return evaluateCoveragePayorAccepted(criterion, context);
    case 'residence-in-area':
      return evaluateResidenceInArea(criterion, context);
    case 'active-consent':
      return evaluateActiveConsent(criterion, context);
    default: {
      const unhandled: never = criterion;
      throw new Error(`Unhandled criterion kind ${JSON.stringify(unhandled)}`);
    }
  }
}

/** Any not-met criterion: not eligible; else any unknown: undetermined; else eligible. */
export function outcomeOf(criteria: readonly CriterionResult[]): EligibilityOutcome {
  if (criteria.some((criterion) => criterion.status === 'not-met')) return 'not-eligible';
  if (criteria.some((criterion) => criterion.status === 'unknown')) return 'undetermined';
  return 'eligible';
}

/** A value set of Observation codes whose values some criterion converts to `dimension`. */
interface QuantityUse {
  valueSets: ValueSetData[];
  dimension: string;
}

/** The Observation value sets of a program's quantity criteria, with the dimension each converts to. */
function quantityUses(program: LoadedProgram, shared: SharedProgramData): QuantityUse[] {
  const byId = (ids: readonly string[]) => ids.map((id) => valueSetById(shared, id));
  return program.definition.criteria.flatMap((criterion): QuantityUse[] => {
    switch (criterion.kind) {
      case 'latest-observation-in-range':
        return [{ valueSets: byId([...criterion.valueSets, ...criterion.qualifiedValueSets]), dimension: criterion.dimension }];
      case 'body-mass-index':
        return [
          { valueSets: byId([criterion.bmiValueSet]), dimension: BMI_DIMENSIONS.bmi },
          { valueSets: byId([criterion.weightValueSet]), dimension: BMI_DIMENSIONS.weight },
          { valueSets: byId([criterion.heightValueSet]), dimension: BMI_DIMENSIONS.height },
        ];
      default:
        return [];
    }
  });
}

/**
 * Unit problems of an incoming Observation, for the ingestion layer to report at once: for
 * each quantity criterion whose value sets code it (and whose program does not ignore its
 * status), a `valueQuantity` with a value whose unit is unknown for that criterion's
 * dimension. One issue per dimension; none for an Observation no criterion uses.
 */
export function observationUnitIssues(
  observation: fhir4.Observation,
  programs: Iterable<LoadedProgram>,
  shared: SharedProgramData,
): DataIssue[] {
  const quantity = observation.valueQuantity;
  if (quantity?.value === undefined) return [];
  const issues = new Map<string, DataIssue>();
  for (const program of programs) {
    if (program.definition.ignoredStatuses.includes(observation.status)) continue;
    for (const use of quantityUses(program, shared)) {
      if (issues.has(use.dimension) || !findCoding(observation.code, use.valueSets)) continue;
      const conversion = convertQuantity(quantity, use.dimension, shared.units);
      if (!conversion.ok) {
        issues.set(use.dimension, observation.id === undefined ? conversion.issue : { ...conversion.issue, resource: versionedReference(observation) });
      }
    }
  }
  return [...issues.values()];
}

/**
 * The enumerated codes of every value set an Observation-based criterion of `programs`
 * uses (quantity criteria, including codes that need a qualifier), deduplicated, in program
 * order, so the FHIR adapter can search `Observation?subject=...&code=...` for just these.
 * `is-a` filters and whole-system includes cannot be enumerated: such a value set would need
 * a search without `code`.
 */
export function observationCodesOfInterest(
  programs: Iterable<LoadedProgram>,
  shared: SharedProgramData,
): { system: string; code: string }[] {
  const codes = new Map<string, { system: string; code: string }>();
  for (const program of programs) {
    for (const use of quantityUses(program, shared)) {
      for (const { system, code } of use.valueSets.flatMap(enumeratedCodes)) {
        codes.set(`${system}|${code}`, { system, code });
      }
    }
  }
  return [...codes.values()];
}
