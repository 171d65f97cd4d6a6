/**
 * Program data for enrolment, plans and care sessions (`mappings/programs/<id>/enrolment.json`),
 * validated with zod at start-up. Plan *content* (which sessions, how many, how often, by
 * which role, under which personalisation option) is FHIR: a `PlanDefinition` per plan and an
 * `ActivityDefinition` per session kind, in `profiles/` (a site may replace them through
 * `SITE_DIR/profiles/`). This file says which plans a program opens, when, and for how long.
 *
 * Pure (zod only).
 */
import { z } from 'zod';

const code = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'a kebab-case code');
const comment = { _source: z.string().optional(), _comment: z.string().optional() };

/** A care-team role (CodeSystem `http://forfait-fhir.org/fhir/CodeSystem/care-team-role`). */
export const careTeamRoleSchema = z.strictObject({
  code,
  display: z.string().min(1),
  /** Every enrolment's care team must have a member with this role. */
  required: z.boolean(),
  /** SNOMED CT occupation code when one exists (shown as a second coding). */
  snomed: z.string().regex(/^\d+$/).optional(),
  ...comment,
});

/** A personalisation option, passed as a `Parameters` part of `$enroll` and visible to plan conditions as `%<name>`. */
export const personalisationOptionSchema = z.discriminatedUnion('type', [
  z.strictObject({ name: z.string().regex(/^[a-zA-Z][a-zA-Z0-9]*$/), type: z.literal('boolean'), default: z.boolean(), description: z.string().min(1), ...comment }),
  z.strictObject({
    name: z.string().regex(/^[a-zA-Z][a-zA-Z0-9]*$/),
    type: z.literal('code'),
    values: z.array(code).min(1),
    default: code,
    description: z.string().min(1),
    ...comment,
  }),
]);

/**
 * A plan the program opens for an enrolled patient. Periods are calendar periods in the
 * program's time zone, counted in whole months from the enrolment start E (luxon month
 * arithmetic, which clamps to the month's last day): a plan at offset m of N months covers
 * E + m months up to the day before E + (m + N) months, so consecutive plans never overlap
 * nor leave a gap (src/domain/enrolment/plan-periods.ts).
 */
export const planSchema = z.strictObject({
  /** Plan code, e.g. `intensive`, `consolidation`, `follow-up` (CarePlan.category). */
  code,
  title: z.string().min(1),
  /** Canonical URL of the PlanDefinition (in profiles/) whose actions become the activities. */
  planDefinition: z.url(),
  /** When the plan starts, in months after the enrolment start. */
  startOffsetMonths: z.number().int().min(0),
  durationMonths: z.number().int().min(1),
  /** `once`: one CarePlan; `yearly`: one per period, the next opened when the previous ends, while enrolled. */
  repeat: z.enum(['once', 'yearly']).default('once'),
  /** The plan is opened only when the care team has a member with this role (REDIAB podiatric follow-up). */
  requiresRole: code.optional(),
  ...comment,
});

/** A plan the care team opens on demand (`$add-plan`), e.g. REDIAB complementary education for a patient in difficulty. */
export const onDemandPlanSchema = z.strictObject({
  code,
  title: z.string().min(1),
  planDefinition: z.url(),
  durationMonths: z.number().int().min(1),
  /** At most this many open (active) at a time. */
  maxOpen: z.number().int().min(1),
  ...comment,
});

export const enrolmentSchema = z.strictObject({
  /** Active-file capacity (open enrolments at once); absent: no limit. FNMF: 140 (DOMAIN.md 1, Payment). */
  capacity: z.number().int().min(1).optional(),
  /** A signed, active Consent must be referenced (REDIAB: the contract of engagement and membership). */
  consentRequired: z.boolean(),
  careTeamRoles: z.array(careTeamRoleSchema).min(1),
  personalisation: z.array(personalisationOptionSchema).default([]),
  plans: z.array(planSchema).min(1),
  onDemandPlans: z.array(onDemandPlanSchema).default([]),
  ...comment,
});

export type CareTeamRole = z.infer<typeof careTeamRoleSchema>;
export type PersonalisationOption = z.infer<typeof personalisationOptionSchema>;
export type PlanData = z.infer<typeof planSchema>;
export type OnDemandPlanData = z.infer<typeof onDemandPlanSchema>;
export type EnrolmentData = z.infer<typeof enrolmentSchema>;

/** Canonical base of the project's code systems. */
const BASE = 'http://forfait-fhir.org/fhir';
export const CARE_TEAM_ROLE_SYSTEM = `${BASE}/CodeSystem/care-team-role`;
export const SESSION_KIND_SYSTEM = `${BASE}/CodeSystem/session-kind`;
export const PLAN_CODE_SYSTEM = `${BASE}/CodeSystem/plan-code`;
export const EXIT_REASON_SYSTEM = `${BASE}/CodeSystem/exit-reason`;
export const DECLINE_REASON_SYSTEM = `${BASE}/CodeSystem/decline-reason`;
/** EpisodeOfCare.type coding marking an enrolment in a program (code = program id). */
export const PROGRAM_CODE_SYSTEM = `${BASE}/CodeSystem/program`;
