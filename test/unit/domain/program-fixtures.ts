/**
 * The real program data (`mappings/`), loaded by the service's own loader, and small helpers
 * to derive program variants. Tests may read files; src/domain may not.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadProgramCatalog } from '../../../src/programs/load-programs.js';
import type { CriterionDefinition, LoadedProgram, ProgramCatalog } from '../../../src/programs/schema.js';

const MAPPINGS = join(dirname(fileURLToPath(import.meta.url)), '../../../mappings');

export function loadCatalog(): ProgramCatalog {
  return loadProgramCatalog({ mappingsDir: MAPPINGS });
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
