/**
 * Rest-hook notifications (`POST /hooks/subscription`) from a FHIR server that already holds
 * the data: resources are written DIRECTLY to the FHIR server of record (bypassing the
 * adapter, so nothing is queued by the write itself), then notified. The notification alone
 * must queue (or not queue) the evaluations.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedCentre, patient, quantityObservation } from '../fixtures/resources.js';
import { completedEvaluationCount, startTestService, type TestService } from './harness.js';
import { programsOfJob, type EvaluationJobData } from '../../src/queue/queues.js';

const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
const TOPIC = 'http://forfait-fhir.org/fhir/SubscriptionTopic/observation-written';
const PROGRAMS = ['fnmf-prediabetes', 'rediab'];

let t: TestService;
let gpRoleId: string;
let eventCounter = 0;

beforeAll(async () => {
  t = await startTestService();
  // The centre goes through the adapter so its directory cache is invalidated.
  ({ gpRoleId } = await seedCentre(t));
  await t.drained();
});

afterAll(async () => {
  await t?.stop();
});

/** Creates a resource on the FHIR server of record itself (not through the adapter). */
async function fhirCreate<T extends fhir4.Resource>(resource: T): Promise<T> {
  const response = await fetch(`${t.fhirUrl}/${resource.resourceType}`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
    body: JSON.stringify(resource),
  });
  expect(response.status).toBe(201);
  const created = (await response.json()) as T;
  expect(created.id).toBeTruthy();
  return created;
}

/** A patient of the centre's GP with a fasting glucose, both stored directly on the FHIR server. */
async function seedDirectly(label: string): Promise<{ patientId: string; observation: fhir4.Observation }> {
  const stored = await fhirCreate(patient(`sub-${label}-${randomUUID().slice(0, 8)}`, { birthDate: '1970-01-10', gp: `PractitionerRole/${gpRoleId}` }));
  const observation = await fhirCreate(quantityObservation(stored.id as string, '1558-6', 1.15, 'g/L', new Date().toISOString().slice(0, 10), `sub-${label}-glu-${randomUUID().slice(0, 8)}`));
  expect(observation.meta?.versionId).toBeTruthy();
  return { patientId: stored.id as string, observation };
}

type NotificationType = 'handshake' | 'heartbeat' | 'event-notification';

/** A Subscriptions R5 Backport IG (R4) notification: a history Bundle, status Parameters first. */
function notification(type: NotificationType, events: fhir4.BundleEntry[]): fhir4.Bundle {
  const first = eventCounter + 1;
  eventCounter += events.length;
  const now = new Date().toISOString();
  const status: fhir4.Parameters = {
    resourceType: 'Parameters',
    meta: { profile: [`${BACKPORT}/backport-subscription-status-r4`] },
    parameter: [
      { name: 'subscription', valueReference: { reference: `${t.fhirUrl}/Subscription/forfait-adapter` } },
      { name: 'topic', valueCanonical: TOPIC },
      { name: 'status', valueCode: type === 'handshake' ? 'requested' : 'active' },
      { name: 'type', valueCode: type },
      { name: 'events-since-subscription-start', valueString: String(type === 'handshake' ? 0 : eventCounter) },
      ...events.map((event, index) => ({
        name: 'notification-event',
        part: [
          { name: 'event-number', valueString: String(first + index) },
          { name: 'timestamp', valueInstant: now },
          { name: 'focus', valueReference: { reference: event.fullUrl as string } },
        ],
      })),
    ],
  };
  return {
    resourceType: 'Bundle',
    id: randomUUID(),
    meta: { profile: [`${BACKPORT}/backport-subscription-notification-r4`] },
    type: 'history',
    timestamp: now,
    entry: [{ fullUrl: `urn:uuid:${randomUUID()}`, resource: status, request: { method: 'GET', url: `${t.fhirUrl}/Subscription/forfait-adapter/$status` }, response: { status: '200' } }, ...events],
  };
}

/** An id-only event entry: the fullUrl on the server of record, no resource. */
function idOnly(fullUrl: string): fhir4.BundleEntry {
  return { fullUrl, request: { method: 'POST', url: fullUrl.split('/').slice(-2, -1)[0] as string }, response: { status: '201' } };
}

async function notify(body: unknown): ReturnType<TestService['post']> {
  return t.post('/hooks/subscription', body);
}

/** Every job of the evaluation queue, whatever its state. */
async function allJobs(): Promise<number> {
  const counts = await t.evaluationQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'waiting-children');
  return Object.values(counts).reduce((sum, n) => sum + n, 0);
}

async function completedEvaluations(): Promise<number> {
  return completedEvaluationCount(t.evaluationQueue);
}

async function guidanceResponses(patientId: string): Promise<fhir4.GuidanceResponse[]> {
  const bundle = (await t.fhirGet(`GuidanceResponse?subject=Patient/${patientId}`)) as fhir4.Bundle;
  return (bundle.entry ?? []).map((e) => e.resource as fhir4.GuidanceResponse);
}

/** One GuidanceResponse per program for the patient. */
async function expectOneGuidanceResponsePerProgram(patientId: string): Promise<fhir4.GuidanceResponse[]> {
  const responses = await guidanceResponses(patientId);
  expect(responses).toHaveLength(PROGRAMS.length);
  expect(responses.map((r) => r.moduleUri?.split('/').pop()).sort()).toEqual([...PROGRAMS].sort());
  for (const response of responses) expect(response.subject?.reference).toBe(`Patient/${patientId}`);
  return responses;
}

/** Triggers of the completed evaluations of a patient, one per program (each carries the notified versioned reference). */
async function triggersOf(patientId: string): Promise<{ programId: string; trigger: string[] }[]> {
  const jobs = await t.evaluationQueue.getJobs(['completed'], 0, -1);
  return jobs
    .filter((job) => (job.data as { patientId?: string }).patientId === patientId)
    .flatMap((job) => {
      const data = job.data as EvaluationJobData;
      return programsOfJob(data).map((programId) => ({ programId, trigger: data.trigger }));
    });
}

function expectAllOk(response: Awaited<ReturnType<TestService['post']>>): void {
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/application\/fhir\+json/);
  expect(response.body.resourceType).toBe('OperationOutcome');
  expect(response.body.issue[0].severity).toBe('information');
}

function expectBadRequest(response: Awaited<ReturnType<TestService['post']>>): void {
  expect(response.status).toBe(400);
  expect(response.headers.get('content-type')).toMatch(/application\/fhir\+json/);
  expect(response.body.resourceType).toBe('OperationOutcome');
  expect(response.body.issue[0].severity).toBe('error');
}

/** POST with an empty body and `content-length: 0` exactly (an R4 core ping). */
function emptyPost(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; contentType: string | undefined }> {
  return new Promise((resolve, reject) => {
    const request = http.request(`${t.url}${path}`, { method: 'POST', headers: { 'content-length': '0', ...headers } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), contentType: response.headers['content-type'] }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

describe('POST /hooks/subscription', () => {
  it('(a) a Backport IG id-only event-notification reads the resource back and evaluates the patient for each program', async () => {
    const { patientId, observation } = await seedDirectly('a');
    // Written directly to the server of record: nothing was queued for this patient yet.
    expect(await guidanceResponses(patientId)).toHaveLength(0);
    const before = await completedEvaluations();

    const response = await notify(notification('event-notification', [idOnly(`${t.fhirUrl}/Observation/${observation.id}`)]));
    expectAllOk(response);
    expect(response.body.issue[0].diagnostics).toMatch(/1 patient/);
    await t.drained();

    expect(await completedEvaluations()).toBe(before + PROGRAMS.length);
    await expectOneGuidanceResponsePerProgram(patientId);
    // The resource was read back from the server: the trigger is its current version.
    const triggers = await triggersOf(patientId);
    expect(triggers.map((job) => job.programId).sort()).toEqual([...PROGRAMS].sort());
    for (const job of triggers) expect(job.trigger).toEqual([`Observation/${observation.id}/_history/${observation.meta?.versionId}`]);
  });

  it('(b) a full-resource event-notification evaluates the patient for each program', async () => {
    const { patientId, observation } = await seedDirectly('b');
    const before = await completedEvaluations();

    const response = await notify(
      notification('event-notification', [
        { fullUrl: `${t.fhirUrl}/Observation/${observation.id}`, resource: observation, request: { method: 'POST', url: 'Observation' }, response: { status: '201' } },
      ]),
    );
    expectAllOk(response);
    await t.drained();

    expect(await completedEvaluations()).toBe(before + PROGRAMS.length);
    await expectOneGuidanceResponsePerProgram(patientId);
    for (const job of await triggersOf(patientId)) expect(job.trigger).toEqual([`Observation/${observation.id}/_history/${observation.meta?.versionId}`]);
  });

  it('(c) handshake and heartbeat notifications answer 200 and queue nothing', async () => {
    await t.drained();
    const before = await allJobs();

    const handshake = await notify(notification('handshake', []));
    expectAllOk(handshake);
    expect(handshake.body.issue[0].diagnostics).toMatch(/^handshake/);

    const heartbeat = await notify(notification('heartbeat', []));
    expectAllOk(heartbeat);
    expect(heartbeat.body.issue[0].diagnostics).toMatch(/^heartbeat/);

    // A heartbeat in the SubscriptionStatus form (R4B-style status entry) is recognised too.
    const statusForm = notification('heartbeat', []);
    (statusForm.entry as fhir4.BundleEntry[])[0] = {
      fullUrl: `urn:uuid:${randomUUID()}`,
      resource: { resourceType: 'SubscriptionStatus', status: 'active', type: 'heartbeat', eventsSinceSubscriptionStart: '3', subscription: { reference: 'Subscription/forfait-adapter' } } as unknown as fhir4.Resource,
    };
    expectAllOk(await notify(statusForm));

    expect(await allJobs()).toBe(before);
  });

  it('(d) an R4 core rest-hook whose body is the resource itself queues the evaluations', async () => {
    const { patientId, observation } = await seedDirectly('d');
    const before = await completedEvaluations();

    const response = await notify(observation);
    expectAllOk(response);
    expect(response.body.issue[0].diagnostics).toMatch(/^resource: 1 patient/);
    await t.drained();

    expect(await completedEvaluations()).toBe(before + PROGRAMS.length);
    await expectOneGuidanceResponsePerProgram(patientId);
  });

  it('(e) an empty body (R4 core ping, content-length: 0) answers 200 and queues nothing', async () => {
    await t.drained();
    const before = await allJobs();

    for (const headers of [{}, { 'content-type': 'application/fhir+json' }] as Record<string, string>[]) {
      const response = await emptyPost('/hooks/subscription', headers);
      expect(response.status).toBe(200);
      expect(response.contentType).toMatch(/application\/fhir\+json/);
      const body = JSON.parse(response.body) as fhir4.OperationOutcome;
      expect(body.resourceType).toBe('OperationOutcome');
      expect(body.issue[0]?.diagnostics).toMatch(/^ping/);
    }
    expect(await allJobs()).toBe(before);
  });

  it('(f) an id-only entry on another server → 400 OperationOutcome, nothing queued', async () => {
    const { observation } = await seedDirectly('f');
    await t.drained();
    const before = await allJobs();

    const elsewhere = await notify(notification('event-notification', [idOnly('http://elsewhere.example/fhir/Observation/1')]));
    expectBadRequest(elsewhere);
    expect(elsewhere.body.issue[0].expression).toEqual(['Bundle.entry[1].fullUrl']);

    // One foreign entry after a good one rejects the whole notification: nothing half-queued.
    const mixed = await notify(
      notification('event-notification', [idOnly(`${t.fhirUrl}/Observation/${observation.id}`), idOnly('http://elsewhere.example/fhir/Observation/1')]),
    );
    expectBadRequest(mixed);
    expect(mixed.body.issue[0].expression).toEqual(['Bundle.entry[2].fullUrl']);

    // Same host, other path (not under the server's base): refused too.
    const origin = new URL(t.fhirUrl).origin;
    expectBadRequest(await notify(notification('event-notification', [idOnly(`${origin}/other-base/Observation/${observation.id}`)])));

    expect(await allJobs()).toBe(before);
  });

  it('(g) the same notification sent twice leads to no second evaluation', async () => {
    const { patientId, observation } = await seedDirectly('g');
    const body = notification('event-notification', [idOnly(`${t.fhirUrl}/Observation/${observation.id}`)]);

    expectAllOk(await notify(body));
    await t.drained();
    const completed = await completedEvaluations();
    const versions = (await expectOneGuidanceResponsePerProgram(patientId)).map((r) => `${r.id}@${r.meta?.versionId}`).sort();

    expectAllOk(await notify(body));
    await t.drained();
    expect(await completedEvaluations()).toBe(completed);
    const after = (await expectOneGuidanceResponsePerProgram(patientId)).map((r) => `${r.id}@${r.meta?.versionId}`).sort();
    expect(after).toEqual(versions);
  });
});

describe('POST /hooks/subscription: malformed notifications', () => {
  // BUG (src/http/app.ts, POST /hooks/subscription; src/app/notification.ts): the hook
  // checks no content type. A Subscription whose channel.payload is application/fhir+xml
  // (or any non-JSON body) is not parsed, `req.body` stays undefined, and handleNotification
  // reports it as a `ping`: 200, the notified data is silently dropped and the FHIR server
  // believes it delivered it. Expected 415 like the /fhir endpoints.
  it('an XML payload → 415, not a silent 200 "ping"', async () => {
    const { observation } = await seedDirectly('xml');
    await t.drained();
    const before = await allJobs();
    const response = await fetch(`${t.url}/hooks/subscription`, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+xml' },
      body: `<Observation xmlns="http://hl7.org/fhir"><id value="${observation.id}"/><status value="final"/></Observation>`,
    });
    expect(await allJobs()).toBe(before);
    expect(response.status).toBe(415);
  });

  // BUG (src/app/notification.ts, loop over `events`): `entry.resource` is read on each
  // entry without checking it is an object; a `null` entry throws a TypeError and the sender
  // gets 500 "Internal error" instead of a 400 naming the entry.
  it('a null event entry → 400, not 500', async () => {
    const body = notification('event-notification', []);
    (body.entry as unknown[]).push(null);
    const response = await notify(body);
    expect(response.body.resourceType).toBe('OperationOutcome');
    expect(response.status).toBe(400);
  });

  // BUG (src/app/notification.ts, `if (entry.resource) { add(...) }`): a full-resource event
  // entry is not checked for an id, unlike a bare resource body ("A notified resource needs
  // its id"): it is queued with the trigger `Observation/undefined`.
  it('a full-resource event entry without id → 400, nothing queued', async () => {
    const { patientId } = await seedDirectly('no-id');
    await t.drained();
    const before = await allJobs();
    const resource = quantityObservation(patientId, '39156-5', 27, 'kg/m2', '2026-10-01');
    const response = await notify(notification('event-notification', [{ fullUrl: `urn:uuid:${randomUUID()}`, resource }]));
    await t.drained();
    const triggers = (await triggersOf(patientId)).flatMap((job) => job.trigger);
    expect(triggers).not.toContain('Observation/undefined');
    expect(response.status).toBe(400);
    expect(await allJobs()).toBe(before);
  });
});
