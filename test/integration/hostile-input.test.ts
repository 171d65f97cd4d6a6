/**
 * Hostile input against the real service (issue #6, point 5): property-based, with fast-check.
 *
 * For each write endpoint and each family of hostile payloads (broken JSON, random JSON, a
 * wrong JSON type at one path of a valid base payload, prototype keys, control characters,
 * huge strings, deep or wide nesting, invalid ids in the path or the body, references to other
 * servers, wrong content types), every run must hold:
 * - the status is below 500, and an error is an OperationOutcome in application/fhir+json;
 * - the payload is refused: every generator breaks the payload (the JSON, a required element,
 *   an element's type, the content type...), so a 2xx is itself a finding. A batch Bundle
 *   answered 200 counts as refused when every entry was refused with an OperationOutcome;
 * - nothing was queued (the job counts of the evaluation, screening and claims queues, in
 *   every state) and nothing was written on the FHIR server (every create, update and delete
 *   of the embedded server's repository is counted), the audit trail aside (AuditEvents of
 *   refusals, Provenances written later by the audit queue).
 * Each cell also compares a fingerprint of the whole FHIR server (`Type/id@version` of every
 * resource of every R4 type) before and after.
 *
 * Reproduce: the seed is printed; `HOSTILE_RUNS` sets the runs per endpoint (300 by default,
 * about 3 900 requests in all). Cells listed in KNOWN_FAILURES fail today with the default seed
 * because of a bug named there (see BUGS): they run as `it.fails`, print their first
 * counterexample, and leave the list once the bug is fixed (it is empty today).
 * `HOSTILE_SEED=<n>` explores with another seed: known
 * cells are skipped, so every failure is a new finding (printed with `FINDING`, shrunk).
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import fc from 'fast-check';
import { getResourceTypes } from '@medplum/core';
import type { MemoryRepository } from '@medplum/fhir-router';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AUDIT_QUEUE } from '../../src/queue/audit.js';
import { CLAIMS_QUEUE } from '../../src/queue/claims.js';
import { EVALUATION_QUEUE, SCREENING_QUEUE } from '../../src/queue/queues.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import {
  enrolParameters,
  FNMF,
  readEnrolment,
  rediabConsent,
  seedFnmfPatient,
  seedTeam,
  sessionEncounter,
  shift,
  today,
  type SeededTeam,
} from '../fixtures/enrolment.js';
import { LOINC, UCUM } from '../fixtures/resources.js';
import { startTestService, type TestService } from './harness.js';

const DEFAULT_SEED = 20_260_606;
const SEED = Number(process.env['HOSTILE_SEED'] ?? DEFAULT_SEED);
/**
 * Another seed explores: KNOWN_FAILURES records what the default seed finds, so under another
 * seed the known cells are skipped and every failure printed is a new finding.
 */
const EXPLORING = SEED !== DEFAULT_SEED;
/**
 * Runs per endpoint, shared among the families that apply to it: about 3 900 requests in all,
 * 30-45 s. KNOWN_FAILURES holds for this number (fewer runs find fewer of the known bugs).
 */
const RUNS_PER_ENDPOINT = Number(process.env['HOSTILE_RUNS'] ?? 300);
/** Small enough that huge strings cross it cheaply (413), large enough for every base payload. */
const MAX_BODY_BYTES = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// JSON values and paths

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];
type Kind = 'null' | 'boolean' | 'number' | 'string' | 'array' | 'object';

const KINDS: readonly Kind[] = ['null', 'boolean', 'number', 'string', 'array', 'object'];

function kindOf(value: Json): Kind {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value as 'boolean' | 'number' | 'string' | 'object';
}

const clone = (value: Json): Json => JSON.parse(JSON.stringify(value)) as Json;

/** Every path of a value (the root excluded), depth first. */
function pathsOf(value: Json, prefix: Path = []): Path[] {
  const out: Path[] = [];
  if (Array.isArray(value)) {
    value.forEach((item, index) => {
      out.push([...prefix, index], ...pathsOf(item, [...prefix, index]));
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) out.push([...prefix, key], ...pathsOf(item, [...prefix, key]));
  }
  return out;
}

function getAt(value: Json, path: Path): Json | undefined {
  let current: Json | undefined = value;
  for (const step of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, Json>)[step];
  }
  return current;
}

/** A copy of `base` with `replacement` at `path` (missing objects and arrays on the way are created). */
function setAt(base: Json, path: Path, replacement: Json): Json {
  if (path.length === 0) return replacement;
  const root = clone(base);
  let current = root as Record<string | number, Json>;
  path.slice(0, -1).forEach((step, index) => {
    const next = current[step];
    if (next === null || typeof next !== 'object') current[step] = typeof path[index + 1] === 'number' ? [] : {};
    current = current[step] as Record<string | number, Json>;
  });
  current[path[path.length - 1] as string | number] = replacement;
  return root;
}

/** A copy of `base` with an own, enumerable member `key` (even `__proto__`) added to the object at `path`. */
function withMember(base: Json, path: Path, key: string, value: Json): Json {
  const root = clone(base);
  const target = (path.length ? getAt(root, path) : root) as Record<string, Json>;
  Object.defineProperty(target, key, { value, enumerable: true, configurable: true, writable: true });
  return root;
}

const pathText = (path: Path): string => path.map((step) => (typeof step === 'number' ? `[${step}]` : `.${step}`)).join('') || '(root)';

const PLACEHOLDER = `__hostile_${randomUUID()}__`;

/** JSON text of `base` with raw (possibly enormous or invalid) JSON text at `path`; no recursion on it. */
function withRawAt(base: Json, path: Path, raw: string): string {
  return JSON.stringify(setAt(base, path, PLACEHOLDER)).replace(JSON.stringify(PLACEHOLDER), () => raw);
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

interface HostileRequest {
  /** How the payload was made (family, path, what was put there). */
  label: string;
  /** Raw path as sent (no client-side normalisation of `..` or percent-escapes). */
  path: string;
  body: string;
  /** null: no Content-Type header. */
  contentType: string | null;
}

const short = (text: string, max = 300): string => (text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text);

function request(label: string, path: string, body: string, contentType: string | null = 'application/fhir+json'): HostileRequest {
  const made: HostileRequest = { label, path, body, contentType };
  // fast-check prints counterexamples with this: keep megabyte bodies readable.
  Object.defineProperty(made, fc.toStringMethod, {
    value: () => `POST ${path} [${contentType ?? 'no Content-Type'}] ${label}: ${short(body)}`,
    enumerable: false,
  });
  return made;
}

interface Answer {
  status: number;
  contentType: string;
  text: string;
  body: unknown;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function send(baseUrl: string, hostile: HostileRequest): Promise<Answer> {
  const url = new URL(baseUrl);
  const payload = Buffer.from(hostile.body, 'utf8');
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-length': String(payload.length) };
    if (hostile.contentType !== null) headers['content-type'] = hostile.contentType;
    const req = http.request({ host: url.hostname, port: url.port, method: 'POST', path: hostile.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text, body });
      });
      res.on('error', reject);
    });
    // A server answering 413 before reading the whole body may reset the connection: the answer still counts.
    req.on('error', reject);
    req.end(payload);
  });
}

// ---------------------------------------------------------------------------------------------
// The service and its seeded data

interface Context {
  patientId: string;
  gp: string;
  team: SeededTeam;
  enrolled: { patientId: string; episodeId: string; start: string };
  observationId: string;
  fhirUrl: string;
}

/** Written by the audit trail for every request, refused or not: not counted as writes. */
const AUDIT_TYPES: ReadonlySet<string> = new Set(['AuditEvent', 'Provenance']);

let t: TestService;
let ctx: Context;
/** Queues whose jobs a refused request must not add to. */
let queues: Queue[];
/** The audit queue: every request adds to it; waited for between cells so its writes land there. */
let auditQueue: Queue;
let repository: MemoryRepository;
let writes = 0;

async function jobCount(): Promise<number> {
  const counts = await Promise.all(
    queues.map((queue) => queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized', 'waiting-children')),
  );
  return counts.flatMap((c) => Object.values(c)).reduce((sum, n) => sum + n, 0);
}

/** Waits until no job is waiting or running (delayed retries and schedulers are left alone). */
async function settle(timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all([...queues, auditQueue].map((queue) => queue.getJobCounts('waiting', 'active', 'prioritized')));
    if (counts.every((c) => Object.values(c).every((n) => n === 0))) return;
    if (Date.now() > deadline) throw new Error(`queues not settled: ${JSON.stringify(counts)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** `Type/id@version` of every resource on the FHIR server (the audit trail's aside). */
async function fingerprint(): Promise<Set<string>> {
  const all = new Set<string>();
  for (const resourceType of getResourceTypes()) {
    if (AUDIT_TYPES.has(resourceType)) continue;
    const bundle = await repository.search({ resourceType, count: 1_000_000 });
    for (const entry of bundle.entry ?? []) {
      const resource = entry.resource;
      if (resource) all.add(`${resource.resourceType}/${resource.id ?? ''}@${resource.meta?.versionId ?? ''}`);
    }
  }
  return all;
}

beforeAll(async () => {
  t = await startTestService({ MAX_BODY_BYTES: String(MAX_BODY_BYTES) });
  const embedded = t.service.embeddedFhir;
  if (!embedded) throw new Error('this test needs the embedded FHIR server');
  repository = embedded.repository;
  // Count every write of the FHIR server (updates and patches go through createResource) but
  // the audit trail's (issue #6, point 4): every request, refused ones included, has its
  // AuditEvent, and the Provenance of a generated resource is written later by the audit queue
  // (the write of the resource itself is what counts).
  const create = repository.createResource.bind(repository);
  const remove = repository.deleteResource.bind(repository);
  repository.createResource = ((resource) => {
    if (!AUDIT_TYPES.has(resource.resourceType)) writes += 1;
    return create(resource);
  }) as typeof repository.createResource;
  repository.deleteResource = ((resourceType, id) => {
    if (!AUDIT_TYPES.has(resourceType)) writes += 1;
    return remove(resourceType, id);
  }) as typeof repository.deleteResource;

  const connection = redisOptionsFromUrl(t.service.redisUrl);
  queues = [EVALUATION_QUEUE, SCREENING_QUEUE, CLAIMS_QUEUE].map((name) => new Queue(name, { connection, prefix: t.prefix }));
  auditQueue = new Queue(AUDIT_QUEUE, { connection, prefix: t.prefix });

  const team = await seedTeam(t, 'hostile');
  const patientId = await seedFnmfPatient(t, team, 'hostile-eligible');
  const enrolledPatient = await seedFnmfPatient(t, team, 'hostile-enrolled');
  const start = shift(today(), { months: -1 });
  const enrolment = readEnrolment(await t.post(`/fhir/Patient/${enrolledPatient}/$enroll`, enrolParameters({ program: FNMF, start, team: team.as() })));
  const observations = (await t.fhirGet(`Observation?subject=Patient/${patientId}`)) as fhir4.Bundle;
  const observationId = observations.entry?.[0]?.resource?.id;
  if (!observationId) throw new Error('no seeded Observation');
  ctx = {
    patientId,
    gp: team.member('gp').reference,
    team,
    enrolled: { patientId: enrolledPatient, episodeId: enrolment.episodeId, start },
    observationId,
    fhirUrl: t.fhirUrl,
  };
  await settle();
  console.info(`hostile-input: fast-check seed ${SEED} (HOSTILE_SEED to replay), ${RUNS_PER_ENDPOINT} runs per endpoint`);
});

afterAll(async () => {
  agent.destroy();
  await Promise.all([...(queues ?? []), ...(auditQueue ? [auditQueue] : [])].map((queue) => queue.close()));
  await t?.stop();
});

beforeEach(async () => {
  await settle();
  jobsAfterLastRun = undefined;
});

// ---------------------------------------------------------------------------------------------
// Endpoints: a valid base payload each (every generator breaks it), the id in their path

interface Endpoint {
  name: string;
  /** Path for a (raw, already percent-encoded) id; endpoints without an id ignore it. */
  path(id?: string): string;
  /** Whether the path carries an id. */
  idInPath: boolean;
  base(): unknown;
  /** Paths in the base of `reference` strings (or absolute URLs to resources) an attacker could point elsewhere. */
  referencePaths(): Path[];
  /** Paths where an id could go in the body (`id`, the id part of a reference). */
  idPaths(): { path: Path; format: (id: string) => string }[];
}

/** The base payload as plain JSON (a fresh copy). */
const baseOf = (endpoint: Endpoint): Json => JSON.parse(JSON.stringify(endpoint.base())) as Json;

const glucose = (patientId: string, identifier: string): Record<string, unknown> => ({
  resourceType: 'Observation',
  identifier: [{ system: 'urn:test:hostile-observation', value: identifier }],
  status: 'final',
  code: { coding: [{ system: LOINC, code: '1558-6' }] },
  subject: { reference: `Patient/${patientId}` },
  effectiveDateTime: shift(today(), { days: -3 }),
  valueQuantity: { value: 1.1, unit: 'g/L', system: UCUM, code: 'g/L' },
  performer: [{ reference: ctx.gp }],
});

const SNOMED = 'http://snomed.info/sct';

const ENDPOINTS: Endpoint[] = [
  {
    name: 'POST /fhir/Patient',
    path: () => '/fhir/Patient',
    idInPath: false,
    base: () => ({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:test:hostile-patient', value: 'hp-1' }],
      active: true,
      name: [{ family: 'Hostile', given: ['Base'] }],
      gender: 'female',
      birthDate: '1970-03-15',
      address: [{ use: 'home', postalCode: '75015', country: 'FR' }],
      generalPractitioner: [{ reference: ctx.gp }],
    }),
    referencePaths: () => [['generalPractitioner', 0, 'reference'], ['managingOrganization', 'reference']],
    idPaths: () => [
      { path: ['id'], format: (id) => id },
      { path: ['generalPractitioner', 0, 'reference'], format: (id) => `PractitionerRole/${id}` },
    ],
  },
  {
    name: 'POST /fhir/Observation',
    path: () => '/fhir/Observation',
    idInPath: false,
    base: () => glucose(ctx.patientId, 'ho-1'),
    referencePaths: () => [['subject', 'reference'], ['performer', 0, 'reference'], ['specimen', 'reference']],
    idPaths: () => [
      { path: ['id'], format: (id) => id },
      { path: ['subject', 'reference'], format: (id) => `Patient/${id}` },
      { path: ['performer', 0, 'reference'], format: (id) => `PractitionerRole/${id}` },
    ],
  },
  {
    name: 'POST /fhir/Condition',
    path: () => '/fhir/Condition',
    idInPath: false,
    base: () => ({
      resourceType: 'Condition',
      identifier: [{ system: 'urn:test:hostile-condition', value: 'hc-1' }],
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
      verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
      code: { coding: [{ system: SNOMED, code: '44054006', display: 'Diabetes mellitus type 2' }] },
      subject: { reference: `Patient/${ctx.patientId}` },
      onsetDateTime: shift(today(), { years: -3 }),
    }),
    referencePaths: () => [['subject', 'reference'], ['asserter', 'reference']],
    idPaths: () => [
      { path: ['id'], format: (id) => id },
      { path: ['subject', 'reference'], format: (id) => `Patient/${id}` },
    ],
  },
  {
    name: 'POST /fhir/Coverage',
    path: () => '/fhir/Coverage',
    idInPath: false,
    base: () => ({
      resourceType: 'Coverage',
      identifier: [{ system: 'urn:test:hostile-coverage', value: 'hcov-1' }],
      status: 'active',
      beneficiary: { reference: `Patient/${ctx.patientId}` },
      payor: [{ reference: `Organization/${ctx.team.organizationId}` }],
    }),
    referencePaths: () => [['beneficiary', 'reference'], ['payor', 0, 'reference'], ['subscriber', 'reference']],
    idPaths: () => [
      { path: ['id'], format: (id) => id },
      { path: ['beneficiary', 'reference'], format: (id) => `Patient/${id}` },
      { path: ['payor', 0, 'reference'], format: (id) => `Organization/${id}` },
    ],
  },
  {
    name: 'POST /fhir/Consent',
    path: () => '/fhir/Consent',
    idInPath: false,
    base: () => rediabConsent(ctx.patientId, 'hcons-1'),
    referencePaths: () => [['patient', 'reference'], ['performer', 0, 'reference'], ['organization', 0, 'reference']],
    idPaths: () => [
      { path: ['id'], format: (id) => id },
      { path: ['patient', 'reference'], format: (id) => `Patient/${id}` },
    ],
  },
  {
    name: 'POST /fhir (transaction)',
    path: () => '/fhir',
    idInPath: false,
    base: () => {
      const patient = 'urn:uuid:0d8a3c6e-5b7f-4d0e-9a51-3f0e8a6c2b11';
      return {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: patient,
            resource: {
              resourceType: 'Patient',
              identifier: [{ system: 'urn:test:hostile-patient', value: 'hbp-1' }],
              gender: 'male',
              birthDate: '1960-01-01',
              generalPractitioner: [{ reference: ctx.gp }],
            },
            request: { method: 'POST', url: 'Patient' },
          },
          {
            fullUrl: 'urn:uuid:2c1f6a0b-8e4d-4f3a-b7c2-9d5e1a0f3b22',
            resource: { ...glucose(ctx.patientId, 'hbo-1'), subject: { reference: patient } },
            request: { method: 'POST', url: 'Observation' },
          },
        ],
      };
    },
    referencePaths: () => [
      ['entry', 0, 'resource', 'generalPractitioner', 0, 'reference'],
      ['entry', 1, 'resource', 'subject', 'reference'],
      ['entry', 1, 'resource', 'performer', 0, 'reference'],
    ],
    idPaths: () => [
      { path: ['entry', 0, 'resource', 'id'], format: (id) => id },
      { path: ['entry', 1, 'resource', 'performer', 0, 'reference'], format: (id) => `PractitionerRole/${id}` },
      { path: ['entry', 1, 'request', 'url'], format: (id) => `Observation/${id}` },
    ],
  },
  {
    // Resource types the programs do not read are stored as given (a Synthea bundle holds many).
    name: 'POST /fhir (batch of other types)',
    path: () => '/fhir',
    idInPath: false,
    base: () => ({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        {
          resource: {
            resourceType: 'Encounter',
            identifier: [{ system: 'urn:test:hostile-encounter', value: 'hbe-1' }],
            status: 'finished',
            class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
            subject: { reference: `Patient/${ctx.patientId}` },
            period: { start: `${shift(today(), { days: -2 })}T10:00:00+01:00` },
          },
          request: { method: 'POST', url: 'Encounter' },
        },
      ],
    }),
    referencePaths: () => [['entry', 0, 'resource', 'subject', 'reference'], ['entry', 0, 'resource', 'serviceProvider', 'reference']],
    idPaths: () => [
      { path: ['entry', 0, 'resource', 'id'], format: (id) => id },
      { path: ['entry', 0, 'resource', 'subject', 'reference'], format: (id) => `Patient/${id}` },
    ],
  },
  {
    name: 'POST /fhir/Encounter',
    path: () => '/fhir/Encounter',
    idInPath: false,
    base: () =>
      sessionEncounter({
        patientId: ctx.enrolled.patientId,
        episodeId: ctx.enrolled.episodeId,
        kind: 'apa-group',
        date: shift(ctx.enrolled.start, { days: 7 }),
        member: { reference: ctx.team.member('apa-teacher').reference, role: 'apa-teacher' },
        identifier: 'hostile-session-1',
      }),
    referencePaths: () => [['subject', 'reference'], ['episodeOfCare', 0, 'reference'], ['participant', 0, 'individual', 'reference'], ['serviceProvider', 'reference']],
    idPaths: () => [
      { path: ['id'], format: (id) => id },
      { path: ['episodeOfCare', 0, 'reference'], format: (id) => `EpisodeOfCare/${id}` },
      { path: ['participant', 0, 'individual', 'reference'], format: (id) => `PractitionerRole/${id}` },
    ],
  },
  {
    name: 'POST /fhir/Patient/{id}/$enroll',
    path: (id = ctx.patientId) => `/fhir/Patient/${id}/$enroll`,
    idInPath: true,
    base: () => enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: ctx.team.as() }),
    referencePaths: () => [['parameter', 2, 'part', 0, 'valueReference', 'reference']],
    idPaths: () => [{ path: ['parameter', 2, 'part', 0, 'valueReference', 'reference'], format: (id) => `PractitionerRole/${id}` }],
  },
  {
    name: 'POST /fhir/Patient/{id}/$evaluate-eligibility',
    path: (id = ctx.patientId) => `/fhir/Patient/${id}/$evaluate-eligibility`,
    idInPath: true,
    base: () => ({
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: FNMF },
        { name: 'asOf', valueDate: today() },
      ],
    }),
    referencePaths: () => [],
    idPaths: () => [],
  },
  {
    name: 'POST /fhir/$screen',
    path: () => '/fhir/$screen',
    idInPath: false,
    base: () => ({
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: FNMF },
        { name: 'asOf', valueDate: today() },
        { name: 'patient', valueReference: { reference: `Patient/${ctx.patientId}` } },
      ],
    }),
    referencePaths: () => [['parameter', 2, 'valueReference', 'reference']],
    idPaths: () => [{ path: ['parameter', 2, 'valueReference', 'reference'], format: (id) => `Patient/${id}` }],
  },
  {
    // Subscriptions Backport IG, id-only: the adapter reads the notified resource back from the server of record.
    name: 'POST /hooks/subscription',
    path: () => '/hooks/subscription',
    idInPath: false,
    base: () => ({
      resourceType: 'Bundle',
      type: 'history',
      timestamp: `${today()}T10:00:00+01:00`,
      entry: [
        {
          fullUrl: 'urn:uuid:7f0c2a1e-3d4b-4c5a-8e6f-1a2b3c4d5e6f',
          resource: {
            resourceType: 'Parameters',
            parameter: [
              { name: 'subscription', valueReference: { reference: 'Subscription/hostile' } },
              { name: 'status', valueCode: 'active' },
              { name: 'type', valueCode: 'event-notification' },
              { name: 'events-since-subscription-start', valueString: '1' },
            ],
          },
          request: { method: 'GET', url: 'Subscription/hostile/$status' },
          response: { status: '200' },
        },
        {
          fullUrl: `${ctx.fhirUrl}/Observation/${ctx.observationId}`,
          request: { method: 'PUT', url: `Observation/${ctx.observationId}` },
          response: { status: '200' },
        },
      ],
    }),
    referencePaths: () => [['entry', 1, 'fullUrl'], ['entry', 0, 'resource', 'parameter', 0, 'valueReference', 'reference']],
    idPaths: () => [{ path: ['entry', 1, 'fullUrl'], format: (id) => `${ctx.fhirUrl}/Observation/${id}` }],
  },
  {
    name: 'POST /fhir/EpisodeOfCare/{id}/$exit',
    path: (id = ctx.enrolled.episodeId) => `/fhir/EpisodeOfCare/${id}/$exit`,
    idInPath: true,
    base: () => ({
      resourceType: 'Parameters',
      parameter: [
        { name: 'reason', valueCode: 'withdrew' },
        { name: 'date', valueDate: today() },
      ],
    }),
    referencePaths: () => [],
    idPaths: () => [],
  },
];

// ---------------------------------------------------------------------------------------------
// Generators

const anyJson = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>;

const OF_KIND: Record<Kind, fc.Arbitrary<Json>> = {
  null: fc.constant(null),
  boolean: fc.boolean(),
  number: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
  string: fc.string({ maxLength: 12 }),
  array: fc.array(anyJson, { maxLength: 3 }),
  object: fc.dictionary(fc.string({ maxLength: 8 }), anyJson, { maxKeys: 3 }),
};

/** A value of another JSON type than `value`'s. */
const otherKind = (value: Json): fc.Arbitrary<Json> => fc.oneof(...KINDS.filter((kind) => kind !== kindOf(value)).map((kind) => OF_KIND[kind]));

/** C0 controls other than tab, CR and LF: no FHIR string may hold them. */
const CONTROL = fc.constantFrom('\u0000', '\u0001', '\u0007', '\u0008', '\u000b', '\u000c', '\u001b', '\u001f');

const controlString = fc
  .tuple(fc.string({ unit: 'binary', maxLength: 16 }), CONTROL, fc.string({ unit: 'binary', maxLength: 16 }))
  .map(([before, control, after]) => `${before}${control}${after}`);

/** 40 KB to 1.5 MB (the body limit is 1 MB): one repeated character, a NUL somewhere. */
const hugeString = fc
  .tuple(fc.integer({ min: 40_000, max: 1_500_000 }), fc.constantFrom('a', 'é', '😀', ' ', '"', '\\'), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([length, unit, at]) => {
    const text = unit.repeat(Math.ceil(length / unit.length));
    const position = Math.floor(at * text.length);
    return `${text.slice(0, position)}\u0000${text.slice(position)}`;
  });

/** Raw JSON text nesting deep (up to 250 000 levels) or wide (up to 60 000 items). */
const oversized = fc.oneof(
  fc
    .tuple(fc.oneof(fc.integer({ min: 20, max: 3_000 }), fc.constantFrom(10_000, 100_000, 250_000)), fc.constantFrom('array', 'object', 'mixed'))
    .map(([depth, shape]) => {
      if (shape === 'array') return { text: '['.repeat(depth) + ']'.repeat(depth), what: `${depth} nested arrays` };
      if (shape === 'object') return { text: '{"a":'.repeat(depth) + '1' + '}'.repeat(depth), what: `${depth} nested objects` };
      return { text: '[{"a":'.repeat(depth / 2) + 'null' + '}]'.repeat(depth / 2), what: `${depth} nested arrays/objects` };
    }),
  // Up to 60 000 items: past a 50 000-item guard; wider arrays are pinned in `targeted` (each costs seconds today).
  fc.integer({ min: 10_000, max: 60_000 }).map((items) => ({ text: `[${'0,'.repeat(items - 1)}0]`, what: `an array of ${items} items` })),
);

/** Ids no FHIR server may see in a URL: traversal, encoded separators, over 64 characters, other characters. */
const invalidIdInPath = fc.oneof(
  fc.constantFrom(
    '..',
    '.',
    '%2e%2e',
    '%2E',
    '..%2F..%2Fmetadata',
    '..%2F..%2FPatient',
    'a%2Fb',
    '%2F',
    '%5C..%5C',
    'a/b',
    '%00',
    'a%00b',
    '%E9',
    '%C0%AE%C0%AE',
    '%ZZ',
    '%',
    'a%3Fb%3D1',
    'a%23b',
    '%20',
    'a%20b',
    '__proto__',
    'a%2Cb',
    'a%7Cb',
    'a%24b',
    '%3Cscript%3E',
    "a'b",
  ),
  fc.string({ unit: fc.constantFrom('a', 'Z', '0', '-', '.'), minLength: 65, maxLength: 120 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }).filter((s) => !/^[A-Za-z0-9\-.]{1,64}$/.test(s)).map((s) => encodeURIComponent(s)),
);

/** The same, as they would appear decoded in a body. */
const invalidIdInBody = fc.oneof(
  fc.constantFrom('..', '.', '../x', '../../Patient', 'a/b', '', ' ', 'a b', 'a,b', 'a|b', 'a$b', 'a?b=1', 'a#b', '__proto__', 'é', '\u0000'),
  fc.string({ unit: fc.constantFrom('a', 'Z', '0', '-', '.'), minLength: 65, maxLength: 120 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }).filter((s) => !/^[A-Za-z0-9\-.]{1,64}$/.test(s)),
);

/** Absolute URLs to somewhere else than this server (and non-literal forms). */
const foreignReference = fc.oneof(
  fc.tuple(fc.constantFrom('https', 'http'), fc.constantFrom('other.example', 'evil.example:8443', '127.0.0.1:1', '169.254.169.254', '[::1]'), fc.constantFrom('Patient', 'Practitioner', 'PractitionerRole', 'Organization', 'EpisodeOfCare', 'Observation'), fc.stringMatching(/^[a-z0-9]{1,8}$/))
    .map(([scheme, host, type, id]) => `${scheme}://${host}/fhir/${type}/${id}`),
  fc.constantFrom('//other.example/fhir/Patient/1', 'file:///etc/passwd', 'ftp://other.example/Patient/1', 'urn:uuid:not-a-uuid', 'urn:other:Patient/1', 'Patient?identifier=urn:x|1', 'javascript:alert(1)', 'data:application/fhir+json,{}'),
);

const BAD_CONTENT_TYPES = [
  'application/fhir+json; charset=latin1',
  'application/fhir+json; charset=iso-8859-1',
  'application/fhir+json; charset=utf-16',
  'application/json; charset=utf-16le',
  'application/fhir+json; charset=utf-8; charset=latin1',
  'application/fhir+json; boundary=x',
  'application/json; foo=bar',
  'application/fhir+json; fhirVersion=3.0',
  'application/fhir+xml',
  'application/xml',
  'text/xml',
  'text/plain',
  'text/json',
  'text/html',
  'multipart/form-data; boundary=----hostile',
  'multipart/mixed; boundary=x',
  'application/x-www-form-urlencoded',
  'application/octet-stream',
  'application/json-patch+json',
  'application/merge-patch+json',
  'application/ld+json',
  'application/fhir+json5',
  'application/*',
  '*/*',
  'json',
  '',
];

// ---------------------------------------------------------------------------------------------
// Families

interface Family {
  name: string;
  /** The status a refusal must have, when only one is right. */
  status?: number;
  applies(endpoint: Endpoint): boolean;
  requests(endpoint: Endpoint): fc.Arbitrary<HostileRequest>;
}

const stringPaths = (base: Json): Path[] => pathsOf(base).filter((path) => typeof getAt(base, path) === 'string');
const objectPaths = (base: Json): Path[] => [[], ...pathsOf(base).filter((path) => kindOf(getAt(base, path) as Json) === 'object')];

const FAMILIES: Family[] = [
  {
    name: 'broken JSON',
    applies: () => true,
    requests: (endpoint) => {
      const text = JSON.stringify(baseOf(endpoint));
      return fc
        .oneof(
          fc.integer({ min: 1, max: text.length - 1 }).map((cut) => ({ body: text.slice(0, cut), how: `base cut at ${cut}` })),
          fc
            .tuple(fc.integer({ min: 0, max: text.length }), fc.constantFrom('{', '[', '"', ',', ':', '}', ']', '\\', 'x', '\u0000', "'", 'NaN'))
            .map(([at, inserted]) => ({ body: text.slice(0, at) + inserted + text.slice(at), how: `${JSON.stringify(inserted)} inserted at ${at}` })),
          fc.constantFrom("{'resourceType':'Parameters'}", '{"a":1,}', '[1,]', '{"a" 1}', 'NaN', 'undefined', '{"a":01}', '{"a":"\\x41"}', '{"a":"\u0001"}', '\u0000', '{"a":1}{"b":2}').map((body) => ({ body, how: 'invalid JSON' })),
          fc.string({ unit: 'binary', minLength: 1, maxLength: 60 }).map((body) => ({ body, how: 'random text' })),
        )
        .filter(({ body }) => body.trim() !== '' && !parses(body))
        .map(({ body, how }) => request(`broken JSON (${how})`, endpoint.path(), body));
    },
  },
  {
    name: 'random JSON',
    applies: () => true,
    requests: (endpoint) => {
      const type = (baseOf(endpoint) as { resourceType: string }).resourceType;
      return fc
        .oneof(
          anyJson.map((value) => ({ value, how: 'any JSON' })),
          fc.dictionary(fc.string({ maxLength: 10 }), anyJson, { maxKeys: 4 }).map((junk) => ({ value: { ...junk, resourceType: type, 'x-hostile': true } as Json, how: `a ${type} of junk` })),
          fc.dictionary(fc.string({ maxLength: 10 }), anyJson, { maxKeys: 4 }).map((junk) => ({ value: { resourceType: type, ...junk, parameter: [junk] } as Json, how: 'junk parameters' })),
        )
        // `{}` is an R4 core rest-hook ping (and an empty Parameters): not hostile.
        .filter(({ value }) => !(kindOf(value) === 'object' && Object.keys(value as object).length === 0))
        .map(({ value, how }) => request(`random JSON (${how})`, endpoint.path(), JSON.stringify(value)));
    },
  },
  {
    name: 'a wrong JSON type at one path',
    applies: () => true,
    requests: (endpoint) => {
      const base = baseOf(endpoint);
      return fc
        .constantFrom(...pathsOf(base))
        .chain((path) => otherKind(getAt(base, path) as Json).map((value) => ({ path, value })))
        .map(({ path, value }) => request(`${pathText(path)} = ${short(JSON.stringify(value), 60)}`, endpoint.path(), JSON.stringify(setAt(base, path, value))));
    },
  },
  {
    name: 'prototype keys',
    applies: () => true,
    requests: (endpoint) => {
      const base = baseOf(endpoint);
      return fc
        .tuple(fc.constantFrom(...objectPaths(base)), fc.constantFrom('__proto__', 'constructor', 'prototype'), fc.oneof(OF_KIND.object, anyJson))
        .map(([path, key, value]) => request(`${pathText(path)}.${key} = ${short(JSON.stringify(value), 60)}`, endpoint.path(), JSON.stringify(withMember(base, path, key, value))));
    },
  },
  {
    name: 'control characters in a string',
    applies: () => true,
    requests: (endpoint) => {
      const base = baseOf(endpoint);
      return fc
        .tuple(fc.constantFrom(...stringPaths(base)), controlString)
        .map(([path, value]) => request(`${pathText(path)} = ${JSON.stringify(value)}`, endpoint.path(), JSON.stringify(setAt(base, path, value))));
    },
  },
  {
    name: 'huge strings',
    applies: () => true,
    requests: (endpoint) => {
      const base = baseOf(endpoint);
      return fc
        .tuple(fc.constantFrom(...stringPaths(base)), hugeString)
        .map(([path, value]) => request(`${pathText(path)} = a string of ${value.length} characters with a NUL`, endpoint.path(), JSON.stringify(setAt(base, path, value))));
    },
  },
  {
    name: 'deep or wide nesting',
    applies: () => true,
    requests: (endpoint) => {
      const base = baseOf(endpoint);
      return fc
        .tuple(fc.constantFrom(...pathsOf(base)), oversized)
        .map(([path, { text, what }]) => request(`${pathText(path)} = ${what}`, endpoint.path(), withRawAt(base, path, text)));
    },
  },
  {
    name: 'invalid ids',
    applies: (endpoint) => endpoint.idInPath || endpoint.idPaths().length > 0,
    requests: (endpoint) => {
      const base = baseOf(endpoint);
      const inBody = endpoint.idPaths();
      const inPath = invalidIdInPath.map((id) => request(`id in the path: ${JSON.stringify(id)}`, endpoint.path(id), JSON.stringify(base)));
      const inBodyArbitrary = inBody.length
        ? fc.tuple(fc.constantFrom(...inBody), invalidIdInBody).map(([{ path, format }, id]) => request(`${pathText(path)} = ${JSON.stringify(format(id))}`, endpoint.path(), JSON.stringify(setAt(base, path, format(id)))))
        : undefined;
      if (endpoint.idInPath && inBodyArbitrary) return fc.oneof(inPath, inBodyArbitrary);
      return endpoint.idInPath ? inPath : (inBodyArbitrary as fc.Arbitrary<HostileRequest>);
    },
  },
  {
    name: 'references to other servers',
    applies: (endpoint) => endpoint.referencePaths().length > 0,
    requests: (endpoint) => {
      const base = baseOf(endpoint);
      return fc
        .tuple(fc.constantFrom(...endpoint.referencePaths()), foreignReference)
        .map(([path, reference]) => request(`${pathText(path)} = ${JSON.stringify(reference)}`, endpoint.path(), JSON.stringify(setAt(base, path, reference))));
    },
  },
  {
    name: 'wrong content types',
    status: 415,
    applies: () => true,
    requests: (endpoint) => {
      const body = JSON.stringify(baseOf(endpoint));
      return fc
        .oneof(
          fc.constantFrom<string | null>(null, ...BAD_CONTENT_TYPES),
          fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }).filter((type) => /^[\x21-\x7e][\x20-\x7e]*$/.test(type) && !/^\s*application\/(fhir\+)?json\s*(;\s*charset="?utf-8"?\s*)?$/i.test(type)),
        )
        .map((contentType) => request(`Content-Type ${JSON.stringify(contentType)}`, endpoint.path(), body, contentType));
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Known failures: cells that fail today, with the bug (see the report of issue #6)

/**
 * The bugs this test has found and that are not fixed yet, each with its cause. Every bug it
 * found in issue #6 is fixed (a create taking the client's id, unescaped identifier tokens,
 * unmounted guards, the validator's JSON kinds and ids, unchecked references, Parameters,
 * Bundle entries and rest-hook payloads, dot-segment ids): the list is empty, and a new finding
 * goes here with its cell in KNOWN_FAILURES until it is fixed.
 */
const BUGS: Record<string, string> = {};
type Bug = keyof typeof BUGS;

/** `endpoint × family` → the bugs that make it fail today; remove a line when its bugs are fixed. */
const KNOWN_FAILURES: Record<string, Bug[]> = {};

function knownBugs(cell: string): Bug[] {
  return KNOWN_FAILURES[cell] ?? [];
}

// ---------------------------------------------------------------------------------------------
// The property

interface Verdict {
  problems: string[];
  answer: Answer;
}

const isOutcome = (body: unknown): boolean => (body as { resourceType?: unknown } | undefined)?.resourceType === 'OperationOutcome';

/** A 200 batch-response whose every entry was refused with an OperationOutcome. */
function refusedBatch(answer: Answer): boolean {
  const bundle = answer.body as fhir4.Bundle | undefined;
  if (answer.status !== 200 || bundle?.resourceType !== 'Bundle' || bundle.type !== 'batch-response') return false;
  return (bundle.entry ?? []).every((entry) => /^4\d\d/.test(entry.response?.status ?? '') && isOutcome(entry.response?.outcome));
}

/** Job count after the last run (each run's count after is the next one's count before). */
let jobsAfterLastRun: number | undefined;

async function attempt(family: Family, hostile: HostileRequest): Promise<Verdict> {
  const [jobsBefore, writesBefore] = [jobsAfterLastRun ?? (await jobCount()), writes];
  const answer = await send(t.url, hostile);
  const problems: string[] = [];
  if (answer.status >= 500) problems.push(`answered ${answer.status}`);
  if (answer.status >= 400 && !isOutcome(answer.body)) problems.push(`error ${answer.status} without an OperationOutcome`);
  if (answer.status >= 400 && !/^application\/fhir\+json/.test(answer.contentType)) problems.push(`error ${answer.status} as "${answer.contentType}"`);
  if (answer.status < 400 && !refusedBatch(answer)) problems.push(`accepted (${answer.status})`);
  if (family.status !== undefined && answer.status !== family.status && answer.status < 500) problems.push(`expected ${family.status}, got ${answer.status}`);
  // Retention may remove old jobs meanwhile: only an increase is a job queued.
  jobsAfterLastRun = await jobCount();
  const queued = jobsAfterLastRun - jobsBefore;
  if (queued > 0) problems.push(`queued ${queued} job(s)`);
  const written = writes - writesBefore;
  if (written) problems.push(`wrote ${written} resource version(s)`);
  // Leave no work behind for the next run to be blamed for.
  if (queued > 0) await settle();
  return { problems, answer };
}

function cellRuns(endpoint: Endpoint): number {
  const families = FAMILIES.filter((family) => family.applies(endpoint)).length;
  return Math.max(5, Math.round(RUNS_PER_ENDPOINT / families));
}

describe.each(ENDPOINTS)('$name', (endpoint) => {
  for (const family of FAMILIES.filter((f) => f.applies(endpoint))) {
    const cell = `${endpoint.name} × ${family.name}`;
    const bugs = knownBugs(cell);
    const known = bugs.length ? bugs.map((bug) => BUGS[bug]).join('; ') : undefined;
    const test = known ? (EXPLORING ? it.skip : it.fails) : it;
    test(`${family.name}${known ? ` — known bugs: ${bugs.join(', ')}` : ''}`, async () => {
      const before = await fingerprint();
      let last: { hostile: HostileRequest; verdict: Verdict } | undefined;
      try {
        await fc.assert(
          fc.asyncProperty(family.requests(endpoint), async (hostile) => {
            const verdict = await attempt(family, hostile);
            if (verdict.problems.length) {
              last = { hostile, verdict };
              throw new Error(verdict.problems.join('; '));
            }
          }),
          // A known failure is reported as found (shrinking a request that writes and queues is slow); a new one is shrunk.
          { numRuns: cellRuns(endpoint), seed: SEED, endOnFailure: known !== undefined || process.env['HOSTILE_NO_SHRINK'] === '1' },
        );
      } catch (error) {
        if (last) {
          console.warn(
            [
              `FINDING ${cell}: ${last.verdict.problems.join('; ')}`,
              `  request: POST ${last.hostile.path} [${last.hostile.contentType ?? 'no Content-Type'}] ${last.hostile.label}`,
              `  body: ${short(last.hostile.body, 400)}`,
              `  answer: ${last.verdict.answer.status} ${short(last.verdict.answer.text, 400)}`,
              `  replay: HOSTILE_SEED=${SEED}`,
            ].join('\n'),
          );
        }
        throw error;
      }
      await settle();
      const after = await fingerprint();
      const added = [...after].filter((key) => !before.has(key));
      const removed = [...before].filter((key) => !after.has(key));
      expect({ added, removed }, 'the FHIR server changed').toEqual({ added: [], removed: [] });
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Findings that need a particular setting rather than random payloads

describe('targeted', () => {
  it('search syntax in an identifier cannot steer a conditional create onto another patient (identifier search injection)', async () => {
    const victim = await t.post('/fhir/Patient', {
      resourceType: 'Patient',
      identifier: [{ system: 'urn:test:victim', value: 'victim-1' }],
      name: [{ family: 'Victim' }],
      birthDate: '1950-01-01',
    });
    expect(victim.status).toBe(201);
    // identifier=urn:test:attacker|nobody,victim-1 reads "urn:test:attacker|nobody OR victim-1 in any system".
    const attacker = await t.post('/fhir/Patient', { resourceType: 'Patient', identifier: [{ system: 'urn:test:attacker', value: 'nobody,victim-1' }], gender: 'male' });
    expect(attacker.status, JSON.stringify(attacker.body)).toBeLessThan(500);
    expect(attacker.body?.id).not.toBe(victim.body.id);
    expect(JSON.stringify(attacker.body)).not.toContain('Victim');
  });

  it('a client-supplied id on create never overwrites another resource (the create forwards Resource.id)', async () => {
    const victim = await t.post('/fhir/Patient', { resourceType: 'Patient', identifier: [{ system: 'urn:test:victim', value: 'victim-2' }], name: [{ family: 'Victim' }] });
    expect(victim.status).toBe(201);
    const attacker = await t.post('/fhir/Patient', { resourceType: 'Patient', id: victim.body.id, identifier: [{ system: 'urn:test:attacker', value: 'attacker-2' }], name: [{ family: 'Overwritten' }] });
    expect(attacker.status).toBeLessThan(500);
    const stored = (await t.fhirGet(`Patient/${victim.body.id as string}`)) as fhir4.Patient;
    expect(stored.name?.[0]?.family).toBe('Victim');
  });

  // Found with other seeds (HOSTILE_SEED=1, 42): pinned here so the default seed keeps them.
  it('an array of 130 000 wrong items is refused, not a 500 (validation.ts spreads every issue into push)', async () => {
    const patient = { resourceType: 'Patient', identifier: [{ system: 'urn:test:wide', value: 'wide-1' }], name: [{ given: new Array(130_000).fill(0) }] };
    const response = await send(t.url, request('130 000 numbers in Patient.name[0].given', '/fhir/Patient', JSON.stringify(patient)));
    expect(response.status, short(response.text)).toBeGreaterThanOrEqual(400);
    expect(response.status, short(response.text)).toBeLessThan(500);
  });

  it('a NUL in Identifier.system is refused (the validator checks control characters in string elements only)', async () => {
    const before = writes;
    const response = await t.post('/fhir/Patient', { resourceType: 'Patient', identifier: [{ system: 'urn:test:\u0000nul', value: 'nul-1' }], gender: 'female' });
    expect(response.status).toBe(400);
    expect(writes).toBe(before);
  });

  it('a refusal lists a bounded number of issues (a 280 KB body was answered with a 6 MB OperationOutcome)', async () => {
    const condition = {
      resourceType: 'Condition',
      subject: { reference: `Patient/${ctx.patientId}` },
      code: { coding: [new Array(40_000).fill(0)] },
    };
    const response = await send(t.url, request('40 000 numbers in Condition.code.coding[0]', '/fhir/Condition', JSON.stringify(condition)));
    expect(response.status).toBe(400);
    expect((response.body as fhir4.OperationOutcome).issue.length).toBeLessThanOrEqual(100);
  });

  it('Parameters.parameter.part that is not an array is a 400, not a 500 (parameters)', async () => {
    const response = await t.post(`/fhir/Patient/${ctx.patientId}/$enroll`, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: FNMF },
        { name: 'start', valueDate: today() },
        { name: 'careTeam', part: { name: 'member' } },
      ],
    });
    expect(response.status).toBe(400);
  });

  it('a resource notification naming a resource the server of record does not hold queues nothing (the hook trusted the payload)', async () => {
    await settle();
    const before = await jobCount();
    const response = await t.post('/hooks/subscription', {
      resourceType: 'Observation',
      id: `no-such-observation-${randomUUID()}`,
      status: 42,
      subject: { reference: `Patient/${ctx.patientId}` },
    });
    expect(response.status).toBeLessThan(500);
    expect(await jobCount()).toBe(before);
  });
});
