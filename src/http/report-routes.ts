/**
 * HTTP operations of program evaluation reports (issue #5; contract notes/report-api.md):
 * the indicator Measures (`GET /fhir/Measure`, `GET /fhir/Measure/{id}`), `$evaluate-measure`
 * (a MeasureReport over a period, for the program or one centre) and `$report-pack` (the
 * decree's reports as a Bundle of MeasureReports, or CSV).
 *
 * Centre isolation (issue #6): a client bound to a centre gets its own centre's figures only;
 * asking for another centre (or an unknown one) is a 403 that reveals nothing.
 */
import type { Express, Request, Response } from 'express';
import { ReportRequestError, type ReportRequest, type ReportsService } from '../app/reports.service.js';
import { REPORT_PACKS, type ReportPack } from '../domain/reports/types.js';
import type { ClientIdentity } from './auth.js';
import { assertFhirId } from './input-guards.js';
import { badRequest, notFound, OperationOutcomeError, operationOutcome } from './outcomes.js';
import { asParameters, dateParameter, parametersFromQuery, stringParameter } from './parameters.js';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const CSV = 'text/csv; charset=utf-8';
/** Longest report period, in calendar years between its first and last day. */
const MAX_PERIOD_YEARS = 25;

function send(res: Response, status: number, body: fhir4.Resource): void {
  res.status(status).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
}

const expression = (name: string): string => `Parameters.parameter.where(name='${name}')`;

const forbidden = (): OperationOutcomeError => new OperationOutcomeError(403, operationOutcome([{ code: 'forbidden', diagnostics: 'Reports of another centre are not available to this client' }]));

/** A parameter given as a Reference (POST) or a string (GET). */
function referenceOrString(parameters: fhir4.Parameters, name: string): string | undefined {
  const found = (parameters.parameter ?? []).filter((p) => p.name === name);
  if (found.length > 1) throw badRequest(`Parameter "${name}" is given more than once`, expression(name));
  const [parameter] = found;
  if (!parameter) return undefined;
  const value = parameter.valueReference?.reference ?? parameter.valueString ?? parameter.valueCode;
  if (typeof value !== 'string' || !value.trim()) throw badRequest(`Parameter "${name}" must be a reference or a string`, expression(name));
  return value.trim();
}

function parametersOf(req: Request): fhir4.Parameters {
  return req.method === 'GET' ? parametersFromQuery(req.query as Record<string, unknown>) : asParameters(req.body);
}

function periodOf(parameters: fhir4.Parameters): ReportRequest['period'] {
  const start = dateParameter(parameters, 'periodStart');
  const end = dateParameter(parameters, 'periodEnd');
  if (!start) throw badRequest('Parameter "periodStart" is required (YYYY-MM-DD, first day, inclusive)', expression('periodStart'));
  if (!end) throw badRequest('Parameter "periodEnd" is required (YYYY-MM-DD, last day, inclusive)', expression('periodEnd'));
  if (start > end) throw badRequest(`periodStart ${start} is after periodEnd ${end}`, expression('periodEnd'));
  // Monthly strata list every month of the period: bound it (a program runs for a few years).
  if (Number(end.slice(0, 4)) - Number(start.slice(0, 4)) > MAX_PERIOD_YEARS) throw badRequest(`A report period spans at most ${MAX_PERIOD_YEARS} years`, expression('periodEnd'));
  return { start, end };
}

/** `subject=Organization/{id}` (the FHIR form) or `centre=Organization/{id}|system|value`; not both. */
function requestedCentre(parameters: fhir4.Parameters): string | undefined {
  const subject = referenceOrString(parameters, 'subject');
  const centre = referenceOrString(parameters, 'centre');
  if (subject !== undefined && centre !== undefined) throw badRequest('Give the centre as "subject" or as "centre", not both', expression('centre'));
  if (subject !== undefined && !/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(subject)) {
    throw badRequest('subject must be a centre: Organization/{id} (patient-level reports are not served)', expression('subject'));
  }
  return subject ?? centre;
}

/**
 * The centre whose figures the request gets. Without authentication: the one asked for (or
 * none). A client bound to a centre: its own, whatever it asks; another or an unknown one is 403.
 */
async function centreFor(reports: ReportsService, programId: string, res: Response, asked: string | undefined): Promise<string | undefined> {
  const client = res.locals['client'] as ClientIdentity | undefined;
  if (!client) {
    if (asked !== undefined) await reports.centreScope(programId, asked, false); // 400 when not a centre of the program
    return asked;
  }
  if (!client.centre) throw forbidden();
  if (asked !== undefined) {
    let label: string;
    try {
      label = (await reports.centreScope(programId, asked, false)).label;
    } catch (error) {
      if (error instanceof ReportRequestError) throw forbidden();
      throw error;
    }
    if (label !== client.centre) throw forbidden();
  }
  return client.centre;
}

function toOutcome(error: unknown, bound: boolean): unknown {
  if (!(error instanceof ReportRequestError)) return error;
  if (error.reason === 'unknown-centre' && bound) return forbidden();
  return badRequest(error.message, expression(error.parameter));
}

function wantsCsv(req: Request, parameters: fhir4.Parameters): boolean {
  // `_format` is a query parameter of a POST too (the body is the operation's Parameters).
  const query = req.query['_format'];
  const format = stringParameter(parameters, '_format') ?? (req.method === 'POST' && typeof query === 'string' ? query : undefined);
  if (format !== undefined) {
    if (['text/csv', 'csv'].includes(format)) return true;
    if (['json', 'application/json', 'application/fhir+json'].includes(format)) return false;
    throw badRequest(`_format ${format} is not served (text/csv or application/fhir+json)`, expression('_format'));
  }
  return req.accepts([FHIR_JSON.split(';')[0] as string, 'application/json', 'text/csv']) === 'text/csv' && /text\/csv/.test(req.get('accept') ?? '');
}

export function mountReportRoutes(app: Express, reports: ReportsService): void {
  /** A centre client sees its own centre only among the Measures' venues. */
  const served = (measure: NonNullable<ReturnType<ReportsService['measure']>>, res: Response): Promise<fhir4.Measure> => {
    const client = res.locals['client'] as ClientIdentity | undefined;
    // A client bound to no centre matches no venue ('' is no centre's system|value).
    return reports.servedMeasure(measure, client ? (client.centre ?? '') : undefined);
  };

  app.get('/fhir/Measure', async (req, res) => {
    const parameters = parametersFromQuery(req.query as Record<string, unknown>);
    const context = stringParameter(parameters, 'context');
    const program = stringParameter(parameters, 'program');
    if (context !== undefined && program !== undefined && context !== program) throw badRequest('"context" and "program" name different programs', expression('program'));
    const wanted = context ?? program;
    if (wanted !== undefined && !reports.programIds.includes(wanted)) throw badRequest(`Unknown program ${wanted} (one of: ${reports.programIds.join(', ')})`, expression(context !== undefined ? 'context' : 'program'));
    const measures = reports.measures(wanted);
    const resources = await Promise.all(measures.map((m) => served(m, res)));
    const bundle: fhir4.Bundle = { resourceType: 'Bundle', type: 'searchset', total: measures.length, entry: resources.map((resource) => ({ fullUrl: resource.url as string, resource, search: { mode: 'match' } })) };
    send(res, 200, bundle);
  });

  const pack = async (req: Request, res: Response): Promise<void> => {
    const parameters = parametersOf(req);
    const programId = stringParameter(parameters, 'program');
    if (!programId) throw badRequest(`Parameter "program" is required (one of: ${reports.programIds.join(', ')})`, expression('program'));
    if (!reports.programIds.includes(programId)) throw badRequest(`Unknown program ${programId} (one of: ${reports.programIds.join(', ')})`, expression('program'));
    const packName = stringParameter(parameters, 'pack');
    if (!packName || !(REPORT_PACKS as readonly string[]).includes(packName)) throw badRequest(`Parameter "pack" is required: one of ${REPORT_PACKS.join(', ')}`, expression('pack'));
    const period = periodOf(parameters);
    const csv = wantsCsv(req, parameters);
    const bound = res.locals['client'] !== undefined;
    try {
      const centre = await centreFor(reports, programId, res, requestedCentre(parameters));
      const result = await reports.pack(programId, packName as ReportPack, { period, ...(centre ? { centre } : {}) });
      if (csv) {
        res.status(200).set({ 'Content-Type': CSV, 'Content-Disposition': `attachment; filename="${programId}-${packName}-${period.start}-${period.end}.csv"` }).send(result.csv());
        return;
      }
      send(res, 200, result.bundle);
    } catch (error) {
      throw toOutcome(error, bound);
    }
  };
  app.get('/fhir/Measure/\\$report-pack', pack);
  app.post('/fhir/Measure/\\$report-pack', pack);

  app.get('/fhir/Measure/:id', async (req, res) => {
    const id = assertFhirId(req.params['id'], 'Measure');
    const measure = reports.measure(id);
    if (!measure) throw notFound(`Measure/${id} is not known (see GET /fhir/Measure)`);
    send(res, 200, await served(measure, res));
  });

  const evaluate = async (req: Request, res: Response): Promise<void> => {
    const id = assertFhirId(req.params['id'] as string | undefined, 'Measure');
    const measure = reports.measure(id);
    if (!measure) throw notFound(`Measure/${id} is not known (see GET /fhir/Measure)`);
    const parameters = parametersOf(req);
    const reportType = stringParameter(parameters, 'reportType');
    if (reportType !== undefined && reportType !== 'summary') throw badRequest(`reportType ${reportType} is not served: only summary`, expression('reportType'));
    const period = periodOf(parameters);
    const bound = res.locals['client'] !== undefined;
    try {
      const centre = await centreFor(reports, measure.programId, res, requestedCentre(parameters));
      send(res, 200, await reports.evaluate(id, { period, ...(centre ? { centre } : {}) }));
    } catch (error) {
      throw toOutcome(error, bound);
    }
  };
  app.get('/fhir/Measure/:id/\\$evaluate-measure', evaluate);
  app.post('/fhir/Measure/:id/\\$evaluate-measure', evaluate);
}
