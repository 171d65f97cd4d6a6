/**
 * Which patient forfaits fall due (issue #4, point 2; DOMAIN.md 2 "When each forfait falls
 * due", 1 Payment), computed from the enrolment's resources and `asOf`. The queued jobs and the
 * daily sweep call the same function: it returns every claim due up to `asOf`, each with a
 * deterministic key, so a re-run returns the same keys and the adapter's conditional create on
 * the identifier makes catching up a no-op for what was already claimed.
 *
 * Due events (billing.json `dueOn`):
 * - `enrolment`: on the episode start; billablePeriod = the care sequence, start + sequenceMonths
 *   − 1 day (else the span of the program's one-off plans, else the episode's own period);
 * - `plan-start`: on the start of each CarePlan of that plan code (every yearly period, an
 *   on-demand plan when opened); billablePeriod = the plan period. A CarePlan entered in error
 *   never counts, nor a revoked one that had not started when the patient left.
 *
 * Nothing falls due before the approval period's start or after its end, after the patient's
 * exit (a finished episode's period.end; a cancelled episode: nothing at all), or after `asOf`.
 *
 * Lines: the tariff version in force on the due date (tariffs.ts), one line per price component
 * whose category a care-team member holds (FEID: GP, nurse, sports educator when the team has
 * them) or the single amount; each line's payee by its rule: `member` → the first member with
 * that role, `association` → `associationRef`, `centre` → `centreRef`. Lines are grouped by payee
 * into claims (payee is claim-level in FHIR): FEID with GP, nurse and sports educator gives
 * three claims, the GP part to the GP, the nurse part to the nurse and the educator part to the
 * association. With a schedule of several shares, each event's lines are that share of the
 * amount (money.ts `splitByShares`: the last event takes the rounding remainder).
 *
 * **Decision (key)**: the key identifies (program, episode, forfait, occurrence, payee SLOT),
 * where the slot is the rule and the categories (`member:gp`, `association`, `centre`), not the
 * payee's reference: if the GP of a patient changes after the FEID was claimed, a re-run yields
 * the same key for the GP part and the conditional create finds the claim already made, so the
 * part is never claimed twice for the same period (to a new GP).
 *
 * Pure: no I/O, no clock.
 */
import type { BillingData, PatientForfait } from '../../programs/billing-schema.js';
import type { EnrolmentData } from '../../programs/enrolment-schema.js';
import { careTeamMembers, carePlanId } from '../enrolment/enrolment-resources.js';
import { planCodeOf } from '../enrolment/lifecycle.js';
import { addDays, addMonths, isCalendarDate, periodIndexOf } from '../enrolment/plan-periods.js';
import { ENROLMENT_EXTENSIONS } from '../enrolment/types.js';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from '../ids.js';
import { referenceKey } from '../references.js';
import type { CalendarDate } from '../types.js';
import { splitByShares, sumMoney } from './money.js';
import { canonicalOf, priceComponents, tariffInForce, type PayeeRule } from './tariffs.js';
import type { BillingIssue, DueClaim, DueLine, Payee } from './types.js';

export interface DueClaimsInput {
  program: { id: string; url: string };
  billing: BillingData;
  enrolment: EnrolmentData;
  /** Every dated version of each ChargeItemDefinition, by canonical url (`ProgramCatalog.chargeItemDefinitions`). */
  chargeItemDefinitions: ReadonlyMap<string, readonly fhir4.ChargeItemDefinition[]>;
  episode: fhir4.EpisodeOfCare;
  careTeam: fhir4.CareTeam;
  /** Every CarePlan of the episode. */
  carePlans: readonly fhir4.CarePlan[];
  patientId: string;
  /** `Organization/x`: the association (billing.json `association`, resolved by its identifier). */
  associationRef?: string;
  /** `Organization/x`: the centre paid a `centre` forfait (the episode's managingOrganization). */
  centreRef?: string;
  asOf: CalendarDate;
  /** Zone for tariff bounds written as instants (tariffs.ts `tariffAt`); default UTC. */
  zone?: string;
}

export interface DueClaimsResult {
  /** By forfait and schedule event (billing.json order), due date, then payee (price component order). */
  claims: DueClaim[];
  issues: BillingIssue[];
}

/** One due event of one forfait: when, for what period, from which CarePlan. */
interface Occurrence {
  /** `enrolment` or `<plan code>|<period index>`. */
  id: string;
  dueDate: CalendarDate;
  billablePeriod: { start: CalendarDate; end: CalendarDate };
  carePlan?: string;
}

const ENDED_WITHOUT_CARE = new Set<fhir4.EpisodeOfCare['status']>(['cancelled', 'entered-in-error']);

const uuid = (name: string): string => deterministicUuid(FORFAIT_UUID_NAMESPACE, name);

/** The deterministic key of a due claim (see the module comment: the payee slot, not its reference). */
export function dueClaimKey(programUrl: string, episodeId: string, forfaitCode: string, occurrence: string, payeeSlot: string): string {
  return `${forfaitCode}-${uuid(`DueClaim|${programUrl}|${episodeId}|${forfaitCode}|${occurrence}|${payeeSlot}`)}`;
}

function onceSequenceEnd(enrolment: EnrolmentData, start: CalendarDate): CalendarDate | undefined {
  const months = enrolment.plans.filter((plan) => plan.repeat !== 'yearly').map((plan) => plan.startOffsetMonths + plan.durationMonths);
  return months.length === 0 ? undefined : addDays(addMonths(start, Math.max(...months)), -1);
}

function enrolmentOccurrence(forfait: PatientForfait, input: DueClaimsInput, start: CalendarDate): Occurrence {
  const end =
    forfait.sequenceMonths !== undefined
      ? addDays(addMonths(start, forfait.sequenceMonths), -1)
      : (onceSequenceEnd(input.enrolment, start) ?? (isCalendarDate(input.episode.period?.end) ? input.episode.period.end : start));
  return { id: 'enrolment', dueDate: start, billablePeriod: { start, end } };
}

/** The period index of a CarePlan: from its identifier `<episode id>|<plan code>|<index>`, else from the program's plan calendar. */
function periodIndex(carePlan: fhir4.CarePlan, planCode: string, input: DueClaimsInput, episodeStart: CalendarDate, planStart: CalendarDate): string {
  const system = `${input.program.url}/care-plan`;
  const value = carePlan.identifier?.find((identifier) => identifier.system === system)?.value;
  const match = value === undefined ? null : /\|(\d+)$/.exec(value);
  if (match) return match[1] as string;
  const plan = input.enrolment.plans.find((candidate) => candidate.code === planCode);
  const index = plan ? periodIndexOf(plan, episodeStart, planStart) : undefined;
  // A CarePlan written outside the program's calendar is known by its start date.
  return index !== undefined ? String(index) : planStart;
}

function belongsToEpisode(carePlan: fhir4.CarePlan, episodeId: string): boolean {
  const episodes = (carePlan.extension ?? []).filter((extension) => extension.url === ENROLMENT_EXTENSIONS.episodeOfCare);
  return episodes.length === 0 || episodes.some((extension) => referenceKey(extension.valueReference) === `EpisodeOfCare/${episodeId}`);
}

function planOccurrences(planCode: string, input: DueClaimsInput, episodeId: string, episodeStart: CalendarDate, exit: CalendarDate | undefined): Occurrence[] {
  const occurrences: Occurrence[] = [];
  for (const carePlan of input.carePlans) {
    if (planCodeOf(carePlan) !== planCode || carePlan.status === 'entered-in-error' || !belongsToEpisode(carePlan, episodeId)) continue;
    const { start, end } = carePlan.period ?? {};
    if (!isCalendarDate(start)) continue;
    // Revoked before it started: the patient left first (the exit check below also excludes it).
    if (carePlan.status === 'revoked' && (exit === undefined || start > exit)) continue;
    const index = periodIndex(carePlan, planCode, input, episodeStart, start);
    occurrences.push({
      id: `${planCode}|${index}`,
      dueDate: start,
      billablePeriod: { start, end: isCalendarDate(end) ? end : start },
      carePlan: `CarePlan/${carePlan.id ?? carePlanId(episodeId, planCode, Number(index))}`,
    });
  }
  return occurrences.sort((a, b) => (a.dueDate < b.dueDate ? -1 : a.dueDate > b.dueDate ? 1 : a.id < b.id ? -1 : 1));
}

function isDue(date: CalendarDate, input: DueClaimsInput, exit: CalendarDate | undefined): boolean {
  const { approvalPeriod } = input.billing;
  if (date < approvalPeriod.start || (approvalPeriod.end !== undefined && date > approvalPeriod.end)) return false;
  if (exit !== undefined && date > exit) return false;
  return date <= input.asOf;
}

interface PayeeGroup {
  payee: Payee;
  categories: string[];
  lines: DueLine[];
}

function payeeSlot(rule: PayeeRule, categories: readonly string[]): string {
  return rule === 'member' ? `member:${[...categories].sort().join('+')}` : rule;
}

/**
 * The claims due for one enrolment up to `asOf`, and what stops some of them (a tariff missing
 * on a due date, a payee that cannot be resolved). See the module comment.
 */
export function dueClaims(input: DueClaimsInput): DueClaimsResult {
  const { episode, program } = input;
  const claims: DueClaim[] = [];
  const issues: BillingIssue[] = [];
  const episodeStart = episode.period?.start;
  if (!episode.id || !isCalendarDate(episodeStart) || ENDED_WITHOUT_CARE.has(episode.status)) return { claims, issues };
  const exit = episode.status === 'finished' && isCalendarDate(episode.period?.end) ? episode.period.end : undefined;
  const members = careTeamMembers(input.careTeam);

  for (const forfait of input.billing.patientForfaits) {
    const shares = forfait.dueOn.map((event) => event.share);
    forfait.dueOn.forEach((event, eventIndex) => {
      const occurrences =
        event.event === 'enrolment'
          ? [enrolmentOccurrence(forfait, input, episodeStart)]
          : planOccurrences(event.plan, input, episode.id as string, episodeStart, exit);
      for (const occurrence of occurrences) {
        if (!isDue(occurrence.dueDate, input, exit)) continue;
        const found = tariffInForce(forfait, input.chargeItemDefinitions.get(forfait.chargeItemDefinition) ?? [], occurrence.dueDate, input.zone);
        if ('issue' in found) {
          issues.push(found.issue);
          continue;
        }
        const { tariff } = found;

        const groups = new Map<string, PayeeGroup>();
        for (const component of priceComponents(tariff)) {
          let reference: string | undefined;
          if (component.payeeRule === 'member') {
            // A part of a category nobody in the team holds is not owed (FEID without a nurse).
            const member = component.category === undefined ? undefined : members.find((m) => m.role === component.category);
            if (!member) continue;
            reference = member.reference;
          } else if (component.category !== undefined && !members.some((m) => m.role === component.category)) {
            continue;
          } else {
            reference = component.payeeRule === 'association' ? input.associationRef : input.centreRef;
          }
          if (reference === undefined) {
            issues.push({
              rule: 'payee-missing',
              code: 'required',
              diagnostics:
                component.payeeRule === 'association'
                  ? `The ${forfait.code}${component.category ? ` ${component.category}` : ''} part due on ${occurrence.dueDate} is paid to the association, and no association is configured (billing.json association) or found.`
                  : `The ${forfait.code} forfait due on ${occurrence.dueDate} is paid to the centre, and the enrolment has no managing organization.`,
              expression: component.payeeRule === 'centre' ? 'EpisodeOfCare.managingOrganization' : undefined,
            });
            continue;
          }
          const amount = splitByShares(component.amount, shares)[eventIndex] as string;
          const group = groups.get(`${component.payeeRule}|${reference}`) ?? { payee: { rule: component.payeeRule, reference }, categories: [], lines: [] };
          if (component.category !== undefined) group.categories.push(component.category);
          group.lines.push({
            forfaitCode: forfait.code,
            ...(component.category !== undefined ? { category: component.category } : {}),
            chargeItemDefinition: canonicalOf(tariff),
            amount,
          });
          groups.set(`${component.payeeRule}|${reference}`, group);
        }

        for (const group of groups.values()) {
          claims.push({
            key: dueClaimKey(program.url, episode.id as string, forfait.code, occurrence.id, payeeSlot(group.payee.rule, group.categories)),
            programId: program.id,
            patientId: input.patientId,
            forfaitCode: forfait.code,
            payee: group.payee,
            dueDate: occurrence.dueDate,
            billablePeriod: occurrence.billablePeriod,
            lines: group.lines,
            total: sumMoney(group.lines.map((line) => line.amount)),
            episode: `EpisodeOfCare/${episode.id as string}`,
            ...(occurrence.carePlan !== undefined ? { carePlan: occurrence.carePlan } : {}),
          });
        }
      }
    });
  }
  return { claims, issues };
}
