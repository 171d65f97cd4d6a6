/**
 * Vocabulary of program evaluation reports (issue #5): indicators are FHIR `Measure`s in
 * `profiles/`; each group names an indicator **kind** implemented once here, with its
 * parameters as data. Evaluating a Measure over a period (and optionally one centre) gives a
 * `MeasureReport` of type `summary`. Contract: README "Reports" and notes/report-api.md.
 *
 * Pure: no I/O, no clock (the caller passes the period, "now" and the resources).
 */
import type { UnitsData, ValueSetData } from '../../programs/schema.js';
import type { CalendarDate } from '../types.js';
import type { Decimal } from '../decimal.js';

const FHIR_BASE = 'http://forfait-fhir.org/fhir';

/** `group.population.criteria.language` of our indicator expressions (JSON `{"kind": ..., ...parameters}`). */
export const INDICATOR_LANGUAGE = 'text/x-forfait-indicator';
/** Measure extension naming a report pack the Measure belongs to (valueCode, repeated). */
export const REPORT_PACK_EXTENSION = `${FHIR_BASE}/StructureDefinition/measure-report-pack`;
export const MEASURE_GROUP_SYSTEM = `${FHIR_BASE}/CodeSystem/measure-group`;
export const MEASURE_STRATIFIER_SYSTEM = `${FHIR_BASE}/CodeSystem/measure-stratifier`;
export const MEASURE_POPULATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-population';
export const USAGE_CONTEXT_TYPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/usage-context-type';
export const MEASURE_REPORT_PROFILE = `${FHIR_BASE}/StructureDefinition/program-measure-report`;
export const REPORT_PACK_IDENTIFIER_SYSTEM = `${FHIR_BASE}/report-pack`;
export const REPORT_PACKS = ['annual-activity', 'interim-18-months', 'final-evaluation'] as const;
export type ReportPack = (typeof REPORT_PACKS)[number];

export type PopulationCode = 'initial-population' | 'denominator' | 'numerator' | 'measure-population';

/** The key of a stratum whose data has no code (a line without a professional category). */
export const NO_CODE = '(none)';

/** The resources a kind reads; the service fetches the union of what a Measure's kinds need. */
export interface ReportData {
  episodes: readonly fhir4.EpisodeOfCare[];
  carePlans: readonly fhir4.CarePlan[];
  careTeams: readonly fhir4.CareTeam[];
  encounters: readonly fhir4.Encounter[];
  claims: readonly fhir4.Claim[];
  claimResponses: readonly fhir4.ClaimResponse[];
  invoices: readonly fhir4.Invoice[];
  /** The program's enrolment-proposal Tasks (declines are the `rejected` ones). */
  tasks: readonly fhir4.Task[];
  guidanceResponses: readonly fhir4.GuidanceResponse[];
  observations: readonly fhir4.Observation[];
  conditions: readonly fhir4.Condition[];
}
export type DataKey = keyof ReportData;

export const EMPTY_DATA: ReportData = {
  episodes: [],
  carePlans: [],
  careTeams: [],
  encounters: [],
  claims: [],
  claimResponses: [],
  invoices: [],
  tasks: [],
  guidanceResponses: [],
  observations: [],
  conditions: [],
};

/** The program fields the kinds read (`LoadedProgram` gives them). */
export interface ReportProgram {
  id: string;
  /** Canonical URL: prefix of the identifier systems of what the adapter writes. */
  url: string;
  timeZone: string;
  /** enrolment.json `capacity` (active file). */
  capacity?: number;
  /** billing.json `budget.amount`, a decimal string. */
  budget?: string;
}

export interface ReportPeriod {
  /** First day, inclusive. */
  start: CalendarDate;
  /** Last day, inclusive. */
  end: CalendarDate;
}

export interface KindContext {
  program: ReportProgram;
  period: ReportPeriod;
  valueSets: ReadonlyMap<string, ValueSetData>;
  units: UnitsData;
}

/** A measure score, formatted by its nature (see `scoreQuantity`). */
export type Score =
  | { type: 'money'; value: Decimal }
  | { type: 'ratio'; value: Decimal }
  | { type: 'rate'; value: Decimal; unit: string }
  | { type: 'quantity'; value: Decimal; unit: string; places: number };

export interface PopulationResult {
  code: PopulationCode;
  count: number;
}

export interface StratumResult {
  /** `stratum.value.text`: the code, or `YYYY-MM` for a month. */
  key: string;
  /** The coding of `stratum.value` when the key is a code. */
  system?: string;
  populations: PopulationResult[];
  score?: Score;
}

export interface StratifierResult {
  code: string;
  strata: StratumResult[];
}

export interface GroupResult {
  populations: PopulationResult[];
  score?: Score;
  stratifiers: StratifierResult[];
}

/** One indicator kind: its parameters' check, what it reads, and the pure computation. */
export interface IndicatorKind<P = unknown> {
  /** Checks and normalises the parameters of a Measure group; throws an Error naming the field. */
  parse(parameters: Record<string, unknown>): P;
  needs(parameters: P): DataKey[];
  /** Value-set ids of Observations / Conditions the kind reads (for the service's searches). */
  valueSets?(parameters: P): string[];
  evaluate(parameters: P, data: ReportData, context: KindContext): GroupResult;
}

/** A Measure as loaded: its groups' kinds and parsed parameters. */
export interface MeasureDefinition {
  id: string;
  url: string;
  version?: string;
  title?: string;
  programId: string;
  packs: ReportPack[];
  groups: GroupDefinition[];
  /** The Measure resource itself (served at GET /fhir/Measure/{id}). */
  resource: fhir4.Measure;
}

export interface GroupDefinition {
  id: string;
  description?: string;
  kind: string;
  parameters: unknown;
}

/** Centre scope: the centre's Organization and who belongs to it (see `scopeToCentre`). */
export interface CentreScope {
  /** `Organization/{id}`; absent when the centre has no Organization on the server yet (then it manages nothing). */
  organization?: string;
  /** The centre's identifier, shown in the report. */
  identifier?: { system: string; value: string };
  /** `Patient/{id}` of the patients whose GP practises in the centre. */
  patients: ReadonlySet<string>;
  /** `PractitionerRole/{id}` (and `Practitioner/{id}`) of the centre's professionals. */
  members: ReadonlySet<string>;
}
