/**
 * Outcomes (FNMF: change of weight, BMI and fasting glucose between inclusion and the end of
 * each phase; new diabetes diagnoses among enrolled patients, the program's purpose). Values
 * are converted to the dimension's canonical unit with the exact factors of units.json
 * (src/domain/units.ts); a value whose unit is unknown is skipped, never guessed. Pure.
 */
import { z } from 'zod';
import { PLAN_CODE_SYSTEM } from '../../../programs/enrolment-schema.js';
import type { ValueSetData } from '../../../programs/schema.js';
import { lookbackStart } from '../../dates.js';
import { Decimal } from '../../decimal.js';
import { referenceKey } from '../../references.js';
import type { CalendarDate } from '../../types.js';
import { convertQuantity } from '../../units.js';
import { findCoding } from '../../value-sets.js';
import { enrolledDuring, enrolmentsOf, firstDay, inPeriod, lastDay, planPeriodsOf } from '../records.js';
import type { IndicatorKind, KindContext, StratumResult } from '../types.js';
import { codedStrata, parseWith, population } from './shared.js';

const USABLE_OBSERVATION_STATUS = new Set(['final', 'amended', 'corrected']);

const changeSchema = z.strictObject({
  kind: z.literal('observation-change'),
  valueSets: z.array(z.string().min(1)).min(1),
  dimension: z.string().min(1),
  places: z.number().int().min(0).max(6),
  plans: z.array(z.string().min(1)).min(1),
  baselineLookbackMonths: z.number().int().positive().default(12),
});

interface Value {
  day: CalendarDate;
  instant: number;
  value: Decimal;
}

function valueSetsOf(ids: readonly string[], context: KindContext): ValueSetData[] {
  return ids.map((id) => {
    const valueSet = context.valueSets.get(id);
    if (!valueSet) throw new Error(`value set ${id} is not loaded`);
    return valueSet;
  });
}

/** Each patient's usable values (coded in the value sets, converted), sorted oldest first. */
function valuesByPatient(observations: readonly fhir4.Observation[], valueSets: ValueSetData[], dimension: string, context: KindContext): Map<string, Value[]> {
  const byPatient = new Map<string, Value[]>();
  for (const observation of observations) {
    if (!USABLE_OBSERVATION_STATUS.has(observation.status) || !observation.valueQuantity) continue;
    if (!findCoding(observation.code, valueSets)) continue;
    const patient = referenceKey(observation.subject);
    const effective = observation.effectiveDateTime ?? observation.effectivePeriod?.end ?? observation.effectivePeriod?.start ?? observation.effectiveInstant ?? observation.issued;
    const day = firstDay(effective, context.program.timeZone);
    // A partial date (a month, a year) is not a day: never a baseline nor an end-of-phase value.
    if (!patient || !day || day !== lastDay(effective, context.program.timeZone)) continue;
    const converted = convertQuantity(observation.valueQuantity, dimension, context.units);
    if (!converted.ok) continue;
    const parsed = Date.parse(effective ?? '');
    const list = byPatient.get(patient) ?? [];
    list.push({ day, instant: Number.isNaN(parsed) ? 0 : parsed, value: converted.value });
    byPatient.set(patient, list);
  }
  for (const list of byPatient.values()) list.sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : a.instant - b.instant));
  return byPatient;
}

function latest(values: readonly Value[], keep: (value: Value) => boolean): Value | undefined {
  for (let index = values.length - 1; index >= 0; index--) {
    const value = values[index] as Value;
    if (keep(value)) return value;
  }
  return undefined;
}

/**
 * For each enrolment and phase P whose plan period ended in the period while the patient was
 * still enrolled: baseline = the latest value on or before the enrolment start (within
 * `baselineLookbackMonths`); end of phase = the latest value within the plan period. Per phase:
 * initial-population = such phases (patients), measure-population = those with both values,
 * score = mean of (end − baseline), rounded half-up to `places`, in the canonical unit.
 */
export const observationChange: IndicatorKind<z.infer<typeof changeSchema>> = {
  parse: (parameters) => parseWith(changeSchema, parameters),
  needs: () => ['episodes', 'carePlans', 'observations'],
  valueSets: (parameters) => parameters.valueSets,
  evaluate(parameters, data, context) {
    const { program, period } = context;
    const dimension = context.units.dimensions[parameters.dimension];
    if (!dimension) throw new Error(`unit dimension ${parameters.dimension} is not in units.json`);
    const values = valuesByPatient(data.observations, valueSetsOf(parameters.valueSets, context), parameters.dimension, context);
    const enrolments = new Map(enrolmentsOf(data.episodes, program).map((e) => [e.reference, e]));
    const perPlan = new Map<string, { patients: number; changes: Decimal[] }>();
    const windows = new Map<string, CalendarDate>();
    const patients = new Set<string>();
    const measured = new Set<string>();
    for (const p of planPeriodsOf(data.carePlans, program.timeZone)) {
      const enrolment = enrolments.get(p.episode);
      if (!enrolment || !parameters.plans.includes(p.plan) || !inPeriod(p.end, period)) continue;
      if (enrolment.end !== undefined && enrolment.end < p.end) continue;
      const entry = perPlan.get(p.plan) ?? { patients: 0, changes: [] };
      entry.patients += 1;
      patients.add(enrolment.patient);
      const own = values.get(enrolment.patient) ?? [];
      const from = windows.get(enrolment.start) ?? lookbackStart(enrolment.start, parameters.baselineLookbackMonths);
      windows.set(enrolment.start, from);
      const baseline = latest(own, (v) => v.day >= from && v.day <= enrolment.start);
      const end = latest(own, (v) => v.day >= p.start && v.day <= p.end);
      if (baseline && end) {
        entry.changes.push(end.value.minus(baseline.value));
        measured.add(enrolment.patient);
      }
      perPlan.set(p.plan, entry);
    }
    return {
      populations: [population('initial-population', patients.size), population('measure-population', measured.size)],
      stratifiers: [
        {
          code: 'phase',
          strata: codedStrata(PLAN_CODE_SYSTEM, parameters.plans, perPlan.keys(), (key): Omit<StratumResult, 'key' | 'system'> => {
            const entry = perPlan.get(key) ?? { patients: 0, changes: [] };
            const mean = entry.changes.length ? entry.changes.reduce((sum, change) => sum.plus(change), new Decimal(0)).dividedBy(entry.changes.length) : undefined;
            return {
              populations: [population('initial-population', entry.patients), population('measure-population', entry.changes.length)],
              ...(mean ? { score: { type: 'quantity', value: mean, unit: dimension.canonical, places: parameters.places } } : {}),
            };
          }),
        },
      ],
    };
  },
};

const diagnosesSchema = z.strictObject({ kind: z.literal('new-diagnoses'), valueSets: z.array(z.string().min(1)).min(1) });

/** Onset day of a Condition: `onsetDateTime`, else `onsetPeriod.start`, else `recordedDate`. */
function onsetDay(condition: fhir4.Condition, zone: string): CalendarDate | undefined {
  return firstDay(condition.onsetDateTime ?? condition.onsetPeriod?.start ?? condition.recordedDate, zone);
}

/**
 * Patients enrolled at some time in the period (denominator) with a Condition of the value
 * sets (not refuted nor entered-in-error) whose onset day is in the period and within one of
 * their enrolments (on or after its start, not after its exit day): numerator, once per patient.
 */
export const newDiagnoses: IndicatorKind<z.infer<typeof diagnosesSchema>> = {
  parse: (parameters) => parseWith(diagnosesSchema, parameters),
  needs: () => ['episodes', 'conditions'],
  valueSets: (parameters) => parameters.valueSets,
  evaluate(parameters, data, context) {
    const { program, period } = context;
    const valueSets = valueSetsOf(parameters.valueSets, context);
    const enrolments = enrolmentsOf(data.episodes, program).filter((e) => enrolledDuring(e, period));
    const denominator = new Set(enrolments.map((e) => e.patient));
    const numerator = new Set<string>();
    for (const condition of data.conditions) {
      const verification = condition.verificationStatus?.coding?.map((coding) => coding.code) ?? [];
      if (verification.includes('refuted') || verification.includes('entered-in-error')) continue;
      if (!findCoding(condition.code, valueSets)) continue;
      const patient = referenceKey(condition.subject);
      const day = onsetDay(condition, program.timeZone);
      if (!patient || !denominator.has(patient) || !inPeriod(day, period)) continue;
      if (enrolments.some((e) => e.patient === patient && e.start <= day && (e.end === undefined || day <= e.end))) numerator.add(patient);
    }
    const score = denominator.size ? { type: 'ratio' as const, value: new Decimal(numerator.size).dividedBy(denominator.size) } : undefined;
    return { populations: [population('numerator', numerator.size), population('denominator', denominator.size)], ...(score ? { score } : {}), stratifiers: [] };
  },
};
