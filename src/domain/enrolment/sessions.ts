/**
 * Care sessions (issue #3, point 4): does an Encounter count for an enrolment, and in which
 * CarePlan activity; then the CarePlan with the session recorded. Pure.
 *
 * Matching rules (each failure is an issue, all reported at once):
 * - the Encounter names the episode (`episodeOfCare`) and the episode's patient (`subject`);
 * - the episode is `active` (not planned, finished or cancelled): the adapter runs
 *   `advancePlans` on schedule, so an episode whose start has come is active;
 * - the session was held: status not `planned`, `cancelled` or `entered-in-error`;
 * - its kind is the session-kind coding of `Encounter.type`, one of the program's kinds;
 * - its date is the local calendar date of `period.start` in the program's zone, and an
 *   `active` CarePlan of the episode covers that date and has an activity of that kind. A
 *   session sent after its phase was completed is refused (the phase is closed);
 * - every Practitioner / PractitionerRole participant is a member of the care team, by exact
 *   reference (`Type/id`, any base URL or version). **Strict**: a Practitioner does not stand
 *   for a PractitionerRole of the team pointing to it, nor the reverse, since resolving one to
 *   the other needs a read. When the participant's `type` carries a care-team-role coding, the
 *   team must have that member with that role. Other participants (a RelatedPerson) are not
 *   checked; at least one practitioner participant is required.
 *
 * Choice of the activity: the one already holding this Encounter (a re-sent session matches
 * where it was recorded, even once the phase or the episode has ended), else among the matching activities (plans by start date, activities in
 * order) the first whose recorded count is below its planned `scheduledTiming.repeat.count`,
 * else the first.
 */
import { CARE_TEAM_ROLE_SYSTEM } from '../../programs/enrolment-schema.js';
import { dateSpanOf } from '../dates.js';
import { referenceKey, refersTo } from '../references.js';
import { careTeamMembers } from './enrolment-resources.js';
import { sessionKindOf } from './plan-application.js';
import { ENROLMENT_EXTENSIONS, type EnrolmentIssue } from './types.js';

export interface SessionContext {
  episode: fhir4.EpisodeOfCare;
  careTeam: fhir4.CareTeam;
  /** The episode's CarePlans. */
  carePlans: readonly fhir4.CarePlan[];
  /** Codes of CodeSystem session-kind the program knows. */
  sessionKinds: ReadonlySet<string>;
  /** The program's IANA zone. */
  zone: string;
}

export type SessionMatch =
  | { ok: true; carePlanId: string; activityIndex: number; /** The Encounter is already recorded there. */ alreadyRecorded: boolean }
  | { ok: false; issues: EnrolmentIssue[] };

const NOT_HELD = new Set(['planned', 'cancelled', 'entered-in-error']);
const PRACTITIONER = /^(Practitioner|PractitionerRole)\//;

/** The number of sessions planned for an activity (`scheduledTiming.repeat.count`), if given. */
export function plannedCount(activity: fhir4.CarePlanActivity): number | undefined {
  return activity.detail?.scheduledTiming?.repeat?.count;
}

/** The sessions recorded for an activity (its `outcomeReference` count). */
export function recordedCount(activity: fhir4.CarePlanActivity): number {
  return activity.outcomeReference?.length ?? 0;
}

function participantIssues(encounter: fhir4.Encounter, careTeam: fhir4.CareTeam): EnrolmentIssue[] {
  const members = careTeamMembers(careTeam).map((member) => ({ key: referenceKey(member.reference), role: member.role }));
  const issues: EnrolmentIssue[] = [];
  let practitioners = 0;
  (encounter.participant ?? []).forEach((participant, index) => {
    const key = referenceKey(participant.individual);
    if (key === undefined || !PRACTITIONER.test(key)) return;
    practitioners += 1;
    const roles = (participant.type ?? []).flatMap((type) => (type.coding ?? []).filter((c) => c.system === CARE_TEAM_ROLE_SYSTEM && c.code).map((c) => c.code));
    const matches = members.filter((member) => member.key === key);
    const expression = `Encounter.participant[${index}]`;
    if (matches.length === 0) {
      issues.push({ rule: 'participant-not-in-team', code: 'business-rule', diagnostics: `${key} is not a member of the patient's care team.`, expression });
    } else {
      for (const role of roles) {
        if (!matches.some((member) => member.role === role)) {
          issues.push({ rule: 'participant-not-in-team', code: 'business-rule', diagnostics: `${key} is not in the care team as ${role}.`, expression });
        }
      }
    }
  });
  if (practitioners === 0) {
    issues.push({
      rule: 'participant-missing',
      code: 'required',
      diagnostics: 'The session names no practitioner (participant.individual: Practitioner or PractitionerRole).',
      expression: 'Encounter.participant',
    });
  }
  return issues;
}

function holds(activity: fhir4.CarePlanActivity, encounterKey: string): boolean {
  return (activity.outcomeReference ?? []).some((reference) => referenceKey(reference) === encounterKey);
}

/**
 * Whether `encounter` is a care session of the enrolment, and which CarePlan activity it counts
 * for (rules in the module comment).
 */
export function matchSession(encounter: fhir4.Encounter, context: SessionContext): SessionMatch {
  const { episode, careTeam, carePlans } = context;
  const issues: EnrolmentIssue[] = [];
  if (!(encounter.episodeOfCare ?? []).some((reference) => refersTo(reference, episode))) {
    issues.push({ rule: 'encounter-other-episode', code: 'invalid', diagnostics: 'The session does not name this enrolment (episodeOfCare).', expression: 'Encounter.episodeOfCare' });
  }
  if (referenceKey(encounter.subject) !== referenceKey(episode.patient)) {
    issues.push({ rule: 'encounter-other-patient', code: 'invalid', diagnostics: 'The session is not about the enrolled patient.', expression: 'Encounter.subject' });
  }
  const stateIssues: EnrolmentIssue[] = [];
  if (episode.status !== 'active') {
    stateIssues.push({
      rule: 'episode-not-active',
      code: 'business-rule',
      diagnostics: `The enrolment is ${episode.status}: sessions are recorded for active enrolments only.`,
      expression: 'Encounter.episodeOfCare',
    });
  }
  if (NOT_HELD.has(encounter.status)) {
    issues.push({ rule: 'session-not-held', code: 'business-rule', diagnostics: `A session with status ${encounter.status} was not held.`, expression: 'Encounter.status' });
  }
  const kind = sessionKindOf(encounter.type);
  if (kind === undefined) {
    issues.push({ rule: 'session-kind-missing', code: 'required', diagnostics: 'The session has no session-kind coding in type.', expression: 'Encounter.type' });
  } else if (!context.sessionKinds.has(kind)) {
    issues.push({ rule: 'session-kind-unknown', code: 'code-invalid', diagnostics: `Unknown session kind "${kind}".`, expression: 'Encounter.type' });
  }
  const span = dateSpanOf(encounter.period?.start, context.zone);
  const date = span !== undefined && span.first === span.last ? span.first : undefined;
  if (date === undefined) {
    issues.push({ rule: 'session-date-invalid', code: 'required', diagnostics: 'The session needs a day: period.start as a full date or dateTime.', expression: 'Encounter.period.start' });
  }
  issues.push(...participantIssues(encounter, careTeam));

  // A re-sent session already recorded matches where it is, whatever happened since (the
  // phase completed, the patient exited): re-sending is a no-op, not an error.
  const encounterKey = encounter.id ? `Encounter/${encounter.id}` : undefined;
  if (encounterKey && issues.length === 0) {
    for (const carePlan of carePlans) {
      const index = (carePlan.activity ?? []).findIndex((activity) => holds(activity, encounterKey));
      if (index >= 0) return { ok: true, carePlanId: carePlan.id as string, activityIndex: index, alreadyRecorded: true };
    }
  }
  issues.push(...stateIssues);
  if (date === undefined || kind === undefined || issues.length > 0) return { ok: false, issues };

  const covering = carePlans
    .filter((plan) => plan.status === 'active' && plan.period?.start !== undefined && plan.period.end !== undefined)
    .filter((plan) => (plan.period?.start as string) <= date && date <= (plan.period?.end as string))
    .sort((a, b) => (a.period?.start as string).localeCompare(b.period?.start as string) || (a.id ?? '').localeCompare(b.id ?? ''));
  if (covering.length === 0) {
    return {
      ok: false,
      issues: [{ rule: 'outside-active-phase', code: 'business-rule', diagnostics: `No active phase of the enrolment covers ${date}.`, expression: 'Encounter.period.start' }],
    };
  }
  const candidates = covering.flatMap((plan) =>
    (plan.activity ?? []).flatMap((activity, activityIndex) => (sessionKindOf(activity.detail?.code) === kind ? [{ plan, activity, activityIndex }] : [])),
  );
  const chosen = candidates.find((c) => recordedCount(c.activity) < (plannedCount(c.activity) ?? Number.POSITIVE_INFINITY)) ?? candidates[0];
  if (!chosen) {
    return {
      ok: false,
      issues: [{ rule: 'kind-not-in-plan', code: 'business-rule', diagnostics: `The active phase on ${date} plans no "${kind}" session.`, expression: 'Encounter.type' }],
    };
  }
  return { ok: true, carePlanId: chosen.plan.id as string, activityIndex: chosen.activityIndex, alreadyRecorded: false };
}

function withSessionCount(detail: fhir4.CarePlanActivityDetail, count: number): fhir4.CarePlanActivityDetail {
  const others = (detail.extension ?? []).filter((extension) => extension.url !== ENROLMENT_EXTENSIONS.sessionCount);
  return { ...detail, extension: [...others, { url: ENROLMENT_EXTENSIONS.sessionCount, valueUnsignedInt: count }] };
}

/**
 * The CarePlan with `encounterReference` (`Encounter/{id}`) in `activity[activityIndex].outcomeReference`
 * and the activity's session-count extension equal to the number of references; the activity
 * moves from `not-started` to `in-progress`. Idempotent: when the reference is already there
 * (any base URL or version), `carePlan` itself is returned, so `result === carePlan` says there
 * is nothing to write.
 *
 * @throws RangeError for an activity index out of range or a reference that is not `Encounter/{id}`.
 */
export function recordSession(carePlan: fhir4.CarePlan, activityIndex: number, encounterReference: string): fhir4.CarePlan {
  const activity = carePlan.activity?.[activityIndex];
  if (!activity?.detail) throw new RangeError(`CarePlan/${carePlan.id ?? ''} has no activity ${activityIndex}`);
  const key = referenceKey(encounterReference);
  if (!key?.startsWith('Encounter/')) throw new RangeError(`Not an Encounter reference: ${encounterReference}`);
  if (holds(activity, key)) return carePlan;
  const outcomeReference = [...(activity.outcomeReference ?? []), { reference: key }];
  const detail = withSessionCount(activity.detail, outcomeReference.length);
  if (detail.status === 'not-started' || detail.status === 'scheduled') detail.status = 'in-progress';
  const activities = [...(carePlan.activity ?? [])];
  activities[activityIndex] = { ...activity, outcomeReference, detail };
  return { ...carePlan, activity: activities };
}

/**
 * The CarePlan without a session (an Encounter later marked `entered-in-error`): the reference
 * removed from every activity holding it, counts updated. Returns `carePlan` itself when no
 * activity holds it. An activity left without sessions keeps its status.
 */
export function withdrawSession(carePlan: fhir4.CarePlan, encounterReference: string): fhir4.CarePlan {
  const key = referenceKey(encounterReference);
  if (key === undefined || !(carePlan.activity ?? []).some((activity) => holds(activity, key))) return carePlan;
  const activity = (carePlan.activity ?? []).map((item) => {
    if (!holds(item, key) || !item.detail) return item;
    const outcomeReference = (item.outcomeReference ?? []).filter((reference) => referenceKey(reference) !== key);
    const { outcomeReference: _removed, ...rest } = item;
    return { ...rest, ...(outcomeReference.length > 0 ? { outcomeReference } : {}), detail: withSessionCount(item.detail, outcomeReference.length) };
  });
  return { ...carePlan, activity };
}
