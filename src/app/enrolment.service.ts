/**
 * Enrolment, plans and care sessions (issue #3): thin orchestration around the pure domain
 * (src/domain/enrolment/). Reads what a decision needs from the FHIR server, asks the domain,
 * writes what it returns. Ids are deterministic (UUIDv5), so every write is a PUT a retry
 * repeats harmlessly; CarePlans changed by sessions are written with If-Match and re-done on a
 * 412, so two sessions recorded at once never lose one.
 */
import { dayInZone } from '../domain/dates.js';
import type { Redis } from 'ioredis';
import {
  buildEnrolment,
  CARE_MANAGER_ROLE,
  careTeamMembers,
  checkEnrolmentRequest,
  sameEnrolment,
  type EnrolmentContext,
} from '../domain/enrolment/enrolment-resources.js';
import { advancePlans, exitEnrolment, openOnDemandPlan } from '../domain/enrolment/lifecycle.js';
import { matchSession, recordSession } from '../domain/enrolment/sessions.js';
import { ENROLMENT_EXTENSIONS, type EnrolmentIssue, type EnrolmentRequest } from '../domain/enrolment/types.js';
import type { CalendarDate } from '../domain/types.js';
import { enrolmentProposalTask, enrolmentProposalTaskId } from '../domain/verdict-fhir.js';
import { evaluateFhirPathCondition } from '../fhir/fhirpath-conditions.js';
import { FhirServerError, type FhirServer } from '../fhir/fhir-server.port.js';
import { PatientNotFoundError } from '../fhir/patient-record.js';
import { DECLINE_REASON_SYSTEM, PROGRAM_CODE_SYSTEM, type PersonalisationOption } from '../programs/enrolment-schema.js';
import type { LoadedProgram, ProgramCatalog } from '../programs/schema.js';
import type { EligibilityService } from './eligibility.service.js';
import { writtenReferences, type ProvenanceWriter } from './audit.service.js';
import { tokenSearchValue } from '../http/input-guards.js';
import { localId, localReference } from '../domain/references.js';
import { proposalLockName, RedisLocks, type Locks } from '../infra/redis-lock.js';

/** A refusal the HTTP layer turns into an OperationOutcome: 409 for conflicts, else 422 (or 404). */
export class EnrolmentRefused extends Error {
  override name = 'EnrolmentRefused';
  constructor(
    readonly status: 404 | 409 | 422,
    readonly issues: EnrolmentIssue[],
  ) {
    super(issues.map((issue) => issue.diagnostics).join(' '));
  }
}

const CONFLICT_RULES = new Set(['capacity-reached', 'already-exited', 'plan-max-open', 'already-enrolled']);

function refuse(issues: EnrolmentIssue[]): never {
  throw new EnrolmentRefused(issues.some((issue) => CONFLICT_RULES.has(issue.rule)) ? 409 : 422, issues);
}

/** The session kinds the programs know (CodeSystem session-kind, from the ActivityDefinitions). */
function sessionKindsOf(catalog: ProgramCatalog): Set<string> {
  const kinds = new Set<string>();
  for (const activity of catalog.activityDefinitions.values()) {
    for (const coding of activity.code?.coding ?? []) if (coding.code) kinds.add(coding.code);
  }
  return kinds;
}

const OPEN_STATUSES = 'planned,active';
const DECLINE_REASONS = ['not-interested', 'no-time', 'distance', 'health-reasons', 'other'];
/** Attempts at a CarePlan write that another writer keeps changing under us (412). */
const MAX_CONFLICT_RETRIES = 8;
const LOCK_TTL_MS = 30_000;

export interface EnrolmentState {
  program: LoadedProgram;
  episode: fhir4.EpisodeOfCare & { id: string };
  careTeam: fhir4.CareTeam & { id: string };
  carePlans: (fhir4.CarePlan & { id: string })[];
}

export interface EnrolmentAnswer {
  created: boolean;
  episode: string;
  careTeam: string;
  carePlans: string[];
}

export interface AdvanceSummary {
  episodes: number;
  carePlansWritten: number;
  episodesWritten: number;
  completed: number;
}

const ref = (resource: fhir4.Resource): string => `${resource.resourceType}/${resource.id}`;

export class EnrolmentService {
  private readonly sessionKinds: Set<string>;
  /** Called after an enrolment's plans changed (enrolled, advanced, plan opened): forfaits may fall due. */
  onPlansChanged: (episodeId: string) => Promise<void> = async () => {};
  /** Records where what this service writes comes from (set by the composition root). */
  provenance?: ProvenanceWriter;

  private readonly locks: Locks;

  constructor(
    private readonly fhir: FhirServer,
    private readonly catalog: ProgramCatalog,
    private readonly eligibility: EligibilityService,
    redis: Redis,
    lockPrefix: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.sessionKinds = sessionKindsOf(catalog);
    this.locks = new RedisLocks(redis, lockPrefix, LOCK_TTL_MS);
  }

  /** Programs with enrolment data. */
  get programIds(): string[] {
    return [...this.catalog.programs.values()].filter((p) => p.enrolment).map((p) => p.definition.id);
  }

  /** The personalisation options `$enroll` takes for a program (from its enrolment.json); undefined for an unknown or screening-only program. */
  personalisationOptions(programId: string): readonly PersonalisationOption[] | undefined {
    return this.catalog.programs.get(programId)?.enrolment?.personalisation;
  }

  private context(program: LoadedProgram): EnrolmentContext {
    if (!program.enrolment) {
      refuse([{ rule: 'plan-unknown', code: 'not-supported', diagnostics: `Program ${program.definition.id} has no enrolment (it only screens).` }]);
    }
    return { program: program.definition, enrolment: program.enrolment, planDefinitions: this.catalog.planDefinitions, evaluate: evaluateFhirPathCondition };
  }

  today(program: LoadedProgram): CalendarDate {
    return dayInZone(this.now(), program.definition.timeZone);
  }

  /** Serialises enrolments of one program (capacity and duplicates) across every process. */
  private withProgramLock<T>(programId: string, work: () => Promise<T>): Promise<T> {
    return this.locks.withLock(`enrol:${programId}`, work, { busyMessage: 'Another enrolment of this program is being written; try again' });
  }

  private async openEpisodes(patientId: string | undefined, programId: string): Promise<(fhir4.EpisodeOfCare & { id: string })[]> {
    const params: Record<string, string> = { type: `${PROGRAM_CODE_SYSTEM}|${programId}`, status: OPEN_STATUSES, _count: '1000' };
    if (patientId) params['patient'] = `Patient/${patientId}`;
    return (await this.fhir.searchAll<fhir4.EpisodeOfCare>('EpisodeOfCare', params)) as (fhir4.EpisodeOfCare & { id: string })[];
  }

  /** The episode with its care team and CarePlans. */
  async loadState(episodeId: string): Promise<EnrolmentState> {
    const episode = await this.fhir.readIfExists<fhir4.EpisodeOfCare>('EpisodeOfCare', episodeId);
    const programId = episode?.type?.flatMap((t) => t.coding ?? []).find((c) => c.system === PROGRAM_CODE_SYSTEM)?.code;
    const program = programId ? this.catalog.programs.get(programId) : undefined;
    if (!episode?.id || !program) {
      throw new EnrolmentRefused(404, [{ rule: 'episode-not-active', code: 'not-found', diagnostics: `No enrolment EpisodeOfCare/${episodeId}` }]);
    }
    const teamId = localId(episode.team?.[0], 'CareTeam', { anyBase: true });
    const patient = episode.patient.reference as string;
    const [careTeam, plans] = await Promise.all([
      teamId ? this.fhir.readIfExists<fhir4.CareTeam>('CareTeam', teamId) : Promise.resolve(undefined),
      this.fhir.searchAll<fhir4.CarePlan>('CarePlan', { subject: patient, _count: '1000' }),
    ]);
    if (!careTeam?.id) throw new FhirServerError(`EpisodeOfCare/${episodeId} has no readable CareTeam`, 0, undefined, true);
    const carePlans = plans.filter((plan) =>
      plan.extension?.some((e) => e.url === ENROLMENT_EXTENSIONS.episodeOfCare && e.valueReference?.reference === `EpisodeOfCare/${episode.id}`),
    ) as (fhir4.CarePlan & { id: string })[];
    return { program, episode: episode as EnrolmentState['episode'], careTeam: careTeam as EnrolmentState['careTeam'], carePlans };
  }

  /** `$enroll`: re-checks eligibility at `start`, then writes the episode, team and plans. */
  async enroll(request: EnrolmentRequest): Promise<EnrolmentAnswer> {
    const program = this.eligibility.program(request.programId);
    const context = this.context(program);
    const enrolment = context.enrolment;
    return this.withProgramLock(program.definition.id, async () => {
      const patient = await this.fhir.readIfExists<fhir4.Patient>('Patient', request.patientId);
      if (!patient) throw new PatientNotFoundError(`Patient/${request.patientId} not found`);
      const asOf = this.today(program);

      const [existing] = await this.openEpisodes(request.patientId, program.definition.id);
      if (existing) {
        const state = await this.loadState(existing.id);
        if (!sameEnrolment(state.episode, state.careTeam, request)) {
          refuse([{ rule: 'already-enrolled', code: 'conflict', diagnostics: `The patient is already enrolled in ${program.definition.id} (EpisodeOfCare/${existing.id}) with another start or care team; exit it first.` }]);
        }
        // Complete an earlier attempt that stopped half-way (the episode is written last).
        const expected = buildEnrolment(context, request, asOf);
        const present = new Set(state.carePlans.map((plan) => plan.id));
        for (const plan of expected.carePlans) if (plan.id && !present.has(plan.id)) await this.fhir.update(plan as fhir4.CarePlan & { id: string });
        return { created: false, episode: ref(state.episode), careTeam: ref(state.careTeam), carePlans: [...new Set([...state.carePlans.map(ref), ...expected.carePlans.map(ref)])] };
      }

      const verdict = await this.eligibility.evaluate(program.definition.id, request.patientId, request.start);
      const consent = request.consent ? await this.readConsent(request.consent) : undefined;
      const consentCriterion = program.definition.criteria.find((c) => c.kind === 'active-consent');
      const categories = consentCriterion?.kind === 'active-consent' && consentCriterion.categoryValueSet ? this.catalog.valueSets.get(consentCriterion.categoryValueSet) : undefined;
      const open = enrolment.capacity !== undefined ? (await this.openEpisodes(undefined, program.definition.id)).length : undefined;
      const issues = checkEnrolmentRequest({
        enrolment,
        request,
        zone: program.definition.timeZone,
        ...(consent ? { consent } : {}),
        ...(consentCriterion?.kind === 'active-consent' ? { consentCriterion: { policyUris: consentCriterion.policyUris, ...(categories ? { categories } : {}) } } : {}),
        eligibility: verdict.outcome,
        ...(open !== undefined ? { openEnrolments: open } : {}),
      });
      if (issues.length) {
        const failing = verdict.criteria.filter((c) => c.status !== 'met');
        if (verdict.outcome !== 'eligible') {
          for (const criterion of failing) {
            issues.push({ rule: 'not-eligible', code: 'business-rule', diagnostics: `Criterion ${criterion.code} is ${criterion.status} at ${request.start}: ${criterion.reason}` });
          }
        }
        refuse(issues);
      }

      const built = buildEnrolment(context, request, asOf);
      // The enrolment's centre (who is paid a team forfait, whose budget it counts in): the
      // organization of the care manager's PractitionerRole.
      const managing = await this.managingOrganization(request);
      if (managing) built.episode.managingOrganization = { reference: managing };
      // One transaction of PUTs with deterministic ids; the episode last, so an interrupted
      // enrolment is found incomplete (no episode) and simply written again.
      const written = await this.fhir.transaction({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [built.careTeam, ...built.carePlans, built.episode].map((resource) => ({
          resource,
          request: { method: 'PUT' as const, url: `${resource.resourceType}/${resource.id}` },
        })),
      });
      await this.provenance?.record(writtenReferences(written), [`Patient/${request.patientId}`, ...(request.consent ? [request.consent] : [])], 'CREATE');
      await this.onPlansChanged(built.episode.id as string);
      return { created: true, episode: ref(built.episode), careTeam: ref(built.careTeam), carePlans: built.carePlans.map(ref) };
    });
  }

  private async managingOrganization(request: EnrolmentRequest): Promise<string | undefined> {
    const gp = request.careTeam.find((member) => member.role === CARE_MANAGER_ROLE) ?? request.careTeam[0];
    const roleId = localId(gp?.reference, 'PractitionerRole');
    if (!roleId) return undefined;
    const role = await this.fhir.readIfExists<fhir4.PractitionerRole>('PractitionerRole', roleId);
    return localReference(role?.organization, 'Organization')?.key;
  }

  private async readConsent(reference: string): Promise<fhir4.Consent | undefined> {
    const id = localId(reference, 'Consent');
    if (!id) refuse([{ rule: 'consent-not-found', code: 'invalid', diagnostics: 'consent must be a Consent/{id} reference', field: 'consent' }]);
    return this.fhir.readIfExists<fhir4.Consent>('Consent', id);
  }

  /** Writes resources the domain returned; existing ones with If-Match on the version we read. */
  private async write(resources: fhir4.Resource[]): Promise<void> {
    for (const resource of resources) {
      const { versionId } = resource.meta ?? {};
      const next = { ...resource, meta: { ...resource.meta } } as fhir4.Resource & { id: string };
      delete next.meta?.versionId;
      delete next.meta?.lastUpdated;
      const written = await this.fhir.update(next, versionId ? { ifMatch: versionId } : {});
      await this.provenance?.record(writtenReferences(written.resource), [], versionId ? 'UPDATE' : 'CREATE');
    }
  }

  /**
   * Runs a read-decide-write again when a write met a concurrent change (412 on If-Match):
   * the domain's decisions are idempotent, so the second pass writes only what is still due.
   */
  private async onConflictRetry<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        if (error instanceof FhirServerError && error.status === 412 && attempt < MAX_CONFLICT_RETRIES) continue;
        throw error;
      }
    }
  }

  /** Moves one enrolment to `asOf`; ends it (reason completed) when its care sequence is over. */
  advanceEpisode(episodeId: string, asOf?: CalendarDate): Promise<{ carePlansWritten: number; episodeWritten: boolean; completed: boolean }> {
    return this.onConflictRetry(() => this.advanceEpisodeOnce(episodeId, asOf));
  }

  private async advanceEpisodeOnce(episodeId: string, asOf?: CalendarDate): Promise<{ carePlansWritten: number; episodeWritten: boolean; completed: boolean }> {
    const state = await this.loadState(episodeId);
    const context = this.context(state.program);
    const date = asOf ?? this.today(state.program);
    const result = advancePlans(context, { episode: state.episode, careTeam: state.careTeam, carePlans: state.carePlans, asOf: date });
    await this.write(result.carePlans);
    if (result.episode) await this.write([result.episode]);
    let completed = false;
    if (result.sequenceComplete) {
      const plans = state.carePlans.map((plan) => result.carePlans.find((p) => p.id === plan.id) ?? plan);
      const lastEnd = plans.map((plan) => plan.period?.end ?? '').sort().at(-1) ?? date;
      const episode = result.episode ? { ...result.episode, meta: state.episode.meta } : state.episode;
      const exit = exitEnrolment({ episode, careTeam: state.careTeam, carePlans: plans, reason: 'completed', date: lastEnd });
      if (exit.ok) {
        // A freshly written episode has a new version: write without If-Match (it is ours).
        await this.write(exit.carePlans);
        if (exit.careTeam) await this.write([exit.careTeam]);
        await this.write([{ ...exit.episode, meta: {} }]);
        completed = true;
      }
    }
    if (result.carePlans.length || result.episode) await this.onPlansChanged(episodeId);
    return { carePlansWritten: result.carePlans.length, episodeWritten: result.episode !== undefined, completed };
  }

  /** Advances every open enrolment of the programs (the daily job, and `$advance`). */
  async advanceAll(asOf?: CalendarDate, programId?: string): Promise<AdvanceSummary> {
    const summary: AdvanceSummary = { episodes: 0, carePlansWritten: 0, episodesWritten: 0, completed: 0 };
    const ids = programId ? [this.eligibility.program(programId).definition.id] : this.programIds;
    for (const id of ids) {
      for (const episode of await this.openEpisodes(undefined, id)) {
        const result = await this.advanceEpisode(episode.id, asOf);
        summary.episodes += 1;
        summary.carePlansWritten += result.carePlansWritten;
        summary.episodesWritten += result.episodeWritten ? 1 : 0;
        summary.completed += result.completed ? 1 : 0;
      }
    }
    return summary;
  }

  /** `$exit`: ends the episode and its plans; nothing stays scheduled (the daily job skips ended episodes). */
  exit(episodeId: string, reason: string, text: string | undefined, date: CalendarDate | undefined): Promise<string> {
    return this.onConflictRetry(() => this.exitOnce(episodeId, reason, text, date));
  }

  private async exitOnce(episodeId: string, reason: string, text: string | undefined, date: CalendarDate | undefined): Promise<string> {
    const state = await this.loadState(episodeId);
    const exit = exitEnrolment({
      episode: state.episode,
      careTeam: state.careTeam,
      carePlans: state.carePlans,
      reason,
      ...(text ? { text } : {}),
      date: date ?? this.today(state.program),
    });
    if (!exit.ok) refuse(exit.issues);
    // Plans first, the episode last: an interrupted exit is repeated whole.
    await this.write(exit.carePlans);
    if (exit.careTeam) await this.write([exit.careTeam]);
    if (exit.episode !== state.episode) await this.write([exit.episode]);
    return ref(state.episode);
  }

  /** `$add-plan`: an on-demand plan (REDIAB complementary education). */
  addPlan(episodeId: string, planCode: string, start: CalendarDate | undefined): Promise<{ carePlan: string; created: boolean }> {
    return this.onConflictRetry(() => this.addPlanOnce(episodeId, planCode, start));
  }

  private async addPlanOnce(episodeId: string, planCode: string, start: CalendarDate | undefined): Promise<{ carePlan: string; created: boolean }> {
    const state = await this.loadState(episodeId);
    const context = this.context(state.program);
    const asOf = this.today(state.program);
    const opened = openOnDemandPlan(context, { episode: state.episode, careTeam: state.careTeam, carePlans: state.carePlans, planCode, start: start ?? asOf, asOf });
    if (!opened.ok) refuse(opened.issues);
    if (opened.created) {
      await this.write([opened.carePlan]);
      await this.onPlansChanged(episodeId);
    }
    return { carePlan: ref(opened.carePlan), created: opened.created };
  }

  /**
   * Records a care session: checks it against the enrolment, stores the Encounter
   * (conditionally on its identifier), links it from the matching activity. A re-sent
   * Encounter is recognised by its identifier and counted once.
   */
  async recordSession(encounter: fhir4.Encounter): Promise<{ encounter: fhir4.Encounter; created: boolean }> {
    const episodeId = localId(encounter.episodeOfCare?.[0], 'EpisodeOfCare');
    if (!episodeId) {
      refuse([{ rule: 'encounter-other-episode', code: 'required', diagnostics: 'A care session names its enrolment: episodeOfCare = EpisodeOfCare/{id}', expression: 'Encounter.episodeOfCare' }]);
    }
    const identifier = encounter.identifier?.find((i) => i.system && i.value);
    if (!identifier) {
      refuse([{ rule: 'session-not-held', code: 'required', diagnostics: 'A care session needs an identifier (system and value) so a re-sent one is counted once', expression: 'Encounter.identifier' }]);
    }
    // Whether this call created the Encounter: a retry pass after a 412 finds it stored, but it is still new.
    let createdHere = false;
    return this.onConflictRetry(async () => {
      const state = await this.loadState(episodeId);
      // A re-sent session: the stored Encounter, matched where it was recorded.
      const token = tokenSearchValue(identifier.system as string, identifier.value as string);
      const [stored] = await this.fhir.searchAll<fhir4.Encounter>('Encounter', { identifier: token }, 1);
      // An identifier already used by a session of another enrolment is not this session.
      if (stored && (stored.episodeOfCare?.[0]?.reference !== `EpisodeOfCare/${episodeId}` || stored.subject?.reference !== encounter.subject?.reference)) {
        refuse([{ rule: 'encounter-other-episode', code: 'duplicate', diagnostics: 'This session identifier is already used by another session', expression: 'Encounter.identifier' }]);
      }
      const candidate = stored ? { ...encounter, id: stored.id } : encounter;
      const match = matchSession(candidate as fhir4.Encounter, {
        episode: state.episode,
        careTeam: state.careTeam,
        carePlans: state.carePlans,
        sessionKinds: this.sessionKinds,
        zone: state.program.definition.timeZone,
      });
      if (!match.ok) refuse(match.issues);
      let saved = stored;
      if (!saved) {
        const { id: _clientId, ...withoutId } = encounter;
        const written = await this.fhir.create(withoutId as fhir4.Encounter, { ifNoneExist: new URLSearchParams({ identifier: token }).toString() });
        saved = written.resource;
        createdHere ||= written.status === 201;
      }
      const plan = state.carePlans.find((p) => p.id === match.carePlanId) as fhir4.CarePlan & { id: string };
      const updated = recordSession(plan, match.activityIndex, `Encounter/${saved.id}`);
      // Another session recorded on this CarePlan meanwhile makes this write a 412: read again and redo.
      if (updated !== plan) await this.write([updated]);
      return { encounter: saved, created: createdHere };
    });
  }

  /** `$decline`: an eligible patient refuses enrolment; the GP's proposal Task is rejected with the reason. */
  async decline(patientId: string, programId: string, reason: string, text: string | undefined): Promise<string> {
    const program = this.eligibility.program(programId);
    if (!DECLINE_REASONS.includes(reason)) {
      refuse([{ rule: 'decline-reason-unknown', code: 'code-invalid', diagnostics: `Unknown decline reason "${reason}"; one of ${DECLINE_REASONS.join(', ')}`, field: 'reason' }]);
    }
    if (reason === 'other' && !text?.trim()) refuse([{ rule: 'decline-text-missing', code: 'required', diagnostics: 'Reason "other" needs a text', field: 'text' }]);
    const taskId = enrolmentProposalTaskId(program, patientId);
    // Under the lock a queued evaluation also takes before it creates this Task: otherwise an
    // evaluation that read "no Task" just before could write it back as `requested`.
    await this.locks.withLock(proposalLockName(programId, patientId), async () => {
      let task = await this.fhir.readIfExists<fhir4.Task>('Task', taskId);
      if (!task) {
        const verdict = await this.eligibility.evaluate(programId, patientId);
        if (verdict.outcome !== 'eligible') {
          refuse([{ rule: 'nothing-to-decline', code: 'business-rule', diagnostics: `The patient is ${verdict.outcome} for ${programId}: there is no proposal to decline` }]);
        }
        task = enrolmentProposalTask(verdict, program, patientId, { id: taskId, authoredOn: this.now().toISOString() });
      }
      const statusReason: fhir4.CodeableConcept = { coding: [{ system: DECLINE_REASON_SYSTEM, code: reason }], ...(text?.trim() ? { text: text.trim() } : {}) };
      if (task.status === 'rejected' && JSON.stringify(task.statusReason) === JSON.stringify(statusReason)) return;
      const declined = { ...task, id: taskId, status: 'rejected' as const, statusReason, lastModified: this.now().toISOString() };
      await this.write([declined]);
    });
    return `Task/${taskId}`;
  }

  /** Members of an episode's care team (for answers). */
  static members(careTeam: fhir4.CareTeam): string[] {
    return careTeamMembers(careTeam).map((member) => member.reference);
  }
}
