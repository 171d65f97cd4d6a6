/**
 * The FHIR resources of an enrolment (issue #3, point 1), built from the request, the program
 * data and `asOf`: an EpisodeOfCare, its CareTeam and the program's phase CarePlans, in the
 * resource model of `types.ts` and the profiles of `profiles/`. Also the checks a request must
 * pass before anything is written, and the "same request again" test.
 *
 * Every id is a UUIDv5 (src/domain/ids.ts) of a stable key, so the adapter writes with PUT and
 * a retried transaction rewrites the same resources:
 * - EpisodeOfCare `EpisodeOfCare|<program url>|<patient id>|<start>`;
 * - CareTeam `CareTeam|<episode id>`;
 * - CarePlan `CarePlan|<episode id>|<plan code>|<period index>`.
 *
 * Pure: no I/O, no clock.
 */
import type { EnrolmentData, OnDemandPlanData, PlanData } from '../../programs/enrolment-schema.js';
import { CARE_TEAM_ROLE_SYSTEM, PLAN_CODE_SYSTEM, PROGRAM_CODE_SYSTEM } from '../../programs/enrolment-schema.js';
import type { ValueSetData } from '../../programs/schema.js';
import { periodCovers } from '../dates.js';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from '../ids.js';
import { localReference, referenceKey } from '../references.js';
import type { CalendarDate, EligibilityOutcome } from '../types.js';
import { codeableConceptIn } from '../value-sets.js';
import { applyPlanDefinition, resolvePersonalisation } from './plan-application.js';
import { initialPlanPeriods, isCalendarDate, periodsDue, planStatusAt } from './plan-periods.js';
import {
  CARE_PLAN_STATUS,
  ENROLMENT_EXTENSIONS,
  ENROLMENT_PROFILES,
  type CareTeamMember,
  type ConditionEvaluator,
  type EnrolmentIssue,
  type EnrolmentRequest,
  type PersonalisationValues,
  type PlanDefinitions,
  type PlanPeriod,
  type ProgramRef,
} from './types.js';

/**
 * Role of the EpisodeOfCare `careManager` (its first member with it). Both programs code the
 * GP `gp` and make it required; a program without that role has no care manager.
 */
export const CARE_MANAGER_ROLE = 'gp';

/** What the builders need besides the request: the program, its data and the condition engine. */
export interface EnrolmentContext {
  program: ProgramRef;
  enrolment: EnrolmentData;
  planDefinitions: PlanDefinitions;
  evaluate: ConditionEvaluator;
}

export interface EnrolmentResources {
  episode: fhir4.EpisodeOfCare;
  careTeam: fhir4.CareTeam;
  /** Program order; a yearly plan's later periods follow its first. */
  carePlans: fhir4.CarePlan[];
}

const uuid = (key: string): string => deterministicUuid(FORFAIT_UUID_NAMESPACE, key);

export function episodeOfCareId(programUrl: string, patientId: string, start: CalendarDate): string {
  return uuid(`EpisodeOfCare|${programUrl}|${patientId}|${start}`);
}

export function careTeamId(episodeId: string): string {
  return uuid(`CareTeam|${episodeId}`);
}

export function carePlanId(episodeId: string, planCode: string, index: number): string {
  return uuid(`CarePlan|${episodeId}|${planCode}|${index}`);
}

/** Identifier systems of the enrolment resources: `<program url>/enrolment`, `/care-team`, `/care-plan`. */
export function enrolmentIdentifierSystem(programUrl: string, type: 'enrolment' | 'care-team' | 'care-plan'): string {
  return `${programUrl}/${type}`;
}

/** `EpisodeOfCare.status` on `asOf`: `planned` before the start, then `active`. */
export function episodeStatusAt(start: CalendarDate, asOf: CalendarDate): 'planned' | 'active' {
  return start > asOf ? 'planned' : 'active';
}

function roleCoding(enrolment: EnrolmentData, code: string): fhir4.Coding {
  const role = enrolment.careTeamRoles.find((r) => r.code === code);
  return role ? { system: CARE_TEAM_ROLE_SYSTEM, code, display: role.display } : { system: CARE_TEAM_ROLE_SYSTEM, code };
}

function personalisationExtensions(values: PersonalisationValues): fhir4.Extension[] {
  return Object.entries(values).map(([name, value]) => ({
    url: ENROLMENT_EXTENSIONS.personalisation,
    extension: [
      { url: 'name', valueCode: name },
      typeof value === 'boolean' ? { url: 'value', valueBoolean: value } : { url: 'value', valueCode: value },
    ],
  }));
}

/** The personalisation values recorded on an episode (its `enrolment-personalisation` extensions). */
export function personalisationOf(episode: fhir4.EpisodeOfCare): PersonalisationValues {
  const values: PersonalisationValues = {};
  for (const extension of episode.extension ?? []) {
    if (extension.url !== ENROLMENT_EXTENSIONS.personalisation) continue;
    const name = extension.extension?.find((e) => e.url === 'name')?.valueCode;
    const part = extension.extension?.find((e) => e.url === 'value');
    const value = part?.valueBoolean ?? part?.valueCode;
    if (name !== undefined && value !== undefined) values[name] = value;
  }
  return values;
}

/** The members of a program CareTeam: one per (participant, care-team-role coding). */
export function careTeamMembers(careTeam: fhir4.CareTeam): CareTeamMember[] {
  return (careTeam.participant ?? []).flatMap((participant) => {
    const reference = participant.member?.reference;
    if (reference === undefined) return [];
    return (participant.role ?? []).flatMap((concept) =>
      (concept.coding ?? [])
        .filter((coding) => coding.system === CARE_TEAM_ROLE_SYSTEM && coding.code)
        .map((coding) => ({ reference, role: coding.code as string })),
    );
  });
}

function buildCareTeam(context: EnrolmentContext, request: EnrolmentRequest, episodeId: string): fhir4.CareTeam {
  const { program, enrolment } = context;
  return {
    resourceType: 'CareTeam',
    id: careTeamId(episodeId),
    meta: { profile: [ENROLMENT_PROFILES.careTeam] },
    identifier: [{ system: enrolmentIdentifierSystem(program.url, 'care-team'), value: `${request.patientId}|${request.start}` }],
    // The team is formed at enrolment, also for a start in the future; `inactive` on exit.
    status: 'active',
    name: `${program.title}: care team`,
    subject: { reference: `Patient/${request.patientId}` },
    period: { start: request.start },
    participant: request.careTeam.map((member) => ({
      role: [{ coding: [roleCoding(enrolment, member.role)] }],
      member: { reference: member.reference },
    })),
  };
}

function buildEpisode(
  context: EnrolmentContext,
  request: EnrolmentRequest,
  values: PersonalisationValues,
  asOf: CalendarDate,
): fhir4.EpisodeOfCare {
  const { program } = context;
  const id = episodeOfCareId(program.url, request.patientId, request.start);
  const extension: fhir4.Extension[] = [];
  if (request.overrideReason !== undefined) extension.push({ url: ENROLMENT_EXTENSIONS.overrideReason, valueString: request.overrideReason });
  extension.push(...personalisationExtensions(values));
  const episode: fhir4.EpisodeOfCare = {
    resourceType: 'EpisodeOfCare',
    id,
    meta: { profile: [ENROLMENT_PROFILES.episodeOfCare] },
    ...(extension.length > 0 ? { extension } : {}),
    identifier: [{ system: enrolmentIdentifierSystem(program.url, 'enrolment'), value: `${request.patientId}|${request.start}` }],
    status: episodeStatusAt(request.start, asOf),
    type: [{ coding: [{ system: PROGRAM_CODE_SYSTEM, code: program.id, display: program.title }], text: program.title }],
    patient: { reference: `Patient/${request.patientId}` },
    period: { start: request.start },
    team: [{ reference: `CareTeam/${careTeamId(id)}` }],
  };
  const manager = request.careTeam.find((member) => member.role === CARE_MANAGER_ROLE);
  if (manager) episode.careManager = { reference: manager.reference };
  return episode;
}

/** The plan fields the CarePlan builder reads (a `PlanData` or an `OnDemandPlanData`). */
export type PlanRef = Pick<PlanData | OnDemandPlanData, 'code' | 'title' | 'planDefinition'>;

export interface CarePlanInput {
  plan: PlanRef;
  period: PlanPeriod;
  episode: fhir4.EpisodeOfCare;
  careTeam: fhir4.CareTeam;
  asOf: CalendarDate;
}

/**
 * The CarePlan of one period of one plan, for the enrolment `episode`: activities from the
 * plan's PlanDefinition applied with the personalisation values recorded on the episode and the
 * members of `careTeam`; status from `asOf` (`planStatusAt`, a planned period `draft`). Used at enrolment, for each later
 * yearly period and for on-demand plans, so all are built alike.
 *
 * @throws RangeError when the PlanDefinition is not loaded or breaks the convention.
 */
export function buildCarePlan(context: EnrolmentContext, input: CarePlanInput): fhir4.CarePlan {
  const { plan, period, episode, careTeam } = input;
  const planDefinition = context.planDefinitions.get(plan.planDefinition);
  if (!planDefinition) throw new RangeError(`PlanDefinition ${plan.planDefinition} of plan ${plan.code} is not loaded`);
  if (!episode.id || !careTeam.id || !episode.patient.reference) throw new RangeError('The episode and the care team need ids and a patient');
  const status = CARE_PLAN_STATUS[planStatusAt(period, input.asOf)];
  const activity = applyPlanDefinition(planDefinition, {
    values: personalisationOf(episode),
    team: careTeamMembers(careTeam),
    evaluate: context.evaluate,
  });
  const carePlan: fhir4.CarePlan = {
    resourceType: 'CarePlan',
    id: carePlanId(episode.id, plan.code, period.index),
    meta: { profile: [ENROLMENT_PROFILES.carePlan] },
    extension: [{ url: ENROLMENT_EXTENSIONS.episodeOfCare, valueReference: { reference: `EpisodeOfCare/${episode.id}` } }],
    identifier: [
      {
        system: enrolmentIdentifierSystem(context.program.url, 'care-plan'),
        value: `${episode.id}|${plan.code}|${period.index}`,
      },
    ],
    instantiatesCanonical: [plan.planDefinition],
    status,
    intent: 'plan',
    category: [{ coding: [{ system: PLAN_CODE_SYSTEM, code: plan.code, display: plan.title }] }],
    title: period.index === 0 ? plan.title : `${plan.title}: period ${period.index + 1}`,
    subject: { reference: episode.patient.reference },
    period: { start: period.start, end: period.end },
    careTeam: [{ reference: `CareTeam/${careTeam.id}` }],
    ...(activity.length > 0 ? { activity } : {}),
  };
  // A period already over when written (an enrolment dated in the past) closes its activities
  // as `advancePlans` would have.
  return status === 'completed' ? closeActivities(carePlan, 'completed') : carePlan;
}

/**
 * Activity statuses when a plan ends: `completed` plan, activities with sessions `completed`,
 * those never started `cancelled`; `revoked` plan (exit), started ones `stopped`, the others
 * `cancelled` (R4 CarePlanActivityStatus definitions).
 */
export function closeActivities(carePlan: fhir4.CarePlan, status: 'completed' | 'revoked'): fhir4.CarePlan {
  if (!carePlan.activity) return { ...carePlan, status };
  const activity = carePlan.activity.map((item) => {
    const detail = item.detail;
    if (!detail || (detail.status !== 'not-started' && detail.status !== 'in-progress' && detail.status !== 'scheduled')) return item;
    const started = detail.status === 'in-progress' || (item.outcomeReference?.length ?? 0) > 0;
    const next: fhir4.CarePlanActivityDetail['status'] = started ? (status === 'completed' ? 'completed' : 'stopped') : 'cancelled';
    return { ...item, detail: { ...detail, status: next } };
  });
  return { ...carePlan, status, activity };
}

/**
 * The resources of a new enrolment, as of `asOf`: the EpisodeOfCare (`planned` when the start
 * is after `asOf`, else `active`; the override reason and every personalisation value, defaults
 * included, as extensions), the CareTeam, and the CarePlans: period 0 of each plan the team
 * qualifies for (`initialPlanPeriods`) plus, for a start far enough in the past, the later
 * yearly periods already due (as `advancePlans` would open them), each with its status on `asOf`.
 *
 * Call `checkEnrolmentRequest` first: this builder assumes a valid request.
 * @throws RangeError on an invalid request (start, options) or program data (PlanDefinition).
 */
export function buildEnrolment(context: EnrolmentContext, request: EnrolmentRequest, asOf: CalendarDate): EnrolmentResources {
  if (!isCalendarDate(request.start)) throw new RangeError(`Invalid start date "${request.start}"`);
  const resolved = resolvePersonalisation(context.enrolment.personalisation, request.options);
  if (!resolved.ok) throw new RangeError(resolved.issues.map((issue) => issue.diagnostics).join(' '));
  const episode = buildEpisode(context, request, resolved.values, asOf);
  const careTeam = buildCareTeam(context, request, episode.id as string);
  const teamRoles = new Set(request.careTeam.map((member) => member.role));
  const carePlans: fhir4.CarePlan[] = [];
  for (const first of initialPlanPeriods(context.enrolment, request.start, teamRoles)) {
    const plan = context.enrolment.plans.find((p) => p.code === first.planCode) as PlanData;
    for (const period of [first, ...periodsDue(plan, first, request.start, asOf)]) {
      carePlans.push(buildCarePlan(context, { plan, period, episode, careTeam, asOf }));
    }
  }
  return { episode, careTeam, carePlans };
}

export interface EnrolmentRequestCheck {
  enrolment: EnrolmentData;
  request: EnrolmentRequest;
  /** The program's IANA zone (Consent period bounds that are instants). */
  zone: string;
  /** The Consent `request.consent` refers to, as read from the server; absent when not found. */
  consent?: fhir4.Consent;
  /**
   * How the program recognises its consent: its `active-consent` criterion's `policyUris`
   * (Consent.policy.uri) and category value set. Absent: any Consent of the patient will do.
   */
  consentCriterion?: { policyUris: readonly string[]; categories?: ValueSetData };
  /** The eligibility outcome re-evaluated at `start`; not `eligible` needs `request.overrideReason`. */
  eligibility?: EligibilityOutcome;
  /** Enrolments of the program currently open (planned or active), for the capacity check. */
  openEnrolments?: number;
}

/**
 * Everything wrong with an enrolment request, before anything is written (empty: go ahead):
 * start not a date; a member with a role the program does not know, a reference that is not a
 * literal Practitioner/PractitionerRole reference, a member listed twice with the same role; a
 * required role nobody holds; consent required but not referenced, referenced but not found,
 * not active (status, or a provision period not covering the start), another patient's, or not
 * the program's contract; a bad personalisation option; not eligible without an override
 * reason; the capacity reached. Eligibility itself is re-evaluated by the caller.
 */
export function checkEnrolmentRequest(input: EnrolmentRequestCheck): EnrolmentIssue[] {
  const { enrolment, request } = input;
  const issues: EnrolmentIssue[] = [];
  if (!isCalendarDate(request.start)) {
    issues.push({ rule: 'start-invalid', code: 'value', diagnostics: `The start "${request.start}" is not a calendar date (YYYY-MM-DD).`, field: 'start' });
  }
  issues.push(...careTeamIssues(enrolment, request.careTeam));
  issues.push(...consentIssues(input));
  const resolved = resolvePersonalisation(enrolment.personalisation, request.options);
  if (!resolved.ok) issues.push(...resolved.issues);
  if (request.overrideReason !== undefined && request.overrideReason.trim() === '') {
    issues.push({ rule: 'override-reason-missing', code: 'required', diagnostics: 'An override needs a reason (an empty one was given).', field: 'overrideReason' });
  }
  if (input.eligibility !== undefined && input.eligibility !== 'eligible' && !request.overrideReason?.trim()) {
    issues.push({
      rule: 'override-reason-missing',
      code: 'business-rule',
      diagnostics: `The patient is ${input.eligibility} at the start date; enrolling anyway needs a clinician's override reason.`,
      field: 'overrideReason',
    });
  }
  if (enrolment.capacity !== undefined && input.openEnrolments !== undefined && input.openEnrolments >= enrolment.capacity) {
    issues.push({
      rule: 'capacity-reached',
      code: 'business-rule',
      diagnostics: `The program's active file is full (${input.openEnrolments} of ${enrolment.capacity} places taken); an exit frees a place.`,
    });
  }
  return issues;
}

const PRACTITIONER_TYPES = ['Practitioner', 'PractitionerRole'] as const;

function careTeamIssues(enrolment: EnrolmentData, team: readonly CareTeamMember[]): EnrolmentIssue[] {
  const issues: EnrolmentIssue[] = [];
  const known = new Map(enrolment.careTeamRoles.map((role) => [role.code, role]));
  const seen = new Set<string>();
  team.forEach((member, index) => {
    if (!known.has(member.role)) {
      issues.push({
        rule: 'care-team-unknown-role',
        code: 'code-invalid',
        diagnostics: `Care-team role "${member.role}" is not a role of the program (${[...known.keys()].join(', ')}).`,
        field: `careTeam[${index}].role`,
      });
    }
    if (!localReference(member.reference, PRACTITIONER_TYPES)) {
      issues.push({
        rule: 'care-team-member-invalid',
        code: 'value',
        diagnostics: `Care-team member "${member.reference}" is not a Practitioner/{id} or PractitionerRole/{id} reference.`,
        field: `careTeam[${index}].reference`,
      });
    }
    const key = `${member.role}|${member.reference}`;
    if (seen.has(key)) {
      issues.push({ rule: 'care-team-duplicate', code: 'value', diagnostics: `${member.reference} is listed twice as ${member.role}.`, field: `careTeam[${index}]` });
    }
    seen.add(key);
  });
  for (const role of enrolment.careTeamRoles) {
    if (role.required && !team.some((member) => member.role === role.code)) {
      issues.push({
        rule: 'care-team-missing-role',
        code: 'required',
        diagnostics: `The care team needs a member with the role "${role.code}" (${role.display}).`,
        field: 'careTeam',
      });
    }
  }
  return issues;
}

function consentIssues(input: EnrolmentRequestCheck): EnrolmentIssue[] {
  const { request, consent } = input;
  if (request.consent === undefined) {
    return input.enrolment.consentRequired
      ? [{ rule: 'consent-missing', code: 'required', diagnostics: 'The program requires the signed Consent (contract of engagement and membership).', field: 'consent' }]
      : [];
  }
  if (!consent || referenceKey(request.consent) !== `Consent/${consent.id ?? ''}`) {
    return [{ rule: 'consent-not-found', code: 'not-found', diagnostics: `Consent ${request.consent} was not found.`, field: 'consent' }];
  }
  const issues: EnrolmentIssue[] = [];
  if (referenceKey(consent.patient) !== `Patient/${request.patientId}`) {
    issues.push({ rule: 'consent-other-patient', code: 'business-rule', diagnostics: 'The Consent is not the patient\'s.', field: 'consent', expression: 'Consent.patient' });
  }
  if (consent.status !== 'active') {
    issues.push({ rule: 'consent-not-active', code: 'business-rule', diagnostics: `The Consent is ${consent.status}, not active.`, field: 'consent', expression: 'Consent.status' });
  } else if (isCalendarDate(request.start) && !periodCovers(consent.provision?.period, request.start, input.zone)) {
    issues.push({
      rule: 'consent-not-active',
      code: 'business-rule',
      diagnostics: `The Consent is not in force on the start date ${request.start}.`,
      field: 'consent',
      expression: 'Consent.provision.period',
    });
  }
  const criterion = input.consentCriterion;
  if (criterion) {
    const byPolicy = (consent.policy ?? []).some((policy) => policy.uri !== undefined && criterion.policyUris.includes(policy.uri));
    const categories = criterion.categories;
    const byCategory = categories !== undefined && consent.category.some((category) => codeableConceptIn(category, categories));
    if (!byPolicy && !byCategory) {
      issues.push({
        rule: 'consent-other-program',
        code: 'business-rule',
        diagnostics: `The Consent is not the program's contract (policy ${criterion.policyUris.join(', ') || 'none'}).`,
        field: 'consent',
        expression: 'Consent.policy',
      });
    }
  }
  return issues;
}

function teamKeys(members: readonly CareTeamMember[]): string[] {
  return [...new Set(members.map((member) => `${member.role}|${referenceKey(member.reference) ?? member.reference}`))].sort();
}

/**
 * True when `request` is the request that made the existing enrolment: same start, same team
 * (the same members with the same roles, in any order), and every option the request names
 * recorded with the same value (options left to their default are not compared). The adapter
 * answers such a repeat with the existing resources and any other request of an enrolled
 * patient with a conflict. The Consent reference is not compared (the episode does not record it).
 */
export function sameEnrolment(existingEpisode: fhir4.EpisodeOfCare, existingTeam: fhir4.CareTeam, request: EnrolmentRequest): boolean {
  if (existingEpisode.period?.start !== request.start) return false;
  const recorded = teamKeys(careTeamMembers(existingTeam));
  const requested = teamKeys(request.careTeam);
  if (recorded.length !== requested.length || recorded.some((key, index) => key !== requested[index])) return false;
  const values = personalisationOf(existingEpisode);
  return Object.entries(request.options).every(([name, value]) => values[name] === value);
}
