/**
 * How an enrolment moves through time (issue #3, points 3, 5 and 6): phases that start and
 * end by date, yearly periods that roll over, the on-demand plan of a patient in difficulty,
 * and the exit. Each function takes the current resources and a date and returns only what
 * must be written, so running it again with the same inputs returns nothing new. Pure.
 */
import { EXIT_REASON_SYSTEM, PLAN_CODE_SYSTEM, type PlanData } from '../../programs/enrolment-schema.js';
import type { CalendarDate } from '../types.js';
import { buildCarePlan, closeActivities, type EnrolmentContext } from './enrolment-resources.js';
import { isCalendarDate, onDemandPeriod, periodIndexOf, periodsDue, planStatusAt } from './plan-periods.js';
import { CARE_PLAN_STATUS, ENROLMENT_EXTENSIONS, EXIT_REASONS, type Checked, type EnrolmentIssue, type ExitReason, type PlanPeriod } from './types.js';

/** The plan code of a CarePlan (its CodeSystem/plan-code category). */
export function planCodeOf(carePlan: fhir4.CarePlan): string | undefined {
  for (const category of carePlan.category ?? []) {
    const coding = category.coding?.find((c) => c.system === PLAN_CODE_SYSTEM && c.code);
    if (coding?.code) return coding.code;
  }
  return undefined;
}

/** CarePlan statuses of a period not over yet: `draft` (planned) and `active`. */
const OPEN = new Set<fhir4.CarePlan['status']>([CARE_PLAN_STATUS.planned, CARE_PLAN_STATUS.active]);
const RANK: Record<string, number> = { [CARE_PLAN_STATUS.planned]: 0, [CARE_PLAN_STATUS.active]: 1, [CARE_PLAN_STATUS.completed]: 2 };
const ENDED_EPISODE = new Set<fhir4.EpisodeOfCare['status']>(['finished', 'cancelled', 'entered-in-error']);

function periodOf(carePlan: fhir4.CarePlan): { start: CalendarDate; end: CalendarDate } | undefined {
  const { start, end } = carePlan.period ?? {};
  return isCalendarDate(start) && isCalendarDate(end) ? { start, end } : undefined;
}

/** `carePlan` with its status on `asOf`, moving forward only (draft → active → completed). */
function advancedPlan(carePlan: fhir4.CarePlan, asOf: CalendarDate): fhir4.CarePlan {
  const period = periodOf(carePlan);
  if (!OPEN.has(carePlan.status) || !period) return carePlan;
  const status = CARE_PLAN_STATUS[planStatusAt(period, asOf)];
  if ((RANK[status] ?? 0) <= (RANK[carePlan.status] ?? 0)) return carePlan;
  return status === 'completed' ? closeActivities(carePlan, 'completed') : { ...carePlan, status };
}

export interface AdvanceInput {
  episode: fhir4.EpisodeOfCare;
  careTeam: fhir4.CareTeam;
  /** Every CarePlan of the episode. */
  carePlans: readonly fhir4.CarePlan[];
  asOf: CalendarDate;
  /** No new period starting after this date is opened (e.g. the program's approval end); the episode's own end always applies. */
  notAfter?: CalendarDate;
}

export interface AdvanceResult {
  /** The episode, when it changed (planned → active on its start date). */
  episode?: fhir4.EpisodeOfCare;
  /** CarePlans whose status changed, and the new yearly periods; empty when nothing is due. */
  carePlans: fhir4.CarePlan[];
  /**
   * True when the episode is active, all its CarePlans are completed or revoked, and none
   * repeats: the care sequence is over (FNMF after 24 months). The adapter decides whether to
   * exit the patient with reason `completed`; this function never ends an episode.
   */
  sequenceComplete: boolean;
}

/**
 * Moves an enrolment to `asOf`: the episode becomes `active` on its start date; each draft
 * (planned) or active CarePlan takes its status on `asOf` (`active` from its start, `completed` after its end,
 * activities closed); for each yearly plan, when its latest period has ended, the next periods
 * up to `asOf` are opened, built like the first ones (the team and personalisation recorded
 * now), but never for a finished/cancelled episode, nor starting after the episode's end or
 * `notAfter`. Statuses never move backwards, so an earlier `asOf` changes nothing. Idempotent.
 */
export function advancePlans(context: EnrolmentContext, input: AdvanceInput): AdvanceResult {
  const { careTeam, asOf } = input;
  let episode = input.episode;
  const start = episode.period?.start;
  if (ENDED_EPISODE.has(episode.status) || !isCalendarDate(start)) return { carePlans: [], sequenceComplete: false };
  let changedEpisode: fhir4.EpisodeOfCare | undefined;
  if (episode.status === 'planned' && start <= asOf) {
    changedEpisode = { ...episode, status: 'active' };
    episode = changedEpisode;
  }

  const written: fhir4.CarePlan[] = [];
  const current = input.carePlans.map((carePlan) => {
    const advanced = advancedPlan(carePlan, asOf);
    if (advanced !== carePlan) written.push(advanced);
    return advanced;
  });

  const yearly: PlanData[] = [];
  if (episode.status === 'active') {
    const ends = [episode.period?.end, input.notAfter].filter(isCalendarDate).sort();
    for (const plan of context.enrolment.plans.filter((p) => p.repeat === 'yearly')) {
      const series = current
        .filter((carePlan) => planCodeOf(carePlan) === plan.code && carePlan.status !== 'entered-in-error')
        .flatMap((carePlan) => {
          const period = periodOf(carePlan);
          const index = period && periodIndexOf(plan, start, period.start);
          return period && index !== undefined ? [{ carePlan, period: { planCode: plan.code, index, ...period } satisfies PlanPeriod }] : [];
        })
        .sort((a, b) => a.period.index - b.period.index);
      const latest = series.at(-1);
      if (!latest) continue;
      yearly.push(plan);
      if (latest.carePlan.status === 'revoked') continue;
      for (const period of periodsDue(plan, latest.period, start, asOf, ends[0])) {
        const carePlan = buildCarePlan(context, { plan, period, episode, careTeam, asOf });
        written.push(carePlan);
        current.push(carePlan);
      }
    }
  }

  const sequenceComplete =
    episode.status === 'active' &&
    yearly.length === 0 &&
    current.length > 0 &&
    current.every((carePlan) => carePlan.status === 'completed' || carePlan.status === 'revoked' || carePlan.status === 'entered-in-error');
  return { ...(changedEpisode ? { episode: changedEpisode } : {}), carePlans: written, sequenceComplete };
}

export interface ExitInput {
  episode: fhir4.EpisodeOfCare;
  careTeam?: fhir4.CareTeam;
  carePlans: readonly fhir4.CarePlan[];
  /** A code of CodeSystem exit-reason (`EXIT_REASONS`). */
  reason: string;
  /** Free text; required for `other`. */
  text?: string;
  /** The exit date (calendar date in the program's zone). */
  date: CalendarDate;
}

export interface ExitResult {
  /** The episode ended; the input object itself when it had already ended the same way (nothing to write). */
  episode: fhir4.EpisodeOfCare;
  /** The care team, `inactive` from the exit date (when given and not already so). */
  careTeam?: fhir4.CareTeam;
  /** CarePlans whose status changed. */
  carePlans: fhir4.CarePlan[];
}

function exitReasonOf(episode: fhir4.EpisodeOfCare): fhir4.CodeableConcept | undefined {
  return episode.extension?.find((extension) => extension.url === ENROLMENT_EXTENSIONS.exitReason)?.valueCodeableConcept;
}

function isExitReason(code: string): code is ExitReason {
  return (EXIT_REASONS as readonly string[]).includes(code);
}

/**
 * Ends an enrolment (`$exit`). The episode gets the exit-reason extension (coding of
 * CodeSystem exit-reason, with the text) and becomes `finished` with `period.end` = `date`, or
 * `cancelled` without an end when it exits before its start date (R4: "withdrawn before it
 * started"). Its open CarePlans end: a plan whose period was over by `date` is `completed`; a
 * plan under way on `date` is `completed` when the reason is `completed`, else `revoked`; a plan
 * not yet started is `revoked`. CarePlan periods are left as planned: the episode's end says
 * when care stopped. The care team becomes `inactive`.
 *
 * Repeating the same exit (same reason and date) returns the episode unchanged and nothing else
 * to write; a different exit of an ended episode is an `already-exited` conflict.
 */
export function exitEnrolment(input: ExitInput): Checked<ExitResult> {
  const { episode, reason, date } = input;
  const text = input.text?.trim() ? input.text.trim() : undefined;
  const issues: EnrolmentIssue[] = [];
  if (!isExitReason(reason)) {
    issues.push({ rule: 'exit-reason-unknown', code: 'code-invalid', diagnostics: `Unknown exit reason "${reason}" (${EXIT_REASONS.join(', ')}).`, field: 'reason' });
  } else if (reason === 'other' && text === undefined) {
    issues.push({ rule: 'exit-text-missing', code: 'required', diagnostics: 'The exit reason "other" needs a text.', field: 'text' });
  }
  if (!isCalendarDate(date)) {
    issues.push({ rule: 'exit-date-invalid', code: 'value', diagnostics: `The exit date "${date}" is not a calendar date (YYYY-MM-DD).`, field: 'date' });
  }
  if (issues.length > 0) return { ok: false, issues };

  const start = episode.period?.start;
  if (ENDED_EPISODE.has(episode.status)) {
    const recorded = exitReasonOf(episode);
    const sameReason = recorded?.coding?.some((c) => c.system === EXIT_REASON_SYSTEM && c.code === reason) && recorded.text === text;
    const sameDate = episode.status === 'cancelled' ? start !== undefined && date < start : episode.period?.end === date;
    if (sameReason && sameDate) return { ok: true, episode, carePlans: [] };
    return {
      ok: false,
      issues: [{ rule: 'already-exited', code: 'conflict', diagnostics: `The enrolment has already ended (${episode.status}${episode.period?.end ? ` on ${episode.period.end}` : ''}).` }],
    };
  }

  const beforeStart = start !== undefined && date < start;
  const exitReason: fhir4.CodeableConcept = { coding: [{ system: EXIT_REASON_SYSTEM, code: reason }], ...(text ? { text } : {}) };
  const ended: fhir4.EpisodeOfCare = {
    ...episode,
    extension: [...(episode.extension ?? []).filter((e) => e.url !== ENROLMENT_EXTENSIONS.exitReason), { url: ENROLMENT_EXTENSIONS.exitReason, valueCodeableConcept: exitReason }],
    status: beforeStart ? 'cancelled' : 'finished',
    period: beforeStart ? { ...episode.period } : { ...episode.period, end: date },
  };

  const carePlans: fhir4.CarePlan[] = [];
  for (const carePlan of input.carePlans) {
    if (!OPEN.has(carePlan.status)) continue;
    const period = periodOf(carePlan);
    const over = period !== undefined && period.end < date;
    const started = period === undefined || period.start <= date;
    carePlans.push(closeActivities(carePlan, over || (started && reason === 'completed') ? 'completed' : 'revoked'));
  }

  const result: ExitResult = { episode: ended, carePlans };
  const careTeam = input.careTeam;
  if (careTeam && careTeam.status !== 'inactive') {
    result.careTeam = { ...careTeam, status: 'inactive', ...(beforeStart ? {} : { period: { ...careTeam.period, end: date } }) };
  }
  return { ok: true, ...result };
}

export interface OnDemandInput {
  episode: fhir4.EpisodeOfCare;
  careTeam: fhir4.CareTeam;
  /** Every CarePlan of the episode. */
  carePlans: readonly fhir4.CarePlan[];
  /** Code of one of the program's `onDemandPlans`. */
  planCode: string;
  start: CalendarDate;
  asOf: CalendarDate;
}

/**
 * Opens an on-demand plan (REDIAB `$add-plan`: complementary education for a patient in
 * difficulty, 6 months from `start`). Refused for an unknown plan code, an episode that is not
 * active, a start outside the episode, or when `maxOpen` plans of that code are already open
 * (draft or active, and not past their end on `asOf`). The same request again (a plan of that
 * code with that start, not revoked) returns the existing plan with `created: false`.
 */
export function openOnDemandPlan(context: EnrolmentContext, input: OnDemandInput): Checked<{ carePlan: fhir4.CarePlan; created: boolean }> {
  const { episode, careTeam, start, asOf } = input;
  const plan = context.enrolment.onDemandPlans.find((p) => p.code === input.planCode);
  const issues: EnrolmentIssue[] = [];
  if (!plan) {
    const known = context.enrolment.onDemandPlans.map((p) => p.code).join(', ') || 'none';
    issues.push({ rule: 'plan-unknown', code: 'not-found', diagnostics: `"${input.planCode}" is not an on-demand plan of the program (${known}).`, field: 'plan' });
  }
  if (!isCalendarDate(start)) {
    issues.push({ rule: 'start-invalid', code: 'value', diagnostics: `The start "${start}" is not a calendar date (YYYY-MM-DD).`, field: 'start' });
  }
  if (episode.status !== 'active') {
    issues.push({ rule: 'episode-not-active', code: 'business-rule', diagnostics: `The enrolment is ${episode.status}: plans are opened for active enrolments only.` });
  } else if (isCalendarDate(start) && ((episode.period?.start ?? start) > start || (episode.period?.end !== undefined && episode.period.end < start))) {
    issues.push({ rule: 'plan-outside-episode', code: 'business-rule', diagnostics: `The plan cannot start on ${start}, outside the enrolment.`, field: 'start' });
  }
  if (!plan || issues.length > 0) return { ok: false, issues };

  const sameCode = input.carePlans.filter((carePlan) => planCodeOf(carePlan) === plan.code && carePlan.status !== 'entered-in-error');
  const repeat = sameCode.find((carePlan) => carePlan.period?.start === start && carePlan.status !== 'revoked');
  if (repeat) return { ok: true, carePlan: repeat, created: false };
  const open = sameCode.filter((carePlan) => OPEN.has(carePlan.status) && (carePlan.period?.end ?? asOf) >= asOf);
  if (open.length >= plan.maxOpen) {
    return {
      ok: false,
      issues: [
        {
          rule: 'plan-max-open',
          code: 'conflict',
          diagnostics: `At most ${plan.maxOpen} "${plan.code}" plan${plan.maxOpen > 1 ? 's' : ''} may be open at a time (open: ${open.map((p) => `CarePlan/${p.id ?? ''}`).join(', ')}).`,
        },
      ],
    };
  }
  const period = onDemandPeriod(plan, start, sameCode.length);
  return { ok: true, carePlan: buildCarePlan(context, { plan, period, episode, careTeam, asOf }), created: true };
}
