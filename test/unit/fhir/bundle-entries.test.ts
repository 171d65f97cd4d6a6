/**
 * Entries of a pushed Bundle (src/app/bundle-ingestion.ts, issue #6): every entry checked,
 * whatever its type, before anything is forwarded; references to other servers refused
 * (src/app/ingestion.service.ts `referenceIssues`, src/domain/references.ts `referenceForm`).
 * The FHIR server is a recording stub of the port: these tests are about what reaches it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ingestBundle, type IngestOptions } from '../../../src/app/bundle-ingestion.js';
import { IngestionService, referenceIssues } from '../../../src/app/ingestion.service.js';
import { referenceForm } from '../../../src/domain/references.js';
import type { FhirServer } from '../../../src/fhir/fhir-server.port.js';
import { initValidation } from '../../../src/fhir/validation.js';
import { OperationOutcomeError } from '../../../src/http/outcomes.js';
import type { ProgramCatalog } from '../../../src/programs/schema.js';

beforeAll(() => {
  initValidation();
}, 120_000);

/** Records what is forwarded; answers every write entry 201. */
class RecordingFhir {
  readonly baseUrl = 'http://fhir.test/fhir';
  readonly forwarded: fhir4.Bundle[] = [];
  private next = 1;

  private answer(bundle: fhir4.Bundle, type: 'batch-response' | 'transaction-response'): fhir4.Bundle {
    this.forwarded.push(structuredClone(bundle));
    return {
      resourceType: 'Bundle',
      type,
      entry: (bundle.entry ?? []).map((entry) => ({ response: { status: '201 Created', location: `${entry.resource?.resourceType ?? 'X'}/id-${this.next++}/_history/1` } })),
    };
  }

  batch = async (bundle: fhir4.Bundle): Promise<fhir4.Bundle> => this.answer(bundle, 'batch-response');
  transaction = async (bundle: fhir4.Bundle): Promise<fhir4.Bundle> => this.answer(bundle, 'transaction-response');
  read = async (): Promise<never> => {
    throw new Error('not used');
  };
  readIfExists = async (): Promise<undefined> => undefined;
  searchAll = async (): Promise<never[]> => [];
  create = async (): Promise<never> => {
    throw new Error('not used');
  };
  update = async (): Promise<never> => {
    throw new Error('not used');
  };
  ping = async (): Promise<void> => undefined;
}

// Only Observations use the catalog (units): none here.
const catalog = { programs: new Map() } as unknown as ProgramCatalog;

function setup(): { fhir: RecordingFhir; ingestion: IngestionService } {
  const fhir = new RecordingFhir();
  return { fhir, ingestion: new IngestionService(fhir as unknown as FhirServer, catalog, async () => undefined) };
}

const PATIENT_URN = 'urn:uuid:0d8a3c6e-5b7f-4d0e-9a51-3f0e8a6c2b11';

const encounter = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  resourceType: 'Encounter',
  status: 'finished',
  class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
  subject: { reference: 'Patient/p1' },
  ...extra,
});

const entry = (resource: unknown, request: unknown = { method: 'POST', url: (resource as { resourceType: string }).resourceType }, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  resource,
  request,
  ...extra,
});

const bundle = (type: 'batch' | 'transaction', ...entries: unknown[]): Record<string, unknown> => ({ resourceType: 'Bundle', type, entry: entries });

async function ingest(body: unknown, options: IngestOptions = {}): Promise<{ fhir: RecordingFhir; response: fhir4.Bundle }> {
  const { fhir, ingestion } = setup();
  const { response } = await ingestBundle(body, fhir as unknown as FhirServer, ingestion, options);
  return { fhir, response };
}

/** A batch of one entry: its response status and the expressions of its outcome. */
async function batchOfOne(item: unknown): Promise<{ status: string; expressions: string[]; forwarded: number }> {
  const { fhir, response } = await ingest(bundle('batch', item));
  const answer = response.entry?.[0]?.response;
  return {
    status: answer?.status ?? '',
    expressions: (answer?.outcome as fhir4.OperationOutcome | undefined)?.issue.flatMap((issue) => issue.expression ?? []) ?? [],
    forwarded: fhir.forwarded.reduce((n, b) => n + (b.entry?.length ?? 0), 0),
  };
}

async function refusal(body: unknown): Promise<OperationOutcomeError> {
  const { fhir, ingestion } = setup();
  const error = await ingestBundle(body, fhir as unknown as FhirServer, ingestion).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(OperationOutcomeError);
  expect(fhir.forwarded).toEqual([]);
  return error as OperationOutcomeError;
}

describe('entries of types the programs do not read are validated (they were forwarded as given)', () => {
  it.each([
    ['a wrong JSON kind', encounter({ status: 5 }), 'Bundle.entry[0].resource.status'],
    ['a complex type given a number', encounter({ class: 1.5 }), 'Bundle.entry[0].resource.class'],
    ['an unknown element', encounter({ colour: 'blue' }), 'Bundle.entry[0].resource.colour'],
    ['a status outside its required value set', encounter({ status: 'done' }), 'Bundle.entry[0].resource.status'],
    ['an invalid id', encounter({ id: '..' }), 'Bundle.entry[0].resource.id'],
  ])('%s: that entry is refused with a 400 OperationOutcome, nothing forwarded', async (_what, resource, expression) => {
    const result = await batchOfOne(entry(resource));
    expect(result.status).toBe('400');
    expect(result.expressions).toContain(expression);
    expect(result.forwarded).toBe(0);
  });

  it('a valid Encounter is forwarded, with only the checked elements of its entry', async () => {
    const { fhir, response } = await ingest(bundle('batch', entry(encounter(), { method: 'POST', url: 'Encounter' }, { response: { status: '200' }, search: { mode: 'match' } })));
    expect(response.entry?.[0]?.response?.status).toMatch(/^201/);
    expect(fhir.forwarded[0]?.entry?.[0]).toEqual({ resource: expect.objectContaining({ resourceType: 'Encounter' }), request: { method: 'POST', url: 'Encounter', ifNoneExist: expect.stringMatching(/^_tag=/) } });
  });

  it('types the adapter owns or that configure the server are refused (422)', async () => {
    const subscription = { resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Observation?', channel: { type: 'rest-hook', endpoint: 'https://evil.example/' } };
    expect((await batchOfOne(entry(subscription))).status).toBe('422');
    expect((await batchOfOne(entry({ resourceType: 'Task', status: 'draft', intent: 'order' }))).status).toBe('422');
  });
});

describe('entry requests', () => {
  it.each([
    ['a POST whose url is another type', { method: 'POST', url: 'Patient' }, '400', 'Bundle.entry[0].request.url'],
    ['a POST whose url carries a path', { method: 'POST', url: 'Encounter/../Patient' }, '400', 'Bundle.entry[0].request.url'],
    ['a POST to an absolute URL', { method: 'POST', url: 'https://other.example/fhir/Encounter' }, '400', 'Bundle.entry[0].request.url'],
    ['a PUT to an id other than the resource\'s', { method: 'PUT', url: 'Encounter/other' }, '400', 'Bundle.entry[0].request.url'],
    ['a GET', { method: 'GET', url: 'Encounter' }, '422', 'Bundle.entry[0].request.method'],
    ['a DELETE', { method: 'DELETE', url: 'Encounter/e1' }, '422', 'Bundle.entry[0].request.method'],
    ['an ifNoneExist with an OR', { method: 'POST', url: 'Encounter', ifNoneExist: 'identifier=a|1,b|2' }, '400', 'Bundle.entry[0].request.ifNoneExist'],
    ['an ifNoneExist on another parameter', { method: 'POST', url: 'Encounter', ifNoneExist: '_id=e1' }, '400', 'Bundle.entry[0].request.ifNoneExist'],
    ['an ifNoneExist with a second parameter', { method: 'POST', url: 'Encounter', ifNoneExist: 'identifier=a|1&subject=Patient/p2' }, '400', 'Bundle.entry[0].request.ifNoneExist'],
    ['an ifNoneMatch', { method: 'POST', url: 'Encounter', ifNoneMatch: '*' }, '400', 'Bundle.entry[0].request.ifNoneMatch'],
    ['no request', undefined, '400', 'Bundle.entry[0].request'],
  ])('%s is refused', async (_what, request, status, expression) => {
    const result = await batchOfOne({ resource: encounter({ id: 'e1' }), ...(request ? { request } : {}) });
    expect(result.status).toBe(status);
    expect(result.expressions).toContain(expression);
    expect(result.forwarded).toBe(0);
  });

  it('a PUT Type/id of the resource\'s own id, and a POST with one identifier condition (as Synthea sends), are forwarded', async () => {
    const { fhir } = await ingest(
      bundle(
        'batch',
        entry(encounter({ id: 'e1' }), { method: 'PUT', url: 'Encounter/e1' }),
        entry({ resourceType: 'Location', name: 'x', identifier: [{ system: 'https://github.com/synthetichealth/synthea', value: 'l1' }] }, { method: 'POST', url: 'Location', ifNoneExist: 'identifier=https://github.com/synthetichealth/synthea|l1' }),
      ),
    );
    expect(fhir.forwarded[0]?.entry?.map((e) => e.request)).toEqual([
      { method: 'PUT', url: 'Encounter/e1' },
      { method: 'POST', url: 'Location', ifNoneExist: 'identifier=https://github.com/synthetichealth/synthea|l1' },
    ]);
  });
});

describe('references', () => {
  it.each([
    ['an absolute URL to another server', 'https://other.example/fhir/Patient/1'],
    ['a protocol-relative URL', '//other.example/fhir/Patient/1'],
    ['a file URL', 'file:///etc/passwd'],
    ['an id that is a dot-segment', 'Patient/..'],
    ['an id with a space', 'Patient/a b'],
    ['a malformed urn:uuid', 'urn:uuid:not-a-uuid'],
    ['a urn:uuid that names no entry (batch)', PATIENT_URN],
    ['a conditional reference in a batch', 'Practitioner?identifier=urn:x|1'],
  ])('%s in any element of any type is refused (422, at the element)', async (_what, reference) => {
    const result = await batchOfOne(entry(encounter({ serviceProvider: { reference } })));
    expect(result.status).toBe('422');
    expect(result.expressions).toEqual(['Bundle.entry[0].resource.serviceProvider.reference']);
  });

  it('a transaction may use urn:uuid fullUrls of its entries, directory conditional references and contained references (Synthea)', async () => {
    const { fhir } = await ingest(
      bundle(
        'transaction',
        { fullUrl: PATIENT_URN, ...entry({ resourceType: 'Patient', identifier: [{ system: 'urn:x', value: '1' }] }) },
        entry(
          encounter({
            subject: { reference: PATIENT_URN },
            participant: [{ individual: { reference: 'Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999' } }],
            location: [{ location: { reference: 'Location?identifier=https://github.com/synthetichealth/synthea|l1' } }],
            serviceProvider: { reference: 'Organization?identifier=https://github.com/synthetichealth/synthea|o1' },
            contained: [{ resourceType: 'Organization', id: 'referral', name: 'x' }],
            basedOn: [{ reference: '#referral' }],
          }),
        ),
      ),
    );
    expect(fhir.forwarded[0]?.entry).toHaveLength(2);
  });

  it('a transaction may not reference a patient (or anything but the directory) conditionally, nor an unknown urn:uuid', async () => {
    for (const reference of ['Patient?identifier=urn:x|1', 'EpisodeOfCare?identifier=urn:x|1', 'urn:uuid:2c1f6a0b-8e4d-4f3a-b7c2-9d5e1a0f3b22']) {
      const error = await refusal(bundle('transaction', entry(encounter({ subject: { reference } }))));
      expect(error.status).toBe(422);
      expect(error.outcome.issue[0]?.expression).toEqual(['Bundle.entry[0].resource.subject.reference']);
    }
  });

  it('referenceForm tells the forms apart', () => {
    expect(referenceForm('Patient/p1')).toEqual({ form: 'relative', type: 'Patient', id: 'p1' });
    expect(referenceForm('Patient/p1/_history/2')).toEqual({ form: 'relative', type: 'Patient', id: 'p1' });
    expect(referenceForm('Patient/p1/_history/..')).toEqual({ form: 'invalid' });
    expect(referenceForm(PATIENT_URN)).toEqual({ form: 'urn-uuid' });
    expect(referenceForm('#c1')).toEqual({ form: 'contained', id: 'c1' });
    expect(referenceForm('Organization?identifier=urn:x|1')).toEqual({ form: 'conditional', type: 'Organization' });
    expect(referenceForm('Organization?identifier=urn:x|1&name=x')).toEqual({ form: 'invalid' });
    expect(referenceForm('http://x/fhir/Patient/1')).toEqual({ form: 'absolute' });
    expect(referenceForm('data:application/fhir+json,{}')).toEqual({ form: 'absolute' });
    expect(referenceForm('javascript:alert(1)')).toEqual({ form: 'absolute' });
  });

  it('referenceIssues accepts the server of record when told, and walks contained resources and extensions', () => {
    const resource = {
      resourceType: 'Observation',
      contained: [{ resourceType: 'Patient', generalPractitioner: [{ reference: 'https://other.example/Practitioner/1' }] }],
      extension: [{ url: 'http://x', valueReference: { reference: 'http://fhir.test/fhir/Patient/1' } }],
    };
    expect(referenceIssues(resource, 'Observation').map((issue) => issue.expression?.[0])).toEqual([
      'Observation.contained[0].generalPractitioner[0].reference',
      'Observation.extension[0].valueReference.reference',
    ]);
    expect(referenceIssues(resource, 'Observation', { isServerOfRecord: (reference) => reference.startsWith('http://fhir.test/fhir/') }).map((issue) => issue.expression?.[0])).toEqual([
      'Observation.contained[0].generalPractitioner[0].reference',
    ]);
  });
});

describe('refusals', () => {
  it('one bad entry refuses a transaction as a whole: nothing forwarded', async () => {
    const error = await refusal(bundle('transaction', entry(encounter()), entry(encounter({ status: 5 }))));
    expect(error.status).toBe(400);
    expect(error.outcome.issue.map((issue) => issue.expression?.[0])).toEqual(['Bundle.entry[1].resource.status']);
  });

  it('a wrong kind outside the entries refuses the Bundle (400)', async () => {
    const error = await refusal({ resourceType: 'Bundle', type: 'batch', timestamp: 5, entry: [entry(encounter())] });
    expect(error.outcome.issue[0]?.expression).toEqual(['Bundle.timestamp']);
  });

  it('stay small: at most 10 issues per batch entry, 100 for a refused transaction', async () => {
    const wide = encounter({ reasonCode: new Array(500).fill(0) });
    const { response } = await ingest(bundle('batch', entry(wide), entry(wide)));
    for (const answer of response.entry ?? []) {
      const issues = (answer.response?.outcome as fhir4.OperationOutcome).issue;
      expect(issues).toHaveLength(10);
      expect(issues[9]?.diagnostics).toMatch(/further issue\(s\) not listed/);
    }
    const error = await refusal(bundle('transaction', ...new Array(30).fill(entry(wide))));
    expect(error.outcome.issue).toHaveLength(100);
    expect(JSON.stringify(error.outcome).length).toBeLessThan(30_000);
  });

  it('authorize sees the checked entries (sessions included) before any write, and its refusal writes nothing', async () => {
    const { fhir, ingestion } = setup();
    const seen: { types: string[]; indexes: readonly number[] }[] = [];
    const session = encounter({ episodeOfCare: [{ reference: 'EpisodeOfCare/ep1' }] });
    const refused = new OperationOutcomeError(403, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden' }] });
    const body = bundle('batch', entry(encounter({ status: 5 })), entry(session), entry(encounter()));
    const outcome = await ingestBundle(body, fhir as unknown as FhirServer, ingestion, {
      recordSession: async () => ({ response: { status: '201' } }),
      authorize: async (forwarded, indexes) => {
        seen.push({ types: (forwarded.entry ?? []).map((e) => e.resource?.resourceType ?? ''), indexes });
        throw refused;
      },
    }).catch((error: unknown) => error);
    expect(outcome).toBe(refused);
    expect(seen).toEqual([{ types: ['Encounter', 'Encounter'], indexes: [2, 1] }]);
    expect(fhir.forwarded).toEqual([]);
  });
});
