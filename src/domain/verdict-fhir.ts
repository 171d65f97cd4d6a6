/**
 * FHIR R4 shapes of what the adapter emits about an eligibility verdict. Pure: the caller
 * passes every id and date (the domain has no clock), nothing is fetched or written here.
 *
 * - `verdictToParameters`: the synchronous answer of
 *   `POST /fhir/Patient/{id}/$evaluate-eligibility` (profile `eligibility-verdict-parameters`).
 * - `verdictToGuidanceResponse`: the stored result of an evaluation, one per program and
 *   patient, updated in place (profile `eligibility-guidance-response`).
 * - `enrolmentProposalTask`: a Task asking the GP to propose enrolment to an eligible patient
 *   (profile `enrolment-proposal-task`).
 *
 * Privacy: the resources name the patient only through the reference `Patient/{id}` and, in
 * identifiers, that same server id. Reasons and diagnostics come from the domain, which
 * writes them without patient identifiers.
 *
 * Profiles and code systems live in `profiles/` (canonical base `FHIR_BASE`).
 */
import type { LoadedProgram } from '../programs/schema.js';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from './ids.js';
import type { CriterionResult, DataIssue, EligibilityOutcome, EligibilityVerdict, JudgedValue } from './types.js';

/** Base of this project's canonical URLs (StructureDefinition, CodeSystem). */
export const FHIR_BASE = 'http://forfait-fhir.org/fhir';
export const UCUM_SYSTEM = 'http://unitsofmeasure.org';

/** CodeSystem of verdict outcomes (`profiles/CodeSystem-eligibility-outcome.json`). */
export const ELIGIBILITY_OUTCOME_SYSTEM = `${FHIR_BASE}/CodeSystem/eligibility-outcome`;
/** CodeSystem of the Task codes this adapter creates (`profiles/CodeSystem-task-code.json`). */
export const TASK_CODE_SYSTEM = `${FHIR_BASE}/CodeSystem/task-code`;
export const PROPOSE_ENROLMENT_CODE = 'propose-enrolment';

/** Canonical URLs of the profiles in `profiles/`, declared in `meta.profile` of what we emit. */
export const PROFILE_URLS = {
  guidanceResponse: `${FHIR_BASE}/StructureDefinition/eligibility-guidance-response`,
  enrolmentProposalTask: `${FHIR_BASE}/StructureDefinition/enrolment-proposal-task`,
  verdictParameters: `${FHIR_BASE}/StructureDefinition/eligibility-verdict-parameters`,
} as const;

/** Local ids of the resources contained in the GuidanceResponse. */
export const CONTAINED_VERDICT_ID = 'verdict';
export const CONTAINED_ISSUES_ID = 'issues';

const OUTCOME_DISPLAY: Record<EligibilityOutcome, string> = {
  eligible: 'Eligible',
  'not-eligible': 'Not eligible',
  undetermined: 'Undetermined',
};

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

/** Identifier system of a program's GuidanceResponses: `<program url>/guidance-response`. */
export function guidanceResponseIdentifierSystem(program: LoadedProgram): string {
  return `${program.definition.url}/guidance-response`;
}

/** Identifier system of a program's enrolment-proposal Tasks: `<program url>/enrolment-proposal`. */
export function enrolmentProposalIdentifierSystem(program: LoadedProgram): string {
  return `${program.definition.url}/enrolment-proposal`;
}

/**
 * Deterministic resource id of the GuidanceResponse of (program, patient): a UUIDv5 in
 * `FORFAIT_UUID_NAMESPACE` of `GuidanceResponse|<program url>|<patient id>`. The patient id is
 * the server's logical id, so the id is stable per FHIR server, which is where it is used.
 */
export function guidanceResponseId(program: LoadedProgram, patientId: string): string {
  return deterministicUuid(FORFAIT_UUID_NAMESPACE, `GuidanceResponse|${program.definition.url}|${patientId}`);
}

/** Deterministic resource id of the enrolment-proposal Task of (program, patient), as `guidanceResponseId`. */
export function enrolmentProposalTaskId(program: LoadedProgram, patientId: string): string {
  return deterministicUuid(FORFAIT_UUID_NAMESPACE, `Task|${program.definition.url}|${patientId}`);
}

/**
 * One line a GP can read, e.g. `FNMF ...: eligible as of 2024-05-01. Met: age, bmi. Unknown:
 * fasting-glucose. Flags: above range: possible diabetes.` No patient identifiers.
 */
export function verdictSummary(verdict: EligibilityVerdict, program: LoadedProgram): string {
  const byStatus = (status: CriterionResult['status']): string[] =>
    verdict.criteria.filter((c) => c.status === status).map((c) => c.code);
  const parts = [`${program.definition.title}: ${verdict.outcome} as of ${verdict.asOf}.`];
  const met = byStatus('met');
  const notMet = byStatus('not-met');
  const unknown = byStatus('unknown');
  if (met.length > 0) parts.push(`Met: ${met.join(', ')}.`);
  if (notMet.length > 0) parts.push(`Not met: ${notMet.join(', ')}.`);
  if (unknown.length > 0) parts.push(`Unknown: ${unknown.join(', ')}.`);
  const flags = verdict.criteria.flatMap((c) => (c.flags ?? []).map((f) => `${c.code}: ${f}`));
  if (flags.length > 0) parts.push(`Flags: ${flags.join('; ')}.`);
  return parts.join(' ');
}

/** `Parameters.parameter.value[x]` of a judged value. Quantity values become JSON numbers. */
function judgedValueToParameter(value: JudgedValue): fhir4.ParametersParameter {
  switch (value.type) {
    case 'Quantity': {
      const number = Number(value.value);
      if (!Number.isFinite(number)) throw new TypeError(`Judged quantity is not a decimal: ${value.value}`);
      return { name: 'value', valueQuantity: { value: number, unit: value.unit, system: UCUM_SYSTEM, code: value.code } };
    }
    case 'integer':
      return { name: 'value', valueInteger: value.value };
    case 'boolean':
      return { name: 'value', valueBoolean: value.value };
    case 'string':
      return { name: 'value', valueString: value.value };
    case 'date':
      return { name: 'value', valueDate: value.value };
    case 'Coding': {
      const coding: fhir4.Coding = { code: value.code };
      if (value.system !== undefined) coding.system = value.system;
      if (value.display !== undefined) coding.display = value.display;
      return { name: 'value', valueCoding: coding };
    }
  }
}

function criterionParameter(criterion: CriterionResult): fhir4.ParametersParameter {
  const part: fhir4.ParametersParameter[] = [
    { name: 'code', valueCode: criterion.code },
    { name: 'status', valueCode: criterion.status },
  ];
  if (criterion.value) part.push(judgedValueToParameter(criterion.value));
  part.push({ name: 'reason', valueString: criterion.reason });
  for (const reference of criterion.evidence) part.push({ name: 'evidence', valueReference: { reference } });
  for (const flag of criterion.flags ?? []) part.push({ name: 'flag', valueString: flag });
  // Not in the minimal contract but what an `undetermined` answer needs to be actionable:
  // the data that would settle the criterion, as the domain describes it.
  for (const missing of criterion.missing ?? []) part.push({ name: 'missing', valueString: missing.description });
  for (const issue of criterion.issues ?? []) part.push({ name: 'issue', valueString: issue.diagnostics });
  return { name: 'criterion', part };
}

/**
 * The answer of `$evaluate-eligibility`: `program`, `asOf`, `outcome`, then one `criterion`
 * per criterion with parts `code`, `status`, `value` (when judged), `reason`, `evidence`*,
 * `flag`*, `missing`* (description of the data that would settle it) and `issue`*.
 */
export function verdictToParameters(verdict: EligibilityVerdict): fhir4.Parameters {
  return buildParameters(verdict, undefined);
}

function buildParameters(verdict: EligibilityVerdict, id: string | undefined): fhir4.Parameters {
  return {
    resourceType: 'Parameters',
    ...(id === undefined ? {} : { id }),
    meta: { profile: [PROFILE_URLS.verdictParameters] },
    parameter: [
      { name: 'program', valueString: verdict.program },
      { name: 'asOf', valueDate: verdict.asOf },
      { name: 'outcome', valueCode: verdict.outcome },
      ...verdict.criteria.map(criterionParameter),
    ],
  };
}

function issueToOutcomeIssue(criterion: CriterionResult, issue: DataIssue): fhir4.OperationOutcomeIssue {
  const result: fhir4.OperationOutcomeIssue = {
    severity: issue.severity,
    // DataIssue.code is documented as an OperationOutcome issue type; validation checks it.
    code: issue.code as fhir4.OperationOutcomeIssue['code'],
    details: { text: `criterion ${criterion.code}` },
    diagnostics: issue.resource ? `${issue.diagnostics} (${issue.resource})` : issue.diagnostics,
  };
  if (issue.expression) result.expression = [issue.expression];
  return result;
}

/** `DataRequirement`s of the criteria's `missing` data, without duplicates. */
function dataRequirements(verdict: EligibilityVerdict): fhir4.DataRequirement[] {
  const seen = new Set<string>();
  const result: fhir4.DataRequirement[] = [];
  for (const criterion of verdict.criteria) {
    for (const missing of criterion.missing ?? []) {
      // MissingData.type is a FHIR type name from the domain; validation checks it against the
      // required binding (FHIRAllTypes).
      const requirement: fhir4.DataRequirement = { type: missing.type as fhir4.DataRequirement['type'] };
      if (missing.codes && missing.codes.length > 0) {
        requirement.codeFilter = [
          {
            path: 'code',
            code: missing.codes.map((c) => (c.display ? { system: c.system, code: c.code, display: c.display } : { system: c.system, code: c.code })),
          },
        ];
      }
      const key = JSON.stringify(requirement);
      if (!seen.has(key)) {
        seen.add(key);
        result.push(requirement);
      }
    }
  }
  return result;
}

function checkInputs(verdict: EligibilityVerdict, program: LoadedProgram, patientId: string): void {
  if (verdict.program !== program.definition.id) {
    throw new RangeError(`Verdict of program ${verdict.program} given with program ${program.definition.id}`);
  }
  if (!FHIR_ID.test(patientId)) throw new RangeError(`Not a FHIR logical id: ${JSON.stringify(patientId)}`);
}

export interface GuidanceResponseOptions {
  /** Resource id, deterministic per program and patient (see `guidanceResponseId`) so the resource is updated in place. */
  id: string;
  /** When the evaluation ran (FHIR dateTime): passed in, the domain has no clock. */
  occurrenceDateTime: string;
  /** Identifier of the request that asked for the evaluation (e.g. the job id). */
  requestIdentifier: fhir4.Identifier;
}

/**
 * The GuidanceResponse of an evaluation. Its business identifier is
 * `{system: <program url>/guidance-response, value: <patient id>}`: one per program and patient
 * on a server (the system already names the program, and a `|` in the value would need escaping
 * in token searches). The verdict itself is the contained Parameters `#verdict`
 * (`outputParameters`); data issues are the contained OperationOutcome `#issues`
 * (`evaluationMessage`); missing data are `dataRequirement`s.
 *
 * `status` is `success`, or `data-required` when the outcome is undetermined.
 */
export function verdictToGuidanceResponse(
  verdict: EligibilityVerdict,
  program: LoadedProgram,
  patientId: string,
  options: GuidanceResponseOptions,
): fhir4.GuidanceResponse {
  checkInputs(verdict, program, patientId);
  const parameters = buildParameters(verdict, CONTAINED_VERDICT_ID);
  const contained: fhir4.FhirResource[] = [parameters];
  const issues = verdict.criteria.flatMap((c) => (c.issues ?? []).map((i) => issueToOutcomeIssue(c, i)));
  if (issues.length > 0) {
    const outcome: fhir4.OperationOutcome = { resourceType: 'OperationOutcome', id: CONTAINED_ISSUES_ID, issue: issues };
    contained.push(outcome);
  }
  const requirements = dataRequirements(verdict);
  const response: fhir4.GuidanceResponse = {
    resourceType: 'GuidanceResponse',
    id: options.id,
    meta: { profile: [PROFILE_URLS.guidanceResponse] },
    contained,
    requestIdentifier: options.requestIdentifier,
    identifier: [{ system: guidanceResponseIdentifierSystem(program), value: patientId }],
    moduleUri: program.definition.url,
    status: verdict.outcome === 'undetermined' ? 'data-required' : 'success',
    subject: { reference: `Patient/${patientId}` },
    occurrenceDateTime: options.occurrenceDateTime,
    reasonCode: [
      {
        coding: [{ system: ELIGIBILITY_OUTCOME_SYSTEM, code: verdict.outcome, display: OUTCOME_DISPLAY[verdict.outcome] }],
        text: OUTCOME_DISPLAY[verdict.outcome],
      },
    ],
    note: [{ text: verdictSummary(verdict, program) }],
    outputParameters: { reference: `#${CONTAINED_VERDICT_ID}` },
  };
  if (issues.length > 0) response.evaluationMessage = [{ reference: `#${CONTAINED_ISSUES_ID}` }];
  if (requirements.length > 0) response.dataRequirement = requirements;
  return response;
}

export interface EnrolmentProposalOptions {
  /** Resource id, deterministic per program and patient (see `enrolmentProposalTaskId`). */
  id: string;
  /** When the proposal was made (FHIR dateTime). */
  authoredOn: string;
  /** The GP (Practitioner or PractitionerRole reference) asked to propose enrolment. */
  owner?: fhir4.Reference;
  /** What the Task is about, e.g. the GuidanceResponse of the evaluation. */
  focus?: fhir4.Reference;
}

/**
 * A Task asking the GP to propose enrolment in the program to an eligible patient:
 * `requested`, intent `proposal`, code `propose-enrolment` of `TASK_CODE_SYSTEM`, identifier
 * `{system: <program url>/enrolment-proposal, value: <patient id>}` (one per program and
 * patient), the verdict summary in `note`.
 *
 * @throws RangeError when the verdict is not `eligible`: only eligible patients are proposed.
 */
export function enrolmentProposalTask(
  verdict: EligibilityVerdict,
  program: LoadedProgram,
  patientId: string,
  options: EnrolmentProposalOptions,
): fhir4.Task {
  checkInputs(verdict, program, patientId);
  if (verdict.outcome !== 'eligible') {
    throw new RangeError(`Enrolment is proposed to eligible patients only; the verdict is ${verdict.outcome}`);
  }
  const task: fhir4.Task = {
    resourceType: 'Task',
    id: options.id,
    meta: { profile: [PROFILE_URLS.enrolmentProposalTask] },
    identifier: [{ system: enrolmentProposalIdentifierSystem(program), value: patientId }],
    instantiatesUri: program.definition.url,
    status: 'requested',
    intent: 'proposal',
    code: {
      coding: [{ system: TASK_CODE_SYSTEM, code: PROPOSE_ENROLMENT_CODE, display: 'Propose enrolment in a program' }],
      text: `Propose enrolment in ${program.definition.title}`,
    },
    description: `The patient meets the inclusion criteria of ${program.definition.title} as of ${verdict.asOf}: propose enrolment.`,
    for: { reference: `Patient/${patientId}` },
    authoredOn: options.authoredOn,
    note: [{ text: verdictSummary(verdict, program) }],
  };
  if (options.focus) task.focus = options.focus;
  if (options.owner) task.owner = options.owner;
  return task;
}
