/**
 * CoalescingFhirServer against the embedded FHIR server over HTTP: batches asked for in the
 * same turn of the event loop travel as one request, and each caller gets exactly what it
 * would have got alone. Faults of a remote server (a Bundle refused as a whole, the server
 * down) are injected with nock.
 */
import nock from 'nock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoalescingFhirServer } from '../../src/fhir/coalescing-fhir-server.js';
import { HttpFhirServer } from '../../src/fhir/fhir-server.adapter.js';
import { FhirServerError } from '../../src/fhir/fhir-server.port.js';
import { startEmbeddedFhirServer, type EmbeddedFhirServer } from '../../src/fhir-server/embedded-server.js';

let embedded: EmbeddedFhirServer;
let plain: HttpFhirServer;

const reads = (...urls: string[]): fhir4.Bundle => ({ resourceType: 'Bundle', type: 'batch', entry: urls.map((url) => ({ request: { method: 'GET', url } })) });
const puts = (...resources: (fhir4.Resource & { id: string })[]): fhir4.Bundle => ({
  resourceType: 'Bundle',
  type: 'batch',
  entry: resources.map((resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } })),
});
const patient = (id: string, family: string): fhir4.Patient & { id: string } => ({ resourceType: 'Patient', id, name: [{ family }] });
/** What a caller looks at: statuses and resources, not server timestamps of the answer. */
const view = (bundle: fhir4.Bundle) => bundle.entry?.map((entry) => ({ status: entry.response?.status?.slice(0, 3), type: entry.resource?.resourceType, id: entry.resource?.id, total: (entry.resource as fhir4.Bundle | undefined)?.total }));

beforeAll(async () => {
  embedded = await startEmbeddedFhirServer();
  plain = new HttpFhirServer({ baseUrl: embedded.baseUrl, timeoutMs: 5000, maxAttempts: 2 });
  await plain.batch(puts(patient('co-1', 'One'), patient('co-2', 'Two'), patient('co-3', 'Three')));
});

afterAll(async () => {
  await embedded?.close();
});

describe('CoalescingFhirServer', () => {
  it('batches asked for together go as one request; each caller gets its own entries, in its order, as alone', async () => {
    const coalescing = new CoalescingFhirServer(plain);
    const asked = [reads('Patient/co-1', 'Patient?_id=co-2'), reads('Patient/co-2'), reads('Patient?_id=co-2', 'Patient/co-1', 'Patient/co-missing')];
    const together = await Promise.all(asked.map((bundle) => coalescing.batch(bundle)));
    expect(coalescing.counts).toEqual({ requests: 1, bundles: 3 });
    const alone = await Promise.all(asked.map((bundle) => plain.batch(bundle)));
    expect(together.map(view)).toEqual(alone.map(view));
    expect(view(together[2] as fhir4.Bundle)).toEqual([
      { status: '200', type: 'Bundle', id: undefined, total: 1 },
      { status: '200', type: 'Patient', id: 'co-1', total: undefined },
      { status: '404', type: undefined, id: undefined, total: undefined },
    ]);
  });

  it('a GET asked by two callers is sent once, and each gets its own copy', async () => {
    let sentEntries = 0;
    const counting = new CoalescingFhirServer({
      ...plain,
      baseUrl: plain.baseUrl,
      batch: (bundle: fhir4.Bundle) => {
        sentEntries += bundle.entry?.length ?? 0;
        return plain.batch(bundle);
      },
    } as unknown as HttpFhirServer);
    const [a, b] = await Promise.all([counting.batch(reads('Patient/co-1', 'Patient/co-2')), counting.batch(reads('Patient/co-1'))]);
    expect(sentEntries).toBe(2);
    const first = a?.entry?.[0]?.resource as fhir4.Patient;
    const second = b?.entry?.[0]?.resource as fhir4.Patient;
    expect(second).toEqual(first);
    expect(second).not.toBe(first);
    expect(counting.counts).toEqual({ requests: 1, bundles: 2 });
  });

  it('writes to different resources are merged; writes to the same resource are not', async () => {
    const coalescing = new CoalescingFhirServer(plain);
    const [one, two] = await Promise.all([coalescing.batch(puts(patient('co-w1', 'A'))), coalescing.batch(puts(patient('co-w2', 'B'), patient('co-w3', 'C')))]);
    expect(coalescing.counts).toEqual({ requests: 1, bundles: 2 });
    expect(one?.entry?.map((entry) => entry.response?.status?.[0])).toEqual(['2']);
    expect(two?.entry?.map((entry) => entry.response?.status?.[0])).toEqual(['2', '2']);
    expect((await plain.read<fhir4.Patient>('Patient', 'co-w3')).name?.[0]?.family).toBe('C');

    const again = new CoalescingFhirServer(plain);
    await Promise.all([again.batch(puts(patient('co-w1', 'A2'))), again.batch(puts(patient('co-w1', 'A3')))]);
    expect(again.counts).toEqual({ requests: 0, bundles: 0 });
    expect(['A2', 'A3']).toContain((await plain.read<fhir4.Patient>('Patient', 'co-w1')).name?.[0]?.family);
  });

  it('conditional creates asked for together go as one batch; each caller gets what a create alone gives (201 new, 200 existing)', async () => {
    const observation = (n: number): fhir4.Observation => ({
      resourceType: 'Observation',
      identifier: [{ system: 'urn:test:coalescing', value: `cc-${n}` }],
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '1558-6' }] },
      subject: { reference: 'Patient/co-1' },
      valueQuantity: { value: 100 + n, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
    });
    const condition = (n: number): string => `identifier=urn:test:coalescing|cc-${n}`;
    const coalescing = new CoalescingFhirServer(plain);
    const first = await Promise.all([1, 2, 3].map((n) => coalescing.create(observation(n), { ifNoneExist: condition(n) })));
    expect(coalescing.counts).toEqual({ requests: 1, bundles: 3 });
    expect(first.map((result) => result.status)).toEqual([201, 201, 201]);
    expect(first.map((result) => (result.resource as fhir4.Observation).valueQuantity?.value)).toEqual([101, 102, 103]);
    for (const { resource } of first) expect((await plain.read<fhir4.Observation>('Observation', resource.id as string)).identifier?.[0]?.value).toBe(resource.identifier?.[0]?.value);

    const again = await Promise.all([3, 1, 4].map((n) => coalescing.create(observation(n), { ifNoneExist: condition(n) })));
    expect(again.map((result) => result.status)).toEqual([200, 200, 201]);
    expect(again.map((result) => result.resource.id).slice(0, 2)).toEqual([first[2]?.resource.id, first[0]?.resource.id]);

    // The same condition twice in one turn: sent one after the other, one resource.
    const twins = new CoalescingFhirServer(plain);
    const pair = await Promise.all([twins.create(observation(5), { ifNoneExist: condition(5) }), twins.create(observation(5), { ifNoneExist: condition(5) })]);
    expect(twins.counts).toEqual({ requests: 0, bundles: 0 });
    expect(new Set(pair.map((result) => result.resource.id)).size).toBe(1);
  });

  it('reads and writes never share a request; transactions and single interactions pass through', async () => {
    const coalescing = new CoalescingFhirServer(plain);
    await Promise.all([coalescing.batch(reads('Patient/co-1')), coalescing.batch(puts(patient('co-w4', 'D'))), coalescing.read('Patient', 'co-2')]);
    expect(coalescing.counts).toEqual({ requests: 0, bundles: 0 });
  });
});

describe('CoalescingFhirServer, faults of a remote server', () => {
  const ORIGIN = 'http://coalescing-remote.test';
  const remote = (): CoalescingFhirServer => new CoalescingFhirServer(new HttpFhirServer({ baseUrl: `${ORIGIN}/fhir`, timeoutMs: 2000, maxAttempts: 1 }));
  const FHIR_JSON = { 'content-type': 'application/fhir+json' };
  const invalid = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] };

  beforeAll(() => nock.disableNetConnect());
  afterAll(() => {
    nock.cleanAll();
    nock.enableNetConnect();
  });

  it('a merged write refused as a whole is sent again caller by caller: the bad one fails alone', async () => {
    nock(ORIGIN).post('/fhir/').reply(400, invalid, FHIR_JSON);
    nock(ORIGIN).post('/fhir/', (body: fhir4.Bundle) => body.entry?.length === 1 && body.entry[0]?.request?.url === 'Patient/good').reply(200, { resourceType: 'Bundle', type: 'batch-response', entry: [{ response: { status: '200' } }] }, FHIR_JSON);
    nock(ORIGIN).post('/fhir/', (body: fhir4.Bundle) => body.entry?.[0]?.request?.url === 'Patient/bad').reply(400, invalid, FHIR_JSON);
    const coalescing = remote();
    const [good, bad] = await Promise.allSettled([coalescing.batch(puts(patient('good', 'G'))), coalescing.batch(puts(patient('bad', 'B')))]);
    expect(good.status).toBe('fulfilled');
    expect(bad.status === 'rejected' ? (bad.reason as FhirServerError).status : undefined).toBe(400);
    expect(nock.pendingMocks()).toEqual([]);
  });

  it('a merged create answered without its resource, or refused, is sent again alone; such a server gets single creates from then on', async () => {
    const created = (id: string) => ({ resourceType: 'Observation', id, status: 'final', code: { text: 'x' }, meta: { versionId: '1' } });
    nock(ORIGIN)
      .post('/fhir/', (body: fhir4.Bundle) => body.entry?.length === 2 && body.entry.every((entry) => entry.request?.method === 'POST' && entry.request.ifNoneExist))
      .reply(200, { resourceType: 'Bundle', type: 'batch-response', entry: [{ response: { status: '201 Created', location: 'Observation/o1/_history/1' } }, { response: { status: '412 Precondition Failed' } }] }, FHIR_JSON);
    nock(ORIGIN).post('/fhir/Observation').matchHeader('if-none-exist', 'identifier=a').reply(201, created('o1'), FHIR_JSON);
    nock(ORIGIN).post('/fhir/Observation').matchHeader('if-none-exist', 'identifier=b').reply(201, created('o2'), FHIR_JSON);
    const coalescing = remote();
    const obs = (text: string): fhir4.Observation => ({ resourceType: 'Observation', status: 'final', code: { text } });
    const results = await Promise.all([coalescing.create(obs('a'), { ifNoneExist: 'identifier=a' }), coalescing.create(obs('b'), { ifNoneExist: 'identifier=b' })]);
    expect(results.map((result) => [result.status, result.resource.id])).toEqual([
      [201, 'o1'],
      [201, 'o2'],
    ]);
    expect(nock.pendingMocks()).toEqual([]);

    nock(ORIGIN).post('/fhir/Observation').matchHeader('if-none-exist', 'identifier=c').reply(201, created('o3'), FHIR_JSON);
    nock(ORIGIN).post('/fhir/Observation').matchHeader('if-none-exist', 'identifier=d').reply(200, created('o4'), FHIR_JSON);
    const later = await Promise.all([coalescing.create(obs('c'), { ifNoneExist: 'identifier=c' }), coalescing.create(obs('d'), { ifNoneExist: 'identifier=d' })]);
    expect(later.map((result) => result.status)).toEqual([201, 200]);
    expect(coalescing.counts, 'no merged request after the server answered without resources').toEqual({ requests: 1, bundles: 2 });
    expect(nock.pendingMocks()).toEqual([]);
  });

  it('the server down: every caller of the merged read gets the error', async () => {
    nock(ORIGIN).post('/fhir/').reply(503, {}, FHIR_JSON);
    const coalescing = remote();
    const results = await Promise.allSettled([coalescing.batch(reads('Patient/a')), coalescing.batch(reads('Patient/b'))]);
    expect(results.map((result) => (result.status === 'rejected' ? (result.reason as FhirServerError).status : 'fulfilled'))).toEqual([503, 503]);
  });

  it('an answer with fewer entries than asked is an error for every caller, not a shifted result', async () => {
    nock(ORIGIN).post('/fhir/').reply(200, { resourceType: 'Bundle', type: 'batch-response', entry: [{ response: { status: '200' } }] }, FHIR_JSON);
    const coalescing = remote();
    const results = await Promise.allSettled([coalescing.batch(reads('Patient/a')), coalescing.batch(reads('Patient/b'))]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
  });
});
