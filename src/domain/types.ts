/**
 * The pure domain's vocabulary. Nothing here performs I/O or reads the clock: every
 * evaluation receives the patient's data and the evaluation date (`asOf`) as arguments.
 *
 * FHIR resource shapes are the global `fhir4` namespace of @types/fhir 0.0.x (its `latest`
 * tag is STU3, so the R4 line is pinned).
 */

/** A calendar date, `YYYY-MM-DD`, in the program's time zone. */
export type CalendarDate = string;

/** `met` | `not-met` | `unknown` as issue #2 names them. */
export type CriterionStatus = 'met' | 'not-met' | 'unknown';
export type EligibilityOutcome = 'eligible' | 'not-eligible' | 'undetermined';

/** The value a criterion judged, in a shape that maps 1:1 onto a FHIR `Parameters` value[x]. */
export type JudgedValue =
  /** Decimal kept as a string so no precision is lost (e.g. "1.10"). `code` is UCUM. */
  | { type: 'Quantity'; value: string; unit: string; code: string }
  | { type: 'integer'; value: number }
  | { type: 'boolean'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'date'; value: CalendarDate }
  | { type: 'Coding'; system?: string; code: string; display?: string };

/** What a criterion lacked, so an `undetermined` verdict can say which data to bring (GuidanceResponse.dataRequirement). */
export interface MissingData {
  /** FHIR resource type that would settle the criterion, e.g. `Observation`. */
  type: string;
  /** Codes that would count (`system|code`), when the need is for a coded resource. */
  codes?: { system: string; code: string; display?: string }[];
  /** Human-readable description, e.g. "fasting plasma glucose within the last 12 months". */
  description: string;
}

/** A problem with one input resource (e.g. an unknown unit): reported, never guessed around. */
export interface DataIssue {
  severity: 'error' | 'warning' | 'information';
  /** FHIR OperationOutcome issue type code, e.g. `code-invalid`, `value`, `incomplete`. */
  code: string;
  diagnostics: string;
  /** Versioned reference of the resource concerned, e.g. `Observation/abc/_history/2`. */
  resource?: string;
  /** FHIRPath of the offending element, e.g. `Observation.valueQuantity.code`. */
  expression?: string;
}

export interface CriterionResult {
  /** The program's criterion code, e.g. `fasting-glucose`. */
  code: string;
  status: CriterionStatus;
  value?: JudgedValue;
  /** One sentence a GP can read, saying why (no patient identifiers). */
  reason: string;
  /** Versioned references (`Type/id/_history/v`) to the exact resources used. */
  evidence: string[];
  missing?: MissingData[];
  issues?: DataIssue[];
  /** Findings the GP needs to see even when they do not change the outcome, e.g. "above range: possible diabetes". */
  flags?: string[];
}

export interface EligibilityVerdict {
  program: string;
  asOf: CalendarDate;
  outcome: EligibilityOutcome;
  criteria: CriterionResult[];
}

/**
 * Everything one patient's evaluation may look at, fetched by the FHIR adapter in as few
 * requests as possible. Resources carry `id` and `meta.versionId` as stored on the server.
 */
export interface PatientRecord {
  patient: fhir4.Patient;
  observations: fhir4.Observation[];
  conditions: fhir4.Condition[];
  coverages: fhir4.Coverage[];
  consents: fhir4.Consent[];
  /** Specimens referenced by the observations (for `collection.fastingStatus`). */
  specimens: fhir4.Specimen[];
  /** Organizations referenced by Coverage.payor (to read their identifiers). */
  organizations: fhir4.Organization[];
}

/**
 * Who practises in which participating centre, resolved by the FHIR adapter from the
 * centres' identifiers: relative references (`Organization/x`, `PractitionerRole/y`,
 * `Practitioner/z`) mapped to the centre and the versioned evidence chain.
 */
export interface CentreDirectory {
  members: ReadonlyMap<string, { centre: string; evidence: string[] }>;
}
