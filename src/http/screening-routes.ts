/**
 * `$screen` and its asynchronous status (FHIR asynchronous request pattern, and for Bulk Data
 * input the Bulk Data pattern: 202 + X-Progress while running, 200 with an output manifest
 * when done, result files served under our own authenticated URLs).
 *
 * `POST /fhir/$screen` takes `program`, `asOf`, and either
 * - nothing more: every patient whose GP is in a participating centre, one queued evaluation each;
 * - repeated `patient` references: those patients;
 * - FHIR Bulk Data NDJSON: `inputFormat` = `application/fhir+ndjson` and repeated `input`
 *   (parts `type`, `url`: a file under BULK_INPUT_DIR or a URL on the FHIR server's origin;
 *   a `.json` url, or type `manifest`, is an `$export` output manifest), or `source` = `export`
 *   (the FHIR server's own `$export`). The body may also be an `$export` manifest itself,
 *   with `program` (and `asOf`) in the query string.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import type { Express, Request, Response } from 'express';
import { BulkInputError, type BulkScreening } from '../app/bulk-screening.js';
import type { CentreAccess, ClientIdentity } from '../app/centre-access.js';
import type { EligibilityService } from '../app/eligibility.service.js';
import { NDJSON_FORMAT, inputsOfManifest, outputManifest, type BulkInput } from '../domain/bulk/manifest.js';
import { isFhirId, localId } from '../domain/references.js';
import type { Queues } from '../queue/queues.js';
import type { ScreenStatus, ScreeningStore } from '../queue/screening-store.js';
import { assertFhirId } from './input-guards.js';
import { OperationOutcomeError, allOk, badRequest, notFound, operationOutcome } from './outcomes.js';
import { asParameters, dateParameter, referenceParameters, stringParameter } from './parameters.js';
import { sendFhir } from './send-fhir.js';

export interface ScreeningRouteDeps {
  eligibility: EligibilityService;
  screenings: ScreeningStore;
  queues: Queues;
  centreAccess: CentreAccess;
  /** Our base URL as clients reach it (never the Host header). */
  publicBaseUrl: () => string;
  /** Bulk Data input; absent: `$screen` refuses NDJSON input. */
  bulk?: BulkScreening;
  /** Whether requests carry access tokens (the manifest's `requiresAccessToken`). */
  authenticated: boolean;
}

const SCREEN_JOB_OPTIONS = { attempts: 5, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: { age: 7 * 24 * 3600 } } as const;

const clientOf = (res: Response): ClientIdentity | undefined => res.locals['client'] as ClientIdentity | undefined;

function screenParameters(status: ScreenStatus): fhir4.Parameters {
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'id', valueString: status.id },
      { name: 'program', valueString: status.programId },
      { name: 'asOf', valueDate: status.asOf },
      { name: 'state', valueCode: status.state },
      ...(status.total !== undefined ? [{ name: 'total', valueInteger: status.total }] : []),
      { name: 'done', valueInteger: status.done },
      ...Object.entries(status.counts).map(([outcome, count]) => ({
        name: 'count',
        part: [
          { name: 'outcome', valueCode: outcome },
          { name: 'count', valueInteger: count },
        ],
      })),
      ...(status.error ? [{ name: 'error', valueString: status.error }] : []),
    ],
  };
}

const where = (name: string): string => `Parameters.parameter.where(name='${name}')`;

/** The Bulk Data inputs of a `$screen` Parameters (empty when it has none). */
function bulkInputsOf(parameters: fhir4.Parameters): BulkInput[] {
  const inputs = (parameters.parameter ?? []).filter((p) => p.name === 'input');
  const format = stringParameter(parameters, 'inputFormat');
  if (inputs.length === 0) {
    if (format !== undefined) throw badRequest('inputFormat is given without any input', where('input'));
    return [];
  }
  if (format !== NDJSON_FORMAT) throw badRequest(`inputFormat must be ${NDJSON_FORMAT}`, where('inputFormat'));
  return inputs.map((input, index) => {
    const part = (name: string) => input.part?.find((p) => p.name === name);
    const type = part('type');
    const url = part('url');
    const urlValue = url?.valueUrl ?? url?.valueUri ?? url?.valueString;
    const typeValue = type?.valueCode ?? type?.valueString;
    if (typeof urlValue !== 'string' || urlValue.length === 0) throw badRequest(`input #${index + 1} has no url part`, `${where('input')}[${index}]`);
    if (typeValue !== undefined && (typeof typeValue !== 'string' || !/^[A-Za-z]{1,64}$/.test(typeValue))) throw badRequest(`input #${index + 1}: type must be a resource type`, `${where('input')}[${index}]`);
    return { url: urlValue, ...(typeValue ? { type: typeValue } : {}) };
  });
}

export function mountScreeningRoutes(app: Express, deps: ScreeningRouteDeps): void {
  const { eligibility } = deps;

  app.post('/fhir/\\$screen', async (req, res) => {
    // An `$export` output manifest as the body, program and asOf in the query string.
    const body = req.body as { resourceType?: unknown; output?: unknown } | undefined;
    const manifestBody = body !== undefined && typeof body === 'object' && body !== null && body.resourceType === undefined && Array.isArray(body.output);
    let parameters: fhir4.Parameters;
    let inputs: BulkInput[];
    let source: 'export' | undefined;
    if (manifestBody) {
      const read = inputsOfManifest(body);
      if (!read.ok) throw badRequest(`Not a Bulk Data manifest: ${read.reason}`, 'output');
      inputs = read.inputs;
      const query = req.query as Record<string, unknown>;
      parameters = {
        resourceType: 'Parameters',
        parameter: (['program', 'asOf'] as const).flatMap((name) => (typeof query[name] === 'string' ? [{ name, valueString: query[name] as string }] : [])),
      };
    } else {
      parameters = asParameters(req.body);
      inputs = bulkInputsOf(parameters);
      const sourceValue = stringParameter(parameters, 'source');
      if (sourceValue !== undefined && sourceValue !== 'export') throw badRequest('source must be "export"', where('source'));
      source = sourceValue;
    }
    const programId = stringParameter(parameters, 'program');
    if (!programId) throw badRequest(`Parameter "program" is required (one of: ${eligibility.programIds.join(', ')})`, where('program'));
    eligibility.program(programId);
    const asOf = dateParameter(parameters, 'asOf') ?? eligibility.today(programId);
    const patients = manifestBody
      ? []
      : referenceParameters(parameters, 'patient').map((reference, index) => {
          const id = localId(reference, 'Patient');
          if (!id || !isFhirId(id)) throw badRequest(`patient #${index + 1} must be a Patient/{id} reference`, `${where('patient')}[${index}]`);
          return id;
        });
    const bulk = inputs.length > 0 || source === 'export';
    if (bulk && patients.length > 0) throw badRequest('give either patient references or Bulk Data input, not both', where('patient'));
    if (inputs.length > 0 && source) throw badRequest('give either input files or source=export, not both', where('source'));
    const client = clientOf(res);
    const screenId = randomUUID();
    const location = `${deps.publicBaseUrl()}/fhir/_async/${screenId}`;

    if (bulk) {
      if (!deps.bulk) throw new OperationOutcomeError(501, operationOutcome([{ code: 'not-supported', diagnostics: 'Bulk Data screening is not enabled on this adapter' }]));
      try {
        deps.bulk.checkInputs(inputs);
      } catch (error) {
        if (error instanceof BulkInputError) throw badRequest(error.message, manifestBody ? 'output' : where('input'));
        throw error;
      }
      if (source === 'export' && !(await deps.bulk.exportSupported())) {
        throw new OperationOutcomeError(422, operationOutcome([{ code: 'not-supported', diagnostics: 'The FHIR server does not declare $export in its CapabilityStatement', expression: [where('source')] }]));
      }
      await deps.screenings.create(screenId, programId, asOf, new Date().toISOString(), client?.centre, 'bulk');
      await deps.queues.screening.add(
        'screen',
        {
          screenId,
          programId,
          asOf,
          ...(client?.centre ? { centre: client.centre } : {}),
          bulk: { ...(inputs.length ? { inputs } : {}), ...(source ? { source } : {}), request: `${deps.publicBaseUrl()}/fhir/$screen` },
        },
        { jobId: `screen.${screenId}`, ...SCREEN_JOB_OPTIONS },
      );
      sendFhir(res, 202, allOk(`Bulk screening queued; poll ${location}`), { 'Content-Location': location });
      return;
    }

    for (const patientId of patients) await deps.centreAccess.assertPatient(client, patientId);
    await deps.screenings.create(screenId, programId, asOf, new Date().toISOString(), client?.centre);
    await deps.queues.screening.add(
      'screen',
      { screenId, programId, asOf, ...(patients.length ? { patientIds: [...new Set(patients)] } : {}), ...(client?.centre ? { centre: client.centre } : {}) },
      { jobId: `screen.${screenId}`, ...SCREEN_JOB_OPTIONS },
    );
    sendFhir(res, 202, allOk(`Screening queued; poll ${location}`), { 'Content-Location': location });
  });

  /** The screening, if it exists and the client may see it (another centre's is answered as unknown). */
  const visibleScreening = async (req: Request, res: Response): Promise<ScreenStatus> => {
    const id = assertFhirId(req.params['id'] as string | undefined, 'screening');
    const status = await deps.screenings.get(id);
    const client = clientOf(res);
    if (!status || (client && status.centre !== client.centre)) throw notFound(`No screening ${id} (unknown or expired)`);
    return status;
  };

  app.get('/fhir/_async/:id', async (req, res) => {
    const status = await visibleScreening(req, res);
    const finished = status.state === 'completed' || status.state === 'failed';
    if (status.kind !== 'bulk') {
      const progress = `${status.done}/${status.total ?? '?'} evaluated`;
      sendFhir(res, finished ? 200 : 202, screenParameters(status), { 'X-Progress': progress, ...(finished ? {} : { 'Retry-After': '2' }) });
      return;
    }
    if (status.state === 'failed') {
      sendFhir(res, 500, operationOutcome([{ code: 'exception', diagnostics: `Bulk screening failed: ${status.error ?? 'unknown error'}` }]));
      return;
    }
    const counts = Object.entries(status.counts).map(([outcome, count]) => `${outcome} ${count}`).join(', ');
    if (status.state !== 'completed' || !status.result) {
      const progress = `${status.phase ?? status.state}: ${status.resources ?? 0} resources read, ${status.done} patients evaluated (${counts})`;
      sendFhir(res, 202, screenParameters(status), { 'X-Progress': progress.slice(0, 200), 'Retry-After': '2' });
      return;
    }
    const result = status.result;
    const manifest = outputManifest({
      transactionTime: result.transactionTime,
      request: result.request,
      requiresAccessToken: deps.authenticated,
      output: result.output,
      errors: result.errors,
      fileUrl: (file) => `${deps.publicBaseUrl()}/fhir/_async/${status.id}/${file}`,
      program: status.programId,
      asOf: status.asOf,
      counts: { eligible: result.counts['eligible'] ?? 0, 'not-eligible': result.counts['not-eligible'] ?? 0, undetermined: result.counts['undetermined'] ?? 0, error: result.counts['error'] ?? 0 },
      tasksWritten: result.tasksWritten,
    });
    res.status(200).set({ 'Content-Type': 'application/json; charset=utf-8', 'X-Progress': `completed: ${result.patients} patients (${counts})` }).send(JSON.stringify(manifest));
  });

  app.get('/fhir/_async/:id/:file', async (req, res) => {
    const status = await visibleScreening(req, res);
    const name = req.params['file'] as string;
    // Only a file the manifest lists: no path of the client's choosing reaches the file system.
    const listed = [...(status.result?.output ?? []), ...(status.result?.errors ?? [])].find((file) => file.file === name);
    if (status.kind !== 'bulk' || !listed || !deps.bulk) throw notFound(`No file ${name.slice(0, 64)} in screening ${status.id}`);
    res.status(200).set({ 'Content-Type': 'application/fhir+ndjson' });
    const stream = createReadStream(path.join(deps.bulk.outputFolder(status.id), listed.file));
    await new Promise<void>((resolve, reject) => {
      stream.once('error', reject);
      res.once('finish', () => resolve());
      res.once('close', () => resolve());
      stream.pipe(res);
    }).catch(() => {
      if (!res.headersSent) throw notFound(`The files of screening ${status.id} are no longer available`);
      res.destroy();
    });
  });
}
