/**
 * Forfait claims (issue #4): thin orchestration around the pure billing domain
 * (src/domain/billing/) and the insurer gateway port (src/gateway/).
 *
 * Generation: for an enrolment, the domain lists the claims due up to a date; each is built,
 * checked (Coverage, accepted insurer, payee identifier) and written with a conditional create
 * on its business identifier, so a re-run, a second worker or a re-sent event writes nothing
 * new. Submission: one `Task` per claim records where it stands (`in-progress`, `completed`
 * with the ClaimResponse, `failed` with the gateway's OperationOutcome).
 */
import { dayInZone } from '../domain/dates.js';
import { dueClaims } from '../domain/billing/due.js';
import { buildClaim } from '../domain/billing/claims.js';
import { budgetReport, type BudgetReport } from '../domain/billing/budget.js';
import { buildInvoice, dueMemberInvoices, type NetworkMember } from '../domain/billing/member-forfaits.js';
import { CARE_TEAM_ROLE_SYSTEM } from '../programs/enrolment-schema.js';
import type { CentreDirectoryCache } from '../fhir/centre-directory.js';
import type { BillingIssue, DueClaim } from '../domain/billing/types.js';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from '../domain/ids.js';
import { localId, localReference } from '../domain/references.js';
import type { CalendarDate } from '../domain/types.js';
import { TASK_CODE_SYSTEM } from '../domain/verdict-fhir.js';
import { FhirServerError, isTransientEntryStatus, type FhirServer } from '../fhir/fhir-server.port.js';
import type { InsurerGateway } from '../gateway/insurer-gateway.port.js';
import { submissionBundle } from '../gateway/insurer-gateway.adapter.js';
import { PROGRAM_CODE_SYSTEM } from '../programs/enrolment-schema.js';
import type { LoadedProgram, ProgramCatalog } from '../programs/schema.js';
import type { ClaimsHandler } from '../queue/claims.js';
import type { EnrolmentService } from './enrolment.service.js';
import { writtenReferences, type ProvenanceWriter } from './audit.service.js';

const SUBMIT_TASK_CODE = 'submit-claim';

/** Claims that could not be built, with why: each a clear issue, no claim written. */
export class BillingRefused extends Error {
  override name = 'BillingRefused';
  constructor(readonly issues: BillingIssue[]) {
    super(issues.map((issue) => issue.diagnostics).join(' '));
  }
}

export interface GenerationResult {
  /** Ids of the Claims that exist for what is due (new or already written). */
  claims: string[];
  created: number;
  issues: BillingIssue[];
}

const ref = (resource: fhir4.Resource): string => `${resource.resourceType}/${resource.id}`;

export class BillingService implements ClaimsHandler {
  /** Records where what this service writes comes from (set by the composition root). */
  provenance?: ProvenanceWriter;

  constructor(
    private readonly fhir: FhirServer,
    private readonly catalog: ProgramCatalog,
    private readonly enrolment: EnrolmentService,
    private readonly gateway: InsurerGateway | undefined,
    private readonly directory: CentreDirectoryCache,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private programsWithBilling(programId?: string): LoadedProgram[] {
    return [...this.catalog.programs.values()].filter((p) => p.billing && p.enrolment && (!programId || p.definition.id === programId));
  }

  private today(program: LoadedProgram): CalendarDate {
    return dayInZone(this.now(), program.definition.timeZone);
  }

  private async organizationByIdentifier(identifier: { system: string; value: string }): Promise<fhir4.Organization | undefined> {
    const [found] = await this.fhir.searchAll<fhir4.Organization>('Organization', { identifier: `${identifier.system}|${identifier.value}` }, 1);
    return found;
  }

  /** The claims due for one enrolment up to `asOf`, written if new. */
  async generateForEpisode(episodeId: string, asOf?: CalendarDate): Promise<GenerationResult> {
    const state = await this.enrolment.loadState(episodeId);
    const { program } = state;
    const billing = program.billing;
    if (!billing) return { claims: [], created: 0, issues: [] };
    const date = asOf ?? this.today(program);
    const patientId = localId(state.episode.patient.reference, 'Patient') as string;
    const association = billing.association ? await this.organizationByIdentifier(billing.association.identifier) : undefined;
    const due = dueClaims({
      program: { id: program.definition.id, url: program.definition.url },
      billing,
      enrolment: program.enrolment as NonNullable<LoadedProgram['enrolment']>,
      chargeItemDefinitions: this.catalog.chargeItemDefinitions,
      episode: state.episode,
      careTeam: state.careTeam,
      carePlans: state.carePlans,
      patientId,
      ...(association ? { associationRef: ref(association) } : {}),
      ...(state.episode.managingOrganization?.reference ? { centreRef: state.episode.managingOrganization.reference } : {}),
      asOf: date,
    });
    // Issues name the enrolment (a server id), so an operator knows which record to fix.
    const located = (issues: BillingIssue[]): BillingIssue[] => issues.map((issue) => ({ ...issue, diagnostics: `EpisodeOfCare/${episodeId}: ${issue.diagnostics}` }));
    if (!due.claims.length) return { claims: [], created: 0, issues: located(due.issues) };

    const coverages = await this.fhir.searchAll<fhir4.Coverage>('Coverage', { beneficiary: `Patient/${patientId}`, status: 'active' });
    const result: GenerationResult = { claims: [], created: 0, issues: located(due.issues) };
    for (const claim of due.claims) {
      const built = await this.build(program, claim, coverages);
      if (!built.ok) {
        result.issues.push(...located(built.issues));
        continue;
      }
      const identifier = built.claim.identifier?.[0] as fhir4.Identifier;
      const written = await this.fhir.create(built.claim, { ifNoneExist: new URLSearchParams({ identifier: `${identifier.system}|${identifier.value}` }).toString() });
      result.claims.push(written.resource.id as string);
      if (written.status === 201) {
        result.created += 1;
        await this.provenance?.record(writtenReferences(written.resource), [`EpisodeOfCare/${episodeId}`, ...(claim.carePlan ? [claim.carePlan] : [])], 'CREATE');
      }
    }
    return result;
  }

  private async build(program: LoadedProgram, due: DueClaim, coverages: fhir4.Coverage[]): Promise<{ ok: true; claim: fhir4.Claim } | { ok: false; issues: BillingIssue[] }> {
    const coverage = coverages[0];
    const payorReference = coverage?.payor?.[0]?.reference;
    const payorId = localId(payorReference, 'Organization');
    const payeeKey = localReference(due.payee.reference);
    // Payor and payee in one round trip.
    const [payorRead, payeeRead] = await this.readMany([payorId ? { type: 'Organization', id: payorId } : undefined, payeeKey]);
    const payor = payorRead as fhir4.Organization | undefined;
    let payee = payeeRead;
    // A professional's identifier the insurer needs (RPPS) sits on the Practitioner behind a role.
    const practitionerId = payee?.resourceType === 'PractitionerRole' ? localId((payee as fhir4.PractitionerRole).practitioner?.reference, 'Practitioner') : undefined;
    if (practitionerId) payee = (await this.fhir.readIfExists<fhir4.Practitioner>('Practitioner', practitionerId)) ?? payee;
    const built = buildClaim(due, {
      programUrl: program.definition.url,
      ...(coverage ? { coverage } : {}),
      ...(payor ? { insurerOrganization: payor, insurer: { reference: `Organization/${payor.id}` } } : {}),
      acceptedInsurers: program.insurers.map((insurer) => insurer.identifier),
      // Professionals are paid on their identifier; the association and centre on theirs.
      payeeIdentifierRequired: true,
      ...(payee ? { payeeResource: payee } : {}),
      zone: program.definition.timeZone,
    });
    return built.ok ? { ok: true, claim: built.claim } : { ok: false, issues: built.issues };
  }

  /** The daily sweep and `$bill`: every enrolment of the programs (open or ended: claims due before an exit still count). */
  async generateAll(asOf?: CalendarDate, programId?: string): Promise<GenerationResult> {
    const total: GenerationResult = { claims: [], created: 0, issues: [] };
    for (const program of this.programsWithBilling(programId)) {
      const invoices = await this.generateMemberInvoices(program, asOf ?? this.today(program));
      total.created += invoices.created;
      total.issues.push(...invoices.issues);
      const episodes = await this.fhir.searchAll<fhir4.EpisodeOfCare>('EpisodeOfCare', { type: `${PROGRAM_CODE_SYSTEM}|${program.definition.id}`, _count: '1000' });
      for (const episode of episodes) {
        const result = await this.generateForEpisode(episode.id as string, asOf);
        total.claims.push(...result.claims);
        total.created += result.created;
        total.issues.push(...result.issues);
      }
    }
    return total;
  }

  /**
   * Forfaits owed per member professional (REDIAB COOP), as Invoices: on joining and at each
   * anniversary while a member. Members are the PractitionerRoles of the program's centres,
   * their category the care-team role in `PractitionerRole.code` (our code system, or the
   * SNOMED CT occupation the program's roles declare), joined on `period.start`.
   */
  async generateMemberInvoices(program: LoadedProgram, asOf: CalendarDate): Promise<GenerationResult> {
    const billing = program.billing;
    if (!billing?.memberForfaits.length || !billing.memberForfaitsPayer) return { claims: [], created: 0, issues: [] };
    const directory = await this.directory.get(program);
    const roleIds = [...directory.members.keys()].flatMap((key) => localId(key, 'PractitionerRole') ?? []);
    const snomed = new Map((program.enrolment?.careTeamRoles ?? []).flatMap((role) => (role.snomed ? [[role.snomed, role.code] as const] : [])));
    const members: NetworkMember[] = [];
    for (const id of roleIds) {
      const role = await this.fhir.readIfExists<fhir4.PractitionerRole>('PractitionerRole', id);
      const codings = (role?.code ?? []).flatMap((c) => c.coding ?? []);
      const category = codings.find((c) => c.system === CARE_TEAM_ROLE_SYSTEM)?.code ?? codings.map((c) => snomed.get(c.code ?? '')).find(Boolean);
      if (!role?.period?.start || !category) continue;
      members.push({ reference: `PractitionerRole/${id}`, category, joined: role.period.start.slice(0, 10), ...(role.period.end ? { left: role.period.end.slice(0, 10) } : {}) });
    }
    const association = billing.association ? await this.organizationByIdentifier(billing.association.identifier) : undefined;
    const due = dueMemberInvoices({
      program: { id: program.definition.id, url: program.definition.url },
      billing,
      definitions: this.catalog.chargeItemDefinitions,
      members,
      ...(association ? { associationRef: `Organization/${association.id}` } : {}),
      payer: { identifier: billing.memberForfaitsPayer.identifier, display: billing.memberForfaitsPayer.name },
      asOf,
      zone: program.definition.timeZone,
    });
    const result: GenerationResult = { claims: [], created: 0, issues: due.issues };
    for (const invoice of due.invoices) {
      const built = buildInvoice(invoice, { programUrl: program.definition.url });
      const identifier = built.identifier?.[0] as fhir4.Identifier;
      const written = await this.fhir.create(built, { ifNoneExist: new URLSearchParams({ identifier: `${identifier.system}|${identifier.value}` }).toString() });
      if (written.status === 201) {
        result.created += 1;
        await this.provenance?.record(writtenReferences(written.resource), [invoice.member.reference], 'CREATE');
      }
    }
    return result;
  }

  private taskId(claimId: string): string {
    return deterministicUuid(FORFAIT_UUID_NAMESPACE, `Task|submit-claim|${claimId}`);
  }

  private responseId(claimId: string): string {
    return deterministicUuid(FORFAIT_UUID_NAMESPACE, `ClaimResponse|${claimId}`);
  }

  private async recordTask(claim: fhir4.Claim, status: fhir4.Task['status'], extra: Partial<fhir4.Task> = {}): Promise<void> {
    const id = this.taskId(claim.id as string);
    await this.fhir.update({
      resourceType: 'Task',
      id,
      identifier: [{ system: 'http://forfait-fhir.org/fhir/submit-claim', value: claim.id as string }],
      status,
      intent: 'order',
      code: { coding: [{ system: TASK_CODE_SYSTEM, code: SUBMIT_TASK_CODE }] },
      description: 'Submission of a forfait claim to the insurer gateway',
      focus: { reference: ref(claim) },
      ...(claim.patient ? { for: claim.patient } : {}),
      // A claim due in the future (billing ahead with asOf) is still authored now at the latest.
      authoredOn: [claim.created, this.now().toISOString()].sort()[0],
      lastModified: this.now().toISOString(),
      ...extra,
    } as fhir4.Task & { id: string });
  }

  /** Stores the gateway's answer linked to the claim; 'queued' when it is not final. */
  private async storeResponse(claim: fhir4.Claim, response: fhir4.ClaimResponse): Promise<'final' | 'queued'> {
    const stored = {
      ...response,
      id: this.responseId(claim.id as string),
      request: { reference: ref(claim), ...(claim.identifier?.[0] ? { identifier: claim.identifier[0] } : {}) },
      patient: response.patient?.reference?.startsWith('Patient/') ? claim.patient : claim.patient,
      insurer: claim.insurer,
    } as fhir4.ClaimResponse & { id: string };
    stored.meta = { profile: ['http://forfait-fhir.org/fhir/StructureDefinition/forfait-claim-response'] };
    const written = await this.fhir.update(stored);
    await this.provenance?.record(writtenReferences(written.resource), [ref(claim)], 'UPDATE');
    const final = response.outcome !== 'queued';
    await this.recordTask(claim, final ? 'completed' : 'in-progress', {
      ...(final ? { output: [{ type: { text: 'ClaimResponse' }, valueReference: { reference: `ClaimResponse/${stored.id}` } }] } : {}),
      businessStatus: { text: `gateway outcome: ${response.outcome}` },
    });
    return final ? 'final' : 'queued';
  }

  private async referencedResources(claim: fhir4.Claim): Promise<fhir4.Resource[]> {
    const references = [claim.patient?.reference, claim.insurer?.reference, claim.provider?.reference, claim.payee?.party?.reference, ...(claim.insurance ?? []).map((i) => i.coverage.reference)];
    const unique = new Map(references.flatMap((r) => localReference(r) ?? []).map((key) => [key.key, key]));
    return (await this.readMany([...unique.values()])).filter((resource): resource is fhir4.Resource => resource !== undefined);
  }

  /**
   * Reads resources in one round trip (a batch of reads when more than one): each one, or
   * undefined when absent (404/410) or not asked; another failure keeps its transient class.
   */
  private async readMany(keys: readonly ({ type: string; id: string } | undefined)[]): Promise<(fhir4.Resource | undefined)[]> {
    const asked = keys.filter((key): key is { type: string; id: string } => key !== undefined);
    if (asked.length <= 1) {
      const [only] = asked;
      const read = only ? await this.fhir.readIfExists<fhir4.Resource>(only.type, only.id) : undefined;
      return keys.map((key) => (key ? read : undefined));
    }
    const response = await this.fhir.batch({
      resourceType: 'Bundle',
      type: 'batch',
      entry: asked.map((key) => ({ request: { method: 'GET' as const, url: `${key.type}/${key.id}` } })),
    });
    const read = asked.map((_key, index) => {
      const entry = response.entry?.[index];
      const status = Number.parseInt(entry?.response?.status ?? '', 10) || 0;
      if (status === 404 || status === 410) return undefined;
      if (status < 200 || status >= 300 || !entry?.resource) {
        throw new FhirServerError(`FHIR batch: a read answered ${entry?.response?.status ?? 'nothing'}`, status, undefined, isTransientEntryStatus(status));
      }
      return entry.resource;
    });
    let next = 0;
    return keys.map((key) => (key ? read[next++] : undefined));
  }

  async submit(claimId: string): Promise<'final' | 'queued' | 'no-gateway'> {
    const claim = await this.fhir.read<fhir4.Claim>('Claim', claimId);
    if (!this.gateway) {
      await this.recordTask(claim, 'requested', { businessStatus: { text: 'no insurer gateway configured (GATEWAY_BASE_URL)' } });
      return 'no-gateway';
    }
    const identifier = claim.identifier?.[0] as fhir4.Identifier;
    // Asked first: a gateway that accepted and then timed out already has it.
    const known = await this.gateway.status(identifier);
    if (known) return this.storeResponse(claim, known);
    await this.recordTask(claim, 'in-progress', { businessStatus: { text: 'submitting' } });
    const response = await this.gateway.submit(submissionBundle(claim, await this.referencedResources(claim)));
    return this.storeResponse(claim, response);
  }

  async poll(claimId: string): Promise<'final' | 'queued'> {
    const claim = await this.fhir.read<fhir4.Claim>('Claim', claimId);
    if (!this.gateway) return 'queued';
    const known = await this.gateway.status(claim.identifier?.[0] as fhir4.Identifier);
    if (!known) throw new FhirServerError('The gateway does not know a claim it queued; retrying', 0, undefined, true);
    return this.storeResponse(claim, known);
  }

  async recordFailure(claimId: string, error: Error): Promise<void> {
    const claim = await this.fhir.readIfExists<fhir4.Claim>('Claim', claimId);
    if (!claim) return;
    const outcome = (error as { outcome?: fhir4.OperationOutcome }).outcome ?? {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'exception', diagnostics: error.message }],
    };
    await this.recordTask(claim, 'failed', {
      contained: [{ ...outcome, id: 'gateway-outcome' }],
      statusReason: { text: error.message },
      output: [{ type: { text: 'OperationOutcome' }, valueReference: { reference: '#gateway-outcome' } }],
    });
  }

  /** `Organization/{id}` of a centre given by identifier (`system|value`), if stored. */
  async centreOrganization(centre: string): Promise<string | undefined> {
    const [system, value] = centre.split('|') as [string, string];
    const organization = await this.organizationByIdentifier({ system, value });
    return organization ? `Organization/${organization.id}` : undefined;
  }

  /** Claimed, accepted and paid against the budget, per program (and centre). */
  async budget(programId: string, centre?: string): Promise<BudgetReport & { programId: string; centre?: string }> {
    const program = this.programsWithBilling(programId)[0];
    if (!program?.billing) throw new BillingRefused([{ rule: 'tariff-missing', code: 'not-found', diagnostics: `Program ${programId} has no billing` }]);
    const system = `${program.definition.url}/claim`;
    let claims = await this.fhir.searchAll<fhir4.Claim>('Claim', { identifier: `${system}|`, _count: '1000' });
    if (centre) {
      const episodes = await this.fhir.searchAll<fhir4.EpisodeOfCare>('EpisodeOfCare', { type: `${PROGRAM_CODE_SYSTEM}|${program.definition.id}`, organization: centre, _count: '1000' });
      const inCentre = new Set(episodes.map((e) => `EpisodeOfCare/${e.id}`));
      claims = claims.filter((claim) => claim.supportingInfo?.some((info) => inCentre.has(info.valueReference?.reference ?? '')));
    }
    const responses = (
      await Promise.all(claims.map((claim) => this.fhir.readIfExists<fhir4.ClaimResponse>('ClaimResponse', this.responseId(claim.id as string))))
    ).filter((r): r is fhir4.ClaimResponse => r !== undefined);
    const report = budgetReport({ ...(program.billing.budget ? { budget: program.billing.budget.amount } : {}), claims, responses });
    return { ...report, programId, ...(centre ? { centre } : {}) };
  }
}
