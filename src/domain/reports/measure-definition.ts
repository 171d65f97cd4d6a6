/**
 * Reading a program indicator `Measure` (profiles/Measure-<id>.json) into a definition the
 * evaluation runs: the program (`useContext` of type `program`), the report packs
 * (extension measure-report-pack) and, per group, its kind and parameters (the JSON
 * expression of `population[0].criteria`, language `text/x-forfait-indicator`). Errors name
 * the field, so a bad file stops start-up with a clear message. Pure.
 */
import { PROGRAM_CODE_SYSTEM } from '../../programs/enrolment-schema.js';
import { INDICATOR_KINDS } from './kinds/index.js';
import { INDICATOR_LANGUAGE, REPORT_PACK_EXTENSION, REPORT_PACKS, USAGE_CONTEXT_TYPE_SYSTEM, type DataKey, type GroupDefinition, type IndicatorKind, type MeasureDefinition, type ReportPack } from './types.js';

export class MeasureDefinitionError extends Error {
  override name = 'MeasureDefinitionError';
}

const ID = /^[A-Za-z0-9\-.]{1,64}$/;

/** Parses and checks one Measure; `where` names its file in errors. */
export function parseMeasure(resource: unknown, where: string): MeasureDefinition {
  const fail = (field: string, message: string): never => {
    throw new MeasureDefinitionError(`${where}: field ${field}: ${message}`);
  };
  const measure = resource as fhir4.Measure;
  if (!measure || typeof measure !== 'object' || measure.resourceType !== 'Measure') fail('resourceType', 'expected Measure');
  if (typeof measure.id !== 'string' || !ID.test(measure.id)) fail('id', 'a FHIR id is required');
  if (typeof measure.url !== 'string' || !measure.url) fail('url', 'a canonical URL is required');
  const programs = (measure.useContext ?? [])
    .filter((context) => context.code?.system === USAGE_CONTEXT_TYPE_SYSTEM && context.code.code === 'program')
    .flatMap((context) => context.valueCodeableConcept?.coding ?? [])
    .filter((coding) => coding.system === PROGRAM_CODE_SYSTEM && coding.code);
  if (programs.length !== 1) fail('useContext', `exactly one program context (code ${USAGE_CONTEXT_TYPE_SYSTEM}#program, value ${PROGRAM_CODE_SYSTEM}) is required`);
  const packs: ReportPack[] = [];
  for (const [index, extension] of (measure.extension ?? []).entries()) {
    if (extension.url !== REPORT_PACK_EXTENSION) continue;
    const pack = extension.valueCode;
    if (!(REPORT_PACKS as readonly (string | undefined)[]).includes(pack)) fail(`extension[${index}].valueCode`, `a report pack is one of ${REPORT_PACKS.join(', ')}`);
    packs.push(pack as ReportPack);
  }
  if (!measure.group?.length) fail('group', 'at least one group');
  const ids = new Set<string>();
  const groups: GroupDefinition[] = (measure.group ?? []).map((group, index) => {
    const at = `group[${index}]`;
    if (typeof group.id !== 'string' || !ID.test(group.id)) fail(`${at}.id`, 'a group id is required (it keys the report group)');
    if (ids.has(group.id as string)) fail(`${at}.id`, `duplicate group id ${group.id}`);
    ids.add(group.id as string);
    const criteria = group.population?.[0]?.criteria;
    if (criteria?.language !== INDICATOR_LANGUAGE) fail(`${at}.population[0].criteria.language`, `expected ${INDICATOR_LANGUAGE}`);
    let parameters: unknown;
    try {
      parameters = JSON.parse(criteria?.expression ?? '');
    } catch {
      fail(`${at}.population[0].criteria.expression`, 'not a JSON object');
    }
    if (!parameters || typeof parameters !== 'object' || Array.isArray(parameters)) fail(`${at}.population[0].criteria.expression`, 'not a JSON object');
    const kindName = (parameters as { kind?: unknown }).kind;
    const kind = typeof kindName === 'string' ? INDICATOR_KINDS.get(kindName) : undefined;
    if (!kind) fail(`${at}.population[0].criteria.expression.kind`, `unknown indicator kind ${JSON.stringify(kindName)} (one of ${[...INDICATOR_KINDS.keys()].join(', ')})`);
    let parsed: unknown;
    try {
      parsed = (kind as IndicatorKind<unknown>).parse(parameters as Record<string, unknown>);
    } catch (error) {
      fail(`${at}.population[0].criteria.expression`, (error as Error).message);
    }
    return { id: group.id as string, ...(group.description ? { description: group.description } : {}), kind: kindName as string, parameters: parsed };
  });
  return {
    id: measure.id as string,
    url: measure.url as string,
    ...(measure.version ? { version: measure.version } : {}),
    ...(measure.title ? { title: measure.title } : {}),
    programId: programs[0]?.code as string,
    packs,
    groups,
    resource: measure,
  };
}

/** The kind of a loaded group. */
export function kindOf(group: GroupDefinition): IndicatorKind<unknown> {
  const kind = INDICATOR_KINDS.get(group.kind);
  if (!kind) throw new MeasureDefinitionError(`unknown indicator kind ${group.kind}`);
  return kind as IndicatorKind<unknown>;
}

/** What the Measures' groups read, for the service's searches. */
export function dataNeeds(measures: readonly MeasureDefinition[]): { keys: Set<DataKey>; valueSets: Set<string> } {
  const keys = new Set<DataKey>();
  const valueSets = new Set<string>();
  for (const measure of measures) {
    for (const group of measure.groups) {
      const kind = kindOf(group);
      for (const key of kind.needs(group.parameters)) keys.add(key);
      for (const id of kind.valueSets?.(group.parameters) ?? []) valueSets.add(id);
    }
  }
  return { keys, valueSets };
}

