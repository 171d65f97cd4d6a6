/**
 * HTTP operations of forfait billing (issue #4): `$bill` generates what falls due up to a date
 * (the daily sweep, on demand) and queues the submissions; `$budget` reads claimed, accepted
 * and paid amounts against the program's budget.
 */
import type { Express, Response } from 'express';
import type { BillingService } from '../app/billing.service.js';
import { localReference } from '../domain/references.js';
import { badRequest } from './outcomes.js';
import { dateParameter, parametersFromQuery, readParameters, stringParameter, type OperationDeclaration } from './parameters.js';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function send(res: Response, status: number, body: fhir4.Parameters): void {
  res.status(status).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
}

export const BILL: OperationDeclaration = {
  name: '$bill',
  parameters: [
    { name: 'asOf', types: ['date'] },
    { name: 'program', types: ['code', 'string'] },
  ],
};
/** `centre` (an Organization reference) is read only without authentication: a client sees its own centre. */
export const BUDGET: OperationDeclaration = {
  name: '$budget',
  parameters: [
    { name: 'program', types: ['code', 'string'], min: 1 },
    { name: 'centre', types: ['string'] },
  ],
};

/** `centre` as an `Organization/{id}` reference (it goes into a search). */
function centreParameter(parameters: fhir4.Parameters): string | undefined {
  const given = stringParameter(parameters, 'centre');
  if (given === undefined) return undefined;
  const centre = localReference(given, 'Organization')?.key;
  if (!centre) throw badRequest('Parameter "centre" must be an Organization/{id} reference', `Parameters.parameter.where(name='centre')`);
  return centre;
}

const money = (value: string): fhir4.Money => ({ value: Number(value), currency: 'EUR' });

export function mountBillingRoutes(app: Express, billing: BillingService, enqueueSubmissions: (claimIds: string[]) => Promise<void>): void {
  app.post('/fhir/\\$bill', async (req, res) => {
    const parameters = readParameters(req.body, BILL);
    const result = await billing.generateAll(dateParameter(parameters, 'asOf'), stringParameter(parameters, 'program'));
    await enqueueSubmissions(result.claims);
    send(res, 200, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'claims', valueInteger: result.claims.length },
        { name: 'created', valueInteger: result.created },
        ...result.claims.map((id) => ({ name: 'claim', valueReference: { reference: `Claim/${id}` } })),
        // What could not be claimed, and why: nothing is written for those.
        ...(result.issues.length
          ? [{ name: 'issues', resource: { resourceType: 'OperationOutcome', issue: result.issues.map((i) => ({ severity: 'error', code: i.code, diagnostics: `${i.diagnostics} [${i.rule}]`, ...(i.expression ? { expression: [i.expression] } : {}) })) } as fhir4.OperationOutcome }]
          : []),
      ],
    });
  });

  app.get('/fhir/\\$budget', async (req, res) => {
    const parameters = parametersFromQuery(req.query as Record<string, unknown>, BUDGET);
    const program = stringParameter(parameters, 'program') as string;
    // A centre's client reads its own centre's figures only.
    const client = res.locals['client'] as { centre?: string } | undefined;
    const centre = client ? (client.centre ? ((await billing.centreOrganization(client.centre)) ?? 'Organization/none') : 'Organization/none') : centreParameter(parameters);
    const report = await billing.budget(program, centre);
    send(res, 200, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: report.programId },
        ...(report.centre ? [{ name: 'centre', valueString: report.centre }] : []),
        ...(report.budget !== undefined ? [{ name: 'budget', valueMoney: money(report.budget) }] : []),
        { name: 'claimed', valueMoney: money(report.claimed) },
        { name: 'accepted', valueMoney: money(report.accepted) },
        { name: 'paid', valueMoney: money(report.paid) },
        ...(report.remaining !== undefined ? [{ name: 'remaining', valueMoney: money(report.remaining) }] : []),
        ...report.byForfait.map((f) => ({
          name: 'forfait',
          part: [
            { name: 'code', valueCode: f.code },
            { name: 'claims', valueInteger: f.claims },
            { name: 'claimed', valueMoney: money(f.claimed) },
            { name: 'accepted', valueMoney: money(f.accepted) },
            { name: 'paid', valueMoney: money(f.paid) },
          ],
        })),
      ],
    });
  });
}
