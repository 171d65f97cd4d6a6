/**
 * Recording the audit trail (src/app/audit.service.ts, src/queue/audit.ts) without Redis:
 * the sink never blocks nor throws, the Provenance writer keeps references only, the worker's
 * write is a PUT classified for retries, and the Express middleware records one AuditEvent per
 * audited request, with references only, whatever the bodies held.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { UnrecoverableError } from 'bullmq';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditSink, auditMiddleware, ProvenanceWriter, requestClient, UNAUTHENTICATED_CLIENT, writtenReferences } from '../../../src/app/audit.service.js';
import { AUDIT_EVENT_PROFILE, provenanceId } from '../../../src/domain/audit.js';
import { FhirServerError, type FhirServer } from '../../../src/fhir/fhir-server.port.js';
import { assertValid, initValidation } from '../../../src/fhir/validation.js';
import { auditJobId, auditJobOptions, writeAuditResource } from '../../../src/queue/audit.js';

const SECRETS = ['Zyxwvutsrq', 'Qwertzuiopa', '1961-07-13', '2610713999999', '1.234', '31.7'];

function expectNoSecret(value: unknown): void {
  const text = JSON.stringify(value);
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

function fakeLog() {
  return { warn: vi.fn(), error: vi.fn() };
}

const never = (): Promise<void> => new Promise<void>(() => {});

const event = (id: string): fhir4.AuditEvent => ({
  resourceType: 'AuditEvent',
  id,
  type: { code: 'rest' },
  recorded: '2026-01-01T00:00:00Z',
  agent: [{ requestor: true }],
  source: { observer: { display: 'x' } },
});

beforeAll(() => {
  initValidation();
}, 30_000);

describe('AuditSink', () => {
  it('returns at once while the queue hangs, and never throws when it fails', async () => {
    const log = fakeLog();
    const hanging = new AuditSink(never, log);
    const started = Date.now();
    for (let i = 0; i < 100; i++) hanging.record(event(`e${i}`));
    expect(Date.now() - started).toBeLessThan(100);
    expect(hanging.waiting).toBe(100);

    const throwing = new AuditSink(() => {
      throw new Error('Connection is closed.');
    }, log);
    const rejecting = new AuditSink(() => Promise.reject(new Error('READONLY')), log);
    expect(() => throwing.record(event('a'))).not.toThrow();
    expect(() => rejecting.record(event('b'))).not.toThrow();
    await Promise.all([throwing.flush(), rejecting.flush()]);
    expect(log.error).toHaveBeenCalledTimes(2);
    expect(log.error.mock.calls[0]?.[0]).toMatchObject({ resourceType: 'AuditEvent', id: 'a', err: { message: 'Connection is closed.' } });
  });

  it('bounds what waits in memory: beyond maxPending, records are dropped, counted and logged once', async () => {
    const log = fakeLog();
    const sink = new AuditSink(never, log, { maxPending: 3 });
    for (let i = 0; i < 10; i++) sink.record(event(`e${i}`));
    expect(sink.waiting).toBe(3);
    expect(sink.dropped).toBe(7);
    expect(log.error).toHaveBeenCalledTimes(1);
    expect(log.error.mock.calls[0]?.[1]).toMatch(/dropped/);
  });

  it('queues what it is given, once', async () => {
    const queued: fhir4.Resource[] = [];
    const sink = new AuditSink(async (resource) => {
      queued.push(resource);
    }, fakeLog());
    sink.record(event('x'));
    await sink.flush();
    expect(queued.map((r) => r.id)).toEqual(['x']);
  });
});

describe('ProvenanceWriter', () => {
  it('queues a valid Provenance of the versioned targets, from literal sources only, with a deterministic id', async () => {
    const queued: fhir4.Provenance[] = [];
    const writer = new ProvenanceWriter(async (resource) => void queued.push(resource as fhir4.Provenance), fakeLog(), 'forfait-fhir 0.1.0', () => new Date('2026-03-02T10:00:00Z'));
    await writer.record(['GuidanceResponse/g1/_history/2', 'Task/t1/_history/1'], ['Observation/o1/_history/1', 'screen/abc', 'Zyxwvutsrq', 'Task/t1/_history/1'], 'UPDATE');
    expect(queued).toHaveLength(1);
    const record = queued[0] as fhir4.Provenance;
    assertValid(record);
    expect(record.id).toBe(provenanceId(['GuidanceResponse/g1/_history/2', 'Task/t1/_history/1']));
    expect(record.entity?.map((e) => e.what.reference)).toEqual(['Observation/o1/_history/1']);
    expect(record.recorded).toBe('2026-03-02T10:00:00.000Z');
    expectNoSecret(record);
  });

  it('skips unversioned targets; records nothing without a versioned one; never rejects', async () => {
    const log = fakeLog();
    const queued: fhir4.Resource[] = [];
    const writer = new ProvenanceWriter(async (resource) => void queued.push(resource), log, 'forfait-fhir');
    await writer.record(['GuidanceResponse/g1'], [], 'CREATE');
    expect(queued).toHaveLength(0);
    expect(log.warn).toHaveBeenCalledWith({ skipped: 1 }, expect.any(String));
    const failing = new ProvenanceWriter(() => Promise.reject(new Error('down')), log, 'forfait-fhir');
    await expect(failing.record(['Claim/c/_history/1'], [], 'CREATE', { clientId: 'ehr' })).resolves.toBeUndefined();
    await expect(failing.record(['Claim/c/_history/1'], [], { system: '', code: '' })).resolves.toBeUndefined();
  });

  it('writtenReferences: the versioned reference of a stored resource, the locations of a transaction response', () => {
    expect(writtenReferences({ resourceType: 'GuidanceResponse', id: 'g', meta: { versionId: '3' } } as fhir4.GuidanceResponse)).toEqual(['GuidanceResponse/g/_history/3']);
    expect(writtenReferences({ resourceType: 'Claim', id: 'c' } as fhir4.Claim)).toEqual([]);
    expect(
      writtenReferences({
        resourceType: 'Bundle',
        type: 'transaction-response',
        entry: [{ response: { status: '201', location: 'CareTeam/t/_history/1' } }, { response: { status: '200', location: 'http://x/fhir/EpisodeOfCare/e/_history/2' } }],
      } as fhir4.Bundle),
    ).toEqual(['CareTeam/t/_history/1', 'EpisodeOfCare/e/_history/2']);
    expect(writtenReferences(undefined)).toEqual([]);
  });
});

describe('the audit worker write', () => {
  function fhirWith(update: FhirServer['update']): FhirServer {
    return { update } as unknown as FhirServer;
  }

  it('PUTs the resource with its own id', async () => {
    const update = vi.fn(async (resource: fhir4.Resource) => ({ resource, status: 201 }));
    await expect(writeAuditResource(fhirWith(update as unknown as FhirServer['update']), event('e1'))).resolves.toBe('AuditEvent/e1');
    expect(update).toHaveBeenCalledWith(event('e1'));
  });

  it('a 4xx fails at once (UnrecoverableError); a transient failure is retried; junk data fails at once', async () => {
    const refused = fhirWith(() => Promise.reject(new FhirServerError('FHIR update AuditEvent: HTTP 400', 400, undefined, false)));
    await expect(writeAuditResource(refused, event('e1'))).rejects.toBeInstanceOf(UnrecoverableError);
    const down = fhirWith(() => Promise.reject(new FhirServerError('FHIR update AuditEvent: HTTP 503', 503, undefined, true)));
    await expect(writeAuditResource(down, event('e1'))).rejects.not.toBeInstanceOf(UnrecoverableError);
    await expect(writeAuditResource(refused, { resourceType: 'Patient', id: 'p' })).rejects.toBeInstanceOf(UnrecoverableError);
    await expect(writeAuditResource(refused, { ...event('e1'), id: 'bad id' })).rejects.toBeInstanceOf(UnrecoverableError);
  });

  it('job ids and options: deterministic, retried with backoff, short completed retention', () => {
    expect(auditJobId(event('e1'))).toBe('ae.e1');
    expect(auditJobId({ resourceType: 'Provenance', id: 'p1', target: [], recorded: '', agent: [] })).toBe('pv.p1');
    expect(auditJobOptions(event('e1'))).toMatchObject({ jobId: 'ae.e1', attempts: 12, backoff: { type: 'exponential' }, removeOnComplete: { age: 3600 } });
  });
});

describe('auditMiddleware over HTTP', () => {
  const recorded: fhir4.AuditEvent[] = [];
  const provenances: fhir4.Provenance[] = [];
  const log = fakeLog();
  let server: http.Server;
  let base: string;

  const patient = {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: 'NIR-2610713999999' }],
    name: [{ family: 'Zyxwvutsrq', given: ['Qwertzuiopa'] }],
    birthDate: '1961-07-13',
  };
  const observation = {
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'glucose' },
    subject: { reference: 'Patient/p1' },
    valueQuantity: { value: 1.234, unit: 'g/L' },
  };

  beforeAll(async () => {
    const sink = new AuditSink(async (resource) => void recorded.push(resource as fhir4.AuditEvent), log);
    const app = express();
    app.use((req, res, next) => {
      (req as unknown as { id: string }).id = String(req.headers['x-request-id'] ?? 'generated-id');
      next();
    });
    app.use(express.json({ type: ['application/fhir+json', 'application/json'] }));
    app.use(
      auditMiddleware(sink, {
        clientOf: (_req, res) => res.locals['testClient'] as { clientId: string; centre?: string } | undefined,
        source: { observer: 'forfait-fhir test', site: 'unit' },
        log,
        newId: (() => {
          let n = 0;
          return () => `id-${++n}`;
        })(),
      }),
    );
    // A stand-in for authentication: a token for one centre, anything else refused.
    app.use((req, res, next) => {
      if (req.headers.authorization !== 'Bearer good') {
        res.status(401).json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] });
        return;
      }
      res.locals['testClient'] = { clientId: 'ehr-1', centre: 'urn:centre|C1' };
      next();
    });
    app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
    app.post('/fhir/Patient', (_req, res) => {
      res.status(201).set('Location', `http://h/fhir/Patient/p1/_history/1`).type('application/fhir+json').send(JSON.stringify({ ...patient, id: 'p1', meta: { versionId: '1' } }));
    });
    app.post('/fhir/Observation', (_req, res) => {
      res.status(201).set('Location', 'http://h/fhir/Observation/o1/_history/1').json({ ...observation, id: 'o1', meta: { versionId: '1' } });
    });
    app.post('/fhir/Patient/:id/\\$evaluate-eligibility', (_req, res) => {
      res.json({
        resourceType: 'Parameters',
        parameter: [
          { name: 'outcome', valueCode: 'eligible' },
          { name: 'criterion', part: [{ name: 'value', valueQuantity: { value: 1.23, unit: 'g/L' } }, { name: 'evidence', valueReference: { reference: 'Observation/o1/_history/1' } }] },
        ],
      });
    });
    app.post('/fhir/Patient/:id/\\$enroll', (_req, res) => {
      res.status(422).json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'business-rule', diagnostics: 'Zyxwvutsrq glucose 1.234' }] });
    });
    app.get('/fhir/_async/:id', (_req, res) => void res.json({ resourceType: 'Parameters' }));
    // A service writing during a request: its Provenance names the request's client, found through the request context.
    const writer = new ProvenanceWriter(async (resource) => void provenances.push(resource as fhir4.Provenance), log, 'forfait-fhir test');
    app.post('/fhir/Patient/:id/\\$decline', async (_req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      await writer.record(['Task/t1/_history/2'], ['Patient/p1'], 'UPDATE');
      res.json({ resourceType: 'Parameters', parameter: [{ name: 'task', valueReference: { reference: 'Task/t1' } }] });
    });
    server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function call(method: string, path: string, body?: unknown, token = 'good', requestId?: string): Promise<fhir4.AuditEvent | undefined> {
    const before = recorded.length;
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/fhir+json' } : {}), ...(requestId ? { 'x-request-id': requestId } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    await response.text();
    // 'finish' fires after the response is flushed: give it a turn.
    for (let i = 0; i < 50 && recorded.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    return recorded.length > before ? recorded[recorded.length - 1] : undefined;
  }

  it('a push: create, the stored version and its patient, the client and centre, the request id; no value', async () => {
    const created = await call('POST', '/fhir/Patient', patient, 'good', 'req-42');
    expect(created).toMatchObject({ action: 'C', outcome: '0', subtype: [{ code: 'create' }] });
    expect(created?.entity?.map((e) => e.what?.reference ?? e.what?.identifier?.value)).toEqual(['Patient/p1/_history/1', 'req-42']);
    expect(created?.agent.map((a) => a.who?.identifier?.value)).toEqual(['ehr-1', 'C1']);
    assertValid(created as fhir4.AuditEvent, [AUDIT_EVENT_PROFILE]);
    expectNoSecret(created);

    const observed = await call('POST', '/fhir/Observation', observation);
    expect(observed?.entity?.map((e) => e.what?.reference).filter(Boolean)).toEqual(['Patient/p1', 'Observation/o1/_history/1']);
    expect(observed?.entity?.at(-1)?.what?.identifier?.value).toBe('generated-id');
    expectNoSecret(observed);
  });

  it('an operation that discloses patient data: E, $evaluate-eligibility, the patient and the evidence read', async () => {
    const read = await call('POST', '/fhir/Patient/p1/$evaluate-eligibility', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: 'fnmf-prediabetes' }] });
    expect(read).toMatchObject({ action: 'E', subtype: [{ code: 'operation' }, { code: '$evaluate-eligibility' }] });
    expect(read?.entity?.map((e) => e.what?.reference).filter(Boolean)).toEqual(['Patient/p1', 'Observation/o1/_history/1']);
    expectNoSecret(read);
  });

  it('a refusal (422) and an unauthenticated request (401) are recorded as minor failures, without bodies', async () => {
    const refused = await call('POST', '/fhir/Patient/p1/$enroll', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: 'x' }] });
    expect(refused).toMatchObject({ action: 'E', outcome: '4' });
    expectNoSecret(refused);
    const anonymous = await call('POST', '/fhir/Observation', observation, 'forged');
    expect(anonymous).toMatchObject({ action: 'C', outcome: '4' });
    expect(anonymous?.agent).toHaveLength(1);
    expect(anonymous?.agent[0]?.who?.identifier?.value).toBe(UNAUTHENTICATED_CLIENT);
    expectNoSecret(anonymous);
  });

  it('a Provenance recorded while serving a request names its client and centre; outside a request, no client', async () => {
    const declined = await call('POST', '/fhir/Patient/p1/$decline', { resourceType: 'Parameters', parameter: [{ name: 'reason', valueCode: 'other' }, { name: 'text', valueString: 'Zyxwvutsrq says no' }] });
    expect(declined?.entity?.map((e) => e.what?.reference).filter(Boolean)).toEqual(['Patient/p1', 'Task/t1']);
    expectNoSecret(declined);
    const [record] = provenances;
    expect(record?.agent.map((a) => a.who.identifier?.value)).toEqual(['forfait-fhir', 'ehr-1']);
    expect(record?.agent[1]?.onBehalfOf?.identifier).toEqual({ system: 'urn:centre', value: 'C1' });
    assertValid(record as fhir4.Provenance);
    expect(requestClient()).toBeUndefined();
  });

  it('health and progress polls are not audited', async () => {
    expect(await call('GET', '/healthz')).toBeUndefined();
    expect(await call('GET', '/fhir/_async/abc')).toBeUndefined();
    expect(log.error).not.toHaveBeenCalled();
  });
});
