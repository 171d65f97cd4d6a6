/**
 * The scopes of the report routes (src/http/scopes.ts) are those of the handler Express runs:
 * the routes of src/http/report-routes.ts are mounted here in the same order, each answering its
 * label, and every probe path (trailing slash, case, percent-encoded `$`, query) must get the
 * scopes of the route Express chose.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_SCOPE, requiredScopes } from '../../../src/http/scopes.js';

const ROUTES: [method: 'get' | 'post', pattern: string, label: string][] = [
  ['get', '/fhir/Measure', 'list'],
  ['get', '/fhir/Measure/\\$report-pack', 'pack'],
  ['post', '/fhir/Measure/\\$report-pack', 'pack'],
  ['get', '/fhir/Measure/:id', 'read'],
  ['get', '/fhir/Measure/:id/\\$evaluate-measure', 'evaluate'],
  ['post', '/fhir/Measure/:id/\\$evaluate-measure', 'evaluate'],
];
const EXPECTED: Record<string, string[]> = {
  list: ['system/Measure.rs'],
  read: ['system/Measure.rs'],
  pack: ['system/MeasureReport.rs'],
  evaluate: ['system/MeasureReport.rs'],
};

describe('report route scopes agree with Express routing', () => {
  let server: Server;
  let port = 0;
  beforeAll(async () => {
    const app = express();
    for (const [method, pattern, label] of ROUTES) app[method](pattern, (_req, res) => void res.set('X-Label', label).end());
    app.use((_req, res) => void res.status(404).end());
    server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const probes: [string, string][] = [
    ['GET', '/fhir/Measure'],
    ['GET', '/fhir/Measure/'],
    ['GET', '/fhir/measure'],
    ['GET', '/fhir/Measure?context=rediab'],
    ['GET', '/fhir/Measure/$report-pack'],
    ['POST', '/fhir/Measure/$report-pack'],
    ['GET', '/fhir/Measure/%24report-pack'],
    ['GET', '/fhir/MEASURE/$REPORT-PACK'],
    ['GET', '/fhir/Measure/fnmf-prediabetes-exits'],
    ['GET', '/fhir/Measure/fnmf-prediabetes-exits/'],
    ['GET', '/fhir/Measure/x/$evaluate-measure'],
    ['POST', '/fhir/Measure/x/$evaluate-measure/'],
    ['GET', '/fhir/Measure/x/%24evaluate-measure'],
    ['GET', '/fhir/Measure/x/$evaluate-measure/extra'],
    ['PUT', '/fhir/Measure/x'],
    ['DELETE', '/fhir/Measure/x'],
    ['POST', '/fhir/Measure/x'],
  ];

  it.each(probes)('%s %s', async (method, path) => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { method });
    const label = response.headers.get('x-label');
    // Express ran a report handler: its scopes; no handler: operator rights (closed by default).
    const expected = label ? EXPECTED[label] : [ADMIN_SCOPE];
    expect(requiredScopes(method, path), `${method} ${path} → ${label ?? response.status}`).toEqual(expected);
  });
});
