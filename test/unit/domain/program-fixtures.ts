/**
 * Test-only loader of the real program data (`mappings/`), parsed with the zod schemas, and
 * small helpers to derive program variants. Tests may read files; src/domain may not.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
  type ValueSetData,
} from '../../../src/programs/schema.js';

const MAPPINGS = join(dirname(fileURLToPath(import.meta.url)), '../../../mappings');

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

function loadProgram(dir: string): LoadedProgram {
  const optional = <T>(file: string, parse: (data: unknown) => T, fallback: T): T =>
    existsSync(join(dir, file)) ? parse(readJson(join(dir, file))) : fallback;
  return {
    definition: programSchema.parse(readJson(join(dir, 'program.json'))),
    centres: optional('centres.json', (d) => centresSchema.parse(d).centres, []),
    insurers: optional('insurers.json', (d) => insurersSchema.parse(d).insurers, []),
    residenceAreas: optional('residence-areas.json', (d) => residenceAreasSchema.parse(d).areas, []),
  };
}

export function loadCatalog(): ProgramCatalog {
  const programsDir = join(MAPPINGS, 'programs');
  const programs = new Map<string, LoadedProgram>();
  for (const id of readdirSync(programsDir).sort()) {
    const program = loadProgram(join(programsDir, id));
    programs.set(program.definition.id, program);
  }
  const valueSets = new Map<string, ValueSetData>();
  const valueSetsDir = join(MAPPINGS, 'value-sets');
  for (const file of readdirSync(valueSetsDir).filter((name) => name.endsWith('.json')).sort()) {
    const valueSet = valueSetSchema.parse(readJson(join(valueSetsDir, file)));
    valueSets.set(valueSet.id, valueSet);
  }
  // The eligibility rules read no plan definitions.
  return { programs, valueSets, units: unitsSchema.parse(readJson(join(MAPPINGS, 'units.json'))), planDefinitions: new Map(), activityDefinitions: new Map() };
}

export const catalog = loadCatalog();

export function program(id: string): LoadedProgram {
  const found = catalog.programs.get(id);
  if (!found) throw new Error(`no program ${id} in mappings/`);
  return found;
}

export const fnmf = program('fnmf-prediabetes');
export const rediab = program('rediab');

export type Kind = CriterionDefinition['kind'];
export type CriterionOfKind<K extends Kind> = Extract<CriterionDefinition, { kind: K }>;

/** The program's (first) criterion of `kind`. */
export function criterionOf<K extends Kind>(loaded: LoadedProgram, kind: K): CriterionOfKind<K> {
  const found = loaded.definition.criteria.find((criterion): criterion is CriterionOfKind<K> => criterion.kind === kind);
  if (!found) throw new Error(`no ${kind} criterion in ${loaded.definition.id}`);
  return found;
}

/** A deep copy of `loaded` whose criterion `code` is patched: program variants without touching mappings/. */
export function withCriterion(
  loaded: LoadedProgram,
  code: string,
  patch: (criterion: CriterionDefinition) => CriterionDefinition,
): LoadedProgram {
  const copy = structuredClone(loaded);
  copy.definition.criteria = copy.definition.criteria.map((criterion) => (criterion.code === code ? patch(criterion) : criterion));
  return copy;
}

/** A program made of the single criterion `code` of `loaded`, to test one rule in isolation through evaluateEligibility. */
export function onlyCriterion(loaded: LoadedProgram, code: string): LoadedProgram {
  const copy = structuredClone(loaded);
  copy.definition.criteria = copy.definition.criteria.filter((criterion) => criterion.code === code);
  if (copy.definition.criteria.length === 0) throw new Error(`no criterion ${code}`);
  return copy;
}
