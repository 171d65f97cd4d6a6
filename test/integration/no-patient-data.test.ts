/**
 * No patient data in logs or job payloads (issue #6, point 6), and the audit queue (point 4).
 *
 * The real service (Redis, BullMQ workers, the embedded FHIR server, a local insurer gateway)
 * runs with a pino logger at `trace` (a superset of the production `info`) writing to memory.
 * A full scenario goes through the API with a patient whose name, birth date, identifiers,
 * phone, address and clinical values are distinctive: pushes (and refused pushes), queued
 * evaluations, `$evaluate-eligibility`, `$screen`, `$enroll`, a care session, `$bill` with the
 * claim submitted to the gateway, `$budget`, `$exit` with a free-text reason. Then every
 * captured log line and console call, and every Redis key under the test's prefix (name and
 * content, whatever its type), is searched for those values (as text, and numbers also as
 * IEEE-754 bytes). The counts scanned are printed and asserted > 0, so the test cannot pass by
 * scanning nothing.
 *
 * The audit queue (src/queue/audit.ts) is started on the same prefix: AuditEvents and
 * Provenances about the scenario's resources are queued, written to the FHIR server, valid
 * against their profiles, and their job data (in the scan) holds references only.
 *
 * A second test has the insurer gateway refuse a claim with a message that repeats the
 * patient's name and identifier: the adapter used to copy that message into its log and into
 * the failed job in Redis; it now keeps it on the submission Task only (see the test).
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditSink, ProvenanceWriter, writtenReferences } from '../../src/app/audit.service.js';
import { AUDIT_EVENT_PROFILE, auditEvent, PROVENANCE_PROFILE, provenanceId, referencesIn } from '../../src/domain/audit.js';
import { HttpFhirServer } from '../../src/fhir/fhir-server.adapter.js';
import { assertValid } from '../../src/fhir/validation.js';
import { AUDIT_QUEUE, startAudit, type AuditQueue } from '../../src/queue/audit.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import {
  enrolParameters,
  FNMF,
  idOf,
  paramNamed,
  paramsNamed,
  readEnrolment,
  search,
  seedTeam,
  sessionEncounter,
  shift,
  today,
  type SeededTeam,
} from '../fixtures/enrolment.js';
import { InsurerGatewayFixture } from '../fixtures/insurer-gateway.js';
import { LOINC, UCUM } from '../fixtures/resources.js';
import { deleteKeys, startTestService, eventually, type TestService } from './harness.js';

// ---------------------------------------------------------------------------------------------
// The patient's data, distinctive enough that any occurrence is a leak

const FAMILY = 'Zyxwvutsrq';
const GIVEN = 'Qwertzuiopa';
const BIRTH_DATE = '1961-07-13';
const NIR = 'NIR-2610713999999';
const PHONE = '+33 6 98 76 54 32';
const ADDRESS_LINE = '17 rue Quixotique';
const CITY = 'Vrznbourg';
const GLUCOSE = 1.234; // g/L, fasting: in the FNMF range (1.23 at 0.01)
const BMI = 31.7;
const IDENTIFIERS = ['LAB-Q7731-GLU', 'LAB-Q7731-BMI', 'COV-Q7731', 'SESSION-Q7731'];

/** What must never appear: plain strings (case-insensitive) and patterns for numbers (not inside a longer number). */
const SECRET_TEXT = [FAMILY, GIVEN, BIRTH_DATE, '19610713', '13/07/1961', '2610713999999', PHONE, '98 76 54 32', ADDRESS_LINE, 'Quixotique', CITY, ...IDENTIFIERS];
const SECRET_NUMBERS: [string, RegExp][] = [
  ['glucose 1.234', /(?<![0-9.])1\.234(?![0-9])/],
  ['glucose rounded 1.23', /(?<![0-9.])1\.23(?![0-9])/],
  ['BMI 31.7', /(?<![0-9.])31\.7(?![0-9])/],
];
/** The same numbers as binary doubles (msgpack, or any binary encoding of a JSON number). */
const SECRET_DOUBLES: [string, Buffer][] = [GLUCOSE, 1.23, BMI].flatMap((value) => {
  const be = Buffer.alloc(8);
  be.writeDoubleBE(value);
  const le = Buffer.alloc(8);
  le.writeDoubleLE(value);
  return [[`${value} (float64 BE)`, be] as [string, Buffer], [`${value} (float64 LE)`, le] as [string, Buffer]];
});

/** Every secret found in a text (or bytes). */
function findSecrets(content: string | Buffer): string[] {
  const text = Buffer.isBuffer(content) ? content.toString('latin1') : content;
  const lower = text.toLowerCase();
  const found = SECRET_TEXT.filter((secret) => lower.includes(secret.toLowerCase()));
  for (const [label, pattern] of SECRET_NUMBERS) if (pattern.test(text)) found.push(label);
  if (Buffer.isBuffer(content)) for (const [label, bytes] of SECRET_DOUBLES) if (content.includes(bytes)) found.push(label);
  return found;
}

// ---------------------------------------------------------------------------------------------
// Capture

const logLines: string[] = [];
const consoleCalls: string[] = [];
const consoleSpies = (['log', 'info', 'warn', 'error', 'debug', 'trace'] as const).map((method) =>
  vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
    consoleCalls.push(args.map((arg) => (typeof arg === 'string' ? arg : safeStringify(arg))).join(' '));
  }),
);

function safeStringify(value: unknown): string {
  try {
    return value instanceof Error ? `${value.name}: ${value.message}\n${value.stack ?? ''}` : JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

const logger = pino({ level: 'trace', base: { service: 'forfait-fhir' } }, { write: (line: string) => void logLines.push(line) });

interface Finding {
  where: string;
  secrets: string[];
  excerpt: string;
}

function excerptOf(text: string, secrets: string[]): string {
  const lower = text.toLowerCase();
  const at = Math.max(0, ...secrets.map((s) => lower.indexOf(s.toLowerCase())).filter((i) => i >= 0).slice(0, 1));
  return text.slice(Math.max(0, at - 120), at + 120);
}

function scanLines(label: string, lines: readonly string[]): Finding[] {
  const findings: Finding[] = [];
  lines.forEach((line, index) => {
    const secrets = findSecrets(line);
    if (secrets.length) findings.push({ where: `${label} #${index}`, secrets, excerpt: excerptOf(line, secrets) });
  });
  return findings;
}

interface RedisScan {
  keys: number;
  bytes: number;
  byType: Record<string, number>;
  byGroup: Record<string, number>;
  findings: Finding[];
}

/** SCAN every key under `prefix:`; read each whole, as bytes, by type; search names and contents. */
async function scanRedis(redis: Redis, prefix: string, find: (content: Buffer) => string[] = findSecrets): Promise<RedisScan> {
  const scan: RedisScan = { keys: 0, bytes: 0, byType: {}, byGroup: {}, findings: [] };
  let cursor = '0';
  do {
    const [next, keys] = await redis.scanBuffer(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next.toString();
    for (const keyBuffer of keys) {
      const key = keyBuffer.toString('latin1');
      const type = await redis.type(keyBuffer);
      let parts: Buffer[] = [];
      if (type === 'string') parts = [(await redis.getBuffer(keyBuffer)) ?? Buffer.alloc(0)];
      else if (type === 'hash') parts = Object.entries(await redis.hgetallBuffer(keyBuffer)).flatMap(([field, value]) => [Buffer.from(field, 'latin1'), value]);
      else if (type === 'list') parts = await redis.lrangeBuffer(keyBuffer, 0, -1);
      else if (type === 'set') parts = await redis.smembersBuffer(keyBuffer);
      else if (type === 'zset') parts = await redis.zrangeBuffer(keyBuffer, '0', '-1', 'WITHSCORES');
      else if (type === 'stream') {
        const entries = (await redis.xrangeBuffer(keyBuffer, '-', '+')) as [Buffer, Buffer[]][];
        parts = entries.flatMap(([id, fields]) => [id, ...fields]);
      } else if (type === 'none') continue; // expired between SCAN and TYPE
      else throw new Error(`Redis key ${key} has type ${type}, which this scan cannot read`);
      scan.keys += 1;
      scan.byType[type] = (scan.byType[type] ?? 0) + 1;
      const group = key.slice(prefix.length + 1).split(':')[0] ?? '';
      scan.byGroup[group] = (scan.byGroup[group] ?? 0) + 1;
      const content = Buffer.concat([keyBuffer, Buffer.from('\n'), ...parts.flatMap((part) => [part, Buffer.from('\n')])]);
      scan.bytes += content.length;
      const secrets = find(content);
      if (secrets.length) scan.findings.push({ where: `redis ${type} ${key}`, secrets, excerpt: excerptOf(content.toString('latin1'), secrets) });
    }
  } while (cursor !== '0');
  return scan;
}

// ---------------------------------------------------------------------------------------------
// The service, started with the capturing logger (the harness builds its own silent one)

let t: TestService;
let gateway: InsurerGatewayFixture;
let audit: AuditQueue;
let queues: Queue[];

/** The real service with the capturing logger (every log line is scanned at the end). */
function startCapturedService(env: Record<string, string>): Promise<TestService> {
  return startTestService({ LOG_LEVEL: 'info', ...env }, { log: logger });
}

/** Every queue of the service idle: nothing waiting, active or prioritized (the daily schedulers' delayed jobs aside). */
async function allIdle(timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(queues.map(async (queue) => [queue.name, await queue.getJobCounts('waiting', 'active', 'prioritized')] as const));
    const delayed = await Promise.all(queues.map(async (queue) => (await queue.getDelayed()).filter((job) => !job.repeatJobKey && !String(job.id).startsWith('repeat')).length));
    if (counts.every(([, c]) => Object.values(c).every((n) => n === 0)) && delayed.every((n) => n === 0)) return;
    if (Date.now() > deadline) throw new Error(`queues not idle: ${JSON.stringify(counts)} delayed ${JSON.stringify(delayed)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  gateway = await InsurerGatewayFixture.start();
  t = await startCapturedService({ GATEWAY_BASE_URL: gateway.baseUrl, GATEWAY_TIMEOUT_MS: '5000' });
  const connection = redisOptionsFromUrl(t.service.redisUrl);
  audit = await startAudit({ connection, prefix: t.prefix, fhir: new HttpFhirServer({ baseUrl: t.fhirUrl, timeoutMs: 5000, maxAttempts: 2 }), log: logger, runWorker: true });
  queues = ['eligibility', 'screening', 'claims', 'lifecycle', AUDIT_QUEUE].map((name) => new Queue(name, { connection, prefix: t.prefix }));
}, 120_000);

afterAll(async () => {
  for (const spy of consoleSpies) spy.mockRestore();
  await Promise.all((queues ?? []).map((queue) => queue.close()));
  await audit?.close();
  await t?.stop();
  await gateway?.close();
});

// ---------------------------------------------------------------------------------------------
// Scenario

/** POSTs and expects success; the body is `any`: arbitrary JSON the scenario reads a field or two of. */
async function postOk(path: string, body: unknown, statuses = [200, 201]): Promise<any> {
  const response = await t.post(path, body);
  expect(statuses, `${path}: ${JSON.stringify(response.body)}`).toContain(response.status);
  return response.body;
}

function observation(patientId: string, code: string, value: number, unit: string, date: string, identifier: string): fhir4.Observation {
  return {
    resourceType: 'Observation',
    identifier: [{ system: 'urn:test:lab', value: identifier }],
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
    code: { coding: [{ system: LOINC, code }] },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: date,
    valueQuantity: { value, unit, system: UCUM, code: unit },
  };
}

interface Scenario {
  team: SeededTeam;
  patientId: string;
  episodeId: string;
  claimIds: string[];
}

async function fullScenario(): Promise<Scenario> {
  const team = await seedTeam(t, 'npd');
  const insurer = await postOk('/fhir/Organization', { resourceType: 'Organization', identifier: [{ system: 'urn:test:insurer', value: 'CPAM-PARIS-NPD' }], active: true, name: 'CPAM de Paris' });

  // Refused pushes carrying patient data: malformed JSON, a wrong content type, an invalid code, a unit the program cannot use.
  expect((await t.post('/fhir/Patient', `{"resourceType":"Patient","name":[{"family":"${FAMILY}"}],"birthDate":"${BIRTH_DATE}"`)).status).toBe(400);
  expect((await t.post('/fhir/Patient', `${FAMILY} ${BIRTH_DATE} ${NIR}`, { 'content-type': 'text/plain' })).status).toBe(415);
  expect((await t.post('/fhir/Patient', { resourceType: 'Patient', name: [{ family: FAMILY }], birthDate: BIRTH_DATE, gender: FAMILY })).status).toBe(400);

  const patient = await postOk('/fhir/Patient', {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: NIR }],
    name: [{ family: FAMILY, given: [GIVEN] }],
    telecom: [{ system: 'phone', value: PHONE }],
    gender: 'female',
    birthDate: BIRTH_DATE,
    address: [{ use: 'home', line: [ADDRESS_LINE], city: CITY, postalCode: '75015', country: 'FR' }],
    generalPractitioner: [{ reference: team.member('gp').reference }],
  } satisfies fhir4.Patient);
  const patientId = patient.id as string;
  const measured = shift(today(), { months: -2 });
  const wrongUnit = await t.post('/fhir/Observation', observation(patientId, '1558-6', GLUCOSE, 'mmol/mol', measured, 'LAB-Q7731-GLU-BAD'));
  expect([400, 422]).toContain(wrongUnit.status);
  await postOk('/fhir/Observation', observation(patientId, '1558-6', GLUCOSE, 'g/L', measured, 'LAB-Q7731-GLU'));
  await postOk('/fhir/Observation', observation(patientId, '39156-5', BMI, 'kg/m2', measured, 'LAB-Q7731-BMI'));
  await postOk('/fhir/Coverage', {
    resourceType: 'Coverage',
    identifier: [{ system: 'urn:test:coverage', value: 'COV-Q7731' }],
    status: 'active',
    subscriberId: NIR,
    beneficiary: { reference: `Patient/${patientId}` },
    payor: [{ reference: `Organization/${insurer.id as string}` }],
  } satisfies fhir4.Coverage);
  await t.drained();

  // Queued evaluations wrote the verdicts; the synchronous operation, by POST and GET.
  const responses = await search<fhir4.GuidanceResponse>(t, 'GuidanceResponse', { subject: `Patient/${patientId}` });
  expect(responses.length).toBeGreaterThanOrEqual(1);
  const verdict = await postOk(`/fhir/Patient/${patientId}/$evaluate-eligibility`, { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: FNMF }] });
  expect(paramNamed(verdict, 'outcome')?.valueCode).toBe('eligible');
  expect((await t.get(`/fhir/Patient/${patientId}/$evaluate-eligibility?program=${FNMF}&asOf=${today()}`)).status).toBe(200);

  // $screen of the centre's patients, polled to the end.
  const screen = await t.post('/fhir/$screen', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: FNMF }, { name: 'patient', valueReference: { reference: `Patient/${patientId}` } }] });
  expect(screen.status).toBe(202);
  const statusPath = new URL(screen.headers.get('content-location') as string).pathname;
  await eventually(async () => {
    const status = await t.get(statusPath);
    return status.status === 200 ? status : undefined;
  }, 30_000);

  // Enrolment, a care session, forfait claims submitted to the gateway, the budget.
  const start = shift(today(), { months: -1 });
  const enrolment = readEnrolment(await t.post(`/fhir/Patient/${patientId}/$enroll`, enrolParameters({ program: FNMF, start, team: team.as() })));
  expect(enrolment.status).toBe(201);
  const session = await t.post(
    '/fhir/Encounter',
    sessionEncounter({ patientId, episodeId: enrolment.episodeId, kind: 'apa-group', date: shift(start, { days: 7 }), member: { reference: team.member('apa-teacher').reference, role: 'apa-teacher' }, identifier: 'SESSION-Q7731' }),
  );
  expect(session.status, JSON.stringify(session.body)).toBe(201);
  // The FNMF forfait is paid to the centre, the episode's managingOrganization, set by $enroll.
  const episode = (await t.fhirGet(`EpisodeOfCare/${enrolment.episodeId}`)) as fhir4.EpisodeOfCare;
  expect(episode.managingOrganization?.reference).toBe(`Organization/${team.organizationId}`);
  await allIdle();
  const bill = await postOk('/fhir/$bill', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: FNMF }] });
  const claimIds = paramsNamed(bill, 'claim').map((p) => idOf(p.valueReference, 'Claim'));
  expect(claimIds.length, JSON.stringify(bill)).toBeGreaterThanOrEqual(1);
  await allIdle();
  await gateway.settled();
  expect(gateway.uniqueClaims()).toBeGreaterThanOrEqual(1);
  const claimResponses = await search<fhir4.ClaimResponse>(t, 'ClaimResponse', { patient: `Patient/${patientId}` });
  expect(claimResponses.length).toBeGreaterThanOrEqual(1);
  expect((await t.get(`/fhir/$budget?program=${FNMF}`)).status).toBe(200);

  // The patient leaves, with a free-text reason naming them.
  const exit = await t.post(`/fhir/EpisodeOfCare/${enrolment.episodeId}/$exit`, {
    resourceType: 'Parameters',
    parameter: [
      { name: 'reason', valueCode: 'other' },
      { name: 'text', valueString: `${GIVEN} ${FAMILY} (born ${BIRTH_DATE}) moved to ${CITY}` },
    ],
  });
  expect(exit.status, JSON.stringify(exit.body)).toBe(200);
  await allIdle();
  return { team, patientId, episodeId: enrolment.episodeId, claimIds };
}

/** What the wired adapter will record: AuditEvents of the scenario's requests and Provenances of what it wrote, through the audit queue. */
async function auditTheScenario(scenario: Scenario): Promise<{ events: fhir4.AuditEvent[]; provenances: string[] }> {
  const sink = new AuditSink(audit.add, logger);
  const writer = new ProvenanceWriter(audit.add, logger, 'forfait-fhir test');
  const client = { clientId: 'ehr-npd', centre: 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre|CDS-MGEN-VAUGIRARD' };
  const events: fhir4.AuditEvent[] = [];
  const record = (input: Omit<Parameters<typeof auditEvent>[0], 'id' | 'recorded' | 'requestId' | 'source' | 'client'>) => {
    const event = auditEvent({ ...input, id: randomUUID(), recorded: new Date().toISOString(), requestId: randomUUID(), source: { observer: 'forfait-fhir test', site: 'npd' }, client: { ...client, address: '127.0.0.1' } });
    sink.record(event);
    events.push(event);
  };
  const [response] = await search<fhir4.GuidanceResponse>(t, 'GuidanceResponse', { subject: `Patient/${scenario.patientId}` });
  const evidence = referencesIn(response?.contained?.find((r) => r.resourceType === 'Parameters'));
  record({ action: 'E', subtype: '$evaluate-eligibility', outcome: '0', entities: [`Patient/${scenario.patientId}`, ...evidence] });
  record({ action: 'E', subtype: '$enroll', outcome: '0', entities: [`Patient/${scenario.patientId}`, `EpisodeOfCare/${scenario.episodeId}`] });
  record({ action: 'E', subtype: '$bill', outcome: '0', entities: scenario.claimIds.map((id) => `Claim/${id}` as const) });
  await sink.flush();

  const targets = [...writtenReferences(response), ...(await Promise.all(scenario.claimIds.map(async (id) => writtenReferences((await t.fhirGet(`Claim/${id}`)) as fhir4.Claim)))).flat()];
  expect(targets.length).toBeGreaterThanOrEqual(2);
  await writer.record(writtenReferences(response), evidence, 'UPDATE');
  await writer.record(targets.slice(1), [`EpisodeOfCare/${scenario.episodeId}`], 'CREATE', client);
  expect(sink.dropped + writer.dropped).toBe(0);
  return { events, provenances: [provenanceId(writtenReferences(response)), provenanceId(targets.slice(1))] };
}

describe('no patient data in logs or Redis', () => {
  it('a full scenario through the API leaves no name, birth date, identifier or clinical value in the logs or anywhere under the queue prefix', async () => {
    const scenario = await fullScenario();

    // The audit trail of the scenario, through the audit queue, written to the FHIR server.
    const { events, provenances } = await auditTheScenario(scenario);
    for (const event of events) {
      const stored = await eventually(async () => {
        const found = (await t.fhirGet(`AuditEvent/${event.id as string}`)) as fhir4.AuditEvent;
        return found.resourceType === 'AuditEvent' ? found : undefined;
      });
      assertValid(stored, [AUDIT_EVENT_PROFILE]);
    }
    for (const id of provenances) {
      const stored = await eventually(async () => {
        const found = (await t.fhirGet(`Provenance/${id}`)) as fhir4.Provenance;
        return found.resourceType === 'Provenance' ? found : undefined;
      });
      assertValid(stored, [PROVENANCE_PROFILE]);
    }
    await allIdle();
    // The job data is the AuditEvent itself (alone, or with the records queued with it): references and ids only.
    const auditJobs = (await queues.find((q) => q.name === AUDIT_QUEUE)?.getJobs(['completed'], 0, -1)) ?? [];
    const carrying = auditJobs.find((job) => job.id === `ae.${events[0]?.id as string}` || (job.data as { records?: fhir4.Resource[] }).records?.some((r) => r.id === events[0]?.id));
    const data = carrying?.data as fhir4.AuditEvent | { records: fhir4.Resource[] } | undefined;
    expect(data && 'records' in data ? data.records.find((r) => r.id === events[0]?.id) : data).toEqual(events[0]);
    for (const job of auditJobs) expect(findSecrets(JSON.stringify(job.data))).toEqual([]);
    // The Provenances of one evaluation job's programs were queued together: one job carried them (all written, above).
    expect(auditJobs.some((job) => ((job.data as { records?: unknown[] }).records?.length ?? 0) > 1)).toBe(true);

    // Control: a value planted in each Redis type (and a double as bytes) is found by the scan, then removed.
    const control = `${t.prefix}:npd-control`;
    const doubleBytes = Buffer.alloc(8);
    doubleBytes.writeDoubleBE(BMI);
    await t.redis
      .multi()
      .set(`${control}:string`, JSON.stringify({ family: FAMILY }))
      .hset(`${control}:hash`, 'data', JSON.stringify({ birthDate: BIRTH_DATE }))
      .rpush(`${control}:list`, NIR)
      .sadd(`${control}:set`, PHONE)
      .zadd(`${control}:zset`, 1, CITY)
      .xadd(`${control}:stream`, '*', 'value', String(GLUCOSE))
      .set(`${control}:binary`, Buffer.concat([Buffer.from([0xcb]), doubleBytes]))
      .exec();
    const planted = await scanRedis(t.redis, `${t.prefix}:npd-control`);
    expect(planted.findings.map((f) => f.where.split(' ')[1])).toEqual(expect.arrayContaining(['string', 'hash', 'list', 'set', 'zset', 'stream']));
    expect(planted.findings.find((f) => f.where.endsWith(':binary'))?.secrets).toEqual(['31.7 (float64 BE)']);
    await deleteKeys(t.redis, control);

    const logs = scanLines('log line', logLines);
    const consoles = scanLines('console call', consoleCalls);
    const redis = await scanRedis(t.redis, t.prefix);
    const summary = {
      logLines: logLines.length,
      logBytes: logLines.reduce((n, line) => n + line.length, 0),
      consoleCalls: consoleCalls.length,
      redisKeys: redis.keys,
      redisBytes: redis.bytes,
      redisKeysByType: redis.byType,
      redisKeysByGroup: redis.byGroup,
      secretsSearched: SECRET_TEXT.length + SECRET_NUMBERS.length + SECRET_DOUBLES.length,
    };
    process.stdout.write(`[no-patient-data] scanned ${JSON.stringify(summary)}\n`);

    // Not vacuous: requests were logged, every queue left keys, the audit queue included.
    const requestLines = logLines.filter((line) => line.includes('"msg":"request completed"'));
    expect(requestLines.length).toBeGreaterThanOrEqual(20);
    for (const path of ['/fhir/Patient"', '/fhir/Observation"', '$evaluate-eligibility"', '/fhir/$screen"', '$enroll"', '/fhir/Encounter"', '/fhir/$bill"', '$exit"']) {
      expect(requestLines.some((line) => line.includes(path)), path).toBe(true);
    }
    expect(redis.keys).toBeGreaterThan(30);
    for (const group of ['eligibility', 'screening', 'claims', 'audit', 'screen']) expect(redis.byGroup[group] ?? 0, group).toBeGreaterThan(0);
    // The scan does find the values where they belong (the FHIR server of record).
    const stored = JSON.stringify(await t.fhirGet(`Patient/${scenario.patientId}`));
    expect(findSecrets(stored)).toEqual(expect.arrayContaining([FAMILY, BIRTH_DATE, '2610713999999']));
    expect(findSecrets(Buffer.from(JSON.stringify(await search(t, 'Observation', { subject: `Patient/${scenario.patientId}` }))))).toEqual(expect.arrayContaining(['glucose 1.234', 'BMI 31.7']));

    expect([...logs, ...consoles, ...redis.findings]).toEqual([]);
  }, 240_000);

  /*
   * LEAK (not fixed here): the insurer gateway's OperationOutcome diagnostics are copied into
   * the GatewayError message (src/gateway/insurer-gateway.adapter.ts, `request()`, the
   * `throw new GatewayError(`gateway ${label}: HTTP ${status}...: ${diagnostics}`)`), which
   * - is logged by the claims worker (src/queue/claims.ts, `worker.on('failed', ...)`:
   *   `err: { message: error.message }`, 'claims job failed');
   * - is stored by BullMQ in the failed job's hash (`failedReason`, `stacktrace`) in Redis,
   *   since the worker rethrows `new UnrecoverableError(hint.message)` (src/queue/claims.ts).
   * A gateway that names the beneficiary in its refusal (it receives the Patient in the
   * submission Bundle) thus puts a name and an identifier value in the logs and in Redis.
   * Fix: keep the outcome on the error (it is already there) and recorded on the submission
   * Task, and build the message from the status only (`gateway submit <claim key>: HTTP 422`).
   */
  it('a gateway refusal that repeats the patient\'s name and identifier is not copied into logs or Redis', async () => {
    const echoFamily = 'Plughxyzzyq';
    const echoNir = 'NIR-1550505888888';
    const team = await seedTeam(t, 'npd-echo');
    const insurer = await postOk('/fhir/Organization', { resourceType: 'Organization', identifier: [{ system: 'urn:test:insurer', value: 'CPAM-ECHO' }], active: true, name: 'CPAM Echo' });
    const patient = await postOk('/fhir/Patient', {
      resourceType: 'Patient',
      identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: echoNir }],
      name: [{ family: echoFamily, given: ['Echo'] }],
      gender: 'male',
      birthDate: '1958-02-03',
      generalPractitioner: [{ reference: team.member('gp').reference }],
    } satisfies fhir4.Patient);
    const patientId = patient.id as string;
    const measured = shift(today(), { months: -2 });
    await postOk('/fhir/Observation', observation(patientId, '1558-6', 1.15, 'g/L', measured, 'echo-glu'));
    await postOk('/fhir/Observation', observation(patientId, '39156-5', 27, 'kg/m2', measured, 'echo-bmi'));
    await postOk('/fhir/Coverage', { resourceType: 'Coverage', identifier: [{ system: 'urn:test:coverage', value: 'echo-cov' }], status: 'active', beneficiary: { reference: `Patient/${patientId}` }, payor: [{ reference: `Organization/${insurer.id as string}` }] } satisfies fhir4.Coverage);
    await t.drained();
    gateway.reject(
      (_key, claim) => claim.patient?.reference === `Patient/${patientId}`,
      { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'business-rule', diagnostics: `Beneficiary ${echoFamily} (${echoNir}) is not covered` }] },
      422,
    );
    const enrolment = readEnrolment(await t.post(`/fhir/Patient/${patientId}/$enroll`, enrolParameters({ program: FNMF, start: shift(today(), { months: -1 }), team: team.as() })));
    const episode = (await t.fhirGet(`EpisodeOfCare/${enrolment.episodeId}`)) as fhir4.EpisodeOfCare;
    if (!episode.managingOrganization) {
      const { meta: _meta, ...rest } = episode;
      await fetch(`${t.fhirUrl}/EpisodeOfCare/${enrolment.episodeId}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify({ ...rest, managingOrganization: { reference: `Organization/${team.organizationId}` } }) });
    }
    await allIdle();
    await postOk('/fhir/$bill', { resourceType: 'Parameters', parameter: [{ name: 'program', valueString: FNMF }] });
    await allIdle();
    await gateway.settled();
    // The refusal did happen (recorded on the submission Task, where it belongs).
    const tasks = await search<fhir4.Task>(t, 'Task', { subject: `Patient/${patientId}`, status: 'failed' });
    expect(tasks.length).toBeGreaterThanOrEqual(1);

    const echoed = (content: string | Buffer): string[] => {
      const text = Buffer.isBuffer(content) ? content.toString('latin1') : content;
      return [echoFamily, '1550505888888'].filter((secret) => text.includes(secret));
    };
    const inLogs = logLines.filter((line) => echoed(line).length > 0);
    const inRedis = (await scanRedis(t.redis, t.prefix, echoed)).findings.map((finding) => finding.where);
    process.stdout.write(`[no-patient-data] gateway echo: ${inLogs.length} log line(s), ${inRedis.length} Redis key(s) with the patient's name or identifier: ${inRedis.join(', ')}\n`);
    expect(inLogs).toEqual([]);
    expect(inRedis).toEqual([]);
  }, 120_000);
});
