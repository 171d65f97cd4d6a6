/**
 * Micro-benchmark of the pure part of bulk screening: the generated population (seed 42) is
 * read, reduced and joined in memory, then `evaluateEligibility` runs over every patient
 * `--rounds` times. Reports CPU time per patient (process.cpuUsage, less noisy than wall time
 * on a shared machine) and, as the ratio's baseline, the CPU time of a raw `JSON.parse` of
 * the same lines. A development tool (profiling: `node --cpu-prof --import tsx ...`), not part
 * of `npm run bench`.
 *
 * The digest of all verdicts (first round) is printed: run it before and after a change to
 * the rules' code to check that no verdict changed.
 *
 * `npx tsx bench/bulk-evaluate.ts [--patients 20000] [--rounds 3]`
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PatientJoin, directoryWithInput, recordOf, type PatientBucket } from '../src/domain/bulk/join.js';
import { reduceResource, reductionPlan } from '../src/domain/bulk/reduce.js';
import { evaluateEligibility } from '../src/domain/evaluate.js';
import { loadProgramCatalog } from '../src/programs/load-programs.js';
import { BENCH_AS_OF, cachedBulk } from './bulk-generate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(name);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
};
const patients = arg('--patients', 20_000);
const rounds = arg('--rounds', 3);
const cpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

const set = await cachedBulk(patients, 42);
const catalog = loadProgramCatalog({ mappingsDir: path.join(ROOT, 'mappings'), profilesDir: path.join(ROOT, 'profiles') });
const program = catalog.programs.get('fnmf-prediabetes');
if (!program) throw new Error('program fnmf-prediabetes not loaded');
const plan = reductionPlan(program, catalog);

const lines = set.files.flatMap((file) => readFileSync(file.path, 'utf8').split('\n').filter((line) => line.length > 0));
let started = cpuMs();
for (const line of lines) JSON.parse(line);
const rawMs = cpuMs() - started;

const join = new PatientJoin();
const organizations = new Map<string, fhir4.Organization>();
const roles: fhir4.PractitionerRole[] = [];
for (const line of lines) {
  const resource = JSON.parse(line) as fhir4.Resource;
  if (resource.resourceType === 'Organization') organizations.set(`Organization/${resource.id}`, resource as fhir4.Organization);
  else if (resource.resourceType === 'PractitionerRole') roles.push(resource as fhir4.PractitionerRole);
  else {
    const reduced = reduceResource(resource, plan);
    if (reduced) join.add(JSON.parse(JSON.stringify(reduced)) as fhir4.Resource);
  }
}
const directory = directoryWithInput(program, { members: new Map() }, organizations.values(), roles);
const records = [...join.buckets.values()].flatMap((bucket) => (bucket.patient ? [recordOf(bucket as PatientBucket & { patient: fhir4.Patient }, organizations)] : []));

const outcomes: Record<string, number> = {};
// Digest of every full verdict (reasons, values, evidence, issues) of the first round: equal digests
// before and after a change of the rules' code mean no verdict changed.
const digest = createHash('sha256');
const perRound: number[] = [];
for (let round = 0; round < rounds; round += 1) {
  started = cpuMs();
  for (const record of records) {
    const verdict = evaluateEligibility(program, catalog, record, directory, BENCH_AS_OF);
    if (round === 0) {
      outcomes[verdict.outcome] = (outcomes[verdict.outcome] ?? 0) + 1;
      digest.update(JSON.stringify(verdict));
    }
  }
  perRound.push(cpuMs() - started);
}
const best = Math.min(...perRound);
process.stdout.write(
  `${records.length} patients, ${lines.length} lines: raw JSON.parse ${rawMs.toFixed(0)} ms CPU (${((rawMs * 1000) / records.length).toFixed(1)} µs/patient); ` +
    `evaluation best of ${rounds} ${best.toFixed(0)} ms CPU (${((best * 1000) / records.length).toFixed(1)} µs/patient, rounds ${perRound.map((ms) => ms.toFixed(0)).join('/')}) = ${((best / rawMs) * 100).toFixed(0)} % of the raw pass; ` +
    `outcomes ${JSON.stringify(outcomes)}; verdicts sha256 ${digest.digest('hex').slice(0, 16)}\n`,
);
