/**
 * The audit worker's batched writes (AuditBatchWriter): records of concurrent jobs go to the
 * FHIR server as one batch Bundle of PUTs, and each job settles with its own entry. The FHIR
 * server is a real HttpFhirServer talking to a remote server nock stands in for (fault
 * injection: entries refused, the batch refused as a whole, the server down).
 */
import { UnrecoverableError } from 'bullmq';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HttpFhirServer } from '../../../src/fhir/fhir-server.adapter.js';
import { FhirServerError } from '../../../src/fhir/fhir-server.port.js';
import { AuditBatchWriter } from '../../../src/queue/audit.js';
import { auditRecord } from './records.js';

const ORIGIN = 'http://audit-fhir.test';
const BASE = `${ORIGIN}/fhir`;
const FHIR_JSON = { 'content-type': 'application/fhir+json' };

const event = auditRecord;

const fhir = (): HttpFhirServer => new HttpFhirServer({ baseUrl: BASE, timeoutMs: 2000, maxAttempts: 1, baseDelayMs: 1 });

type BatchBody = Omit<fhir4.Bundle, 'entry'> & { entry: (fhir4.BundleEntry & { request: fhir4.BundleEntryRequest })[] };

/** Why a settled promise was rejected (undefined when it was fulfilled). */
const reasonOf = (result: PromiseSettledResult<unknown> | undefined): unknown => (result?.status === 'rejected' ? (result.reason as unknown) : undefined);

/** nock hands a `application/fhir+json` body over as text. */
const json = <T>(body: unknown): T => (typeof body === 'string' ? (JSON.parse(body) as T) : (body as T));

/** A server answering batches with `status(url)` per entry; records what each batch held. */
function batchServer(status: (url: string) => string): { batches: string[][] } {
  const batches: string[][] = [];
  nock(ORIGIN)
    .persist()
    .post('/fhir/', (body) => json<BatchBody>(body).type === 'batch')
    .reply(
      200,
      (_uri, body) => {
        const bundle = json<BatchBody>(body);
        batches.push(bundle.entry.map((entry) => `${entry.request.method} ${entry.request.url}`));
        return { resourceType: 'Bundle', type: 'batch-response', entry: bundle.entry.map((entry) => ({ response: { status: status(entry.request.url) } })) };
      },
      FHIR_JSON,
    );
  return { batches };
}

beforeAll(() => {
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
});
afterAll(() => {
  nock.enableNetConnect();
});

describe('AuditBatchWriter', () => {
  it('writes the records of concurrent jobs in one batch of PUTs, each with its own id', async () => {
    const { batches } = batchServer(() => '201 Created');
    const writer = new AuditBatchWriter(fhir(), { maxBatch: 50, windowMs: 5 });
    const written = await Promise.all(['a', 'b', 'c'].map((id) => writer.write(event(id))));
    expect(written).toEqual(['AuditEvent/a', 'AuditEvent/b', 'AuditEvent/c']);
    expect(batches).toEqual([['PUT AuditEvent/a', 'PUT AuditEvent/b', 'PUT AuditEvent/c']]);
  });

  it('never puts more than maxBatch records in one request', async () => {
    const { batches } = batchServer(() => '200');
    // The fifth record is alone in its batch: a plain PUT.
    const lone = nock(ORIGIN).put('/fhir/AuditEvent/e').reply(200, (_uri, body) => json<object>(body), FHIR_JSON);
    const writer = new AuditBatchWriter(fhir(), { maxBatch: 2, windowMs: 5 });
    await expect(Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => writer.write(event(id))))).resolves.toHaveLength(5);
    expect(batches).toEqual([
      ['PUT AuditEvent/a', 'PUT AuditEvent/b'],
      ['PUT AuditEvent/c', 'PUT AuditEvent/d'],
    ]);
    expect(lone.isDone()).toBe(true);
  });

  it('a lone record is a plain PUT', async () => {
    const scope = nock(ORIGIN).put('/fhir/AuditEvent/solo').reply(201, (_uri, body) => ({ ...json<object>(body), meta: { versionId: '1' } }), FHIR_JSON);
    await expect(new AuditBatchWriter(fhir(), { windowMs: 1 }).write(event('solo'))).resolves.toBe('AuditEvent/solo');
    expect(scope.isDone()).toBe(true);
  });

  it('each job settles with its own entry: 2xx written, 5xx/429 retried, another 4xx failed at once', async () => {
    batchServer((url) => (url.endsWith('/bad') ? '400 Bad Request' : url.endsWith('/busy') ? '503' : url.endsWith('/slow') ? '429' : '200 OK'));
    const writer = new AuditBatchWriter(fhir(), { windowMs: 5 });
    const [ok, bad, busy, slow] = await Promise.allSettled(['ok', 'bad', 'busy', 'slow'].map((id) => writer.write(event(id))));
    expect(ok).toEqual({ status: 'fulfilled', value: 'AuditEvent/ok' });
    expect(reasonOf(bad)).toBeInstanceOf(UnrecoverableError);
    for (const retried of [busy, slow]) {
      const reason = reasonOf(retried);
      expect(reason).toBeInstanceOf(FhirServerError);
      expect(reason).not.toBeInstanceOf(UnrecoverableError);
      expect((reason as FhirServerError).transient).toBe(true);
    }
  });

  it('a batch refused as a whole is written one record at a time: the bad record fails alone', async () => {
    nock(ORIGIN).post('/fhir/').reply(400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] }, FHIR_JSON);
    nock(ORIGIN).put('/fhir/AuditEvent/good').reply(200, (_uri, body) => json<object>(body), FHIR_JSON);
    nock(ORIGIN).put('/fhir/AuditEvent/poison').reply(422, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] }, FHIR_JSON);
    const writer = new AuditBatchWriter(fhir(), { windowMs: 5 });
    const [good, poison] = await Promise.allSettled([writer.write(event('good')), writer.write(event('poison'))]);
    expect(good).toEqual({ status: 'fulfilled', value: 'AuditEvent/good' });
    expect(reasonOf(poison)).toBeInstanceOf(UnrecoverableError);
    expect(nock.pendingMocks()).toEqual([]);
  });

  it('the server down: every job of the batch fails transiently (retried with its backoff)', async () => {
    nock(ORIGIN).post('/fhir/').reply(503, {}, FHIR_JSON);
    const writer = new AuditBatchWriter(fhir(), { windowMs: 5 });
    const results = await Promise.allSettled([writer.write(event('x')), writer.write(event('y'))]);
    for (const result of results) {
      expect(result.status).toBe('rejected');
      const reason = reasonOf(result);
      expect(reason).not.toBeInstanceOf(UnrecoverableError);
      expect((reason as FhirServerError).transient).toBe(true);
    }
  });

  it('junk job data fails at once, without a request', async () => {
    const writer = new AuditBatchWriter(fhir(), { windowMs: 1 });
    await expect(writer.write({ resourceType: 'Patient', id: 'p' })).rejects.toBeInstanceOf(UnrecoverableError);
    await expect(writer.write({ ...event('e'), id: 'bad id' })).rejects.toBeInstanceOf(UnrecoverableError);
  });
});
