/**
 * HTTP operations of enrolment, plans and care sessions (issue #3): `$enroll`, `$decline`,
 * `$exit`, `$add-plan`, `$advance`, and `POST /fhir/Encounter` for care sessions. Parameters
 * in, Parameters or the stored resource out; refusals are OperationOutcomes (409 conflicts,
 * 422 business rules, 400 malformed input).
 */
import type { Express, Request, Response } from 'express';
import { EnrolmentRefused, type EnrolmentService } from '../app/enrolment.service.js';
import type { CentreAccess, ClientIdentity } from '../app/centre-access.js';
import type { EnrolmentIssue, EnrolmentRequest } from '../domain/enrolment/types.js';
import { validateResource } from '../fhir/validation.js';
import { assertFhirId } from './input-guards.js';
import { OperationOutcomeError, badRequest, operationOutcome } from './outcomes.js';
import { asParameters, dateParameter, stringParameter } from './parameters.js';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
/** Parameters of `$enroll` that are not personalisation options. */
const ENROL_PARAMETERS = new Set(['program', 'start', 'careTeam', 'consent', 'overrideReason']);

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
    if (!parameter.name || ENROL_PARAMETERS.has(parameter.name)) continue;
    const value = parameter.valueBoolean ?? parameter.valueCode ?? parameter.valueString;
    if (value === undefined) throw badRequest(`Option "${parameter.name}" needs a valueBoolean or valueCode`, `Parameters.parameter.where(name='${parameter.name}')`);
    options[parameter.name] = value;
  }
  return { programId, patientId, start, careTeam, options, ...(consent ? { consent } : {}), ...(overrideReason !== undefined ? { overrideReason } : {}) };
}

const reference = (name: string, value: string): fhir4.ParametersParameter => ({ name, valueReference: { reference: value } });

/** Mounts the routes; call before the generic `POST /fhir/:type`. */
const clientOf = (res: Response): ClientIdentity | undefined => res.locals['client'] as ClientIdentity | undefined;

export function mountEnrolmentRoutes(app: Express, enrolment: EnrolmentService, access: CentreAccess): void {
  app.post('/fhir/Patient/:id/\\$enroll', async (req, res) => {
    await access.assertPatient(clientOf(res), idParam(req, 'Patient'));
    const request = parseEnrolment(idParam(req, 'Patient'), asParameters(req.body));
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
    const parameters = asParameters(req.body);
    const programId = stringParameter(parameters, 'program');
    const reason = stringParameter(parameters, 'reason');
    if (!programId || !reason) throw badRequest('Parameters "program" and "reason" are required', 'Parameters');
    await access.assertPatient(clientOf(res), idParam(req, 'Patient'));
    const task = await enrolment.decline(idParam(req, 'Patient'), programId, reason, stringParameter(parameters, 'text'));
    send(res, 200, { resourceType: 'Parameters', parameter: [reference('task', task)] });
  });

  app.post('/fhir/EpisodeOfCare/:id/\\$exit', async (req, res) => {
    const parameters = asParameters(req.body);
    const reason = stringParameter(parameters, 'reason');
    if (!reason) throw badRequest('Parameter "reason" (an exit-reason code) is required', `Parameters.parameter.where(name='reason')`);
    await access.assertEpisode(clientOf(res), idParam(req, 'EpisodeOfCare'));
    const episode = await enrolment.exit(idParam(req, 'EpisodeOfCare'), reason, stringParameter(parameters, 'text'), dateParameter(parameters, 'date'));
    send(res, 200, { resourceType: 'Parameters', parameter: [reference('episodeOfCare', episode)] });
  });

  app.post('/fhir/EpisodeOfCare/:id/\\$add-plan', async (req, res) => {
    const parameters = asParameters(req.body);
    const plan = stringParameter(parameters, 'plan');
    if (!plan) throw badRequest('Parameter "plan" (a plan code) is required', `Parameters.parameter.where(name='plan')`);
    await access.assertEpisode(clientOf(res), idParam(req, 'EpisodeOfCare'));
    const result = await enrolment.addPlan(idParam(req, 'EpisodeOfCare'), plan, dateParameter(parameters, 'start'));
    send(res, result.created ? 201 : 200, { resourceType: 'Parameters', parameter: [reference('carePlan', result.carePlan)] });
  });

  app.post('/fhir/EpisodeOfCare/:id/\\$advance', async (req, res) => {
    const parameters = asParameters(req.body);
    // An operator (system/admin, bound to no centre) may advance any enrolment; a centre's client only its own.
    const client = clientOf(res);
    if (client?.centre !== undefined || !client?.scopes.includes('system/admin')) await access.assertEpisode(client, idParam(req, 'EpisodeOfCare'));
    const result = await enrolment.advanceEpisode(idParam(req, 'EpisodeOfCare'), dateParameter(parameters, 'asOf'));
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
    const parameters = asParameters(req.body);
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
    const episodeId = /^EpisodeOfCare\/([A-Za-z0-9\-.]{1,64})$/.exec(encounter.episodeOfCare?.[0]?.reference ?? '')?.[1];
    if (episodeId) await access.assertEpisode(clientOf(res), episodeId);
    const { encounter: stored, created } = await enrolment.recordSession(encounter);
    send(res, created ? 201 : 200, stored);
  });
}
