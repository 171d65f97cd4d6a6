/**
 * The rest-hook checks a notification like a push (src/app/notification.ts, issue #6): the
 * structure of the payload, each notified resource, references to this server of record
 * only; and what it queues comes from the resources read back from the server of record,
 * never from the payload. The FHIR server is a stub of the port holding a few resources.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { handleNotification } from '../../../src/app/notification.js';
import { IngestionService } from '../../../src/app/ingestion.service.js';
import type { FhirServer } from '../../../src/fhir/fhir-server.port.js';
import { initValidation } from '../../../src/fhir/validation.js';
import { OperationOutcomeError } from '../../../src/http/outcomes.js';
import type { ProgramCatalog } from '../../../src/programs/schema.js';

beforeAll(() => {
  initValidation();
}, 120_000);

const BASE = 'http://fhir.test/fhir';

/** The server of record: reads only. */
function serverHolding(...resources: fhir4.Resource[]): FhirServer & { reads: string[] } {
  const reads: string[] = [];
  const byKey = new Map(resources.map((resource) => [`${resource.resourceType}/${resource.id}`, resource]));
  const unused = async (): Promise<never> => {
    throw new Error('not used');
  };
  return {
    baseUrl: BASE,
    reads,
    readIfExists: async <T extends fhir4.Resource>(type: string, id: string): Promise<T | undefined> => {
      reads.push(`${type}/${id}`);
      return byKey.get(`${type}/${id}`) as T | undefined;
    },
    read: unused,
    searchAll: unused,
    create: unused,
    update: unused,
    batch: unused,
    transaction: unused,
    ping: async () => undefined,
  };
}

const condition = (id: string, patient: string): fhir4.Condition => ({
  resourceType: 'Condition',
  id,
  meta: { versionId: '3' },
  code: { text: 'x' },
  subject: { reference: `Patient/${patient}` },
});

// Conditions do not use the catalog (only Observations do, for units).
const ingestion = new IngestionService(serverHolding(), { programs: new Map() } as unknown as ProgramCatalog, async () => undefined);

const history = (...events: fhir4.BundleEntry[]): fhir4.Bundle => ({
  resourceType: 'Bundle',
  type: 'history',
  entry: [
    {
      fullUrl: 'urn:uuid:7f0c2a1e-3d4b-4c5a-8e6f-1a2b3c4d5e6f',
      resource: { resourceType: 'Parameters', parameter: [{ name: 'subscription', valueReference: { reference: `${BASE}/Subscription/s1` } }, { name: 'type', valueCode: 'event-notification' }] } as fhir4.Parameters,
    },
    ...events,
  ],
});

async function refused(body: unknown, fhir: FhirServer = serverHolding()): Promise<OperationOutcomeError> {
  const error = await handleNotification(body, fhir, { ingestion }).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(OperationOutcomeError);
  return error as OperationOutcomeError;
}

describe('R4 core (the resource itself)', () => {
  it('queues the patient of the resource as the server holds it, not as the payload says', async () => {
    const fhir = serverHolding(condition('c1', 'p-stored'));
    const result = await handleNotification(condition('c1', 'p-payload'), fhir, { ingestion });
    expect(fhir.reads).toEqual(['Condition/c1']);
    expect([...result.touched.keys()]).toEqual(['p-stored']);
    expect(result.touched.get('p-stored')).toEqual(['Condition/c1/_history/3']);
  });

  it('a resource the server does not hold queues nothing', async () => {
    const result = await handleNotification(condition('gone', 'p1'), serverHolding(), { ingestion });
    expect(result.touched.size).toBe(0);
  });

  it.each([
    ['a wrong JSON kind', { ...condition('c1', 'p1'), code: 1.5 }, 400],
    ['an invalid id', { ...condition('c1', 'p1'), id: '..' }, 400],
    ['no id', { ...condition('c1', 'p1'), id: undefined }, 400],
    ['a reference to another server', { ...condition('c1', 'p1'), asserter: { reference: 'https://other.example/fhir/Practitioner/1' } }, 422],
  ])('%s is refused before anything is read', async (_what, body, status) => {
    const fhir = serverHolding(condition('c1', 'p1'));
    expect((await refused(body, fhir)).status).toBe(status);
    expect(fhir.reads).toEqual([]);
  });

  it('an absolute reference to the server of record is accepted', async () => {
    const fhir = serverHolding(condition('c1', 'p1'));
    const result = await handleNotification({ ...condition('c1', 'p1'), asserter: { reference: `${BASE}/Practitioner/1` } }, fhir, { ingestion });
    expect(result.touched.size).toBe(1);
  });
});

describe('Backport IG history Bundle', () => {
  it.each([
    ['a query', `${BASE}/Condition/c1?x=1`],
    ['a fragment', `${BASE}/Condition/c1#x`],
    ['a dot segment', `${BASE}/Condition/../Condition/c1`],
    ['an encoded character', `${BASE}/Condition/c%201`],
    ['another server', 'https://other.example/fhir/Condition/c1'],
    ['another base on the same host', 'http://fhir.test/other/Condition/c1'],
    ['no id', `${BASE}/Condition/`],
  ])('an id-only fullUrl with %s is refused (400, at the fullUrl)', async (_what, fullUrl) => {
    const fhir = serverHolding(condition('c1', 'p1'));
    const error = await refused(history({ fullUrl }), fhir);
    expect(error.status).toBe(400);
    expect(error.outcome.issue[0]?.expression).toEqual(['Bundle.entry[1].fullUrl']);
    expect(fhir.reads).toEqual([]);
  });

  it('a reference to another server in the status is refused', async () => {
    const body = history({ fullUrl: `${BASE}/Condition/c1` });
    ((body.entry?.[0]?.resource as fhir4.Parameters).parameter as fhir4.ParametersParameter[])[0] = { name: 'subscription', valueReference: { reference: 'http://169.254.169.254/Subscription/s1' } };
    expect((await refused(body)).status).toBe(400);
  });

  it('a wrong JSON kind anywhere is refused', async () => {
    expect((await refused({ ...history(), timestamp: 5 })).outcome.issue[0]?.expression).toEqual(['Bundle.timestamp']);
    expect((await refused(history({ fullUrl: `${BASE}/Condition/c1`, request: 5 } as unknown as fhir4.BundleEntry))).outcome.issue[0]?.expression).toEqual(['Bundle.entry[1].request']);
  });

  it('a full-resource event is checked like a push, then read back', async () => {
    expect((await refused(history({ fullUrl: `${BASE}/Condition/c1`, resource: { ...condition('c1', 'p1'), code: true } as unknown as fhir4.Condition }))).status).toBe(400);
    const fhir = serverHolding(condition('c1', 'p-stored'));
    const result = await handleNotification(history({ fullUrl: `${BASE}/Condition/c1`, resource: condition('c1', 'p-payload') }), fhir, { ingestion });
    expect([...result.touched.keys()]).toEqual(['p-stored']);
  });

  it('authorize runs on each resource read back; its refusal queues nothing', async () => {
    const fhir = serverHolding(condition('c1', 'p1'));
    const seen: string[] = [];
    const forbidden = new OperationOutcomeError(403, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden' }] });
    const outcome = await handleNotification(history({ fullUrl: `${BASE}/Condition/c1` }), fhir, {
      ingestion,
      authorize: async (resource) => {
        seen.push(`${resource.resourceType}/${resource.id}`);
        throw forbidden;
      },
    }).catch((error: unknown) => error);
    expect(outcome).toBe(forbidden);
    expect(seen).toEqual(['Condition/c1']);
  });
});
