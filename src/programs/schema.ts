/**
 * The format of program data (`mappings/`), validated with zod when the service starts.
 * A program is a list of criteria; each criterion names one of a fixed vocabulary of rule
 * kinds (see `src/domain/criteria/`) and gives its parameters. A new program composes these
 * kinds in data: no TypeScript change. Every threshold, code list, window and bound below
 * is data, cited from DOMAIN.md in the JSON files themselves (`_source` fields).
 *
 * This module is pure (zod only): loading files is `load-programs.ts`.
 */
import { z } from 'zod';
import type { EnrolmentData } from './enrolment-schema.js';
import type { BillingData } from './billing-schema.js';

/** A decimal written as a JSON string ("1.10") so no binary-float rounding enters program data. */
export const decimalString = z
  .string()
  .regex(/^-?\d+(\.\d+)?$/, 'a decimal written as a string, e.g. "1.10"');

const identifier = z.strictObject({ system: z.string().min(1), value: z.string().min(1) });

/** One bound of a range, inclusive or exclusive (DOMAIN.md 1: "both bounds and their inclusiveness are program data"). */
export const bound = z.strictObject({ value: decimalString, inclusive: z.boolean() });

/** A reference to a value set by its id (file `mappings/value-sets/<id>.json`). */
const valueSetId = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'a value set id (kebab-case file name)');

const comment = { _source: z.string().optional(), _comment: z.string().optional() };

/** Age rule (DOMAIN.md 1, Decision "Age"): over `years`, strictly when `exclusive`; `when` narrows who it applies to. */
const ageRule = z.strictObject({
  years: z.number().int().min(0).max(150),
  exclusive: z.boolean(),
  when: z
    .strictObject({
      gender: z.enum(['male', 'female', 'other', 'unknown']).optional(),
      /** The patient has (or had: any clinical status) a Condition coded in this value set. */
      conditionValueSet: valueSetId.optional(),
      description: z.string().optional(),
    })
    .optional(),
  ...comment,
});

const criterionBase = {
  /** Criterion code reported in the verdict (e.g. `fasting-glucose`). */
  code: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  /** Human description of the rule, shown in README and reasons. */
  description: z.string().min(1),
  ...comment,
};

export const criterionSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    ...criterionBase,
    kind: z.literal('general-practitioner-in-centre'),
  }),
  z.strictObject({
    ...criterionBase,
    kind: z.literal('age'),
    /** Met when any rule is met. */
    rules: z.array(ageRule).min(1),
  }),
  z.strictObject({
    ...criterionBase,
    kind: z.literal('latest-observation-in-range'),
    /** Codes whose value always counts (e.g. fasting glucose LOINC, a lab's local fasting code). */
    valueSets: z.array(valueSetId).min(1),
    /** Codes whose value counts only with qualifier evidence (e.g. glucose without fasting status). */
    qualifiedValueSets: z.array(valueSetId).default([]),
    /** Codings that, found on the Observation (method, extension, component) or its Specimen's
     * `collection.fastingStatusCodeableConcept`, make a `qualifiedValueSets` value count. */
    qualifierValueSet: valueSetId.optional(),
    /** Unit dimension from `mappings/units.json`; values are converted to its canonical unit. */
    dimension: z.string().min(1),
    /** Decimal places the value is rounded to (half-up) before comparison; absent: exact. */
    precision: z.number().int().min(0).max(6).optional(),
    low: bound.optional(),
    high: bound.optional(),
    lookbackMonths: z.number().int().min(1),
    /** Extra finding reported when the value is above `high` (e.g. "above range: possible diabetes"). */
    aboveRangeFlag: z.string().optional(),
    /** Wording of the measure in reasons, e.g. "fasting plasma glucose". */
    label: z.string().min(1),
  }),
  z.strictObject({
    ...criterionBase,
    kind: z.literal('body-mass-index'),
    bmiValueSet: valueSetId,
    weightValueSet: valueSetId,
    heightValueSet: valueSetId,
    precision: z.number().int().min(0).max(6).optional(),
    low: bound.optional(),
    high: bound.optional(),
    lookbackMonths: z.number().int().min(1),
    /** Height may be older than the window for adults (DOMAIN.md 1); absent: any age. */
    heightLookbackMonths: z.number().int().min(1).optional(),
  }),
  z.strictObject({
    ...criterionBase,
    kind: z.literal('no-active-condition'),
    valueSet: valueSetId,
    label: z.string().min(1),
  }),
  z.strictObject({
    ...criterionBase,
    kind: z.literal('active-condition'),
    valueSet: valueSetId,
    label: z.string().min(1),
    /** Verdict when no Condition of the value set is recorded at all: `unknown` asks for the
     * diagnosis (it may not be coded yet), `not-met` treats the patient as outside the population. */
    whenAbsent: z.enum(['unknown', 'not-met']).default('unknown'),
  }),
  z.strictObject({
    ...criterionBase,
    kind: z.literal('coverage-payor-accepted'),
  }),
  z.strictObject({
    ...criterionBase,
    kind: z.literal('residence-in-area'),
  }),
  z.strictObject({
    ...criterionBase,
    kind: z.literal('active-consent'),
    /** The Consent must carry one of these `policy.uri` values or a category in `categoryValueSet`. */
    policyUris: z.array(z.string().min(1)).default([]),
    categoryValueSet: valueSetId.optional(),
  }),
]);

export const programSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  title: z.string().min(1),
  /** Canonical URL of the program (GuidanceResponse.moduleUri, Task.instantiatesUri). */
  url: z.url(),
  /** Calendar dates (ages, windows) are computed in this zone (IANA name). */
  timeZone: z.string().default('Europe/Paris'),
  /** Observation/Condition/... statuses never used as evidence. */
  ignoredStatuses: z.array(z.string()).default(['entered-in-error', 'cancelled']),
  /** Approval period of the program (for information in this issue; billing uses it later). */
  period: z.strictObject({ start: z.iso.date(), end: z.iso.date().optional() }).optional(),
  criteria: z.array(criterionSchema).min(1),
  ...comment,
});

/** `centres.json` of a program: participating centres, by identifier (site data). */
export const centresSchema = z.strictObject({
  centres: z.array(z.strictObject({ identifier, name: z.string().min(1), ...comment })),
  ...comment,
});

/** `insurers.json`: accepted payors (Coverage.payor), by Organization identifier (site data). */
export const insurersSchema = z.strictObject({
  insurers: z.array(z.strictObject({ identifier, name: z.string().min(1), ...comment })),
  ...comment,
});

/** `residence-areas.json`: accepted residence areas as postal codes (Patient.address.postalCode). */
export const residenceAreasSchema = z.strictObject({
  areas: z.array(
    z.strictObject({
      name: z.string().min(1),
      postalCodes: z.array(z.string().regex(/^[0-9A-Za-z -]+$/)).min(1),
      ...comment,
    }),
  ),
  ...comment,
});

/** `units.json`: per dimension, the canonical UCUM unit and factors to it (exact decimals). */
export const unitsSchema = z.strictObject({
  dimensions: z.record(
    z.string(),
    z.strictObject({
      canonical: z.string().min(1),
      /** UCUM code → factor (canonical = value × factor). */
      factors: z.record(z.string(), decimalString),
      /** Non-UCUM spellings seen in the wild (Quantity.unit text) → UCUM code. */
      aliases: z.record(z.string(), z.string()).default({}),
      ...comment,
    }),
  ),
  ...comment,
});

/**
 * Value sets are FHIR R4 `ValueSet` resources (`mappings/value-sets/<id>.json`), restricted
 * to what can be evaluated without a terminology server: enumerated concepts, and for
 * code systems whose codes nest by prefix (ICD-10) an `is-a` filter on `concept`.
 */
export const valueSetSchema = z.object({
  resourceType: z.literal('ValueSet'),
  id: valueSetId,
  url: z.url(),
  status: z.enum(['draft', 'active', 'retired', 'unknown']),
  compose: z.object({
    include: z
      .array(
        z.object({
          system: z.string().min(1),
          concept: z.array(z.object({ code: z.string().min(1), display: z.string().optional() })).optional(),
          filter: z
            .array(z.object({ property: z.literal('concept'), op: z.literal('is-a'), value: z.string().min(1) }))
            .optional(),
        }),
      )
      .min(1),
  }),
});

export type CriterionDefinition = z.infer<typeof criterionSchema>;
export type ProgramDefinition = z.infer<typeof programSchema>;
export type CentresData = z.infer<typeof centresSchema>;
export type InsurersData = z.infer<typeof insurersSchema>;
export type ResidenceAreasData = z.infer<typeof residenceAreasSchema>;
export type UnitsData = z.infer<typeof unitsSchema>;
export type ValueSetData = z.infer<typeof valueSetSchema>;
export type Bound = z.infer<typeof bound>;

/** A program with all the data its criteria refer to, as the pure evaluation receives it. */
export interface LoadedProgram {
  definition: ProgramDefinition;
  centres: CentresData['centres'];
  insurers: InsurersData['insurers'];
  residenceAreas: ResidenceAreasData['areas'];
  /** Enrolment, plans and sessions (`enrolment.json`); absent: the program only screens. */
  enrolment?: EnrolmentData;
  /** Forfait billing (`billing.json`); absent: nothing is claimed. */
  billing?: BillingData;
}

/** Data shared by every program. */
export interface ProgramCatalog {
  programs: ReadonlyMap<string, LoadedProgram>;
  valueSets: ReadonlyMap<string, ValueSetData>;
  units: UnitsData;
  /** PlanDefinitions and ActivityDefinitions of `profiles/` (and SITE_DIR/profiles/), by canonical URL. */
  planDefinitions: ReadonlyMap<string, fhir4.PlanDefinition>;
  activityDefinitions: ReadonlyMap<string, fhir4.ActivityDefinition>;
  /** Every dated version of each ChargeItemDefinition (tariff), by canonical URL. */
  chargeItemDefinitions: ReadonlyMap<string, fhir4.ChargeItemDefinition[]>;
}
