import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_SCOPE, NOTIFY_SCOPE, UNMATCHED_ROUTE, bundleScopes, missingScopes, requiredScopes, requiresCentre, scopeSatisfies } from '../../../src/http/scopes.js';

describe('scopeSatisfies', () => {
  const cases: [granted: string[], required: string, expected: boolean][] = [
    [['system/Observation.c'], 'system/Observation.c', true],
    [['system/Observation.cruds'], 'system/Observation.c', true],
    [['system/Observation.cu'], 'system/Observation.c', true],
    [['system/Observation.*'], 'system/Observation.c', true],
    [['system/Observation.write'], 'system/Observation.c', true],
    [['system/Observation.write'], 'system/Observation.u', true],
    [['system/Observation.write'], 'system/Observation.d', true],
    [['system/Observation.write'], 'system/Observation.r', false],
    [['system/Observation.read'], 'system/Observation.c', false],
    [['system/Patient.read'], 'system/Patient.rs', true],
    [['system/*.c'], 'system/Observation.c', true],
    [['system/*.cruds'], 'system/Observation.c', true],
    [['system/*.*'], 'system/Observation.c', true],
    [['system/*.read'], 'system/Patient.rs', true],
    [['system/*.write'], 'system/Patient.rs', false],
    // Permissions add up across scopes of the same type (or a wildcard).
    [['system/Patient.r', 'system/Patient.s'], 'system/Patient.rs', true],
    [['system/Patient.r', 'system/*.s'], 'system/Patient.rs', true],
    [['system/Patient.r'], 'system/Patient.rs', false],
    [['system/Patient.s'], 'system/Patient.rs', false],
    // Another type, another context, a restricted (query) scope: nothing.
    [['system/Observation.cruds'], 'system/Patient.c', false],
    [['system/Observations.c'], 'system/Observation.c', false],
    [['system/observation.c'], 'system/Observation.c', false],
    [['patient/Observation.c'], 'system/Observation.c', false],
    [['user/Observation.cruds'], 'system/Observation.c', false],
    [['patient/*.*', 'user/*.*'], 'system/Patient.rs', false],
    [['system/Observation.c?category=laboratory'], 'system/Observation.c', false],
    [['system/Observation.rs?category=laboratory', 'system/Observation.c'], 'system/Observation.rs', false],
    // Malformed grants: out of order, unknown letters, empty, junk.
    [['system/Observation.rc'], 'system/Observation.c', false],
    [['system/Observation.cx'], 'system/Observation.c', false],
    [['system/Observation.'], 'system/Observation.c', false],
    [['system/.c'], 'system/Observation.c', false],
    [['system/Observation'], 'system/Observation.c', false],
    [['system/Observation.cc'], 'system/Observation.c', false],
    [['SYSTEM/Observation.c'], 'system/Observation.c', false],
    [['system/Observation.c '], 'system/Observation.c', false],
    [[], 'system/Observation.c', false],
    // A required scope that does not parse is never satisfied.
    [['system/*.*'], 'system/Observation.x', false],
    [['system/*.*'], 'system/$bill.c', false],
    [['system/*.*'], 'system/Observation;x.c', false],
    [['system/*.*'], '', false],
    // A wildcard required type only by a wildcard grant.
    [['system/*.c'], 'system/*.c', true],
    [['system/Observation.c'], 'system/*.c', false],
    // Our operator scopes: exact only, never through wildcards.
    [[ADMIN_SCOPE], ADMIN_SCOPE, true],
    [['system/*.*', 'system/*.cruds', 'system/*.write'], ADMIN_SCOPE, false],
    [['system/admin.*'], ADMIN_SCOPE, false],
    [[NOTIFY_SCOPE], NOTIFY_SCOPE, true],
    [['system/Subscription.*', 'system/*.*'], NOTIFY_SCOPE, false],
    [[ADMIN_SCOPE], NOTIFY_SCOPE, false],
    [[ADMIN_SCOPE], 'system/Observation.c', false],
  ];
  it.each(cases)('%j satisfies %s: %s', (granted, required, expected) => {
    expect(scopeSatisfies(granted, required)).toBe(expected);
  });

  it('lists the missing scopes', () => {
    expect(missingScopes(['system/Patient.rs'], ['system/Patient.rs', 'system/Claim.r'])).toEqual(['system/Claim.r']);
    expect(missingScopes(['system/*.*'], ['system/Patient.rs', 'system/Claim.r'])).toEqual([]);
  });

  it('binds data routes to a centre, operator-only routes not', () => {
    expect(requiresCentre(['system/Patient.rs'])).toBe(true);
    expect(requiresCentre([])).toBe(true);
    expect(requiresCentre([ADMIN_SCOPE])).toBe(false);
    expect(requiresCentre([NOTIFY_SCOPE])).toBe(false);
    expect(requiresCentre([ADMIN_SCOPE, 'system/Claim.r'])).toBe(true);
    expect(requiresCentre(null)).toBe(false);
  });
});

describe('requiredScopes', () => {
  const cases: [method: string, path: string, expected: string[] | null][] = [
    ['GET', '/healthz', null],
    ['GET', '/readyz', null],
    ['GET', '/fhir/metadata', null],
    ['HEAD', '/fhir/metadata', null],
    ['GET', '/metrics', [ADMIN_SCOPE]],
    ['GET', '/admin/queues', [ADMIN_SCOPE]],
    ['GET', '/admin/queues/api/queues?page=1', [ADMIN_SCOPE]],
    ['PUT', '/admin/queues/api/queues/evaluation/retry', [ADMIN_SCOPE]],
    ['POST', '/fhir/Patient/p1/$evaluate-eligibility', ['system/Patient.rs']],
    ['GET', '/fhir/Patient/p1/$evaluate-eligibility?program=rediab', ['system/Patient.rs']],
    ['POST', '/fhir/$screen', ['system/Patient.rs']],
    ['GET', '/fhir/_async/0b7c', ['system/Patient.rs']],
    ['POST', '/fhir/Patient/p1/$enroll', ['system/EpisodeOfCare.c']],
    ['POST', '/fhir/Patient/p1/$decline', ['system/Task.u']],
    ['POST', '/fhir/EpisodeOfCare/e1/$exit', ['system/EpisodeOfCare.u']],
    ['POST', '/fhir/EpisodeOfCare/e1/$add-plan', ['system/EpisodeOfCare.u']],
    ['POST', '/fhir/EpisodeOfCare/e1/$advance', [ADMIN_SCOPE]],
    ['POST', '/fhir/$advance', [ADMIN_SCOPE]],
    ['POST', '/fhir/$bill', [ADMIN_SCOPE]],
    ['GET', '/fhir/$budget?program=rediab', ['system/Claim.r']],
    ['POST', '/fhir/Encounter', ['system/Encounter.c']],
    ['POST', '/fhir', []],
    ['POST', '/fhir/', []],
    ['POST', '/fhir/Observation', ['system/Observation.c']],
    ['POST', '/fhir/Patient', ['system/Patient.c']],
    ['POST', '/fhir/Practitioner/', ['system/Practitioner.c']],
    ['POST', '/hooks/subscription', [NOTIFY_SCOPE]],
    // Case-insensitive literals, decoded parameters: as Express routes them.
    ['POST', '/FHIR/$BILL', [ADMIN_SCOPE]],
    ['post', '/fhir/patient/p1/$ENROLL', ['system/EpisodeOfCare.c']],
    ['POST', '/fhir/Obs%65rvation', ['system/Observation.c']],
    ['POST', '/fhir/%24bill', ['system/$bill.c']],
    ['POST', '/fhir/%ZZ', [...UNMATCHED_ROUTE]],
    // Not routes of the app: operator rights only (fail closed).
    ['GET', '/fhir/Patient/p1', [...UNMATCHED_ROUTE]],
    ['GET', '/fhir/Observation?subject=Patient/p1', [...UNMATCHED_ROUTE]],
    ['PUT', '/fhir/Observation/o1', [...UNMATCHED_ROUTE]],
    ['DELETE', '/fhir/Observation', [...UNMATCHED_ROUTE]],
    ['POST', '/healthz', [...UNMATCHED_ROUTE]],
    ['GET', '/fhir/metadata/x', [...UNMATCHED_ROUTE]],
    ['GET', '/admin/queuesX', [...UNMATCHED_ROUTE]],
    ['OPTIONS', '/fhir/Observation', [...UNMATCHED_ROUTE]],
    ['GET', '/', [...UNMATCHED_ROUTE]],
  ];
  it.each(cases)('%s %s → %j', (method, path, expected) => {
    expect(requiredScopes(method, path)).toEqual(expected);
  });

  it('takes the type of POST /fhir/:type from the caller when given', () => {
    expect(requiredScopes('POST', '/fhir/:type', 'Condition')).toEqual(['system/Condition.c']);
  });

  it('returns a fresh array each time (the table cannot be mutated through it)', () => {
    const first = requiredScopes('GET', '/metrics') as string[];
    first.push('system/*.*');
    expect(requiredScopes('GET', '/metrics')).toEqual([ADMIN_SCOPE]);
  });
});

/**
 * The table must give the requirement of the handler Express actually runs. This app mounts
 * the route patterns of createApp (src/http/app.ts and the route modules) in the same order,
 * each answering its label; for each probe path, whatever Express routes it to, the table
 * must give that route's scopes (and an Express 404 must never be a public route).
 */
describe('requiredScopes agrees with Express routing', () => {
  const ROUTES: [method: 'get' | 'post' | 'use', pattern: string, label: string][] = [
    ['get', '/healthz', 'GET /healthz'],
    ['get', '/readyz', 'GET /readyz'],
    ['get', '/metrics', 'GET /metrics'],
    ['use', '/admin/queues', 'USE /admin/queues'],
    ['get', '/fhir/metadata', 'GET /fhir/metadata'],
    ['post', '/fhir/Patient/:id/\\$evaluate-eligibility', 'POST $evaluate-eligibility'],
    ['get', '/fhir/Patient/:id/\\$evaluate-eligibility', 'GET $evaluate-eligibility'],
    ['post', '/fhir/\\$screen', 'POST $screen'],
    ['get', '/fhir/_async/:id', 'GET _async'],
    ['post', '/fhir/Patient/:id/\\$enroll', 'POST $enroll'],
    ['post', '/fhir/Patient/:id/\\$decline', 'POST $decline'],
    ['post', '/fhir/EpisodeOfCare/:id/\\$exit', 'POST $exit'],
    ['post', '/fhir/EpisodeOfCare/:id/\\$add-plan', 'POST $add-plan'],
    ['post', '/fhir/EpisodeOfCare/:id/\\$advance', 'POST episode $advance'],
    ['post', '/fhir/\\$advance', 'POST $advance'],
    ['post', '/fhir/Encounter', 'POST Encounter'],
    ['post', '/fhir/\\$bill', 'POST $bill'],
    ['get', '/fhir/\\$budget', 'GET $budget'],
    ['post', '/fhir', 'POST /fhir'],
    ['post', '/fhir/:type', 'POST /fhir/:type'],
    ['post', '/hooks/subscription', 'POST hooks'],
  ];
  const EXPECTED: Record<string, (type: string) => string[] | null> = {
    'GET /healthz': () => null,
    'GET /readyz': () => null,
    'GET /metrics': () => [ADMIN_SCOPE],
    'USE /admin/queues': () => [ADMIN_SCOPE],
    'GET /fhir/metadata': () => null,
    'POST $evaluate-eligibility': () => ['system/Patient.rs'],
    'GET $evaluate-eligibility': () => ['system/Patient.rs'],
    'POST $screen': () => ['system/Patient.rs'],
    'GET _async': () => ['system/Patient.rs'],
    'POST $enroll': () => ['system/EpisodeOfCare.c'],
    'POST $decline': () => ['system/Task.u'],
    'POST $exit': () => ['system/EpisodeOfCare.u'],
    'POST $add-plan': () => ['system/EpisodeOfCare.u'],
    'POST episode $advance': () => [ADMIN_SCOPE],
    'POST $advance': () => [ADMIN_SCOPE],
    'POST Encounter': () => ['system/Encounter.c'],
    'POST $bill': () => [ADMIN_SCOPE],
    'GET $budget': () => ['system/Claim.r'],
    'POST /fhir': () => [],
    'POST /fhir/:type': (type) => [`system/${type}.c`],
    'POST hooks': () => [NOTIFY_SCOPE],
  };
  const PROBES: [method: string, path: string][] = [
    ...ROUTES.flatMap(([method, pattern]) => {
      const path = pattern.replace(/\\\$/g, '$').replace(':id', 'x1').replace(':type', 'Observation');
      const verb = method === 'use' ? 'GET' : method.toUpperCase();
      return [
        [verb, path],
        [verb, `${path}/`],
        [verb, path.toUpperCase()],
        [verb, path.replace(/\$/g, '%24')],
        [verb, `${path}?_format=json`],
        [verb === 'GET' ? 'HEAD' : verb, path],
        ['PUT', path],
        ['DELETE', path],
      ] as [string, string][];
    }),
    ['POST', '/fhir/Obs%65rvation'],
    ['POST', '/fhir/%2e%2e'],
    ['POST', '/fhir/Observation;x'],
    ['POST', '/fhir//Observation'],
    ['POST', '//fhir/Observation'],
    ['POST', '/fhir/Patient/a%2Fb/$enroll'],
    ['POST', '/fhir/Patient/%2F/$enroll'],
    ['POST', '/fhir/Patient/x/$enroll//'],
    ['POST', '/fhir/Patient/x/%2524enroll'],
    ['POST', '/fhir/Patient/x/$enroll/x'],
    ['POST', '/fhir/EpisodeOfCare/x/$advance/'],
    ['GET', '/admin/queues%2Fapi'],
    ['GET', '/admin/queues/api/queues'],
    ['POST', '/admin/queues/api/queues/evaluation/clean/failed'],
    ['GET', '/admin/queuesx'],
    ['GET', '/HEALTHZ'],
    ['GET', '/healthz/x'],
    ['GET', '/fhir/metadata%2F'],
    ['GET', '/fhir/_async/a%2Fb'],
    ['POST', '/hooks/subscription/'],
    ['POST', '/hooks/Subscription'],
    ['POST', '/hooks'],
  ];

  let server: Server;
  let port = 0;
  beforeAll(async () => {
    const app = express();
    for (const [method, pattern, label] of ROUTES) {
      const handler = (req: express.Request, res: express.Response): void => {
        // Headers, not a body: HEAD requests are answered too.
        res.set({ 'X-Label': label, 'X-Type': encodeURIComponent(String(req.params['type'] ?? '')) }).end();
      };
      if (method === 'use') app.use(pattern, handler);
      else app[method](pattern, handler);
    }
    app.use((_req, res) => {
      res.status(404).end();
    });
    app.use((_error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(400).end();
    });
    server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** The raw path goes out as written (fetch would normalise it). */
  const route = (method: string, path: string): Promise<{ label: string | null; type: string | null }> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
        res.resume();
        const label = res.headers['x-label'];
        const type = res.headers['x-type'];
        res.on('end', () => resolve({ label: typeof label === 'string' ? label : null, type: typeof type === 'string' ? decodeURIComponent(type) : null }));
      });
      req.on('error', reject);
      req.end();
    });

  it.each(PROBES)('%s %s', async (method, path) => {
    const required = requiredScopes(method, path);
    const routed = await route(method, path);
    if (routed.label === null) {
      // Express runs no handler; the table must not make it public.
      expect(required).not.toBeNull();
      return;
    }
    const expected = EXPECTED[routed.label];
    expect(expected, routed.label).toBeDefined();
    expect(required).toEqual(expected?.(routed.type ?? ''));
  });
});

describe('bundleScopes', () => {
  it('asks create per POST entry type, create and update per PUT entry type', () => {
    const bundle: fhir4.Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Observation', status: 'final', code: {} } as fhir4.Observation, request: { method: 'POST', url: 'Observation' } },
        { resource: { resourceType: 'Observation', status: 'final', code: {} } as fhir4.Observation, request: { method: 'POST', url: 'Observation' } },
        { resource: { resourceType: 'Condition', subject: {} } as fhir4.Condition, request: { method: 'PUT', url: 'Condition/c1' } },
      ],
    };
    expect(bundleScopes(bundle)).toEqual(['system/Condition.c', 'system/Condition.u', 'system/Observation.c', 'system/Patient.c']);
  });

  it('counts both the resource type and the request URL type when they differ', () => {
    const bundle = { resourceType: 'Bundle', type: 'batch', entry: [{ resource: { resourceType: 'Observation' }, request: { method: 'PUT', url: 'Patient/p1' } }] };
    expect(bundleScopes(bundle)).toEqual(['system/Observation.c', 'system/Observation.u', 'system/Patient.c', 'system/Patient.u']);
  });

  it('treats a missing method as a create and an unknown one as everything', () => {
    expect(bundleScopes({ entry: [{ resource: { resourceType: 'Coverage' } }] })).toEqual(['system/Coverage.c']);
    expect(bundleScopes({ entry: [{ resource: { resourceType: 'Coverage' }, request: { method: 'MERGE' } }] })).toEqual([
      'system/Coverage.c',
      'system/Coverage.d',
      'system/Coverage.r',
      'system/Coverage.s',
      'system/Coverage.u',
    ]);
    expect(bundleScopes({ entry: [{ request: { method: 'DELETE', url: 'Observation?code=x' } }, { request: { method: 'GET', url: 'Patient/p1' } }] })).toEqual([
      'system/Observation.d',
      'system/Patient.r',
      'system/Patient.s',
    ]);
  });

  it('skips entries without a usable type and anything that is not a Bundle with entries', () => {
    expect(bundleScopes({ entry: [null, 3, { resource: { resourceType: '*' } }, { resource: { resourceType: 'Obs ervation' } }, { request: { url: 'http://other/Patient' } }] })).toEqual([]);
    expect(bundleScopes(undefined)).toEqual([]);
    expect(bundleScopes(null)).toEqual([]);
    expect(bundleScopes({ resourceType: 'Bundle' })).toEqual([]);
    expect(bundleScopes({ entry: 'x' })).toEqual([]);
  });

  it('includes the Encounters of care sessions', () => {
    const bundle = { resourceType: 'Bundle', type: 'batch', entry: [{ resource: { resourceType: 'Encounter', episodeOfCare: [{ reference: 'EpisodeOfCare/e1' }] }, request: { method: 'POST', url: 'Encounter' } }] };
    expect(bundleScopes(bundle)).toEqual(['system/Encounter.c']);
  });
});
