/**
 * Indicator kinds about enrolments (notes/report-api.md sections 5-6): admissions, the active
 * file against capacity, exits and refusals by reason, patients per phase, phase completion,
 * professionals engaged, and screening verdicts. Pure.
 */
import { z } from 'zod';
import { CARE_TEAM_ROLE_SYSTEM, DECLINE_REASON_SYSTEM, EXIT_REASON_SYSTEM, PLAN_CODE_SYSTEM } from '../../../programs/enrolment-schema.js';
import { ELIGIBILITY_OUTCOME_SYSTEM } from '../../verdict-fhir.js';
import { referenceKey } from '../../references.js';
import { activeOn, codesOf, enrolledDuring, enrolmentsOf, exitReasonOf, firstDay, inPeriod, monthsOf, planPeriodsOf } from '../records.js';
import { NO_CODE, type GroupResult, type IndicatorKind } from '../types.js';
import { codeList, codedStrata, countBy, parseWith, population, ratio } from './shared.js';

const countEpisodesSchema = z
  .strictObject({
    kind: z.literal('count-episodes'),
    which: z.enum(['admitted', 'active-at-end', 'enrolled-during']),
    stratifiers: z.array(z.literal('month')).default([]),
  })
  .refine((p) => p.stratifiers.length === 0 || p.which === 'admitted', { message: 'the month stratifier applies to admitted enrolments only', path: ['stratifiers'] });

/** Enrolments admitted in the period (start day in it), active on its last day, or enrolled at some time during it. */
export const countEpisodes: IndicatorKind<z.infer<typeof countEpisodesSchema>> = {
  parse: (parameters) => parseWith(countEpisodesSchema, parameters),
  needs: () => ['episodes'],
  evaluate(parameters, data, { program, period }) {
    const enrolments = enrolmentsOf(data.episodes, program);
    const counted = enrolments.filter((e) =>
      parameters.which === 'admitted' ? inPeriod(e.start, period) : parameters.which === 'active-at-end' ? activeOn(e, period.end) : enrolledDuring(e, period),
    );
    const result: GroupResult = { populations: [population('initial-population', counted.length)], stratifiers: [] };
    if (parameters.stratifiers.includes('month')) {
      const byMonth = countBy(counted, (e) => [e.start.slice(0, 7)]);
      result.stratifiers.push({ code: 'month', strata: monthsOf(period).map((month) => ({ key: month, populations: [population('initial-population', byMonth.get(month) ?? 0)] })) });
    }
    return result;
  },
};

const capacitySchema = z.strictObject({
  kind: z.literal('active-file-vs-capacity'),
  capacity: z.union([z.literal('program'), z.number().int().positive()]).default('program'),
});

/** Enrolments active on the period's last day against the active-file capacity (enrolment.json or the Measure). */
export const activeFileVsCapacity: IndicatorKind<z.infer<typeof capacitySchema>> = {
  parse: (parameters) => parseWith(capacitySchema, parameters),
  needs: () => ['episodes'],
  evaluate(parameters, data, { program, period }) {
    const active = enrolmentsOf(data.episodes, program).filter((e) => activeOn(e, period.end)).length;
    const capacity = parameters.capacity === 'program' ? program.capacity : parameters.capacity;
    const score = capacity === undefined ? undefined : ratio(active, capacity);
    return {
      populations: [population('numerator', active), ...(capacity !== undefined ? [population('denominator', capacity)] : [])],
      ...(score ? { score } : {}),
      stratifiers: [],
    };
  },
};

const reasonSchema = (kind: string, system: string) =>
  z.strictObject({ kind: z.literal(kind), system: z.string().min(1).default(system), codes: codeList });

const exitsSchema = reasonSchema('exits-by-reason', EXIT_REASON_SYSTEM);

/** Enrolments ended (`finished`) with an exit day in the period, by exit reason. */
export const exitsByReason: IndicatorKind<z.infer<typeof exitsSchema>> = {
  parse: (parameters) => parseWith(exitsSchema, parameters),
  needs: () => ['episodes'],
  evaluate(parameters, data, { program, period }) {
    const exits = enrolmentsOf(data.episodes, program).filter((e) => e.episode.status === 'finished' && inPeriod(e.end, period));
    const byReason = countBy(exits, (e) => [exitReasonOf(e.episode, parameters.system) ?? NO_CODE]);
    return {
      populations: [population('initial-population', exits.length)],
      stratifiers: [{ code: 'reason', strata: codedStrata(parameters.system, parameters.codes, byReason.keys(), (key) => ({ populations: [population('initial-population', byReason.get(key) ?? 0)] })) }],
    };
  },
};

const declinesSchema = reasonSchema('declines-by-reason', DECLINE_REASON_SYSTEM);

/** Refused admissions: the program's enrolment proposals `rejected` (`$decline`), dated by `lastModified`, by reason. */
export const declinesByReason: IndicatorKind<z.infer<typeof declinesSchema>> = {
  parse: (parameters) => parseWith(declinesSchema, parameters),
  needs: () => ['tasks'],
  evaluate(parameters, data, { program, period }) {
    const system = `${program.url}/enrolment-proposal`;
    const declines = data.tasks.filter(
      (task) => task.status === 'rejected' && (task.identifier ?? []).some((identifier) => identifier.system === system) && inPeriod(firstDay(task.lastModified ?? task.authoredOn, program.timeZone), period),
    );
    const byReason = countBy(declines, (task) => [codesOf(task.statusReason ? [task.statusReason] : [], parameters.system)[0] ?? NO_CODE]);
    return {
      populations: [population('initial-population', declines.length)],
      stratifiers: [{ code: 'reason', strata: codedStrata(parameters.system, parameters.codes, byReason.keys(), (key) => ({ populations: [population('initial-population', byReason.get(key) ?? 0)] })) }],
    };
  },
};

const phasesSchema = z.strictObject({ kind: z.literal('patients-per-phase'), plans: z.array(z.string().min(1)).min(1) });

/** Enrolments active on the period's last day, and in each phase on that day (a plan period covering it). */
export const patientsPerPhase: IndicatorKind<z.infer<typeof phasesSchema>> = {
  parse: (parameters) => parseWith(phasesSchema, parameters),
  needs: () => ['episodes', 'carePlans'],
  evaluate(parameters, data, { program, period }) {
    const active = enrolmentsOf(data.episodes, program).filter((e) => activeOn(e, period.end));
    const activeRefs = new Set(active.map((e) => e.reference));
    const covering = planPeriodsOf(data.carePlans, program.timeZone).filter((p) => activeRefs.has(p.episode) && p.start <= period.end && p.end >= period.end);
    const byPlan = new Map<string, Set<string>>();
    for (const p of covering) byPlan.set(p.plan, (byPlan.get(p.plan) ?? new Set()).add(p.episode));
    return {
      populations: [population('initial-population', active.length)],
      stratifiers: [{ code: 'phase', strata: codedStrata(PLAN_CODE_SYSTEM, parameters.plans, byPlan.keys(), (key) => ({ populations: [population('initial-population', byPlan.get(key)?.size ?? 0)] })) }],
    };
  },
};

const completionSchema = z.strictObject({ kind: z.literal('phase-completion'), plan: z.string().min(1) });

/**
 * Phases of plan P whose last day is in the period and that the patient entered (plan start on
 * or before the exit day): denominator; those where the patient was still enrolled on the
 * plan's last day: numerator.
 */
export const phaseCompletion: IndicatorKind<z.infer<typeof completionSchema>> = {
  parse: (parameters) => parseWith(completionSchema, parameters),
  needs: () => ['episodes', 'carePlans'],
  evaluate(parameters, data, { program, period }) {
    const enrolments = new Map(enrolmentsOf(data.episodes, program).map((e) => [e.reference, e]));
    let denominator = 0;
    let numerator = 0;
    for (const p of planPeriodsOf(data.carePlans, program.timeZone)) {
      const enrolment = enrolments.get(p.episode);
      if (!enrolment || p.plan !== parameters.plan || !inPeriod(p.end, period)) continue;
      if (enrolment.end !== undefined && p.start > enrolment.end) continue;
      denominator += 1;
      if (enrolment.end === undefined || enrolment.end >= p.end) numerator += 1;
    }
    const score = ratio(numerator, denominator);
    return { populations: [population('numerator', numerator), population('denominator', denominator)], ...(score ? { score } : {}), stratifiers: [] };
  },
};

const professionalsSchema = z.strictObject({ kind: z.literal('professionals-by-category'), system: z.string().min(1).default(CARE_TEAM_ROLE_SYSTEM), codes: codeList });

/** Distinct care-team members of the enrolments in the program at some time in the period, by role. */
export const professionalsByCategory: IndicatorKind<z.infer<typeof professionalsSchema>> = {
  parse: (parameters) => parseWith(professionalsSchema, parameters),
  needs: () => ['episodes', 'careTeams'],
  evaluate(parameters, data, { program, period }) {
    const teams = new Set(enrolmentsOf(data.episodes, program).filter((e) => enrolledDuring(e, period)).flatMap((e) => (e.episode.team ?? []).flatMap((t) => referenceKey(t) ?? [])));
    const members = new Set<string>();
    const byRole = new Map<string, Set<string>>();
    for (const careTeam of data.careTeams) {
      if (!teams.has(`CareTeam/${careTeam.id ?? ''}`)) continue;
      for (const participant of careTeam.participant ?? []) {
        const member = referenceKey(participant.member);
        if (!member) continue;
        members.add(member);
        for (const role of codesOf(participant.role, parameters.system)) byRole.set(role, (byRole.get(role) ?? new Set()).add(member));
      }
    }
    return {
      populations: [population('initial-population', members.size)],
      stratifiers: [{ code: 'category', strata: codedStrata(parameters.system, parameters.codes, byRole.keys(), (key) => ({ populations: [population('initial-population', byRole.get(key)?.size ?? 0)] })) }],
    };
  },
};

const screeningSchema = z.strictObject({ kind: z.literal('screening-outcomes'), system: z.string().min(1).default(ELIGIBILITY_OUTCOME_SYSTEM), codes: codeList });

/** Patients whose current eligibility verdict (the program's GuidanceResponse) is dated in the period, by outcome. */
export const screeningOutcomes: IndicatorKind<z.infer<typeof screeningSchema>> = {
  parse: (parameters) => parseWith(screeningSchema, parameters),
  needs: () => ['guidanceResponses'],
  evaluate(parameters, data, { program, period }) {
    const system = `${program.url}/guidance-response`;
    const verdicts = data.guidanceResponses.filter(
      (response) => response.status !== 'entered-in-error' && (response.identifier ?? []).some((identifier) => identifier.system === system) && inPeriod(firstDay(response.occurrenceDateTime, program.timeZone), period),
    );
    const byOutcome = countBy(verdicts, (response) => [codesOf(response.reasonCode, parameters.system)[0] ?? NO_CODE]);
    return {
      populations: [population('initial-population', verdicts.length)],
      stratifiers: [{ code: 'outcome', strata: codedStrata(parameters.system, parameters.codes, byOutcome.keys(), (key) => ({ populations: [population('initial-population', byOutcome.get(key) ?? 0)] })) }],
    };
  },
};
