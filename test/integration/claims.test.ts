/**
 * Forfait claims over HTTP (issue #4): the real service (Redis, BullMQ, the embedded FHIR
 * server) submitting to a real local insurer gateway (test/fixtures/insurer-gateway.ts).
 * Every Claim, ClaimResponse, Invoice and submission Task the adapter writes is read back from
 * the FHIR server of record and validated against R4 and the project's profiles.
 *
 * - FNMF: one forfait of 690.60 EUR per patient, paid to the centre (the enrolment's managing
 *   organization), at inclusion by default; a 50 %/50 % schedule through a SITE_DIR overlay;
 *   140 enrolments claim the 96,684.00 EUR budget to the cent (`$budget`).
 * - REDIAB: FEID, FESD, FSP, FECD and COOP on dates inside the approval period
 *   (2001-08-24 to 2004-08-23), with `$bill` at successive `asOf` dates; the service runs as
 *   ROLE=api so only `$bill` generates claims (no worker generates "as of today" behind the
 *   test's back), then a worker process submits everything once.
 * - Bad data: a clear issue in `$bill`'s answer and no claim.
 *
 * No test waits on a clock: the gateway's `settled()` and the claims queue's counts are polled.
 */
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertValid } from '../../src/fhir/validation.js';
import {
  allInvoices,
  amount,
  bill,
  budget,
  categoryOf,
  CLAIM_SYSTEMS,
  claimResponsesOf,
  claimsIdle,
  claimsOf,
  claimsQueue,
  count,
  enrol,
  enrolFnmf,
  ensureManagingOrganization,
  forfaitOf,
  FORFAIT_SYSTEM,
  gatewayEnv,
  INSURERS,
  issuesWithRule,
  keyOf,
  minus,
  readClaim,
  seedAssociation,
  seedInsurer,
  seedRediabPatient2002,
  readBill,
  siteDirWith,
  stripPractitionerIdentifiers,
  submissionTask,
  sum,
  summary,
  TARIFFS,
  tariffOf,
  times,
  type BillAnswer,
  type Enrolled,
} from '../fixtures/billing.js';
import {
  carePlansOf,
  expectOutcome,
  FNMF,
  idOf,
  onePlan,
  parameters,
  planCodeOf,
  planEnd,
  readResource,
  REDIAB,
  search,
  seedFnmfPatient,
  seedRediabTeam,
  seedTeam,
  shift,
  SYSTEMS,
  today,
  enrolParameters,
  type SeededTeam,
} from '../fixtures/enrolment.js';
import { InsurerGatewayFixture } from '../fixtures/insurer-gateway.js';
import { startTestService, type TestService } from './harness.js';

const FNMF_AMOUNT = '690.60';

let gateway: InsurerGatewayFixture;

beforeAll(async () => {
  gateway = await InsurerGatewayFixture.start();
});

afterAll(async () => {
  await gateway?.close();
});

/** Submission POSTs the gateway has read, all claims together. */
const submissionsReceived = (): number => [...gateway.received.values()].reduce((sum, n) => sum + n, 0);

/** The claims of `answer` that belong to the patient, read from the FHIR server (validated). */
async function listedFor(t: TestService, answer: BillAnswer, patientId: string): Promise<fhir4.Claim[]> {
  const claims = await Promise.all(answer.claimIds.map((id) => readClaim(t, id)));
  return claims.filter((claim) => claim.patient.reference === `Patient/${patientId}`);
}

/** Waits for the service's claim jobs to finish and the gateway to have answered everything. */
async function quiet(queue: Queue): Promise<void> {
  await claimsIdle(queue);
  await gateway.settled();
}

async function episodeOf(t: TestService, episodeId: string): Promise<fhir4.EpisodeOfCare> {
  return readResource<fhir4.EpisodeOfCare>(t, 'EpisodeOfCare', episodeId);
}

// =============================================================================================
describe('FNMF: one forfait of 690.60 EUR at inclusion, paid to the centre', () => {
  let t: TestService;
  let queue: Queue;
  let team: SeededTeam;
  let insurerId: string;

  beforeAll(async () => {
    t = await startTestService(gatewayEnv(gateway.baseUrl));
    queue = claimsQueue(t);
    team = await seedTeam(t, 'claims-fnmf');
    insurerId = await seedInsurer(t, INSURERS.mgen, 'MGEN (mutual insurer)');
  });

  afterAll(async () => {
    await queue?.close();
    await t?.stop();
  });

  // BUG (src/domain/enrolment/enrolment-resources.ts buildEpisode): the EpisodeOfCare written by
  // `$enroll` has no `managingOrganization`, and the FNMF forfait's payee rule `centre` reads
  // exactly that element (src/app/billing.service.ts generateForEpisode, `centreRef`). Every FNMF
  // claim is refused with "The FNMF-SEQUENCE forfait due on <date> is paid to the centre, and the
  // enrolment has no managing organization. [payee-missing]": enrolling an eligible patient never
  // claims anything. Fix: write managingOrganization = the centre Organization of the GP member
  // (the PractitionerRole.organization of the care team's `gp`, a participating centre) in
  // buildEpisode (and the enrolment-episode-of-care profile could require it for programs whose
  // forfaits are paid to the centre).
  it('enrolment records the centre as the managing organization, so the forfait is claimed by itself at inclusion', async () => {
    const enrolled = await enrolFnmf(t, team, 'fnmf-auto', { start: shift(today(), { months: -1 }), insurerId });
    await quiet(queue);
    const episode = await episodeOf(t, enrolled.episodeId);
    expect(episode.managingOrganization?.reference).toBe(`Organization/${team.organizationId}`);
    const claims = await claimsOf(t, enrolled.patientId);
    expect(claims.map(summary)).toEqual([`FNMF-SEQUENCE ${enrolled.start} Organization/${team.organizationId} ${FNMF_AMOUNT}`]);
    expect(gateway.submissionsOf(keyOf(claims[0] as fhir4.Claim))).toBe(1);
  });

  it('one Claim of 690.60 EUR to the centre, received once by the gateway, its ClaimResponse stored and linked, the Task completed; $bill again writes and submits nothing', async () => {
    const start = shift(today(), { months: -1 });
    // Taken before enrolling: the enrolment itself makes the forfait fall due and submits it.
    const uniqueBefore = gateway.uniqueClaims();
    const enrolled = await enrolFnmf(t, team, 'fnmf-claim', { start, insurerId });
    await quiet(queue);
    expect(await ensureManagingOrganization(t, enrolled.episodeId, team.organizationId)).toBe(false);
    const episode = await episodeOf(t, enrolled.episodeId);
    const centre = episode.managingOrganization?.reference as string;
    expect(centre).toBe(`Organization/${team.organizationId}`);

    const first = await bill(t, today(), FNMF);
    const listed = await listedFor(t, first, enrolled.patientId);
    expect(listed).toHaveLength(1);
    await quiet(queue);

    // Exactly one Claim for the patient, as the resource model says.
    const claims = await claimsOf(t, enrolled.patientId);
    expect(claims).toHaveLength(1);
    const claim = claims[0] as fhir4.Claim;
    expect(claim.id).toBe(listed[0]?.id);
    expect(claim.status).toBe('active');
    expect(claim.use).toBe('claim');
    expect(claim.type.coding).toContainEqual(expect.objectContaining({ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }));
    expect(claim.priority.coding).toContainEqual(expect.objectContaining({ code: 'normal' }));
    expect(claim.patient.reference).toBe(`Patient/${enrolled.patientId}`);
    expect(claim.created).toBe(start);
    expect(claim.insurer?.reference).toBe(`Organization/${insurerId}`);
    expect(claim.provider.reference).toBe(centre);
    expect(claim.payee?.party?.reference).toBe(centre);
    expect(claim.insurance).toEqual([expect.objectContaining({ sequence: 1, focal: true, coverage: { reference: `Coverage/${enrolled.coverageId}` } })]);
    expect(claim.billablePeriod).toEqual({ start, end: planEnd(start, 24) });
    expect(claim.supportingInfo?.map((info) => info.valueReference?.reference)).toContain(`EpisodeOfCare/${enrolled.episodeId}`);
    expect(claim.identifier?.[0]?.system).toBe(CLAIM_SYSTEMS.fnmf);
    expect(claim.item).toHaveLength(1);
    const item = claim.item?.[0] as fhir4.ClaimItem;
    expect(item.productOrService.coding).toEqual([expect.objectContaining({ system: FORFAIT_SYSTEM, code: 'FNMF-SEQUENCE' })]);
    expect(amount(item.unitPrice)).toBe(FNMF_AMOUNT);
    expect(amount(item.net)).toBe(FNMF_AMOUNT);
    expect(amount(claim.total)).toBe(FNMF_AMOUNT);
    expect(tariffOf(item)).toBe(TARIFFS.fnmf);

    // Received exactly once by the gateway, as that Claim, with what it references.
    const key = keyOf(claim);
    expect(gateway.submissionsOf(key)).toBe(1);
    expect(gateway.uniqueClaims()).toBe(uniqueBefore + 1);
    expect(gateway.claims.get(key)?.id).toBe(claim.id);
    expect(amount(gateway.claims.get(key)?.total)).toBe(FNMF_AMOUNT);
    expect(gateway.requests.filter((r) => r.key === key && r.route === 'submit').map((r) => r.answer)).toEqual([200]);

    // The ClaimResponse is stored, linked to the Claim, complete and paid.
    const responses = await claimResponsesOf(t, claim.id as string);
    expect(responses).toHaveLength(1);
    const response = responses[0] as fhir4.ClaimResponse;
    expect(response.outcome).toBe('complete');
    expect(response.request?.reference).toBe(`Claim/${claim.id}`);
    expect(response.patient.reference).toBe(`Patient/${enrolled.patientId}`);
    expect(amount(response.payment?.amount)).toBe(FNMF_AMOUNT);

    // The submission Task is completed and points at the ClaimResponse.
    const task = await submissionTask(t, claim.id as string);
    expect(task?.status).toBe('completed');
    expect(task?.focus?.reference).toBe(`Claim/${claim.id}`);
    expect(task?.output?.map((o) => o.valueReference?.reference)).toContain(`ClaimResponse/${response.id}`);

    // $bill with asOf again: nothing new written, nothing submitted.
    const before = {
      claims: await count(t, 'Claim'),
      responses: await count(t, 'ClaimResponse'),
      claimVersion: claim.meta?.versionId,
      responseVersion: response.meta?.versionId,
      taskVersion: task?.meta?.versionId,
      unique: gateway.uniqueClaims(),
      received: submissionsReceived(),
    };
    const again = await bill(t, today(), FNMF);
    expect(again.created).toBe(0);
    expect(again.claimIds).toContain(claim.id);
    await quiet(queue);
    expect({
      claims: await count(t, 'Claim'),
      responses: await count(t, 'ClaimResponse'),
      claimVersion: (await readClaim(t, claim.id as string)).meta?.versionId,
      responseVersion: (await claimResponsesOf(t, claim.id as string))[0]?.meta?.versionId,
      taskVersion: (await submissionTask(t, claim.id as string))?.meta?.versionId,
      unique: gateway.uniqueClaims(),
      received: submissionsReceived(),
    }).toEqual(before);
    expect(gateway.submissionsOf(key)).toBe(1);
  });

  it('a patient without Coverage: a coverage-missing issue in $bill\'s answer, and no claim', async () => {
    const enrolled = await enrolFnmf(t, team, 'fnmf-no-coverage', { start: shift(today(), { months: -1 }), coverage: false });
    await quiet(queue);
    const received = submissionsReceived();
    const answer = await bill(t, today(), FNMF);
    const issues = issuesWithRule(answer, 'coverage-missing');
    expect(issues, JSON.stringify(answer.issues)).toHaveLength(1);
    expect(issues[0]).toMatchObject({ severity: 'error', code: 'required', expression: ['Claim.insurance.coverage'] });
    expect(issues[0]?.diagnostics).toMatch(/no Coverage/);
    expect(issues[0]?.diagnostics).toContain('FNMF-SEQUENCE');
    await quiet(queue);
    expect(await claimsOf(t, enrolled.patientId)).toHaveLength(0);
    expect([...gateway.claims.values()].filter((c) => c.patient.reference === `Patient/${enrolled.patientId}`)).toHaveLength(0);
    expect(submissionsReceived()).toBe(received);
  });

  // BUG (src/http/billing-routes.ts, `$bill` issues; src/domain/billing/claims.ts checkClaimContext,
  // src/domain/billing/due.ts): `$bill` sweeps every enrolment, but an issue says only "The patient
  // has no Coverage to charge the FNMF-SEQUENCE forfait to. [coverage-missing]" with expression
  // Claim.insurance.coverage: neither the patient, nor the episode, nor the due date. With more
  // than one enrolment an operator cannot tell which record to fix, so the OperationOutcome is not
  // "clear" (issue #4). Fix: carry the episode (and patient) on BillingIssue and write it in the
  // diagnostics (e.g. "EpisodeOfCare/<id> (Patient/<id>): ...") or as an extra expression.
  it('each $bill issue names the enrolment (or the patient) it is about', async () => {
    const enrolled = await enrolFnmf(t, team, 'fnmf-no-coverage-named', { start: shift(today(), { months: -1 }), coverage: false });
    await quiet(queue);
    const answer = await bill(t, today(), FNMF);
    const text = JSON.stringify(answer.issues?.issue ?? []);
    expect(issuesWithRule(answer, 'coverage-missing').length).toBeGreaterThanOrEqual(1);
    expect(text.includes(`EpisodeOfCare/${enrolled.episodeId}`) || text.includes(`Patient/${enrolled.patientId}`), text).toBe(true);
  });
});

// =============================================================================================
describe('FNMF with a 50 %/50 % schedule (SITE_DIR billing.json)', () => {
  let t: TestService;
  let queue: Queue;
  let team: SeededTeam;
  let insurerId: string;

  beforeAll(async () => {
    const siteDir = siteDirWith(FNMF, {
      'billing.json': (billing) => {
        billing.patientForfaits[0].dueOn = [
          { event: 'enrolment', share: '0.5' },
          { event: 'plan-start', plan: 'consolidation', share: '0.5' },
        ];
        // An approval period starting before the tariff's effectivePeriod (2020-12-27), so a due
        // date can fall where no tariff is in force (the tariff-missing test below).
        billing.approvalPeriod.start = '2019-01-01';
      },
    });
    t = await startTestService(gatewayEnv(gateway.baseUrl, { SITE_DIR: siteDir }));
    queue = claimsQueue(t);
    team = await seedTeam(t, 'claims-half');
    insurerId = await seedInsurer(t, INSURERS.mgen, 'MGEN (mutual insurer)');
  });

  afterAll(async () => {
    await queue?.close();
    await t?.stop();
  });

  it('345.30 at enrolment; once $advance is past the intensive phase, $bill claims the second 345.30; each received once', async () => {
    // Enrolled five months ago (measurements of six months ago), so both halves fall due in the past.
    const start = shift(today(), { months: -5 });
    const enrolled = await enrolFnmf(t, team, 'half-1', { start, insurerId, patient: { measuredOn: shift(today(), { months: -6 }) } });
    await quiet(queue);
    const centre = `Organization/${team.organizationId}`;
    const consolidationStart = shift(start, { months: 4 });

    const atEnrolment = await bill(t, start, FNMF);
    const firstListed = await listedFor(t, atEnrolment, enrolled.patientId);
    expect(firstListed.map(summary)).toEqual([`FNMF-SEQUENCE ${start} ${centre} 345.30`]);
    const first = firstListed[0] as fhir4.Claim;
    expect(first.billablePeriod).toEqual({ start, end: planEnd(start, 24) });
    expect(amount(first.item?.[0]?.unitPrice)).toBe('345.30');
    expect(amount(first.item?.[0]?.net)).toBe('345.30');
    expect(first.supportingInfo?.map((info) => info.valueReference?.reference)).toEqual([`EpisodeOfCare/${enrolled.episodeId}`]);

    // Past the intensive phase (4 months): the consolidation phase has started.
    const advanced = await t.post('/fhir/$advance', parameters({ name: 'asOf', valueDate: consolidationStart }, { name: 'program', valueString: FNMF }));
    expect(advanced.status, JSON.stringify(advanced.body)).toBe(200);
    const consolidation = onePlan(await carePlansOf(t, enrolled.patientId, enrolled.episodeId), 'consolidation');
    expect(consolidation.status).toBe('active');
    expect(consolidation.period?.start).toBe(consolidationStart);

    const dayBefore = await listedFor(t, await bill(t, shift(consolidationStart, { days: -1 }), FNMF), enrolled.patientId);
    expect(dayBefore.map(summary)).toEqual([`FNMF-SEQUENCE ${start} ${centre} 345.30`]);
    const both = await listedFor(t, await bill(t, consolidationStart, FNMF), enrolled.patientId);
    expect(both.map(summary).sort()).toEqual([`FNMF-SEQUENCE ${start} ${centre} 345.30`, `FNMF-SEQUENCE ${consolidationStart} ${centre} 345.30`].sort());
    await quiet(queue);

    const claims = await claimsOf(t, enrolled.patientId);
    expect(claims.map((c) => c.id).sort()).toEqual(both.map((c) => c.id).sort());
    const later = claims.find((c) => c.created === consolidationStart) as fhir4.Claim;
    expect(later.billablePeriod).toEqual(consolidation.period);
    expect(later.supportingInfo?.map((info) => info.valueReference?.reference)).toEqual(
      expect.arrayContaining([`EpisodeOfCare/${enrolled.episodeId}`, `CarePlan/${consolidation.id}`]),
    );
    expect(keyOf(later)).not.toBe(keyOf(first));
    // The two halves add up to the forfait, exactly.
    expect(sum(claims.map((c) => amount(c.total)))).toBe(FNMF_AMOUNT);
    for (const claim of claims) {
      expect(gateway.submissionsOf(keyOf(claim))).toBe(1);
      expect((await claimResponsesOf(t, claim.id as string)).map((r) => r.outcome)).toEqual(['complete']);
      expect((await submissionTask(t, claim.id as string))?.status).toBe('completed');
    }

    const again = await bill(t, consolidationStart, FNMF);
    expect(again.created).toBe(0);
    await quiet(queue);
    expect(await claimsOf(t, enrolled.patientId)).toHaveLength(2);
    for (const claim of claims) expect(gateway.submissionsOf(keyOf(claim))).toBe(1);
  });

  // BUG (src/app/billing.service.ts recordTask: `authoredOn: claim.created`). Claim.created is the
  // due date; `$bill` accepts an `asOf` in the future (here: an enrolment of last month, billed as
  // of the day its consolidation phase starts, three months ahead), so the submission Task gets
  // authoredOn = that future date and lastModified = now: R4 invariant inv-1 ("lastModified >=
  // authoredOn") fails, e.g. "Task/<id> is not valid: error invariant at Task: Constraint inv-1 not
  // met: Last modified date must be greater than or equal to authored-on date". A FHIR server that
  // validates writes would refuse the Task, and the submission job would fail on it. Fix: set
  // authoredOn when the Task is first written (now; keep it on later updates), not from
  // Claim.created, or have `$bill` refuse an asOf after today (then this test should expect the
  // refusal, which it accepts as a 4xx OperationOutcome).
  it('$bill with an asOf in the future never writes an invalid submission Task (R4 Task inv-1)', async () => {
    const start = shift(today(), { months: -1 });
    const enrolled = await enrolFnmf(t, team, 'half-future', { start, insurerId });
    await quiet(queue);
    const future = shift(start, { months: 4 });
    const response = await t.post('/fhir/$bill', parameters({ name: 'asOf', valueDate: future }, { name: 'program', valueString: FNMF }));
    if (response.status !== 200) {
      expect([400, 422]).toContain(response.status);
      expect(response.body.resourceType).toBe('OperationOutcome');
      return;
    }
    const listed = await listedFor(t, readBill(response), enrolled.patientId);
    expect(listed.map((c) => c.created).sort()).toEqual([start, future]);
    await quiet(queue);
    for (const claim of listed) {
      const task = await submissionTask(t, claim.id as string); // validates against R4
      expect(task?.status).toBe('completed');
    }
  });

  it('a tariff missing for the date (enrolment before the tariff\'s effectivePeriod.start): a tariff-missing issue, and no claim', async () => {
    const enrolled = await enrolFnmf(t, team, 'half-2020', {
      start: '2020-06-01',
      insurerId,
      overrideReason: 'Back-dated inclusion recorded from the paper file',
    });
    await quiet(queue);
    const answer = await bill(t, '2020-06-30', FNMF);
    const issues = issuesWithRule(answer, 'tariff-missing');
    expect(issues, JSON.stringify(answer.issues)).toHaveLength(1);
    expect(issues[0]).toMatchObject({ severity: 'error', code: 'not-found' });
    expect(issues[0]?.diagnostics).toContain('No FNMF-SEQUENCE tariff');
    expect(issues[0]?.diagnostics).toContain('2020-06-01');
    expect(answer.claimIds).toHaveLength(0);
    await quiet(queue);
    expect(await claimsOf(t, enrolled.patientId)).toHaveLength(0);
  });
});

// =============================================================================================
// 140 enrolments through HTTP take about 100 s against the in-memory FHIR server (each one
// slower than the last: 20 in 4.4 s, 100 in 50 s), so the 140 × 690.60 = 96,684.00 total is
// proven by the unit tests (test/unit/billing/due.test.ts "140 enrolments claim 96,684.00
// exactly", test/unit/billing/budget.test.ts "140 claims use the whole 96,684.00 budget"), and
// here a SITE_DIR capacity of 7 proves the same sums over HTTP.
describe('FNMF budget: 7 enrolments (SITE_DIR capacity 7) claim 4,834.20 EUR to the cent against 96,684.00', () => {
  let t: TestService;
  let queue: Queue;
  let team: SeededTeam;
  let insurerId: string;

  beforeAll(async () => {
    const siteDir = siteDirWith(FNMF, {
      'enrolment.json': (enrolment) => {
        enrolment.capacity = 7;
      },
    });
    t = await startTestService(gatewayEnv(gateway.baseUrl, { SITE_DIR: siteDir }));
    queue = claimsQueue(t);
    team = await seedTeam(t, 'claims-budget');
    insurerId = await seedInsurer(t, INSURERS.mgen, 'MGEN (mutual insurer)');
  });

  afterAll(async () => {
    await queue?.close();
    await t?.stop();
  });

  it('$budget: budget 96684.00, claimed, accepted and paid 4834.20, remaining 91849.80; an 8th enrolment is refused and claims nothing', async () => {
    const empty = await budget(t, FNMF);
    expect(empty).toMatchObject({ program: FNMF, budget: '96684.00', claimed: '0.00', accepted: '0.00', paid: '0.00', remaining: '96684.00' });
    expect(empty.forfaits).toEqual([]);

    const start = shift(today(), { months: -1 });
    const enrolled: Enrolled[] = [];
    for (let n = 0; n < 7; n++) enrolled.push(await enrolFnmf(t, team, `budget-${n}`, { start, insurerId }));
    await quiet(queue);

    const answer = await bill(t, today(), FNMF);
    expect(answer.claims).toBe(7);
    await quiet(queue);
    const claims = await search<fhir4.Claim>(t, 'Claim', { identifier: `${CLAIM_SYSTEMS.fnmf}|` });
    expect(claims).toHaveLength(7);
    expect(new Set(claims.map((c) => c.patient.reference))).toEqual(new Set(enrolled.map((e) => `Patient/${e.patientId}`)));
    for (const claim of claims) {
      expect(amount(claim.total)).toBe(FNMF_AMOUNT);
      expect(gateway.submissionsOf(keyOf(claim))).toBe(1);
    }

    const report = await budget(t, FNMF);
    expect(report).toMatchObject({
      program: FNMF,
      budget: '96684.00',
      claimed: '4834.20',
      accepted: '4834.20',
      paid: '4834.20',
      remaining: '91849.80',
    });
    expect(report.claimed).toBe(times(7, FNMF_AMOUNT));
    expect(report.remaining).toBe(minus('96684.00', times(7, FNMF_AMOUNT)));
    expect(report.forfaits).toEqual([{ code: 'FNMF-SEQUENCE', claims: 7, claimed: '4834.20', accepted: '4834.20', paid: '4834.20' }]);
    // By centre: all seven enrolments are this centre's.
    const centre = await budget(t, FNMF, `Organization/${team.organizationId}`);
    expect(centre).toMatchObject({ claimed: '4834.20', accepted: '4834.20', paid: '4834.20' });

    // The active file is full: the 8th patient is refused; billing again changes nothing.
    const patientId = await seedFnmfPatient(t, team, 'budget-8');
    const refused = await t.post(`/fhir/Patient/${patientId}/$enroll`, enrolParameters({ program: FNMF, start, team: team.as(['gp', 'apa-teacher']) }));
    expectOutcome(refused, 409);
    expect((await bill(t, today(), FNMF)).created).toBe(0);
    await quiet(queue);
    expect((await budget(t, FNMF)).body).toEqual(report.body);
  });
});

// =============================================================================================
describe('REDIAB: forfaits inside the approval period 2001-08-24 to 2004-08-23', () => {
  let t: TestService;
  let queue: Queue;
  let team: SeededTeam;
  let associationId: string;
  let association: string;
  let patientA: Enrolled;
  const workers: TestService[] = [];

  beforeAll(async () => {
    // API only: claims are generated by `$bill` alone (each enrolment also queues a generation
    // as of today, which would claim every date up to 2004 at once); a worker runs at the end.
    t = await startTestService(gatewayEnv(gateway.baseUrl, { ROLE: 'api' }));
    queue = claimsQueue(t);
    team = await seedRediabTeam(t, 'claims-rediab', ['gp', 'nurse', 'sports-educator', 'podiatrist', 'dietitian', 'diabetologist']);
    associationId = await seedAssociation(t);
    association = `Organization/${associationId}`;
    const seeded = await seedRediabPatient2002(t, team, 'rediab-a');
    const enrolled = await enrol(t, seeded.patientId, { program: REDIAB, start: '2002-01-15', team: team.as(['gp', 'nurse', 'sports-educator', 'podiatrist']), consent: seeded.consent });
    patientA = { ...enrolled, coverageId: seeded.coverageId };
  });

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await queue?.close();
    await t?.stop();
  });

  const gp = (): string => team.member('gp').reference;
  const nurse = (): string => team.member('nurse').reference;
  const podiatrist = (): string => team.member('podiatrist').reference;

  it('FEID at enrolment: 178.36 to the GP, 80.49 to the nurse, 30.18 to the association, three Claims (and FSP 83.85 to the podiatrist)', async () => {
    const answer = await bill(t, '2002-01-15', REDIAB);
    const claims = await listedFor(t, answer, patientA.patientId);
    expect(claims.map(summary).sort()).toEqual(
      [`FEID 2002-01-15 ${gp()} 178.36`, `FEID 2002-01-15 ${nurse()} 80.49`, `FEID 2002-01-15 ${association} 30.18`, `FSP 2002-01-15 ${podiatrist()} 83.85`].sort(),
    );
    const initial = onePlan(await carePlansOf(t, patientA.patientId, patientA.episodeId), 'initial-education');
    const feid = claims.filter((c) => forfaitOf(c) === 'FEID');
    for (const claim of feid) {
      expect(claim.provider.reference).toBe(claim.payee?.party?.reference);
      expect(claim.billablePeriod).toEqual({ start: '2002-01-15', end: '2002-05-14' });
      expect(claim.billablePeriod).toEqual(initial.period);
      expect(claim.supportingInfo?.map((info) => info.valueReference?.reference)).toEqual(
        expect.arrayContaining([`EpisodeOfCare/${patientA.episodeId}`, `CarePlan/${initial.id}`]),
      );
      expect(claim.insurance?.[0]?.coverage.reference).toBe(`Coverage/${patientA.coverageId}`);
      expect(claim.identifier?.[0]?.system).toBe(CLAIM_SYSTEMS.rediab);
      expect(claim.item).toHaveLength(1);
      expect(tariffOf(claim.item?.[0] as fhir4.ClaimItem)).toBe(TARIFFS.feid);
    }
    const byPayee = new Map(feid.map((c) => [c.payee?.party?.reference, c]));
    expect(categoryOf(byPayee.get(gp())?.item?.[0] as fhir4.ClaimItem)).toBe('gp');
    expect(categoryOf(byPayee.get(nurse())?.item?.[0] as fhir4.ClaimItem)).toBe('nurse');
    expect(categoryOf(byPayee.get(association)?.item?.[0] as fhir4.ClaimItem)).toBe('sports-educator');
    expect(new Set(feid.map(keyOf)).size).toBe(3);
    // ROLE=api: written and queued, not submitted yet.
    expect(gateway.submissionsOf(keyOf(feid[0] as fhir4.Claim))).toBe(0);
  });

  it('FESD at the start of each follow-up year, FSP each podiatric year, none starting after 2004-08-23', async () => {
    const at = async (asOf: string): Promise<string[]> => (await listedFor(t, await bill(t, asOf, REDIAB), patientA.patientId)).map(summary).sort();
    const feid = [`FEID 2002-01-15 ${gp()} 178.36`, `FEID 2002-01-15 ${nurse()} 80.49`, `FEID 2002-01-15 ${association} 30.18`];
    const fesd = (date: string) => [`FESD ${date} ${gp()} 73.17`, `FESD ${date} ${nurse()} 50.31`, `FESD ${date} ${association} 40.25`];
    const fsp = (date: string) => `FSP ${date} ${podiatrist()} 83.85`;

    expect(await at('2002-05-14')).toEqual([...feid, fsp('2002-01-15')].sort());
    expect(await at('2002-05-15')).toEqual([...feid, fsp('2002-01-15'), ...fesd('2002-05-15')].sort());
    expect(await at('2003-05-15')).toEqual([...feid, fsp('2002-01-15'), ...fesd('2002-05-15'), fsp('2003-01-15'), ...fesd('2003-05-15')].sort());
    const all = [...feid, fsp('2002-01-15'), ...fesd('2002-05-15'), fsp('2003-01-15'), ...fesd('2003-05-15'), fsp('2004-01-15'), ...fesd('2004-05-15')].sort();
    expect(await at('2004-08-23')).toEqual(all);
    // The 2005 plans exist (written at enrolment), yet nothing is due after the approval period.
    const plans = await carePlansOf(t, patientA.patientId, patientA.episodeId);
    expect(plans.some((p) => planCodeOf(p) === 'follow-up' && p.period?.start === '2005-05-15')).toBe(true);
    expect(plans.some((p) => planCodeOf(p) === 'podiatric-follow-up' && p.period?.start === '2005-01-15')).toBe(true);
    const late = await bill(t, '2006-12-31', REDIAB);
    expect((await listedFor(t, late, patientA.patientId)).map(summary).sort()).toEqual(all);
    expect((await claimsOf(t, patientA.patientId)).map(summary).sort()).toEqual(all);

    const fesd2003 = (await claimsOf(t, patientA.patientId)).find((c) => forfaitOf(c) === 'FESD' && c.created === '2003-05-15' && c.payee?.party?.reference === gp());
    expect(fesd2003?.billablePeriod).toEqual({ start: '2003-05-15', end: '2004-05-14' });
    expect(tariffOf(fesd2003?.item?.[0] as fhir4.ClaimItem)).toBe(TARIFFS.fesd);
  });

  it('FECD (200.62, to the association) when complementary education opens with $add-plan, not before', async () => {
    const opened = await t.post(`/fhir/EpisodeOfCare/${patientA.episodeId}/$add-plan`, parameters({ name: 'plan', valueCode: 'complementary-education' }, { name: 'start', valueDate: '2003-03-01' }));
    expect(opened.status, JSON.stringify(opened.body)).toBe(201);
    const carePlanId = idOf(opened.body.parameter[0].valueReference, 'CarePlan');
    const fecdOf = async (asOf: string) => (await listedFor(t, await bill(t, asOf, REDIAB), patientA.patientId)).filter((c) => forfaitOf(c) === 'FECD');
    expect(await fecdOf('2003-02-28')).toHaveLength(0);
    const [fecd, ...more] = await fecdOf('2003-03-01');
    expect(more).toHaveLength(0);
    expect(summary(fecd as fhir4.Claim)).toBe(`FECD 2003-03-01 ${association} 200.62`);
    expect(fecd?.billablePeriod).toEqual({ start: '2003-03-01', end: '2003-08-31' });
    expect(fecd?.supportingInfo?.map((info) => info.valueReference?.reference)).toContain(`CarePlan/${carePlanId}`);
    expect(tariffOf(fecd?.item?.[0] as fhir4.ClaimItem)).toBe(TARIFFS.fecd);
    expect(categoryOf(fecd?.item?.[0] as fhir4.ClaimItem)).toBeUndefined();
  });

  it('without a podiatrist no FSP; after $exit nothing falls due', async () => {
    const seeded = await seedRediabPatient2002(t, team, 'rediab-b');
    const enrolled = await enrol(t, seeded.patientId, { program: REDIAB, start: '2002-01-15', team: team.as(['gp', 'nurse']), consent: seeded.consent });
    const exit = await t.post(`/fhir/EpisodeOfCare/${enrolled.episodeId}/$exit`, parameters({ name: 'reason', valueCode: 'withdrew' }, { name: 'date', valueDate: '2002-09-01' }));
    expect(exit.status, JSON.stringify(exit.body)).toBe(200);
    const answer = await bill(t, '2006-12-31', REDIAB);
    const expected = [`FEID 2002-01-15 ${gp()} 178.36`, `FEID 2002-01-15 ${nurse()} 80.49`, `FESD 2002-05-15 ${gp()} 73.17`, `FESD 2002-05-15 ${nurse()} 50.31`].sort();
    expect((await listedFor(t, answer, enrolled.patientId)).map(summary).sort()).toEqual(expected);
    expect((await claimsOf(t, enrolled.patientId)).map(summary).sort()).toEqual(expected);
  });

  it('bad data: an insurer not in insurers.json (insurer-not-accepted), a professional without an identifier (payee-identifier-missing): clear issues, no such claim', async () => {
    // An insurer that has not joined the agreement (enrolled on an operator's override).
    const outsider = await seedRediabPatient2002(t, team, 'rediab-msa', INSURERS.msaNord);
    const c = await enrol(t, outsider.patientId, {
      program: REDIAB,
      start: '2002-01-15',
      team: team.as(['gp']),
      consent: outsider.consent,
      overrideReason: 'The MSA is expected to join the agreement',
    });
    // A GP whose Practitioner has no identifier (no RPPS number for the insurer).
    const noId = await seedRediabTeam(t, 'claims-rediab-noid', ['gp', 'nurse']);
    await stripPractitionerIdentifiers(t, noId.member('gp').practitionerId);
    const seeded = await seedRediabPatient2002(t, noId, 'rediab-noid');
    const d = await enrol(t, seeded.patientId, { program: REDIAB, start: '2002-01-15', team: noId.as(['gp', 'nurse']), consent: seeded.consent });

    const answer = await bill(t, '2002-01-15', REDIAB);
    const notAccepted = issuesWithRule(answer, 'insurer-not-accepted');
    expect(notAccepted, JSON.stringify(answer.issues)).toHaveLength(1);
    expect(notAccepted[0]).toMatchObject({ severity: 'error', code: 'business-rule', expression: ['Coverage.payor'] });
    expect(notAccepted[0]?.diagnostics).toContain(`Organization/${outsider.insurerId}`);
    expect(notAccepted[0]?.diagnostics).toMatch(/not among the insurers the program accepts/);
    const missingId = issuesWithRule(answer, 'payee-identifier-missing');
    expect(missingId, JSON.stringify(answer.issues)).toHaveLength(1);
    expect(missingId[0]).toMatchObject({ severity: 'error', code: 'required' });
    expect(missingId[0]?.diagnostics).toContain(noId.member('gp').reference);

    expect(await claimsOf(t, c.patientId)).toHaveLength(0);
    // The nurse's part is claimed; the GP's is not.
    expect((await claimsOf(t, d.patientId)).map(summary)).toEqual([`FEID 2002-01-15 ${noId.member('nurse').reference} 80.49`]);
  });

  it('COOP per member professional as Invoices (no patient): on joining and each anniversary, inside the approval period and membership', async () => {
    const role = async (label: string, code: string, period: fhir4.Period): Promise<string> => {
      const created = await t.post('/fhir/PractitionerRole', {
        resourceType: 'PractitionerRole',
        identifier: [{ system: 'urn:test:role', value: `coop-${label}` }],
        active: true,
        practitioner: { reference: `Practitioner/${team.member('gp').practitionerId}` },
        organization: { reference: `Organization/${team.organizationId}` },
        code: [{ coding: [{ system: SYSTEMS.careTeamRole, code }] }],
        period,
      } satisfies fhir4.PractitionerRole);
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      return `PractitionerRole/${created.body.id as string}`;
    };
    const coopGp = await role('gp', 'gp', { start: '2002-02-01' });
    const coopEducator = await role('educator', 'sports-educator', { start: '2002-03-01', end: '2003-01-31' });
    const coopDiabetologist = await role('diabetologist', 'diabetologist', { start: '2001-06-01' });
    const coopLate = await role('late-nurse', 'nurse', { start: '2004-08-24' });

    await bill(t, '2006-12-31', REDIAB);
    const invoices = await allInvoices(t);
    const payeeOf = (invoice: fhir4.Invoice): string | undefined =>
      invoice.participant?.find((p) => p.role?.coding?.some((c) => c.system === 'http://terminology.hl7.org/CodeSystem/payeetype' && c.code === 'provider'))?.actor.reference;
    const memberOf = (invoice: fhir4.Invoice): string | undefined =>
      invoice.participant?.find((p) => p.role?.coding?.some((c) => c.system === SYSTEMS.careTeamRole))?.actor.reference;
    const lines = invoices.map((invoice) => `${invoice.date?.slice(0, 10)} ${memberOf(invoice)} ${payeeOf(invoice)} ${amount(invoice.totalNet)}`).sort();
    expect(lines).toEqual(
      [
        `2002-02-01 ${coopGp} ${coopGp} 105.19`,
        `2003-02-01 ${coopGp} ${coopGp} 105.19`,
        `2004-02-01 ${coopGp} ${coopGp} 105.19`,
        `2002-03-01 ${coopEducator} ${association} 60.37`,
        `2002-06-01 ${coopDiabetologist} ${coopDiabetologist} 210.38`,
        `2003-06-01 ${coopDiabetologist} ${coopDiabetologist} 210.38`,
        `2004-06-01 ${coopDiabetologist} ${coopDiabetologist} 210.38`,
      ].sort(),
    );
    expect(lines.some((line) => line.includes(coopLate))).toBe(false);
    for (const invoice of invoices) {
      expect(invoice.subject).toBeUndefined();
      expect(invoice.status).toBe('issued');
      expect(invoice.recipient?.identifier?.value).toBe('CPAM-BOULOGNE-SUR-MER');
      expect(invoice.type?.coding).toContainEqual(expect.objectContaining({ system: FORFAIT_SYSTEM, code: 'COOP' }));
      expect(tariffOf(invoice.lineItem?.[0] as fhir4.InvoiceLineItem)).toBe(TARIFFS.coop);
    }
    const educator = invoices.find((invoice) => memberOf(invoice) === coopEducator);
    expect(educator?.issuer?.reference).toBe(association);

    // Billing again writes no second Invoice.
    const before = invoices.length;
    await bill(t, '2006-12-31', REDIAB);
    expect(await allInvoices(t)).toHaveLength(before);
  });

  it('a worker process on the same queues submits every claim once; every ClaimResponse stored and linked; $budget sums them exactly', async () => {
    const worker = await startTestService(gatewayEnv(gateway.baseUrl, { ROLE: 'worker', QUEUE_PREFIX: t.prefix, FHIR_BASE_URL: t.fhirUrl }), { keepKeys: true });
    workers.push(worker);
    await quiet(queue);
    const claims = await search<fhir4.Claim>(t, 'Claim', { identifier: `${CLAIM_SYSTEMS.rediab}|` });
    // Patient A: FEID 3, FESD 9, FSP 3, FECD 1; patient B: 4; the no-identifier team's patient: the
    // nurse's FEID and her FESD of 2002-2004 (the worker's generation runs as of today). The
    // MSA patient: none.
    expect(claims.map(summary).length).toBe(16 + 4 + 4);
    const rediabKeys = [...gateway.claims.keys()].filter((key) => key.startsWith(`${CLAIM_SYSTEMS.rediab}|`));
    expect(rediabKeys.sort()).toEqual(claims.map(keyOf).sort());
    for (const claim of claims) {
      assertValid(claim);
      expect(gateway.submissionsOf(keyOf(claim)), summary(claim)).toBe(1);
      const responses = await claimResponsesOf(t, claim.id as string);
      expect(responses.map((r) => [r.outcome, r.request?.reference])).toEqual([['complete', `Claim/${claim.id}`]]);
      expect((await submissionTask(t, claim.id as string))?.status).toBe('completed');
    }
    const total = sum(claims.map((claim) => amount(claim.total)));
    const report = await budget(t, REDIAB);
    expect(report).toMatchObject({ program: REDIAB, claimed: total, accepted: total, paid: total });
    expect(report.budget).toBeUndefined();
    expect(report.remaining).toBeUndefined();
    expect(report.forfaits.map((f) => [f.code, f.claims])).toEqual([
      ['FECD', 1],
      ['FEID', 6],
      ['FESD', 14],
      ['FSP', 3],
    ]);
  });
});
