/**
 * The FHIR R4 Claim of a due forfait (issue #4, point 3), in the resource model of types.ts and
 * the profile `profiles/StructureDefinition-forfait-claim.json`, and the checks that stop a
 * claim before it is written (issue #4, "Bad data gets a clear OperationOutcome and no claim").
 *
 * The Claim's content is a function of the DueClaim and the context only: its `id` is the
 * UUIDv5 of the key, `created` is the due date (not the clock), so computing it again gives
 * the same resource and a re-sent event rewrites nothing.
 *
 * Pure: no I/O, no clock.
 */
import { CATEGORY_EXTENSION, FORFAIT_CODE_SYSTEM } from '../../programs/billing-schema.js';
import { periodCovers } from '../dates.js';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from '../ids.js';
import { referenceKey, refersTo } from '../references.js';
import { moneyValue } from './money.js';
import { BILLING_EXTENSIONS, BILLING_PROFILES, type BillingIssue, type Checked, type DueClaim, type DueLine } from './types.js';

/** Terminology of the R4 Claim elements (http://hl7.org/fhir/R4/claim.html). */
export const CLAIM_CODES = {
  type: { system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' },
  priority: { system: 'http://terminology.hl7.org/CodeSystem/processpriority', code: 'normal' },
  payeeType: { system: 'http://terminology.hl7.org/CodeSystem/payeetype', code: 'provider' },
  supportingInfo: { system: 'http://terminology.hl7.org/CodeSystem/claiminformationcategory', code: 'info' },
} as const;

/** The RPPS identifier system (French professionals' register), the identifier insurers usually ask for. */
export const RPPS_SYSTEM = 'urn:oid:1.2.250.1.71.4.2.1';

export interface ClaimContext {
  /** Canonical URL of the program: the identifier system is `<url>/claim`. */
  programUrl: string;
  /** The patient's Coverage the forfait is charged to (DOMAIN.md 2: the patient's own fund); absent: `coverage-missing`. */
  coverage?: fhir4.Coverage;
  /** The insurer (Claim.insurer); default: the Coverage's first payor. */
  insurer?: fhir4.Reference;
  /** The insurer's Organization as read from the server, to match its identifiers. */
  insurerOrganization?: fhir4.Organization;
  /**
   * Identifiers of the insurers the program accepts (REDIAB `insurers.json`). Absent or empty:
   * any insurer is accepted (FNMF has no insurers.json, which the loader reads as `[]`).
   */
  acceptedInsurers?: readonly { system: string; value: string }[];
  /** The insurer needs an identifier for the payee (e.g. RPPS); default false. */
  payeeIdentifierRequired?: boolean;
  /**
   * The resource carrying the payee's identifier: the payee itself, or for a PractitionerRole
   * payee its Practitioner (where the RPPS number usually is).
   */
  payeeResource?: fhir4.Resource;
  /** Zone for Coverage.period bounds written as instants; default UTC. */
  zone?: string;
}

/** `<program url>/claim`: the system of the Claim's business identifier. */
export function claimIdentifierSystem(programUrl: string): string {
  return `${programUrl}/claim`;
}

/** The Claim id of a due claim: UUIDv5 of `Claim|<program url>|<key>`. */
export function claimId(programUrl: string, key: string): string {
  return deterministicUuid(FORFAIT_UUID_NAMESPACE, `Claim|${programUrl}|${key}`);
}

function describeReference(reference: fhir4.Reference): string {
  if (reference.reference) return reference.reference;
  if (reference.identifier?.value) return `${reference.identifier.system ?? ''}|${reference.identifier.value}`;
  return reference.display ?? '(unidentified)';
}

function identifiersOf(resource: fhir4.Resource | undefined): fhir4.Identifier[] {
  const identifier = (resource as { identifier?: fhir4.Identifier[] | fhir4.Identifier } | undefined)?.identifier;
  if (identifier === undefined) return [];
  return Array.isArray(identifier) ? identifier : [identifier];
}

/**
 * Everything that stops the claim (empty: build it):
 * - `coverage-missing`: no Coverage, or one that is not `active`, is another patient's, does
 *   not cover the due date, or has no id to reference;
 * - `insurer-not-accepted`: the Coverage names no insurer; or the program lists accepted
 *   insurers (a non-empty list) and neither the insurer
 *   reference's identifier nor its Organization's identifiers is one of them (an insurer that
 *   cannot be identified is not accepted);
 * - `payee-identifier-missing`: the insurer needs the payee's identifier and the payee resource
 *   has none. **Decision**: any identifier with a system and a value will do (the RPPS number
 *   `RPPS_SYSTEM` for a professional, a FINESS or SIRET for an organization): which system an
 *   insurer wants is the gateway's business, and the check is that there is one to send.
 */
export function checkClaimContext(due: DueClaim, ctx: ClaimContext): BillingIssue[] {
  const issues: BillingIssue[] = [];
  const { coverage } = ctx;
  const patient = `Patient/${due.patientId}`;
  if (!coverage) {
    issues.push({ rule: 'coverage-missing', code: 'required', diagnostics: `The patient has no Coverage to charge the ${due.forfaitCode} forfait to.`, expression: 'Claim.insurance.coverage' });
  } else if (!coverage.id) {
    issues.push({ rule: 'coverage-missing', code: 'required', diagnostics: 'The Coverage has no id to reference.', expression: 'Coverage.id' });
  } else if (coverage.status !== 'active') {
    issues.push({ rule: 'coverage-missing', code: 'business-rule', diagnostics: `The Coverage is ${coverage.status}, not active.`, expression: 'Coverage.status' });
  } else if (referenceKey(coverage.beneficiary) !== patient) {
    issues.push({ rule: 'coverage-missing', code: 'business-rule', diagnostics: 'The Coverage is not the patient\'s (Coverage.beneficiary).', expression: 'Coverage.beneficiary' });
  } else if (!periodCovers(coverage.period, due.dueDate, ctx.zone ?? 'UTC')) {
    issues.push({ rule: 'coverage-missing', code: 'business-rule', diagnostics: `The Coverage is not in force on ${due.dueDate}.`, expression: 'Coverage.period' });
  }

  const insurer = ctx.insurer ?? coverage?.payor?.[0];
  if (ctx.acceptedInsurers !== undefined && ctx.acceptedInsurers.length > 0 && coverage) {
    const candidates = [insurer?.identifier, ...(ctx.insurerOrganization && (!insurer?.reference || refersTo(insurer, ctx.insurerOrganization)) ? identifiersOf(ctx.insurerOrganization) : [])];
    const accepted = ctx.acceptedInsurers.some((known) => candidates.some((identifier) => identifier?.system === known.system && identifier.value === known.value));
    if (!accepted) {
      issues.push({
        rule: 'insurer-not-accepted',
        code: 'business-rule',
        diagnostics: insurer
          ? `The insurer ${describeReference(insurer)} is not among the insurers the program accepts.`
          : 'The Coverage names no insurer (Coverage.payor).',
        expression: 'Coverage.payor',
      });
    }
  } else if (!insurer && coverage) {
    issues.push({ rule: 'insurer-not-accepted', code: 'required', diagnostics: 'The Coverage names no insurer (Coverage.payor).', expression: 'Coverage.payor' });
  }

  if (ctx.payeeIdentifierRequired) {
    const resource = ctx.payeeResource;
    const identified = identifiersOf(resource).some((identifier) => Boolean(identifier.system) && Boolean(identifier.value));
    if (!identified) {
      issues.push({
        rule: 'payee-identifier-missing',
        code: 'required',
        diagnostics: resource
          ? `The payee ${due.payee.reference} has no identifier (system and value, e.g. RPPS ${RPPS_SYSTEM}) for the insurer.`
          : `The payee ${due.payee.reference} was not found, so its identifier cannot be sent to the insurer.`,
        expression: `${resource?.resourceType ?? due.payee.reference.split('/')[0] ?? 'Resource'}.identifier`,
      });
    }
  }
  return issues;
}

function forfaitCoding(code: string): fhir4.Coding {
  return { system: FORFAIT_CODE_SYSTEM, code };
}

/** Claim.item / Invoice.lineItem extensions of a line: the tariff version and the category. */
export function lineExtensions(line: DueLine): fhir4.Extension[] {
  return [
    { url: BILLING_EXTENSIONS.chargeItemDefinition, valueCanonical: line.chargeItemDefinition },
    ...(line.category !== undefined ? [{ url: CATEGORY_EXTENSION, valueCode: line.category }] : []),
  ];
}

/**
 * The Claim of a due claim, after `checkClaimContext` (its issues are returned instead when
 * there are any). One item per line (productOrService = the forfait coding, servicedPeriod =
 * the billable period, unitPrice = net = the line's exact amount), `total` = the exact sum,
 * `provider` = `payee.party` = who is paid, the episode and the CarePlan as supporting info.
 */
export function buildClaim(due: DueClaim, ctx: ClaimContext): Checked<{ claim: fhir4.Claim }> {
  const issues = checkClaimContext(due, ctx);
  if (issues.length > 0) return { ok: false, issues };
  const coverage = ctx.coverage as fhir4.Coverage;
  const insurer = (ctx.insurer ?? coverage.payor[0]) as fhir4.Reference;
  const period = { start: due.billablePeriod.start, end: due.billablePeriod.end };
  const supporting = [due.episode, ...(due.carePlan !== undefined ? [due.carePlan] : [])];
  const claim: fhir4.Claim = {
    resourceType: 'Claim',
    id: claimId(ctx.programUrl, due.key),
    meta: { profile: [BILLING_PROFILES.claim] },
    identifier: [{ system: claimIdentifierSystem(ctx.programUrl), value: due.key }],
    status: 'active',
    type: { coding: [{ ...CLAIM_CODES.type }] },
    use: 'claim',
    patient: { reference: `Patient/${due.patientId}` },
    billablePeriod: period,
    created: due.dueDate,
    insurer: { ...insurer },
    provider: { reference: due.payee.reference },
    priority: { coding: [{ ...CLAIM_CODES.priority }] },
    payee: { type: { coding: [{ ...CLAIM_CODES.payeeType }] }, party: { reference: due.payee.reference } },
    supportingInfo: supporting.map((reference, index) => ({
      sequence: index + 1,
      category: { coding: [{ ...CLAIM_CODES.supportingInfo }] },
      valueReference: { reference },
    })),
    insurance: [{ sequence: 1, focal: true, coverage: { reference: `Coverage/${coverage.id as string}` } }],
    item: due.lines.map((line, index) => ({
      extension: lineExtensions(line),
      sequence: index + 1,
      productOrService: { coding: [forfaitCoding(line.forfaitCode)] },
      servicedPeriod: { ...period },
      quantity: { value: 1 },
      unitPrice: { value: moneyValue(line.amount), currency: 'EUR' },
      net: { value: moneyValue(line.amount), currency: 'EUR' },
    })),
    total: { value: moneyValue(due.total), currency: 'EUR' },
  };
  return { ok: true, claim };
}
