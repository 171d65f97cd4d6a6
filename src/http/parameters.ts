/** Reading FHIR `Parameters` inputs of operations, with OperationOutcome errors. */
import { DateTime } from 'luxon';
import { badRequest } from './outcomes.js';

const DATE = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

export function asParameters(body: unknown): fhir4.Parameters {
  if (body === undefined || body === null || (typeof body === 'object' && Object.keys(body).length === 0)) {
    return { resourceType: 'Parameters', parameter: [] };
  }
  if (typeof body !== 'object' || (body as { resourceType?: unknown }).resourceType !== 'Parameters') {
    throw badRequest('The operation takes a Parameters resource', 'Parameters');
  }
  const parameters = body as fhir4.Parameters;
  if (parameters.parameter !== undefined && !Array.isArray(parameters.parameter)) {
    throw badRequest('Parameters.parameter must be an array', 'Parameters.parameter');
  }
  return parameters;
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

/** Parameters from a GET query string (`?program=x&asOf=y`). */
export function parametersFromQuery(query: Record<string, unknown>): fhir4.Parameters {
  const parameter: fhir4.ParametersParameter[] = [];
  for (const [name, value] of Object.entries(query)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item === 'string') parameter.push({ name, valueString: item });
    }
  }
  return { resourceType: 'Parameters', parameter };
}
