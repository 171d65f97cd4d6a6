/**
 * Reading FHIR `Parameters` inputs of operations, with OperationOutcome errors.
 *
 * Each operation declares its parameters (`OperationDeclaration`: name, value[x] types,
 * cardinality, parts) and `readParameters` checks a body against the declaration before the
 * operation does anything: a non-object or unnamed entry, an undeclared name, a value[x] of an
 * undeclared type or of the wrong JSON shape, a parameter repeated beyond its `max` or missing
 * below its `min` is a 400 OperationOutcome whose `expression` names the parameter. The
 * accessors below then read what was checked.
 */
import { DateTime } from 'luxon';
import { isFhirId } from '../domain/references.js';
import { badRequest } from './outcomes.js';

const DATE = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

/** The value[x] types operations take (http://hl7.org/fhir/R4/parameters.html). */
export type ParameterType = 'string' | 'code' | 'id' | 'uri' | 'canonical' | 'date' | 'boolean' | 'integer' | 'Reference' | 'Coding';

export interface ParameterDeclaration {
  name: string;
  /** Accepted value[x] types; absent for a parameter made of `parts`. */
  types?: readonly ParameterType[];
  /** Default 0. */
  min?: number;
  /** Default 1; `'*'` for any number. */
  max?: number | '*';
  parts?: readonly ParameterDeclaration[];
}

export interface OperationDeclaration {
  /** `$enroll`, `$exit`... (for messages). */
  name: string;
  parameters: readonly ParameterDeclaration[];
}

type JsonObject = Record<string, unknown>;
const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);
const isText = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.trim() === value;

/** FHIR primitive syntax (http://hl7.org/fhir/R4/datatypes.html), loosely for strings. */
const CODE = /^[^\s]+( [^\s]+)*$/;
const URI = /^\S+$/;
const FHIR_DATE = /^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$/;

const primitiveChecks: Record<Exclude<ParameterType, 'Reference' | 'Coding'>, (value: unknown) => boolean> = {
  string: (value) => typeof value === 'string' && value.length > 0,
  code: (value) => typeof value === 'string' && CODE.test(value),
  id: (value) => isFhirId(value),
  uri: (value) => typeof value === 'string' && URI.test(value),
  canonical: (value) => typeof value === 'string' && URI.test(value),
  date: (value) => typeof value === 'string' && FHIR_DATE.test(value),
  boolean: (value) => typeof value === 'boolean',
  integer: (value) => typeof value === 'number' && Number.isInteger(value) && Math.abs(value) <= 2_147_483_647,
};

/** Members of a complex value and the JSON shape each must have. */
const complexMembers: Record<'Reference' | 'Coding', Record<string, (value: unknown) => boolean>> = {
  Reference: { reference: isText, type: (v) => typeof v === 'string' && URI.test(v), display: (v) => typeof v === 'string', id: (v) => typeof v === 'string' },
  Coding: {
    system: (v) => typeof v === 'string' && URI.test(v),
    version: (v) => typeof v === 'string',
    code: (v) => typeof v === 'string' && CODE.test(v),
    display: (v) => typeof v === 'string',
    userSelected: (v) => typeof v === 'boolean',
    id: (v) => typeof v === 'string',
  },
};

function complexValueProblem(type: 'Reference' | 'Coding', value: unknown): string | undefined {
  if (!isObject(value)) return `must be a ${type} (a JSON object)`;
  const members = complexMembers[type];
  for (const [key, member] of Object.entries(value)) {
    const check = members[key];
    if (!check) return `has an unexpected ${type} element "${key.slice(0, 40)}"`;
    if (!check(member)) return `has an invalid ${type}.${key}`;
  }
  if (type === 'Reference' && value['reference'] === undefined) return 'must be a literal Reference (with `reference`)';
  if (type === 'Coding' && value['code'] === undefined) return 'must be a Coding with a `code`';
  return undefined;
}

const valueKey = (type: ParameterType): string => `value${type.charAt(0).toUpperCase()}${type.slice(1)}`;
const quoted = (name: string): string => name.replace(/['\\]/g, (c) => `\\${c}`);
const namedPath = (parent: string, name: string): string => `${parent}.where(name='${quoted(name)}')`;
const shown = (name: string): string => JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}…` : name);

/**
 * Checks `entries` (Parameters.parameter or a parameter's part) against `declarations`;
 * `path` is the FHIRPath of the list (`Parameters.parameter`). Throws the first problem.
 */
function checkEntries(entries: unknown, declarations: readonly ParameterDeclaration[], path: string, operation: string): void {
  if (entries === undefined) entries = [];
  if (!Array.isArray(entries)) throw badRequest(`${path} must be an array`, path);
  const byName = new Map(declarations.map((declaration) => [declaration.name, declaration]));
  const counts = new Map<string, number>();
  entries.forEach((entry: unknown, index: number) => {
    const at = `${path}[${index}]`;
    if (!isObject(entry)) throw badRequest(`${operation}: ${at} must be a parameter (a JSON object with a name)`, at);
    const name = entry['name'];
    if (typeof name !== 'string' || name === '') throw badRequest(`${operation}: ${at} has no name`, `${at}.name`);
    const named = namedPath(path, name);
    const declaration = byName.get(name);
    if (!declaration) {
      throw badRequest(`${operation} has no parameter ${shown(name)} (it takes: ${declarations.map((d) => d.name).join(', ') || 'none'})`, named);
    }
    const count = (counts.get(name) ?? 0) + 1;
    counts.set(name, count);
    const max = declaration.max ?? 1;
    if (max !== '*' && count > max) throw badRequest(`Parameter ${shown(name)} is given more than ${max === 1 ? 'once' : `${max} times`}`, named);
    let values = 0;
    for (const [key, value] of Object.entries(entry)) {
      if (key === 'name') continue;
      if (key === 'part' && declaration.parts) continue;
      if (key === 'id' && typeof value === 'string') continue;
      if (key === 'extension' && Array.isArray(value) && value.every(isObject)) continue; // not understood, ignored (not modifiers)
      const type = (declaration.types ?? []).find((t) => valueKey(t) === key);
      if (!type) {
        const expected = declaration.parts ? 'parts' : (declaration.types ?? []).map(valueKey).join(' or ');
        throw badRequest(`Parameter ${shown(name)} takes ${expected}, not "${key.slice(0, 40)}"`, named);
      }
      values += 1;
      const problem = type === 'Reference' || type === 'Coding' ? complexValueProblem(type, value) : primitiveChecks[type](value) ? undefined : `must be a valid ${type}`;
      if (problem) throw badRequest(`Parameter ${shown(name)}: ${key} ${problem}`, named);
    }
    if (declaration.parts) {
      if (values) throw badRequest(`Parameter ${shown(name)} takes parts, not a value`, named);
      // A repeatable parameter's parts are named with its occurrence: `where(name='careTeam')[1].part`.
      const occurrence = max === 1 ? named : `${named}[${count - 1}]`;
      checkEntries(entry['part'], declaration.parts, `${occurrence}.part`, operation);
    } else if (values !== 1) {
      throw badRequest(`Parameter ${shown(name)} needs one ${(declaration.types ?? []).map(valueKey).join(' or ')}`, named);
    }
  });
  for (const declaration of declarations) {
    const min = declaration.min ?? 0;
    if ((counts.get(declaration.name) ?? 0) < min) throw badRequest(`Parameter ${shown(declaration.name)} is required by ${operation}`, namedPath(path, declaration.name));
  }
}

/** The body as a Parameters resource, structurally only (no declaration): an empty body is an empty Parameters. */
export function asParameters(body: unknown): fhir4.Parameters {
  if (body === undefined || body === null || (isObject(body) && Object.keys(body).length === 0)) {
    return { resourceType: 'Parameters', parameter: [] };
  }
  if (!isObject(body) || body['resourceType'] !== 'Parameters') {
    throw badRequest('The operation takes a Parameters resource', 'Parameters');
  }
  const parameters = body as unknown as fhir4.Parameters;
  if (parameters.parameter !== undefined && !Array.isArray(parameters.parameter)) {
    throw badRequest('Parameters.parameter must be an array', 'Parameters.parameter');
  }
  (parameters.parameter ?? []).forEach((entry: unknown, index) => {
    if (!isObject(entry) || typeof entry['name'] !== 'string') throw badRequest('Each parameter must be a JSON object with a name', `Parameters.parameter[${index}]`);
  });
  return parameters;
}

/** Members of a Parameters resource besides `parameter`. */
const RESOURCE_MEMBERS: Record<string, (value: unknown) => boolean> = {
  resourceType: () => true,
  id: isFhirId,
  meta: isObject,
  implicitRules: (v) => typeof v === 'string',
  language: (v) => typeof v === 'string',
  parameter: () => true,
};

/**
 * The body as a Parameters resource checked against the operation's declaration (see
 * `OperationDeclaration`). An empty body is an empty Parameters (then only `min` can fail).
 */
export function readParameters(body: unknown, operation: OperationDeclaration): fhir4.Parameters {
  const parameters = asParametersShape(body);
  checkParameters(parameters, operation);
  return parameters;
}

function asParametersShape(body: unknown): fhir4.Parameters {
  if (body === undefined || body === null || (isObject(body) && Object.keys(body).length === 0)) return { resourceType: 'Parameters', parameter: [] };
  if (!isObject(body) || body['resourceType'] !== 'Parameters') throw badRequest('The operation takes a Parameters resource', 'Parameters');
  for (const [key, value] of Object.entries(body)) {
    const check = RESOURCE_MEMBERS[key];
    if (!check) throw badRequest(`Parameters has no element "${key.slice(0, 40)}"`, 'Parameters');
    if (!check(value)) throw badRequest(`Parameters.${key} is invalid`, `Parameters.${key}`);
  }
  return body as unknown as fhir4.Parameters;
}

/** Checks parameters (a body already read, or built from a query) against the declaration. */
export function checkParameters(parameters: fhir4.Parameters, operation: OperationDeclaration): void {
  checkEntries(parameters.parameter, operation.parameters, 'Parameters.parameter', operation.name);
}

export function stringParameter(parameters: fhir4.Parameters, name: string): string | undefined {
  const found = parameters.parameter?.filter((p) => p.name === name) ?? [];
  if (found.length > 1) throw badRequest(`Parameter "${name}" is given more than once`, `Parameters.parameter.where(name='${name}')`);
  const [parameter] = found;
  if (!parameter) return undefined;
  const value = parameter.valueString ?? parameter.valueCode ?? parameter.valueUri ?? parameter.valueCanonical ?? parameter.valueDate ?? parameter.valueId;
  if (typeof value !== 'string') throw badRequest(`Parameter "${name}" must have a string, code or date value`, `Parameters.parameter.where(name='${name}')`);
  return value;
}

export function dateParameter(parameters: fhir4.Parameters, name: string): string | undefined {
  const value = stringParameter(parameters, name);
  if (value === undefined) return undefined;
  if (!DATE.test(value) || !DateTime.fromISO(value).isValid) {
    throw badRequest(`Parameter "${name}" must be a full date (YYYY-MM-DD), got "${value}"`, `Parameters.parameter.where(name='${name}')`);
  }
  return value;
}

export function referenceParameters(parameters: fhir4.Parameters, name: string): string[] {
  return (parameters.parameter ?? [])
    .filter((p) => p.name === name)
    .map((p, index) => {
      const reference = p.valueReference?.reference ?? p.valueString;
      if (typeof reference !== 'string') throw badRequest(`Parameter "${name}" #${index + 1} must be a Reference`, `Parameters.parameter.where(name='${name}')`);
      return reference;
    });
}

/** Query-string names every GET operation tolerates (FHIR general parameters), ignored. */
const GENERAL_QUERY_PARAMETERS: ReadonlySet<string> = new Set(['_format', '_pretty']);

/**
 * Parameters from a GET query string (`?program=x&asOf=y`). With a declaration, each value
 * becomes the first primitive type the parameter declares, and the result is checked (an
 * unknown name, a repeated or non-string value is a 400); without, every string is a valueString.
 */
export function parametersFromQuery(query: Record<string, unknown>, operation?: OperationDeclaration): fhir4.Parameters {
  const parameter: fhir4.ParametersParameter[] = [];
  for (const [name, value] of Object.entries(query)) {
    if (operation && GENERAL_QUERY_PARAMETERS.has(name)) continue;
    const declaration = operation?.parameters.find((d) => d.name === name);
    const type = declaration?.types?.find((t) => t !== 'Reference' && t !== 'Coding') ?? 'string';
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item === 'string') parameter.push({ name, [valueKey(type)]: item } as fhir4.ParametersParameter);
      else if (operation) throw badRequest(`Query parameter ${shown(name)} must be a plain value`, namedPath('Parameters.parameter', name));
    }
  }
  const parameters: fhir4.Parameters = { resourceType: 'Parameters', parameter };
  if (operation) checkParameters(parameters, operation);
  return parameters;
}
