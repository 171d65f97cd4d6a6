/**
 * Reading the adapter's resources for reports: enrolments with their days, plan periods,
 * sessions, and the centre scope. Definitions (DOMAIN.md; notes/report-api.md section 6):
 * - an enrolment is an EpisodeOfCare typed with the program; `cancelled` (exited before its
 *   start) and `entered-in-error` ones are never counted;
 * - days are calendar dates in the program's time zone; FHIR Period bounds are inclusive, so the
 *   exit day (`period.end`) is the last day in the program.
 *
 * Pure: no I/O, no clock.
 */
import { DateTime } from 'luxon';
import { PLAN_CODE_SYSTEM, PROGRAM_CODE_SYSTEM } from '../../programs/enrolment-schema.js';
import { dateSpanOf, dayInZone } from '../dates.js';
import { ENROLMENT_EXTENSIONS } from '../enrolment/types.js';
import { referenceKey } from '../references.js';
import type { CalendarDate } from '../types.js';
import type { CentreScope, ReportData, ReportPeriod, ReportProgram } from './types.js';

export interface Enrolment {
  /** `EpisodeOfCare/{id}`. */
  reference: string;
  /** `Patient/{id}`. */
  patient: string;
  start: CalendarDate;
  /** Exit day (inclusive), when ended. */
  end?: CalendarDate;
  episode: fhir4.EpisodeOfCare;
}

const PLAIN_DATE = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;
const DATE_TIME_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * The local day of a FHIR date or dateTime in `zone`, quickly: reports read every session and
 * observation, and luxon's zone conversion costs about a millisecond each. A plain date is taken
 * as is; a dateTime with an offset is converted with a cached Intl formatter (same result as
 * src/domain/dates.ts dateSpanOf, which handles the rest: partial dates, times without offset).
 */
function fastDay(value: string, zone: string): CalendarDate | undefined {
  if (PLAIN_DATE.test(value)) {
    // 2026-02-30 is no day: the date must survive a round trip through the calendar.
    const [year, month, day] = value.split('-').map(Number) as [number, number, number];
    return new Date(Date.UTC(year, month - 1, day)).getUTCDate() === day ? value : undefined;
  }
  if (!DATE_TIME_WITH_OFFSET.test(value)) return undefined;
  const instant = Date.parse(value);
  if (Number.isNaN(instant)) return undefined;
  return dayInZone(instant, zone);
}

/** First local day of a FHIR date/dateTime (a partial date: its first day). */
export function firstDay(value: string | undefined, zone: string): CalendarDate | undefined {
  if (value === undefined) return undefined;
  return fastDay(value.trim(), zone) ?? dateSpanOf(value, zone)?.first;
}

/** Last local day of a FHIR date/dateTime (a partial date: its last day). */
export function lastDay(value: string | undefined, zone: string): CalendarDate | undefined {
  if (value === undefined) return undefined;
  return fastDay(value.trim(), zone) ?? dateSpanOf(value, zone)?.last;
}

export function inPeriod(day: CalendarDate | undefined, period: ReportPeriod): day is CalendarDate {
  return day !== undefined && day >= period.start && day <= period.end;
}

function isOfProgram(episode: fhir4.EpisodeOfCare, programId: string): boolean {
  return (episode.type ?? []).some((type) => (type.coding ?? []).some((coding) => coding.system === PROGRAM_CODE_SYSTEM && coding.code === programId));
}

/** The program's enrolments that count (see the module comment), in input order. */
export function enrolmentsOf(episodes: readonly fhir4.EpisodeOfCare[], program: ReportProgram): Enrolment[] {
  const result: Enrolment[] = [];
  for (const episode of episodes) {
    if (episode.status === 'cancelled' || episode.status === 'entered-in-error' || !episode.id) continue;
    if (!isOfProgram(episode, program.id)) continue;
    const patient = referenceKey(episode.patient);
    const start = firstDay(episode.period?.start, program.timeZone);
    if (!patient || !start) continue;
    const end = lastDay(episode.period?.end, program.timeZone);
    result.push({ reference: `EpisodeOfCare/${episode.id}`, patient, start, ...(end ? { end } : {}), episode });
  }
  return result;
}

/** In the program on `day`: started on or before it and not exited before it. */
export function activeOn(enrolment: Enrolment, day: CalendarDate): boolean {
  return enrolment.start <= day && (enrolment.end === undefined || enrolment.end >= day);
}

/** In the program at some time during the period. */
export function enrolledDuring(enrolment: Enrolment, period: ReportPeriod): boolean {
  return enrolment.start <= period.end && (enrolment.end === undefined || enrolment.end >= period.start);
}

/** The exit-reason coding of an ended enrolment. */
export function exitReasonOf(episode: fhir4.EpisodeOfCare, system: string): string | undefined {
  const concept = episode.extension?.find((extension) => extension.url === ENROLMENT_EXTENSIONS.exitReason)?.valueCodeableConcept;
  return concept?.coding?.find((coding) => coding.system === system && coding.code)?.code;
}

/** The enrolment a CarePlan belongs to (`workflow-episodeOfCare` extension). */
export function carePlanEpisode(carePlan: fhir4.CarePlan): string | undefined {
  const reference = carePlan.extension?.find((extension) => extension.url === ENROLMENT_EXTENSIONS.episodeOfCare)?.valueReference;
  return referenceKey(reference);
}

export interface PlanPeriodRecord {
  episode: string;
  plan: string;
  start: CalendarDate;
  end: CalendarDate;
}

/** The plan periods of CarePlans (plan-code category, a full period), not `entered-in-error`. */
export function planPeriodsOf(carePlans: readonly fhir4.CarePlan[], zone: string): PlanPeriodRecord[] {
  const result: PlanPeriodRecord[] = [];
  for (const carePlan of carePlans) {
    if (carePlan.status === 'entered-in-error') continue;
    const episode = carePlanEpisode(carePlan);
    const plan = (carePlan.category ?? []).flatMap((c) => c.coding ?? []).find((coding) => coding.system === PLAN_CODE_SYSTEM && coding.code)?.code;
    const start = firstDay(carePlan.period?.start, zone);
    const end = lastDay(carePlan.period?.end, zone);
    if (!episode || !plan || !start || !end) continue;
    result.push({ episode, plan, start, end });
  }
  return result;
}

/** Every month `YYYY-MM` from the period's first month to its last. */
export function monthsOf(period: ReportPeriod): string[] {
  const months: string[] = [];
  let month = DateTime.fromISO(period.start.slice(0, 7) + '-01', { zone: 'UTC' });
  const last = period.end.slice(0, 7);
  while ((month.toISODate() as string).slice(0, 7) <= last) {
    months.push((month.toISODate() as string).slice(0, 7));
    month = month.plus({ months: 1 });
  }
  return months;
}

/** The codes of `system` in a list of CodeableConcepts. */
export function codesOf(concepts: readonly fhir4.CodeableConcept[] | undefined, system: string): string[] {
  return (concepts ?? []).flatMap((concept) => (concept.coding ?? []).filter((coding) => coding.system === system && coding.code).map((coding) => coding.code as string));
}

/**
 * Keeps what belongs to one centre (notes/report-api.md section 3): enrolments managed by the
 * centre's Organization and everything attached to them (CarePlans, CareTeams, sessions,
 * claims, the enrolled patients' Observations and Conditions); screening verdicts and proposal
 * Tasks of the centre's patients; Invoices whose member practises in the centre.
 */
export function scopeToCentre(data: ReportData, scope: CentreScope): ReportData {
  const episodes = scope.organization === undefined ? [] : data.episodes.filter((episode) => referenceKey(episode.managingOrganization) === scope.organization);
  const episodeRefs = new Set(episodes.map((episode) => `EpisodeOfCare/${episode.id ?? ''}`));
  const patients = new Set(episodes.flatMap((episode) => referenceKey(episode.patient) ?? []));
  const teams = new Set(episodes.flatMap((episode) => (episode.team ?? []).flatMap((team) => referenceKey(team) ?? [])));
  const claims = data.claims.filter((claim) => (claim.supportingInfo ?? []).some((info) => episodeRefs.has(referenceKey(info.valueReference) ?? '')));
  const claimRefs = new Set(claims.map((claim) => `Claim/${claim.id ?? ''}`));
  return {
    episodes,
    carePlans: data.carePlans.filter((carePlan) => episodeRefs.has(carePlanEpisode(carePlan) ?? '')),
    careTeams: data.careTeams.filter((careTeam) => teams.has(`CareTeam/${careTeam.id ?? ''}`)),
    encounters: data.encounters.filter((encounter) => (encounter.episodeOfCare ?? []).some((reference) => episodeRefs.has(referenceKey(reference) ?? ''))),
    claims,
    claimResponses: data.claimResponses.filter((response) => claimRefs.has(referenceKey(response.request) ?? '')),
    invoices: data.invoices.filter((invoice) => (invoice.participant ?? []).some((participant) => scope.members.has(referenceKey(participant.actor) ?? ''))),
    tasks: data.tasks.filter((task) => scope.patients.has(referenceKey(task.for) ?? '')),
    guidanceResponses: data.guidanceResponses.filter((response) => scope.patients.has(referenceKey(response.subject) ?? '')),
    observations: data.observations.filter((observation) => patients.has(referenceKey(observation.subject) ?? '')),
    conditions: data.conditions.filter((condition) => patients.has(referenceKey(condition.subject) ?? '')),
  };
}
