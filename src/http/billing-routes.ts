/**
 * HTTP operations of forfait billing (issue #4): `$bill` generates what falls due up to a date
 * (the daily sweep, on demand) and queues the submissions; `$budget` reads claimed, accepted
 * and paid amounts against the program's budget.
 */
import type { Express, Response } from 'express';
import type { BillingService } from '../app/billing.service.js';
import { badRequest } from './outcomes.js';
import { asParameters, dateParameter, parametersFromQuery, stringParameter } from './parameters.js';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function send(res: Response, status: number, body: fhir4.Parameters): void {
  res.status(status).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
}

const money = (value: string): fhir4.Money => ({ value: Number(value), currency: 'EUR' });

export function mountBillingRoutes(app: Express, billing: BillingService, enqueueSubmissions: (claimIds: string[]) => Promise<void>): void {
  app.post('/fhir/\\$bill', async (req, res) => {
    const parameters = asParameters(req.body);
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
    const parameters = parametersFromQuery(req.query as Record<string, unknown>);
    const program = stringParameter(parameters, 'program');
    if (!program) throw badRequest('Parameter "program" is required', `Parameters.parameter.where(name='program')`);
    // A centre's client reads its own centre's figures only.
    const client = res.locals['client'] as { centre?: string } | undefined;
    const centre = client ? (client.centre ? ((await billing.centreOrganization(client.centre)) ?? 'Organization/none') : 'Organization/none') : stringParameter(parameters, 'centre');
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
