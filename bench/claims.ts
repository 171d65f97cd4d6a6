/**
 * Benchmark 4, forfait claims: generation and `$submit` of many FNMF forfait claims (one per
 * enrolment, at inclusion) through the adapter's own claims queue, to the local insurer
 * gateway of the integration tests (test/fixtures/insurer-gateway.ts), with the fast FHIR
 * responder as the FHIR server of record (both in bench/outside-world.ts, a process of their own).
 *
 * Seeding: one patient is enrolled through the real `$enroll` (HTTP), which writes its
 * EpisodeOfCare, CareTeam and CarePlans on the responder; that enrolment is then copied N times
 * straight into the responder's memory (it is the outside system: seeding through the API
 * would measure `$enroll`, not claims). The run then queues one `generate` job per enrolment,
 * as the adapter does when an enrolment's plans change, and the worker generates each claim,
 * queues its submission, and submits it. It ends when every claim is answered and checks that
 * the gateway received each claim identifier exactly once.
 */
import { Queue } from 'bullmq';
import { DateTime } from 'luxon';
import { CLAIMS_QUEUE, DAILY_BILLING_SCHEDULER } from '../src/queue/claims.js';
import { DAILY_ADVANCE_SCHEDULER, LIFECYCLE_QUEUE } from '../src/queue/lifecycle.js';
import { AUDIT_QUEUE } from '../src/queue/audit.js';
import { redisOptionsFromUrl } from '../src/service.js';
import { adjacentBaseline, baselineLabel, deleteKeys, fmt, newPrefix, percent, redisUrl, sleep, until } from './lib/common.js';
import { startServiceProcess, type ServiceProcess } from './lib/service-process.js';
import { demoResources, patientResources } from './lib/seed.js';
import { startOutsideWorld, type OutsideWorld } from './lib/world.js';
import type { Bench, BenchRow } from './types.js';

const BASE = 'http://forfait-fhir.org/fhir';
const FNMF = 'fnmf-prediabetes';
const CHUNK = 1000;

/** The FNMF team (the demo GP's role, an APA teacher) and an insurer; the demo patient 1 enrolled from today. */
async function enrolTemplate(world: OutsideWorld, service: ServiceProcess, today: string): Promise<{ template: fhir4.Resource[]; episodeId: string }> {
  const demo = demoResources(today);
  const gpRole = demo.find((r) => r.resourceType === 'PractitionerRole' && (r as fhir4.PractitionerRole).identifier?.[0]?.value === 'GP-VAUGIRARD') as fhir4.PractitionerRole;
  const patient = demo.find((r) => r.resourceType === 'Patient' && (r as fhir4.Patient).identifier?.[0]?.value === 'DEMO-1') as fhir4.Patient;
  const extra: fhir4.Resource[] = [
    { resourceType: 'Practitioner', id: 'bench-apa', identifier: [{ system: 'urn:oid:1.2.250.1.71.4.2.1', value: '10000000002' }], name: [{ family: 'APA', given: ['Bench'] }] } as fhir4.Practitioner,
    {
      resourceType: 'PractitionerRole',
      id: 'bench-apa-role',
      identifier: [{ system: `${BASE}/NamingSystem/demo-role`, value: 'APA-VAUGIRARD' }],
      active: true,
      practitioner: { reference: 'Practitioner/bench-apa' },
      organization: gpRole.organization as fhir4.Reference,
    } as fhir4.PractitionerRole,
    { resourceType: 'Organization', id: 'bench-mgen', identifier: [{ system: `${BASE}/NamingSystem/organisme-assurance-maladie`, value: 'MGEN-75' }], active: true, name: 'MGEN' } as fhir4.Organization,
    {
      resourceType: 'Coverage',
      id: 'bench-coverage',
      identifier: [{ system: 'urn:bench:coverage', value: 'COV-1' }],
      status: 'active',
      beneficiary: { reference: `Patient/${patient.id}` },
      payor: [{ reference: 'Organization/bench-mgen' }],
    } as fhir4.Coverage,
  ];
  await world.seed([...demo, ...extra]);
  const response = await fetch(`${service.url}/fhir/Patient/${patient.id}/$enroll`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Parameters',
      parameter: [
        { name: 'program', valueString: FNMF },
        { name: 'start', valueDate: today },
        { name: 'careTeam', part: [{ name: 'member', valueReference: { reference: `PractitionerRole/${gpRole.id}` } }, { name: 'role', valueCode: 'gp' }] },
        { name: 'careTeam', part: [{ name: 'member', valueReference: { reference: 'PractitionerRole/bench-apa-role' } }, { name: 'role', valueCode: 'apa-teacher' }] },
      ],
    }),
  });
  const body = (await response.json()) as fhir4.Parameters;
  if (response.status !== 201) throw new Error(`$enroll of the template answered ${response.status}: ${JSON.stringify(body).slice(0, 400)}`);
  const episodeRef = body.parameter?.find((p) => p.name === 'episodeOfCare')?.valueReference?.reference ?? '';
  const episodeId = episodeRef.split('/')[1] as string;
  const episode = (await world.all<fhir4.EpisodeOfCare>('EpisodeOfCare')).find((e) => e.id === episodeId);
  if (!episode) throw new Error('the template EpisodeOfCare is not on the responder');
  const careTeams = (await world.all<fhir4.CareTeam>('CareTeam')).filter((c) => episode.team?.some((t) => t.reference === `CareTeam/${c.id}`));
  const carePlans = (await world.all<fhir4.CarePlan>('CarePlan')).filter((c) => c.subject.reference === `Patient/${patient.id}`);
  const own = patientResources([...demo, ...extra], patient.id as string).filter((r) => r.resourceType === 'Patient' || r.resourceType === 'Coverage');
  const strip = (r: fhir4.Resource): fhir4.Resource => {
    const { meta: _meta, ...rest } = r;
    return rest as fhir4.Resource;
  };
  return { template: [...own, episode, ...careTeams, ...carePlans].map(strip), episodeId };
}

export const run: Bench = async ({ quick }) => {
  // The issue's figure is 100,000 claims (`npm run bench -- --only claims --claims 100000`);
  // the normal run keeps the whole `npm run bench` to minutes on a 2-core machine.
  const count = Number(process.env.BENCH_CLAIMS ?? (quick ? 500 : 5_000));
  const prefix = newPrefix('claims');
  const today = DateTime.now().setZone('Europe/Paris').toISODate() as string;
  const connection = redisOptionsFromUrl(redisUrl());
  let world: OutsideWorld | undefined;
  let service: ServiceProcess | undefined;
  const claimsQueue = new Queue(CLAIMS_QUEUE, { connection, prefix });
  const auditQueue = new Queue(AUDIT_QUEUE, { connection, prefix });
  // Not 'delayed': the daily billing scheduler keeps its next run there.
  const idle = async (queue: Queue): Promise<boolean> => Object.values(await queue.getJobCounts('waiting', 'active', 'prioritized')).every((c) => c === 0);
  try {
    world = await startOutsideWorld();
    service = await startServiceProcess(prefix, { FHIR_BASE_URL: world.fhirBaseUrl, GATEWAY_BASE_URL: world.gatewayBaseUrl });
    // The daily sweeps (00:05 and 00:30 Europe/Paris) would run over every copied enrolment if
    // the run crossed those times: not what is measured here.
    const lifecycle = new Queue(LIFECYCLE_QUEUE, { connection, prefix });
    await Promise.all([claimsQueue.removeJobScheduler(DAILY_BILLING_SCHEDULER), lifecycle.removeJobScheduler(DAILY_ADVANCE_SCHEDULER)]);
    await lifecycle.close();
    const { template } = await enrolTemplate(world, service, today);
    // The template's own claim goes through first (queued by $enroll): then the copies.
    const w = world;
    try {
      await until(async () => (await w.gateway()).unique >= 1 && (await idle(claimsQueue)) && (await idle(auditQueue)), 60_000, 'the template claim');
    } catch (error) {
      const jobs = await claimsQueue.getJobs(['completed', 'failed', 'waiting', 'delayed', 'active']);
      const seen = jobs.map((job) => `${job.name} ${job.id}: ${JSON.stringify(job.returnvalue)} ${job.failedReason ?? ''}`);
      throw new Error(`${(error as Error).message}; claims jobs: ${seen.join('; ')}; gateway: ${JSON.stringify(await w.gateway())}`);
    }
    const seedStarted = performance.now();
    for (let i = 0; i < count; i += 10_000) await world.clone(template, Math.min(10_000, count - i), i);
    const episodes = (await world.all<fhir4.EpisodeOfCare>('EpisodeOfCare')).map((e) => e.id as string).filter((id) => id.startsWith('b'));
    // Each copy its own enrolment (chunks of 10,000 once reused the same ids: a 100,000 run billed 10,000).
    if (episodes.length !== count) throw new Error(`claims bench: ${episodes.length} enrolments seeded, ${count} asked for`);
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    const baseline = await adjacentBaseline();
    await world.resetStats();
    const before = await world.gateway();

    // Generation of every enrolment's claim, then submission: the adapter's own jobs.
    const started = performance.now();
    const cpu = service.cpuMs() ?? Number.NaN;
    const worldCpu = await world.cpuMs();
    const stamp = Date.now();
    for (let i = 0; i < episodes.length; i += CHUNK) {
      await claimsQueue.addBulk(
        episodes.slice(i, i + CHUNK).map((episodeId) => ({
          name: 'generate',
          data: { kind: 'generate', episodeId },
          opts: { jobId: `generate.${episodeId}.today.${stamp}`, attempts: 10, backoff: { type: 'custom' }, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } },
        })),
      );
    }
    let lastLog = performance.now();
    await until(
      async () => {
        const gateway = await w.gateway();
        if (performance.now() - lastLog > 15_000) {
          lastLog = performance.now();
          console.error(`[bench]   claims: ${fmt(gateway.unique - before.unique)} / ${fmt(episodes.length)} answered by the gateway`);
        }
        return gateway.unique - before.unique >= episodes.length && (await idle(claimsQueue));
      },
      3_600_000,
      'every claim to be submitted',
      250,
    );
    const seconds = (performance.now() - started) / 1000;
    const cpuMs = (service.cpuMs() ?? Number.NaN) - cpu;
    const outsideCpuMs = (await world.cpuMs()) - worldCpu;
    await until(() => idle(auditQueue), 300_000, 'the audit queue');
    await sleep(200);
    const gateway = await world.gateway();
    const stats = await world.stats();
    const failed = await claimsQueue.getJobCounts('failed');
    const claimsPerSecond = episodes.length / seconds;
    const ratio = claimsPerSecond / baseline.jobsPerSecond;
    const fhirRequests = Object.values(stats.requests).reduce((a, b) => a + b, 0);
    const expected = episodes.length + before.unique;
    const exactlyOnce = gateway.unique === expected && gateway.identifiers === expected && gateway.submissions === expected && gateway.duplicates === 0;
    const detail = Object.entries(stats.byType)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, value]) => `${key} ${fmt(value / episodes.length, 2)}`)
      .join(', ');
    const rows: BenchRow[] = [
      {
        name: `claims: generation + $submit of ${fmt(episodes.length)} FNMF forfait claims to the local insurer gateway (fast FHIR responder; seeding ${fmt(seedSeconds, 0)} s, not counted)`,
        value: `${fmt(claimsPerSecond)} claims/s (${fmt(seconds, 0)} s; adapter ${fmt(cpuMs / episodes.length, 2)} ms CPU/claim, ${fmt(cpuMs / 10 / seconds, 0)} % of a core; FHIR responder + gateway ${fmt(outsideCpuMs / episodes.length, 2)} ms CPU/claim)`,
        baseline: `${baselineLabel(baseline)}, measured just before`,
        ratio: percent(ratio),
        goal: '',
        met: null,
      },
      {
        name: 'claims: gateway received / unique identifiers / duplicates (each claim identifier exactly once)',
        value: `${fmt(gateway.submissions)} / ${fmt(gateway.unique)} / ${fmt(gateway.duplicates)}${failed['failed'] ? `; ${fmt(failed['failed'])} jobs failed` : ''}`,
        baseline: `${fmt(expected)} claims`,
        ratio: '',
        goal: 'each exactly once',
        met: exactlyOnce && !failed['failed'],
      },
      {
        name: `claims: FHIR requests per claim (${detail})`,
        value: `${fmt(fhirRequests / episodes.length, 2)} requests`,
        baseline: '',
        ratio: '',
        goal: '',
        met: null,
      },
    ];
    return rows;
  } finally {
    await claimsQueue.close();
    await auditQueue.close();
    await service?.stop();
    await world?.stop();
    await deleteKeys(prefix);
  }
};
