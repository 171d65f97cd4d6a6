/**
 * The audit builders (src/domain/audit.ts): what they emit is valid R4 and valid against
 * profiles/StructureDefinition-adapter-{audit-event,provenance}.json; their types and run-time
 * checks take references, ids, codes and instants only, so no name, birth date, identifier
 * value or clinical value can be recorded; the profiles' invariants catch a resource that
 * carries free text anyway.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AUDIT_EVENT_PROFILE,
  auditEvent,
  classifyRequest,
  CLIENT_SYSTEM,
  isVersionedReference,
  outcomeOfStatus,
  provenance,
  provenanceId,
  PROVENANCE_PROFILE,
  referenceFromLocation,
  referencesIn,
  type AuditEventInput,
  type ProvenanceInput,
} from '../../../src/domain/audit.js';
import { assertValid, formatIssue, initValidation, validateResource } from '../../../src/fhir/validation.js';

beforeAll(() => {
  expect(initValidation()).toEqual(expect.arrayContaining([AUDIT_EVENT_PROFILE, PROVENANCE_PROFILE]));
}, 30_000);

const eventInput: AuditEventInput = {
  id: 'c0ffee00-0000-4000-8000-000000000001',
  action: 'E',
  subtype: '$enroll',
  outcome: '0',
  client: { clientId: 'ehr-vaugirard', centre: 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre|CDS-MGEN-VAUGIRARD', address: '10.1.2.3' },
  recorded: '2026-03-02T10:15:00.123Z',
  entities: ['Patient/p1', 'EpisodeOfCare/e1/_history/1', 'CarePlan/cp1/_history/1'],
  requestId: 'req-123',
  source: { observer: 'forfait-fhir 0.1.0', site: 'paris-prod' },
};

const provenanceInput: ProvenanceInput = {
  target: ['GuidanceResponse/g1/_history/3', 'Task/t1/_history/1'],
  recorded: '2026-03-02T10:15:00Z',
  activity: 'UPDATE',
  agent: { adapter: 'forfait-fhir 0.1.0', client: { clientId: 'ehr-vaugirard', centre: 'urn:centre|C1' } },
  entity: ['Observation/o1/_history/2', 'Patient/p1/_history/1'],
};

function errors(resource: fhir4.Resource): string {
  return validateResource(resource).map(formatIssue).join('\n');
}

function mutated<T extends fhir4.Resource>(resource: T, mutate: (copy: T) => void): T {
  const copy = structuredClone(resource);
  mutate(copy);
  return copy;
}

describe('auditEvent', () => {
  const event = auditEvent(eventInput);

  it('is valid R4 and valid against adapter-audit-event', () => {
    assertValid(event, []);
    assertValid(event);
    assertValid(event, [AUDIT_EVENT_PROFILE]);
    expect(event.meta?.profile).toEqual([AUDIT_EVENT_PROFILE]);
  });

  it('records type rest, the interaction and operation, action, outcome, client, centre, source, entities and request id', () => {
    expect(event).toMatchObject({
      resourceType: 'AuditEvent',
      id: eventInput.id,
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
      subtype: [
        { system: 'http://hl7.org/fhir/restful-interaction', code: 'operation' },
        { system: 'urn:forfait-fhir:operation', code: '$enroll' },
      ],
      action: 'E',
      outcome: '0',
      recorded: eventInput.recorded,
      source: { site: 'paris-prod', observer: { display: 'forfait-fhir 0.1.0' } },
    });
    expect(event.agent[0]).toMatchObject({ requestor: true, who: { identifier: { system: CLIENT_SYSTEM, value: 'ehr-vaugirard' } }, network: { address: '10.1.2.3', type: '2' } });
    expect(event.agent[1]).toMatchObject({
      requestor: false,
      who: { type: 'Organization', identifier: { system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre', value: 'CDS-MGEN-VAUGIRARD' } },
    });
    const what = (event.entity ?? []).map((e) => e.what?.reference ?? `id:${e.what?.identifier?.value}`);
    expect(what).toEqual(['Patient/p1', 'EpisodeOfCare/e1/_history/1', 'CarePlan/cp1/_history/1', 'id:req-123']);
    // The patient entity is typed so that AuditEvent?patient= finds it.
    expect(event.entity?.[0]).toMatchObject({ type: { code: '1' }, role: { code: '1' } });
  });

  it('derives the interaction from the action, and accepts an explicit one', () => {
    const { subtype: _s, ...plain } = eventInput;
    expect(auditEvent({ ...plain, action: 'C' }).subtype).toEqual([{ system: 'http://hl7.org/fhir/restful-interaction', code: 'create' }]);
    expect(auditEvent({ ...plain, action: 'R' }).subtype?.[0]?.code).toBe('read');
    expect(auditEvent({ ...plain, action: 'E', interaction: 'transaction' }).subtype?.[0]?.code).toBe('transaction');
    for (const action of ['C', 'R', 'U', 'D', 'E'] as const) assertValid(auditEvent({ ...plain, action }));
  });

  it('without a centre or an address: one agent, still valid; failures are valid too', () => {
    const bare = auditEvent({ ...eventInput, client: { clientId: 'unauthenticated' }, outcome: '4', entities: [] });
    expect(bare.agent).toHaveLength(1);
    expect(bare.agent[0]?.network).toBeUndefined();
    assertValid(bare);
    for (const outcome of ['0', '4', '8', '12'] as const) assertValid(auditEvent({ ...eventInput, outcome }));
  });

  it('deduplicates entities', () => {
    const event2 = auditEvent({ ...eventInput, entities: ['Patient/p1', 'Patient/p1', 'Observation/o/_history/1'] });
    expect(event2.entity?.map((e) => e.what?.reference).filter(Boolean)).toEqual(['Patient/p1', 'Observation/o/_history/1']);
  });

  it('takes no clinical value, name, birth date or identifier value: the types refuse them, the run-time checks throw without echoing them', () => {
    const secret = 'Zyxwvutsrq';
    const refused: (() => unknown)[] = [
      // @ts-expect-error a clinical value is not a reference
      () => auditEvent({ ...eventInput, entities: [1.234] }),
      // @ts-expect-error a name is not a reference
      () => auditEvent({ ...eventInput, entities: [secret] }),
      // @ts-expect-error a birth date is not a reference
      () => auditEvent({ ...eventInput, entities: ['1961-07-13'] }),
      // @ts-expect-error a resource is not a reference
      () => auditEvent({ ...eventInput, entities: [{ resourceType: 'Observation', valueQuantity: { value: 1.234 } }] }),
      // Type-correct (Type/...) but not a reference at run time: a search with an identifier value, a name.
      () => auditEvent({ ...eventInput, entities: ['Patient/?identifier=NIR-2610713999999'] }),
      () => auditEvent({ ...eventInput, entities: [`Patient/${secret} Qwerty`] }),
      () => auditEvent({ ...eventInput, requestId: `${secret} 1961-07-13` }),
      () => auditEvent({ ...eventInput, subtype: `enroll ${secret}` }),
      () => auditEvent({ ...eventInput, client: { clientId: `${secret} Qwerty` } }),
      () => auditEvent({ ...eventInput, recorded: '2026-03-02' }),
      () => auditEvent({ ...eventInput, id: 'not an id' }),
    ];
    for (const attempt of refused) {
      expect(attempt).toThrow(/^audit: /);
      try {
        attempt();
      } catch (error) {
        const message = (error as Error).message;
        for (const value of [secret, '2610713999999', '1961-07-13', '1.234']) expect(message).not.toContain(value);
      }
    }
    // No field takes free text: an unknown key is a type error, and is not copied at run time.
    // @ts-expect-error there is no outcomeDesc (nor any other free-text) input
    const ignored = auditEvent({ ...eventInput, outcomeDesc: secret });
    expect(JSON.stringify(ignored)).not.toContain(secret);
  });

  describe('the profile catches free text added afterwards', () => {
    it.each<[string, (e: fhir4.AuditEvent) => void, string]>([
      ['a narrative', (e) => (e.text = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Zyxwvutsrq</div>' }), 'aae-1'],
      ['a contained Patient', (e) => (e.contained = [{ resourceType: 'Patient', id: 'x' }]), 'aae-1'],
      ['no restful-interaction subtype', (e) => (e.subtype = [{ system: 'urn:forfait-fhir:operation', code: '$enroll' }]), 'aae-2'],
      ['no requesting client', (e) => e.agent.forEach((a) => (a.requestor = false)), 'aae-3'],
      ['an agent name', (e) => ((e.agent[0] as fhir4.AuditEventAgent).name = 'Dr Zyxwvutsrq'), 'aae-4'],
      ['an entity display', (e) => ((e.entity?.[0] as fhir4.AuditEventEntity).what = { reference: 'Patient/p1', display: 'Zyxwvutsrq' }), 'aae-5'],
      ['an entity detail', (e) => ((e.entity?.[0] as fhir4.AuditEventEntity).detail = [{ type: 'glucose', valueString: '1.234' }]), 'aae-5'],
      ['an entity query', (e) => ((e.entity?.[0] as fhir4.AuditEventEntity).query = 'aWRlbnRpZmllcj1OSVI='), 'aae-5'],
      ['an absolute reference', (e) => ((e.entity?.[0] as fhir4.AuditEventEntity).what = { reference: 'http://other/fhir/Patient/p1' }), 'aae-6'],
      ['no request id', (e) => e.entity?.pop(), 'aae-7'],
    ])('%s (%s)', (_label, mutate, key) => {
      expect(errors(mutated(event, mutate))).toContain(key);
    });

    it('an outcome description (max 0) and another event type', () => {
      expect(errors(mutated(event, (e) => (e.outcomeDesc = 'Zyxwvutsrq')))).toMatch(/outcomeDesc/);
      expect(errors(mutated(event, (e) => (e.type = { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110' })))).toMatch(/AuditEvent.type/);
    });
  });
});

describe('provenance', () => {
  const resource = provenance(provenanceInput);

  it('is valid R4 and valid against adapter-provenance', () => {
    assertValid(resource, []);
    assertValid(resource);
    assertValid(resource, [PROVENANCE_PROFILE]);
  });

  it('names the versioned targets, the activity, the adapter (assembler), the client (author) for its centre, and the sources', () => {
    expect(resource).toMatchObject({
      resourceType: 'Provenance',
      meta: { profile: [PROVENANCE_PROFILE] },
      target: [{ reference: 'GuidanceResponse/g1/_history/3' }, { reference: 'Task/t1/_history/1' }],
      recorded: '2026-03-02T10:15:00Z',
      activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }] },
      entity: [
        { role: 'source', what: { reference: 'Observation/o1/_history/2' } },
        { role: 'source', what: { reference: 'Patient/p1/_history/1' } },
      ],
    });
    expect(resource.agent[0]).toMatchObject({ type: { coding: [{ code: 'assembler' }] }, who: { type: 'Device', identifier: { system: 'urn:forfait-fhir:adapter' }, display: 'forfait-fhir 0.1.0' } });
    expect(resource.agent[1]).toMatchObject({ type: { coding: [{ code: 'author' }] }, who: { identifier: { system: CLIENT_SYSTEM, value: 'ehr-vaugirard' } }, onBehalfOf: { identifier: { system: 'urn:centre', value: 'C1' } } });
  });

  it('has a deterministic id from its targets (order and duplicates do not matter), another for other versions', () => {
    expect(resource.id).toBe(provenanceId(['Task/t1/_history/1', 'GuidanceResponse/g1/_history/3']));
    expect(provenance({ ...provenanceInput, target: ['Task/t1/_history/1', 'GuidanceResponse/g1/_history/3', 'Task/t1/_history/1'], recorded: '2027-01-01T00:00:00Z' }).id).toBe(resource.id);
    expect(provenance({ ...provenanceInput, target: ['GuidanceResponse/g1/_history/4', 'Task/t1/_history/1'] }).id).not.toBe(resource.id);
  });

  it('queued work: the adapter alone, no sources, CREATE; a custom activity coding', () => {
    const plain = provenance({ target: ['Claim/c1/_history/1'], recorded: '2026-03-02T10:15:00+01:00', activity: 'CREATE', agent: { adapter: 'forfait-fhir' } });
    expect(plain.agent).toHaveLength(1);
    expect(plain.entity).toBeUndefined();
    assertValid(plain);
    assertValid(provenance({ ...provenanceInput, activity: { system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'APPEND' } }));
  });

  it('refuses unversioned or non-reference targets, values as sources, and no target', () => {
    // @ts-expect-error an unversioned reference is not a VersionedReference
    expect(() => provenance({ ...provenanceInput, target: ['GuidanceResponse/g1'] })).toThrow(/version-specific/);
    // @ts-expect-error a value is not a reference
    expect(() => provenance({ ...provenanceInput, entity: [31.7] })).toThrow(/^audit: /);
    // @ts-expect-error a name is not a reference
    expect(() => provenance({ ...provenanceInput, entity: ['Zyxwvutsrq'] })).toThrow(/^audit: /);
    expect(() => provenance({ ...provenanceInput, target: [] })).toThrow(/at least one target/);
  });

  it.each<[string, (p: fhir4.Provenance) => void, string]>([
    ['a narrative', (p) => (p.text = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Zyxwvutsrq</div>' }), 'apv-1'],
    ['an unversioned target', (p) => (p.target = [{ reference: 'GuidanceResponse/g1' }]), 'apv-2'],
    ['no adapter agent', (p) => p.agent.shift(), 'apv-3'],
    ['a client display', (p) => ((p.agent[1] as fhir4.ProvenanceAgent).who.display = 'Dr Zyxwvutsrq'), 'apv-4'],
    ['an entity by display', (p) => ((p.entity?.[0] as fhir4.ProvenanceEntity).what = { display: 'glucose 1.234 g/L' }), 'apv-5'],
    ['an activity without DataOperation coding', (p) => (p.activity = { text: 'made' }), 'apv-6'],
  ])('the profile catches %s (%s)', (_label, mutate, key) => {
    expect(errors(mutated(resource, mutate))).toContain(key);
  });
});

describe('classifyRequest: which requests are audited, as what', () => {
  it.each<[string, string, string | undefined, object | undefined]>([
    ['GET', '/healthz', undefined, undefined],
    ['GET', '/metrics', undefined, undefined],
    ['GET', '/fhir/metadata', undefined, undefined],
    ['GET', '/fhir/_async/abc', undefined, undefined],
    ['GET', '/admin/queues/api/queues', undefined, undefined],
    ['PUT', '/admin/queues/api/queues/eligibility/retry/failed', undefined, { action: 'E', subtype: '$admin-queues' }],
    ['POST', '/fhir/Observation', undefined, { action: 'C', interaction: 'create', entities: [] }],
    ['POST', '/fhir/Encounter', undefined, { action: 'C', interaction: 'create' }],
    ['POST', '/fhir', 'transaction', { action: 'E', interaction: 'transaction' }],
    ['POST', '/fhir', 'batch', { action: 'E', interaction: 'batch' }],
    ['POST', '/fhir/Patient/p1/$evaluate-eligibility', undefined, { action: 'E', interaction: 'operation', subtype: '$evaluate-eligibility', entities: ['Patient/p1'] }],
    ['GET', '/fhir/Patient/p1/%24evaluate-eligibility?program=x', undefined, { action: 'E', subtype: '$evaluate-eligibility', entities: ['Patient/p1'] }],
    ['POST', '/fhir/$screen', undefined, { action: 'E', subtype: '$screen', entities: [] }],
    ['POST', '/fhir/Patient/p1/$enroll', undefined, { subtype: '$enroll', entities: ['Patient/p1'] }],
    ['POST', '/fhir/EpisodeOfCare/e1/$exit', undefined, { subtype: '$exit', entities: ['EpisodeOfCare/e1'] }],
    ['POST', '/fhir/$bill', undefined, { subtype: '$bill' }],
    ['GET', '/fhir/$budget?program=rediab', undefined, { subtype: '$budget' }],
    ['POST', '/hooks/subscription', undefined, { action: 'E', subtype: '$subscription-notification' }],
    ['GET', '/fhir/Patient/p1', undefined, { action: 'R', interaction: 'read', entities: ['Patient/p1'] }],
    ['GET', '/fhir/Patient/p1/_history/2', undefined, { action: 'R', interaction: 'vread', entities: ['Patient/p1/_history/2'] }],
    ['GET', '/fhir/Patient?name=Zyxwvutsrq', undefined, { action: 'R', interaction: 'search-type', entities: [] }],
    ['DELETE', '/fhir/Patient/p1', undefined, { action: 'D', interaction: 'delete' }],
    ['PUT', '/fhir/Patient/p1', undefined, { action: 'U', interaction: 'update' }],
  ])('%s %s', (method, path, bundleType, expected) => {
    const kind = classifyRequest(method, path, bundleType);
    if (expected === undefined) expect(kind).toBeUndefined();
    else expect(kind).toMatchObject(expected);
    // The query string (which may carry search values) never reaches the classification.
    expect(JSON.stringify(kind ?? {})).not.toContain('Zyxwvutsrq');
  });

  it('maps statuses to outcomes', () => {
    expect([200, 201, 202, 304, 400, 401, 403, 404, 422, 500, 503].map(outcomeOfStatus)).toEqual(['0', '0', '0', '0', '4', '4', '4', '4', '4', '8', '8']);
  });
});

describe('referencesIn: only references leave a body', () => {
  const patient: fhir4.Patient = {
    resourceType: 'Patient',
    id: 'p1',
    meta: { versionId: '2' },
    identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: 'NIR-2610713999999' }],
    name: [{ family: 'Zyxwvutsrq' }],
    birthDate: '1961-07-13',
    generalPractitioner: [{ reference: 'PractitionerRole/gp1' }],
  };
  const observation: fhir4.Observation = {
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'glucose' },
    subject: { reference: 'Patient/p1' },
    valueQuantity: { value: 1.234, unit: 'g/L' },
  };

  it('a stored resource: itself (versioned) and the patient it is about; a request body: the patient only', () => {
    expect(referencesIn(patient)).toEqual(['Patient/p1/_history/2']);
    expect(referencesIn(observation)).toEqual(['Patient/p1']);
    expect(referencesIn({ ...observation, id: 'o1', meta: { versionId: '1' } })).toEqual(['Observation/o1/_history/1', 'Patient/p1']);
    const encounter = { resourceType: 'Encounter', id: 'e', meta: { versionId: '1' }, subject: { reference: 'Patient/p1' }, episodeOfCare: [{ reference: 'EpisodeOfCare/x' }] };
    expect(referencesIn(encounter)).toEqual(['Encounter/e/_history/1', 'Patient/p1', 'EpisodeOfCare/x']);
  });

  it('Parameters: every valueReference, parts included, and nothing else', () => {
    const parameters: fhir4.Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'outcome', valueCode: 'eligible' },
        { name: 'criterion', part: [{ name: 'value', valueQuantity: { value: 1.234, unit: 'g/L' } }, { name: 'evidence', valueReference: { reference: 'Observation/o1/_history/1' } }] },
        { name: 'patient', valueReference: { reference: 'Patient/p1', display: 'Zyxwvutsrq' } },
        { name: 'bad', valueReference: { reference: 'http://elsewhere/Patient/p9' } },
      ],
    };
    expect(referencesIn(parameters)).toEqual(['Observation/o1/_history/1', 'Patient/p1']);
  });

  it('Bundle: the locations written; OperationOutcome and junk: nothing', () => {
    const bundle: fhir4.Bundle = {
      resourceType: 'Bundle',
      type: 'transaction-response',
      entry: [{ response: { status: '201', location: 'Patient/p1/_history/1' } }, { response: { status: '201', location: 'http://x/fhir/Observation/o1/_history/1' } }, { response: { status: '400' } }],
    };
    expect(referencesIn(bundle)).toEqual(['Patient/p1/_history/1', 'Observation/o1/_history/1']);
    expect(referencesIn({ resourceType: 'OperationOutcome', issue: [] })).toEqual([]);
    for (const junk of [undefined, null, 'Patient/p1', 42, [patient]]) expect(referencesIn(junk)).toEqual([]);
    const all = JSON.stringify([referencesIn(patient), referencesIn(observation), referencesIn(bundle)]);
    for (const secret of ['Zyxwvutsrq', '1961-07-13', '2610713999999', '1.234']) expect(all).not.toContain(secret);
  });

  it('locations and versions', () => {
    expect(referenceFromLocation('http://h:1/fhir/Patient/p1/_history/3')).toBe('Patient/p1/_history/3');
    expect(referenceFromLocation('http://h:1/fhir/_async/abc')).toBeUndefined();
    expect(referenceFromLocation(undefined)).toBeUndefined();
    expect(isVersionedReference('Patient/p1/_history/3')).toBe(true);
    expect(isVersionedReference('Patient/p1')).toBe(false);
  });
});
