/**
 * Vocabulary of enrolment, plans and care sessions (issue #3). Pure: no I/O, no clock.
 *
 * Resource model (profiles in `profiles/`, canonical base http://forfait-fhir.org/fhir):
 * - EpisodeOfCare = the enrolment: `type` [program coding `CodeSystem/program|<program id>`],
 *   `identifier` `{system: <program url>/enrolment, value: <patientId>|<start>}`, `patient`,
 *   `period.start` (and `end` on exit), `status` (`planned` before start, `active`, `finished`
 *   on exit, `cancelled` on an exit before the start), `team` → the CareTeam, `careManager` → the GP member, extensions for a
 *   clinician override reason, the personalisation options and the exit reason.
 * - CareTeam = the enrolment's team: `participant[]` {role: care-team-role coding, member}.
 * - CarePlan per plan period: `category` [plan-code coding], `instantiatesCanonical`
 *   [PlanDefinition url], `status` (`planned` → `active` → `completed`, or `revoked` on exit;
 *   a planned period is written `draft`, as R4 CarePlan.status has no `planned`: see
 *   `CARE_PLAN_STATUS`),
 *   `intent` `plan`, `subject`, `period` (end = last day, inclusive), `careTeam`, the
 *   episode in the `workflow-episodeOfCare` extension, and one `activity` per applicable
 *   PlanDefinition action: `detail` {kind `Appointment`, instantiatesCanonical [ActivityDefinition
 *   url], code = session-kind coding, status, scheduledTiming (planned count and frequency),
 *   performer [care-team members with the action's role], a performer-role extension, and a
 *   session-count extension = number of recorded sessions}, `outcomeReference[]` → Encounters.
 * - Encounter = a care session: `type` [session-kind coding], `period`, `participant`
 *   [{type: care-team-role coding, individual}], `episodeOfCare`, `subject`, `identifier`.
 *
 * Every id the adapter assigns is a UUIDv5 (src/domain/ids.ts) of a stable key, so writes
 * are PUTs that a retry repeats harmlessly.
 */
import type { CalendarDate } from '../types.js';

export interface CareTeamMember {
  /** `PractitionerRole/{id}` or `Practitioner/{id}`. */
  reference: string;
  /** Role code of the program's `careTeamRoles`. */
  role: string;
}

/** Personalisation option values by name (`%name` in PlanDefinition conditions). */
export type PersonalisationValues = Record<string, boolean | string>;

export interface EnrolmentRequest {
  programId: string;
  patientId: string;
  start: CalendarDate;
  careTeam: CareTeamMember[];
  /** `Consent/{id}` where the program requires one. */
  consent?: string;
  options: PersonalisationValues;
  /** Clinician override of a not-eligible verdict: the reason is required and recorded. */
  overrideReason?: string;
}

/** One period of one plan: the unit a CarePlan is written for. */
export interface PlanPeriod {
  planCode: string;
  /** 0 for the first period; yearly plans count up. */
  index: number;
  start: CalendarDate;
  /** Last day of the period (inclusive). */
  end: CalendarDate;
}

export type PlanStatus = 'planned' | 'active' | 'completed' | 'revoked';

/**
 * `CarePlan.status` of each plan status. R4 CarePlan.status (RequestStatus) has no `planned`:
 * a period that has not started yet is `draft` (written, not yet in force) and becomes `active`
 * on its start date, which keeps "activates the consolidation phase" visible as a status change.
 */
export const CARE_PLAN_STATUS = {
  planned: 'draft',
  active: 'active',
  completed: 'completed',
  revoked: 'revoked',
} as const satisfies Record<PlanStatus, fhir4.CarePlan['status']>;

/** Exit reasons (CodeSystem exit-reason); `other` needs a text. */
export const EXIT_REASONS = ['completed', 'withdrew', 'moved-away', 'diabetes-diagnosed', 'deceased', 'lost-to-follow-up', 'other'] as const;
export type ExitReason = (typeof EXIT_REASONS)[number];

/** The program fields the enrolment builders read (`LoadedProgram.definition` fits). */
export interface ProgramRef {
  id: string;
  title: string;
  /** Canonical URL of the program: prefix of the resources' identifier systems, part of their id keys. */
  url: string;
}

/**
 * Evaluates one PlanDefinition applicability condition (`text/fhirpath`) with the
 * personalisation values as `%name` variables; true only when it yields `true`. Injected: the
 * domain has no FHIRPath engine (the adapter passes src/fhir/fhirpath-conditions.ts).
 */
export type ConditionEvaluator = (expression: string, variables: Record<string, unknown>) => boolean;

/** PlanDefinitions by canonical URL (`ProgramCatalog.planDefinitions`). */
export type PlanDefinitions = ReadonlyMap<string, fhir4.PlanDefinition>;

/**
 * Why a request, an Encounter or an operation is refused. The adapter maps each to an
 * OperationOutcome issue (`code` is an R4 issue type) and picks the HTTP status from `rule`
 * (e.g. `capacity-reached` and `already-exited` are conflicts, most others 422).
 */
export type EnrolmentRule =
  | 'start-invalid'
  | 'care-team-missing-role'
  | 'care-team-unknown-role'
  | 'care-team-member-invalid'
  | 'care-team-duplicate'
  | 'consent-missing'
  | 'consent-not-found'
  | 'consent-not-active'
  | 'consent-other-patient'
  | 'consent-other-program'
  | 'option-unknown'
  | 'option-invalid'
  | 'override-reason-missing'
  | 'capacity-reached'
  | 'episode-not-active'
  | 'encounter-other-episode'
  | 'encounter-other-patient'
  | 'session-not-held'
  | 'session-kind-missing'
  | 'session-kind-unknown'
  | 'session-date-invalid'
  | 'outside-active-phase'
  | 'kind-not-in-plan'
  | 'participant-missing'
  | 'participant-not-in-team'
  | 'exit-reason-unknown'
  | 'exit-text-missing'
  | 'exit-date-invalid'
  | 'already-exited'
  | 'plan-unknown'
  | 'plan-max-open'
  | 'plan-outside-episode'
  | 'already-enrolled'
  | 'not-eligible'
  | 'decline-reason-unknown'
  | 'decline-text-missing'
  | 'nothing-to-decline';

export interface EnrolmentIssue {
  rule: EnrolmentRule;
  /** R4 OperationOutcome issue type: `required`, `value`, `invalid`, `code-invalid`, `business-rule`, `conflict`, `not-found`. */
  code: fhir4.OperationOutcomeIssue['code'];
  /** One sentence for the caller (no patient identifiers). */
  diagnostics: string;
  /** The `EnrolmentRequest` field concerned (`careTeam[1].role`, `consent`, `options.platformIntensity`): the adapter maps it to its Parameters. */
  field?: string;
  /** FHIRPath of the element concerned in an input resource (`Encounter.period.start`, `Consent.status`). */
  expression?: string;
}

/** A domain answer: the value, or why not. */
export type Checked<T> = ({ ok: true } & T) | { ok: false; issues: EnrolmentIssue[] };

const FHIR_BASE = 'http://forfait-fhir.org/fhir';

/** Profiles of the resources written for an enrolment (`profiles/StructureDefinition-<name>.json`). */
export const ENROLMENT_PROFILES = {
  episodeOfCare: `${FHIR_BASE}/StructureDefinition/enrolment-episode-of-care`,
  careTeam: `${FHIR_BASE}/StructureDefinition/program-care-team`,
  carePlan: `${FHIR_BASE}/StructureDefinition/phase-care-plan`,
  encounter: `${FHIR_BASE}/StructureDefinition/care-session-encounter`,
} as const;

/**
 * Extensions of the resource model. Not defined as StructureDefinitions: the validator does not
 * check extension definitions (src/fhir/validation.ts), and the profiles constrain their use
 * with invariants instead.
 */
export const ENROLMENT_EXTENSIONS = {
  /** EpisodeOfCare: the clinician's reason to enrol a patient the verdict found not eligible (valueString). */
  overrideReason: `${FHIR_BASE}/StructureDefinition/enrolment-override-reason`,
  /**
   * EpisodeOfCare, one per option (all options, defaults included): complex, sub-extensions
   * `name` (valueCode, the option name) and `value` (valueBoolean or valueCode).
   */
  personalisation: `${FHIR_BASE}/StructureDefinition/enrolment-personalisation`,
  /** EpisodeOfCare on exit: valueCodeableConcept, a coding of CodeSystem/exit-reason and, for `other`, the text. */
  exitReason: `${FHIR_BASE}/StructureDefinition/enrolment-exit-reason`,
  /** CarePlan.activity.detail: valueCoding, the care-team role performing the sessions. */
  performerRole: `${FHIR_BASE}/StructureDefinition/care-plan-activity-performer-role`,
  /** CarePlan.activity.detail: valueUnsignedInt, the number of sessions recorded (= activity.outcomeReference count). */
  sessionCount: `${FHIR_BASE}/StructureDefinition/care-plan-activity-session-count`,
  /** CarePlan: the enrolment's EpisodeOfCare (valueReference); the R4 core extension. */
  episodeOfCare: 'http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare',
} as const;
