/**
 * HTTP operations of enrolment, plans and care sessions (issue #3): `$enroll`, `$decline`,
 * `$exit`, `$add-plan`, `$advance`, and `POST /fhir/Encounter` for care sessions. Parameters
 * in, Parameters or the stored resource out; refusals are OperationOutcomes (409 conflicts,
 * 422 business rules, 400 malformed input).
 */
import type { Express, Request, Response } from 'express';
import { EnrolmentRefused, type EnrolmentService } from '../app/enrolment.service.js';
import { referenceIssues } from '../app/ingestion.service.js';
import type { CentreAccess, ClientIdentity } from '../app/centre-access.js';
import type { EnrolmentIssue, EnrolmentRequest } from '../domain/enrolment/types.js';
import { validateResource } from '../fhir/validation.js';
import { assertFhirId } from './input-guards.js';
import { OperationOutcomeError, badRequest, operationOutcome } from './outcomes.js';
import { dateParameter, readParameters, stringParameter, type OperationDeclaration, type ParameterDeclaration } from './parameters.js';
import { localId } from '../domain/references.js';
import type { PersonalisationOption } from '../programs/enrolment-schema.js';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// Declared parameters of each operation (checked by `readParameters` before anything runs).
const CODE: ParameterDeclaration['types'] = ['code', 'string'];

/** `$enroll` without the program's personalisation options (see `enrolDeclaration`). */
const ENROL_PARAMETERS: readonly ParameterDeclaration[] = [
  { name: 'program', types: CODE, min: 1 },
  { name: 'start', types: ['date'], min: 1 },
  {
    name: 'careTeam',
    max: '*',
    parts: [
      { name: 'member', types: ['Reference'], min: 1 },
      { name: 'role', types: ['code', 'string', 'Coding'], min: 1 },
    ],
  },
  { name: 'consent', types: ['Reference'] },
  { name: 'overrideReason', types: ['string'] },
];

/** `$enroll` for one program: its personalisation options (program data, enrolment.json) are parameters too. */
export function enrolDeclaration(options: readonly PersonalisationOption[]): OperationDeclaration {
  return {
    name: '$enroll',
    parameters: [...ENROL_PARAMETERS, ...options.filter((option) => !ENROL_PARAMETERS.some((p) => p.name === option.name)).map((option) => ({ name: option.name, types: option.type === 'boolean' ? (['boolean'] as const) : CODE }))],
  };
}

export const DECLINE: OperationDeclaration = {
  name: '$decline',
  parameters: [
    { name: 'program', types: CODE, min: 1 },
    { name: 'reason', types: CODE, min: 1 },
    { name: 'text', types: ['string'] },
  ],
};
export const EXIT: OperationDeclaration = {
  name: '$exit',
  parameters: [
    { name: 'reason', types: CODE, min: 1 },
    { name: 'text', types: ['string'] },
    { name: 'date', types: ['date'] },
  ],
};
export const ADD_PLAN: OperationDeclaration = {
  name: '$add-plan',
  parameters: [
    { name: 'plan', types: CODE, min: 1 },
    { name: 'start', types: ['date'] },
  ],
};
export const ADVANCE_EPISODE: OperationDeclaration = { name: '$advance', parameters: [{ name: 'asOf', types: ['date'] }] };
export const ADVANCE_ALL: OperationDeclaration = {
  name: '$advance',
  parameters: [
    { name: 'asOf', types: ['date'] },
    { name: 'program', types: CODE },
  ],
};

/** The program a `$enroll` body names, read loosely, only to pick its options (the body is checked after). */
function programNamed(body: unknown): string | undefined {
  const entries = (body as { parameter?: unknown } | null | undefined)?.parameter;
  if (!Array.isArray(entries)) return undefined;
  for (const entry of entries as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { name, valueString, valueCode } = entry as { name?: unknown; valueString?: unknown; valueCode?: unknown };
    if (name !== 'program') continue;
    const value = valueString ?? valueCode;
    return typeof value === 'string' ? value : undefined;
  }
  return undefined;
}

function send(res: Response, status: number, body: fhir4.Parameters | fhir4.Encounter): void {
  res.status(status).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
}

function idParam(req: Request, what: string): string {
  return assertFhirId(req.params['id'], what);
}

/** Maps a domain field (`careTeam[1].role`, `options.platformIntensity`) to a FHIRPath of the input Parameters. */
function parameterExpression(field: string): string {
  const [head, ...rest] = field.split('.');
  const name = (head ?? '').replace(/\[\d+\]$/, '');
  const base = name === 'options' ? `Parameters.parameter.where(name='${rest[0] ?? ''}')` : `Parameters.parameter.where(name='${name}')`;
  return base;
}

export function refusalOutcome(error: EnrolmentRefused): fhir4.OperationOutcome {
  return operationOutcome(
    error.issues.map((issue: EnrolmentIssue) => ({
      code: issue.code,
      diagnostics: `${issue.diagnostics} [${issue.rule}]`,
      ...(issue.expression ? { expression: [issue.expression] } : issue.field ? { expression: [parameterExpression(issue.field)] } : {}),
    })),
  );
}

function parseEnrolment(patientId: string, parameters: fhir4.Parameters): EnrolmentRequest {
  const programId = stringParameter(parameters, 'program');
  if (!programId) throw badRequest('Parameter "program" is required', `Parameters.parameter.where(name='program')`);
  const start = dateParameter(parameters, 'start');
  if (!start) throw badRequest('Parameter "start" (YYYY-MM-DD) is required', `Parameters.parameter.where(name='start')`);
  const careTeam = (parameters.parameter ?? [])
    .filter((p) => p.name === 'careTeam')
    .map((p, index) => {
      const member = p.part?.find((part) => part.name === 'member')?.valueReference?.reference;
      const role = p.part?.find((part) => part.name === 'role');
      const roleCode = role?.valueCode ?? role?.valueString ?? role?.valueCoding?.code;
      if (!member || !roleCode) {
        throw badRequest(`careTeam #${index + 1} needs parts member (valueReference) and role (valueCode)`, `Parameters.parameter.where(name='careTeam')[${index}]`);
      }
      return { reference: member, role: roleCode };
    });
  const consent = (parameters.parameter ?? []).find((p) => p.name === 'consent')?.valueReference?.reference;
  const overrideReason = stringParameter(parameters, 'overrideReason');
  const options: Record<string, boolean | string> = {};
  for (const parameter of parameters.parameter ?? []) {
    if (ENROL_PARAMETERS.some((p) => p.name === parameter.name)) continue;
    // Declared options only (readParameters refused any other name), each with one value.
    const value = parameter.valueBoolean ?? parameter.valueCode ?? parameter.valueString;
    if (value !== undefined) options[parameter.name] = value;
  }
  return { programId, patientId, start, careTeam, options, ...(consent ? { consent } : {}), ...(overrideReason !== undefined ? { overrideReason } : {}) };
}

const reference = (name: string, value: string): fhir4.ParametersParameter => ({ name, valueReference: { reference: value } });

/** Mounts the routes; call before the generic `POST /fhir/:type`. */
const clientOf = (res: Response): ClientIdentity | undefined => res.locals['client'] as ClientIdentity | undefined;

export function mountEnrolmentRoutes(app: Express, enrolment: EnrolmentService, access: CentreAccess): void {
  app.post('/fhir/Patient/:id/\\$enroll', async (req, res) => {
    const patientId = idParam(req, 'Patient');
    const parameters = readParameters(req.body, enrolDeclaration(enrolment.personalisationOptions(programNamed(req.body) ?? '') ?? []));
    await access.assertPatient(clientOf(res), patientId);
    const request = parseEnrolment(patientId, parameters);
    const answer = await enrolment.enroll(request);
    send(res, answer.created ? 201 : 200, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'outcome', valueCode: answer.created ? 'created' : 'existing' },
        reference('episodeOfCare', answer.episode),
        reference('careTeam', answer.careTeam),
        ...answer.carePlans.map((plan) => reference('carePlan', plan)),
      ],
    } as fhir4.Parameters);
  });

  app.post('/fhir/Patient/:id/\\$decline', async (req, res) => {
    const patientId = idParam(req, 'Patient');
    const parameters = readParameters(req.body, DECLINE);
    const programId = stringParameter(parameters, 'program') as string;
    const reason = stringParameter(parameters, 'reason') as string;
    await access.assertPatient(clientOf(res), patientId);
    const task = await enrolment.decline(patientId, programId, reason, stringParameter(parameters, 'text'));
    send(res, 200, { resourceType: 'Parameters', parameter: [reference('task', task)] });
  });

  app.post('/fhir/EpisodeOfCare/:id/\\$exit', async (req, res) => {
    const episodeId = idParam(req, 'EpisodeOfCare');
    const parameters = readParameters(req.body, EXIT);
    const reason = stringParameter(parameters, 'reason') as string;
    const text = stringParameter(parameters, 'text');
    const date = dateParameter(parameters, 'date');
    await access.assertEpisode(clientOf(res), episodeId);
    const episode = await enrolment.exit(episodeId, reason, text, date);
    send(res, 200, { resourceType: 'Parameters', parameter: [reference('episodeOfCare', episode)] });
  });

  app.post('/fhir/EpisodeOfCare/:id/\\$add-plan', async (req, res) => {
    const episodeId = idParam(req, 'EpisodeOfCare');
    const parameters = readParameters(req.body, ADD_PLAN);
    const plan = stringParameter(parameters, 'plan') as string;
    const start = dateParameter(parameters, 'start');
    await access.assertEpisode(clientOf(res), episodeId);
    const result = await enrolment.addPlan(episodeId, plan, start);
    send(res, result.created ? 201 : 200, { resourceType: 'Parameters', parameter: [reference('carePlan', result.carePlan)] });
  });

  app.post('/fhir/EpisodeOfCare/:id/\\$advance', async (req, res) => {
    const episodeId = idParam(req, 'EpisodeOfCare');
    const parameters = readParameters(req.body, ADVANCE_EPISODE);
    const asOf = dateParameter(parameters, 'asOf');
    // An operator (system/admin, bound to no centre) may advance any enrolment; a centre's client only its own.
    const client = clientOf(res);
    if (client?.centre !== undefined || !client?.scopes.includes('system/admin')) await access.assertEpisode(client, episodeId);
    const result = await enrolment.advanceEpisode(episodeId, asOf);
    send(res, 200, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'carePlansWritten', valueInteger: result.carePlansWritten },
        { name: 'episodeWritten', valueBoolean: result.episodeWritten },
        { name: 'completed', valueBoolean: result.completed },
      ],
    });
  });

  app.post('/fhir/\\$advance', async (req, res) => {
    const parameters = readParameters(req.body, ADVANCE_ALL);
    const summary = await enrolment.advanceAll(dateParameter(parameters, 'asOf'), stringParameter(parameters, 'program'));
    send(res, 200, {
      resourceType: 'Parameters',
      parameter: Object.entries(summary).map(([name, value]) => ({ name, valueInteger: value })),
    });
  });

  app.post('/fhir/Encounter', async (req, res) => {
    const encounter = req.body as fhir4.Encounter | undefined;
    if (!encounter || typeof encounter !== 'object' || encounter.resourceType !== 'Encounter') {
      throw badRequest('POST /fhir/Encounter takes an Encounter', 'Encounter');
    }
    const structural = validateResource(encounter, { profiles: [] });
    if (structural.length) {
      throw new OperationOutcomeError(
        400,
        operationOutcome(structural.map((issue) => ({ code: issue.code, diagnostics: issue.diagnostics ?? 'Invalid Encounter', ...(issue.expression ? { expression: issue.expression } : {}) }))),
      );
    }
    // Every reference must resolve here: a participant or episode on another server is refused.
    const references = referenceIssues(encounter, 'Encounter');
    if (references.length) throw new OperationOutcomeError(422, operationOutcome(references));
    const episodeId = localId(encounter.episodeOfCare?.[0], 'EpisodeOfCare');
    if (episodeId) await access.assertEpisode(clientOf(res), episodeId);
    const { encounter: stored, created } = await enrolment.recordSession(encounter);
    send(res, created ? 201 : 200, stored);
  });
}
