/**
 * Loads program data from `mappings/` (and the site overlay `SITE_DIR`) and validates it.
 *
 * Overlay rule: a file in SITE_DIR with the same relative path as one in mappings/ replaces
 * it whole; a file only in SITE_DIR is added (a site can add a value set or a program).
 * Any bad file stops start-up with an error naming the file and the field.
 */
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import {
  centresSchema,
  insurersSchema,
  programSchema,
  residenceAreasSchema,
  unitsSchema,
  valueSetSchema,
  type CriterionDefinition,
  type LoadedProgram,
  type ProgramCatalog,
  type UnitsData,
  type ValueSetData,
} from './schema.js';
import { enrolmentSchema } from './enrolment-schema.js';
import { billingSchema } from './billing-schema.js';
import { tariffVersionProblems } from '../domain/billing/tariffs.js';

export class ProgramDataError extends Error {
  override name = 'ProgramDataError';
}

/** Relative path (posix) → absolute path, mappings first, then the site overlay on top. */
function listOverlaidFiles(mappingsDir: string, siteDir?: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (root: string, dir: string): void => {
    for (const name of readdirSync(dir)) {
      const absolute = path.join(dir, name);
      if (statSync(absolute).isDirectory()) walk(root, absolute);
      else if (name.endsWith('.json')) files.set(path.relative(root, absolute).split(path.sep).join('/'), absolute);
    }
  };
  if (!existsSync(mappingsDir)) throw new ProgramDataError(`Program data folder not found: ${mappingsDir}`);
  walk(mappingsDir, mappingsDir);
  if (siteDir) {
    if (!existsSync(siteDir)) throw new ProgramDataError(`SITE_DIR not found: ${siteDir}`);
    walk(siteDir, siteDir);
  }
  return files;
}

function parseFile<T>(file: string, schema: z.ZodType<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ProgramDataError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const details = parsed.error.issues
      .map((issue) => `  field ${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`)
      .join('\n');
    throw new ProgramDataError(`${file}: invalid program data\n${details}`);
  }
  return parsed.data;
}

/** Value set ids a criterion refers to. */
export function valueSetsOfCriterion(criterion: CriterionDefinition): string[] {
  switch (criterion.kind) {
    case 'age':
      return criterion.rules.flatMap((rule) => (rule.when?.conditionValueSet ? [rule.when.conditionValueSet] : []));
    case 'latest-observation-in-range':
      return [...criterion.valueSets, ...criterion.qualifiedValueSets, ...(criterion.qualifierValueSet ? [criterion.qualifierValueSet] : [])];
    case 'body-mass-index':
      return [criterion.bmiValueSet, criterion.weightValueSet, criterion.heightValueSet];
    case 'no-active-condition':
    case 'active-condition':
      return [criterion.valueSet];
    case 'active-consent':
      return criterion.categoryValueSet ? [criterion.categoryValueSet] : [];
    case 'general-practitioner-in-centre':
    case 'coverage-payor-accepted':
    case 'residence-in-area':
      return [];
  }
}

export interface LoadOptions {
  mappingsDir: string;
  /** Folder of PlanDefinitions / ActivityDefinitions (the project's `profiles/`); absent: none loaded. */
  profilesDir?: string;
  siteDir?: string;
  /** Program ids to run; undefined: all found. */
  programIds?: string[];
}

/** Reads, validates and cross-checks all program data. Throws ProgramDataError. */
export function loadProgramCatalog(options: LoadOptions): ProgramCatalog {
  const files = listOverlaidFiles(options.mappingsDir, options.siteDir);

  const unitsFile = files.get('units.json');
  if (!unitsFile) throw new ProgramDataError(`${options.mappingsDir}/units.json is missing`);
  const units = parseFile(unitsFile, unitsSchema);
  checkUnits(unitsFile, units);

  const valueSets = new Map<string, ValueSetData>();
  for (const [relative, file] of files) {
    if (!relative.startsWith('value-sets/')) continue;
    const valueSet = parseFile(file, valueSetSchema);
    const expectedId = path.basename(relative, '.json');
    if (valueSet.id !== expectedId) {
      throw new ProgramDataError(`${file}: field id: "${valueSet.id}" must match the file name "${expectedId}"`);
    }
    valueSets.set(valueSet.id, valueSet);
  }

  const programs = new Map<string, LoadedProgram>();
  for (const [relative, file] of files) {
    const match = /^programs\/([^/]+)\/program\.json$/.exec(relative);
    if (!match) continue;
    const folder = match[1] as string;
    const definition = parseFile(file, programSchema);
    if (definition.id !== folder) {
      throw new ProgramDataError(`${file}: field id: "${definition.id}" must match its folder "${folder}"`);
    }
    if (options.programIds && !options.programIds.includes(definition.id)) continue;
    const sibling = (name: string): string | undefined => files.get(`programs/${folder}/${name}`);
    const centresFile = sibling('centres.json');
    const insurersFile = sibling('insurers.json');
    const areasFile = sibling('residence-areas.json');
    const enrolmentFile = sibling('enrolment.json');
    const billingFile = sibling('billing.json');
    const program: LoadedProgram = {
      definition,
      centres: centresFile ? parseFile(centresFile, centresSchema).centres : [],
      insurers: insurersFile ? parseFile(insurersFile, insurersSchema).insurers : [],
      residenceAreas: areasFile ? parseFile(areasFile, residenceAreasSchema).areas : [],
      ...(enrolmentFile ? { enrolment: parseFile(enrolmentFile, enrolmentSchema) } : {}),
      ...(billingFile ? { billing: parseFile(billingFile, billingSchema) } : {}),
    };
    checkReferences(file, program, valueSets, units.dimensions);
    programs.set(definition.id, program);
  }

  if (options.programIds) {
    const missing = options.programIds.filter((id) => !programs.has(id));
    if (missing.length) throw new ProgramDataError(`PROGRAMS names unknown program(s): ${missing.join(', ')}`);
  }
  if (programs.size === 0) throw new ProgramDataError(`No program found under ${options.mappingsDir}/programs/`);

  const { planDefinitions, activityDefinitions, chargeItemDefinitions } = loadPlanDefinitions(options.profilesDir, options.siteDir);
  // Plans are checked against the definitions when they are loaded (the service always does).
  for (const [relative, file] of options.profilesDir ? files : []) {
    const match = /^programs\/([^/]+)\/enrolment\.json$/.exec(relative);
    const program = match ? programs.get(match[1] as string) : undefined;
    if (program?.enrolment) checkPlans(file, program, planDefinitions, activityDefinitions);
  }
  for (const [relative, file] of options.profilesDir ? files : []) {
    const match = /^programs\/([^/]+)\/billing\.json$/.exec(relative);
    const program = match ? programs.get(match[1] as string) : undefined;
    if (program?.billing) checkBilling(file, program, chargeItemDefinitions);
  }
  return { programs, valueSets, units, planDefinitions, activityDefinitions, chargeItemDefinitions };
}

/** PlanDefinition / ActivityDefinition JSON files of `profilesDir`, overlaid by `siteDir/profiles/` file by file. */
function loadPlanDefinitions(
  profilesDir: string | undefined,
  siteDir: string | undefined,
): {
  planDefinitions: Map<string, fhir4.PlanDefinition>;
  activityDefinitions: Map<string, fhir4.ActivityDefinition>;
  chargeItemDefinitions: Map<string, fhir4.ChargeItemDefinition[]>;
} {
  const planDefinitions = new Map<string, fhir4.PlanDefinition>();
  const activityDefinitions = new Map<string, fhir4.ActivityDefinition>();
  const chargeItemDefinitions = new Map<string, fhir4.ChargeItemDefinition[]>();
  const files = new Map<string, string>();
  for (const dir of [profilesDir, siteDir ? path.join(siteDir, 'profiles') : undefined]) {
    if (!dir || !existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (/^(PlanDefinition|ActivityDefinition|ChargeItemDefinition)-.+\.json$/.test(name)) files.set(name, path.join(dir, name));
    }
  }
  for (const file of files.values()) {
    let resource: { resourceType?: string; url?: string };
    try {
      resource = JSON.parse(readFileSync(file, 'utf8')) as { resourceType?: string; url?: string };
    } catch (error) {
      throw new ProgramDataError(`${file}: not valid JSON (${(error as Error).message})`);
    }
    if (!resource.url) throw new ProgramDataError(`${file}: field url: a canonical URL is required`);
    if (resource.resourceType === 'PlanDefinition') planDefinitions.set(resource.url, resource as fhir4.PlanDefinition);
    else if (resource.resourceType === 'ActivityDefinition') activityDefinitions.set(resource.url, resource as fhir4.ActivityDefinition);
    else if (resource.resourceType === 'ChargeItemDefinition') {
      // Tariffs are versioned: every dated version of a URL is kept (a past date replays its own).
      const versions = chargeItemDefinitions.get(resource.url) ?? [];
      versions.push(resource as fhir4.ChargeItemDefinition);
      chargeItemDefinitions.set(resource.url, versions);
    } else throw new ProgramDataError(`${file}: field resourceType: expected PlanDefinition, ActivityDefinition or ChargeItemDefinition`);
  }
  return { planDefinitions, activityDefinitions, chargeItemDefinitions };
}

function checkBilling(file: string, program: LoadedProgram, chargeItemDefinitions: ReadonlyMap<string, fhir4.ChargeItemDefinition[]>): void {
  const billing = program.billing;
  if (!billing) return;
  const plans = new Set([...(program.enrolment?.plans ?? []), ...(program.enrolment?.onDemandPlans ?? [])].map((plan) => plan.code));
  const forfaits = [...billing.patientForfaits.map((f, i) => ({ f, where: `patientForfaits.${i}` })), ...billing.memberForfaits.map((f, i) => ({ f, where: `memberForfaits.${i}` }))];
  for (const { f, where } of forfaits) {
    const versions = chargeItemDefinitions.get(f.chargeItemDefinition);
    if (!versions?.length) {
      throw new ProgramDataError(`${file}: field ${where}.chargeItemDefinition: no ChargeItemDefinition ${f.chargeItemDefinition} in profiles/`);
    }
    // Malformed amounts, overlapping versions, a code that changes between versions: refused at start-up.
    const problems = tariffVersionProblems(versions);
    if (problems.length) throw new ProgramDataError(`${file}: field ${where}.chargeItemDefinition: ${problems.join('; ')}`);
  }
  billing.patientForfaits.forEach((forfait, i) => {
    forfait.dueOn.forEach((due, j) => {
      if (due.event === 'plan-start' && !plans.has(due.plan)) {
        throw new ProgramDataError(`${file}: field patientForfaits.${i}.dueOn.${j}.plan: "${due.plan}" is not a plan of enrolment.json`);
      }
    });
    // The schedule's shares pay the whole forfait, no more, no less.
    const total = forfait.dueOn.reduce((sum, due) => sum + Math.round(Number(due.share) * 1_000_000), 0);
    if (total !== 1_000_000) throw new ProgramDataError(`${file}: field patientForfaits.${i}.dueOn: the shares add up to ${total / 1_000_000}, not 1`);
  });
}

function checkPlans(
  file: string,
  program: LoadedProgram,
  planDefinitions: ReadonlyMap<string, fhir4.PlanDefinition>,
  activityDefinitions: ReadonlyMap<string, fhir4.ActivityDefinition>,
): void {
  const enrolment = program.enrolment;
  if (!enrolment) return;
  const roles = new Set(enrolment.careTeamRoles.map((role) => role.code));
  const plans = [...enrolment.plans.map((plan, index) => ({ plan, where: `plans.${index}` })), ...enrolment.onDemandPlans.map((plan, index) => ({ plan, where: `onDemandPlans.${index}` }))];
  for (const { plan, where } of plans) {
    const definition = planDefinitions.get(plan.planDefinition);
    if (!definition) throw new ProgramDataError(`${file}: field ${where}.planDefinition: no PlanDefinition ${plan.planDefinition} in profiles/`);
    (definition.action ?? []).forEach((action, index) => {
      const at = `PlanDefinition ${plan.planDefinition} action ${action.id ?? index}`;
      if (!action.definitionCanonical || !activityDefinitions.has(action.definitionCanonical)) {
        throw new ProgramDataError(`${file}: ${at}: ActivityDefinition ${action.definitionCanonical ?? '(none)'} not found in profiles/`);
      }
      for (const participant of action.participant ?? []) {
        const role = participant.role?.coding?.[0]?.code;
        if (role && !roles.has(role)) throw new ProgramDataError(`${file}: ${at}: role "${role}" is not in careTeamRoles`);
      }
    });
  }
  if (enrolment.plans.some((plan) => plan.requiresRole && !roles.has(plan.requiresRole))) {
    throw new ProgramDataError(`${file}: field plans: requiresRole names a role that is not in careTeamRoles`);
  }
}

/** Within each dimension: the canonical unit converts to itself (factor 1), and every alias names a unit with a factor. */
function checkUnits(file: string, units: UnitsData): void {
  for (const [name, dimension] of Object.entries(units.dimensions)) {
    const where = `${file}: field dimensions.${name}`;
    const canonicalFactor = Object.hasOwn(dimension.factors, dimension.canonical) ? dimension.factors[dimension.canonical] : undefined;
    if (canonicalFactor === undefined || Number(canonicalFactor) !== 1) {
      throw new ProgramDataError(`${where}.factors: the canonical unit "${dimension.canonical}" needs the factor "1"`);
    }
    for (const [alias, target] of Object.entries(dimension.aliases)) {
      if (!Object.hasOwn(dimension.factors, target)) {
        throw new ProgramDataError(`${where}.aliases.${alias}: "${target}" is not one of this dimension's factors`);
      }
    }
  }
}

function checkReferences(
  file: string,
  program: LoadedProgram,
  valueSets: ReadonlyMap<string, ValueSetData>,
  dimensions: Record<string, unknown>,
): void {
  const codes = new Set<string>();
  program.definition.criteria.forEach((criterion, index) => {
    const where = `${file}: field criteria.${index}`;
    if (codes.has(criterion.code)) throw new ProgramDataError(`${where}.code: duplicate criterion code "${criterion.code}"`);
    codes.add(criterion.code);
    for (const id of valueSetsOfCriterion(criterion)) {
      if (!valueSets.has(id)) throw new ProgramDataError(`${where}: value set "${id}" not found (expected value-sets/${id}.json)`);
    }
    if (criterion.kind === 'latest-observation-in-range' && !(criterion.dimension in dimensions)) {
      throw new ProgramDataError(`${where}.dimension: unknown unit dimension "${criterion.dimension}" (see units.json)`);
    }
    if (criterion.kind === 'body-mass-index') {
      for (const dimension of ['mass', 'length', 'body-mass-index']) {
        if (!(dimension in dimensions)) throw new ProgramDataError(`${where}: units.json lacks the "${dimension}" dimension BMI needs`);
      }
    }
    if (criterion.kind === 'general-practitioner-in-centre' && program.centres.length === 0) {
      throw new ProgramDataError(`${where}: the program has no centres.json (participating centres)`);
    }
    if (criterion.kind === 'coverage-payor-accepted' && program.insurers.length === 0) {
      throw new ProgramDataError(`${where}: the program has no insurers.json (accepted insurers)`);
    }
    if (criterion.kind === 'residence-in-area' && program.residenceAreas.length === 0) {
      throw new ProgramDataError(`${where}: the program has no residence-areas.json`);
    }
  });
}
