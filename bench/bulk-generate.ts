/**
 * Seeded generator of synthetic FHIR Bulk Data NDJSON (no Math.random: the same seed and size
 * give the same bytes). About 5 resources per patient: Patient, a fasting glucose, a BMI or a
 * weight and a height, sometimes a diabetes or gestational-diabetes Condition, usually a
 * Coverage; plus the centre's Organization, Practitioners and PractitionerRoles. One file per
 * resource type, streamed to disk, and a Bulk Data output manifest (`manifest.json`, file://
 * URLs). Usage: `npx tsx bench/bulk-generate.ts <dir> <patients> [seed]`.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { seededRandom } from '../test/fixtures/seeded-random.js';

export const BENCH_CENTRE = { system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre', value: 'CDS-MGEN-VAUGIRARD' };
/** The date the generated data is meant to be screened at (observation dates are relative to it). */
export const BENCH_AS_OF = '2026-11-01';
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const SNOMED = 'http://snomed.info/sct';

export interface GeneratedSet {
  dir: string;
  patients: number;
  seed: number;
  files: { type: string; path: string; count: number }[];
  manifest: string;
  bytes: number;
}

const ROLES = 40;
/** Roles 0..31 practise in the participating centre, 32..39 in another organization. */
const ROLES_IN_CENTRE = 32;

class TypeFile {
  count = 0;
  bytes = 0;
  private parts: string[] = [];
  private size = 0;
  private readonly stream: WriteStream;
  constructor(readonly type: string, readonly file: string) {
    this.stream = createWriteStream(file, { highWaterMark: 1024 * 1024 });
  }
  async add(resource: object): Promise<void> {
    const line = JSON.stringify(resource);
    this.parts.push(line, '\n');
    this.size += line.length + 1;
    this.count += 1;
    if (this.size > 512 * 1024) await this.flush();
  }
  async flush(): Promise<void> {
    if (!this.parts.length) return;
    const text = this.parts.join('');
    this.bytes += Buffer.byteLength(text);
    this.parts = [];
    this.size = 0;
    if (!this.stream.write(text)) await new Promise<void>((resolve) => this.stream.once('drain', () => resolve()));
  }
  async close(): Promise<void> {
    await this.flush();
    await new Promise<void>((resolve, reject) => this.stream.end((error?: Error | null) => (error ? reject(error) : resolve())));
  }
}

const pad = (n: number): string => String(n).padStart(2, '0');
function dateBefore(asOf: string, days: number): string {
  const date = new Date(`${asOf}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() - days);
  return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
}

export async function generateBulk(dir: string, patients: number, seed = 42): Promise<GeneratedSet> {
  await mkdir(dir, { recursive: true });
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const between = (low: number, high: number): number => low + random() * (high - low);
  const files = Object.fromEntries(
    ['Patient', 'Observation', 'Condition', 'Coverage', 'Organization', 'Practitioner', 'PractitionerRole'].map((type) => [type, new TypeFile(type, path.join(dir, `${type}.ndjson`))]),
  ) as Record<string, TypeFile>;
  const meta = { versionId: '1', lastUpdated: `${BENCH_AS_OF}T08:00:00.000Z` };

  await files['Organization']!.add({ resourceType: 'Organization', id: 'centre', meta, identifier: [BENCH_CENTRE], active: true, name: 'Participating centre' });
  await files['Organization']!.add({ resourceType: 'Organization', id: 'elsewhere', meta, identifier: [{ system: 'urn:bench:org', value: 'OTHER' }], active: true, name: 'Other practice' });
  await files['Organization']!.add({ resourceType: 'Organization', id: 'cpam', meta, identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.1', value: '597' }], name: 'Health insurance fund' });
  for (let role = 0; role < ROLES; role += 1) {
    await files['Practitioner']!.add({ resourceType: 'Practitioner', id: `gp-${role}`, meta, identifier: [{ system: 'urn:oid:1.2.250.1.71.4.2.1', value: `100000${String(role).padStart(5, '0')}` }], name: [{ family: `Doctor${role}` }] });
    await files['PractitionerRole']!.add({
      resourceType: 'PractitionerRole',
      id: `role-${role}`,
      meta,
      active: true,
      practitioner: { reference: `Practitioner/gp-${role}` },
      organization: { reference: `Organization/${role < ROLES_IN_CENTRE ? 'centre' : 'elsewhere'}` },
    });
  }

  for (let i = 0; i < patients; i += 1) {
    const id = `s${seed}p${i}`;
    const subject = { reference: `Patient/${id}` };
    const gender = random() < 0.5 ? 'female' : 'male';
    const birthDate = `${1940 + Math.floor(random() * 60)}-${pad(1 + Math.floor(random() * 12))}-${pad(1 + Math.floor(random() * 28))}`;
    await files['Patient']!.add({
      resourceType: 'Patient',
      id,
      meta,
      text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">Synthetic patient ${i}</div>` },
      identifier: [{ system: 'urn:bench:patient', value: `P${seed}-${i}` }],
      name: [{ family: `Synthetic${i}`, given: [pick(['Alex', 'Camille', 'Dominique', 'Sacha'])] }],
      gender,
      birthDate,
      address: [{ use: 'home', city: 'Paris', postalCode: pick(['75015', '59000', '62000', '69001']) }],
      generalPractitioner: [{ reference: `PractitionerRole/role-${Math.floor(random() * ROLES)}` }],
    });
    const unit = random();
    const mgdl = between(80, 140);
    const glucose =
      unit < 0.6
        ? { value: Math.round(mgdl), unit: 'mg/dL' }
        : unit < 0.9
          ? { value: Math.round((mgdl / 18.016) * 100) / 100, unit: 'mmol/L' }
          : { value: Math.round(mgdl) / 100, unit: 'g/L' };
    await files['Observation']!.add({
      resourceType: 'Observation',
      id: `${id}-glu`,
      meta,
      identifier: [{ system: 'urn:bench:lab', value: `GLU-${seed}-${i}` }],
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
      code: { coding: [{ system: LOINC, code: '1558-6', display: 'Fasting glucose [Mass/volume] in Serum or Plasma' }] },
      subject,
      effectiveDateTime: dateBefore(BENCH_AS_OF, Math.floor(random() * 420)),
      valueQuantity: { ...glucose, system: UCUM, code: glucose.unit },
    });
    const effective = dateBefore(BENCH_AS_OF, Math.floor(random() * 300));
    if (random() < 0.7) {
      await files['Observation']!.add({
        resourceType: 'Observation', id: `${id}-bmi`, meta, status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: LOINC, code: '39156-5', display: 'Body mass index (BMI) [Ratio]' }] },
        subject, effectiveDateTime: effective,
        valueQuantity: { value: Math.round(between(19, 36) * 10) / 10, unit: 'kg/m2', system: UCUM, code: 'kg/m2' },
      });
    } else {
      await files['Observation']!.add({
        resourceType: 'Observation', id: `${id}-wt`, meta, status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: LOINC, code: '29463-7', display: 'Body weight' }] },
        subject, effectiveDateTime: effective,
        valueQuantity: { value: Math.round(between(50, 110) * 10) / 10, unit: 'kg', system: UCUM, code: 'kg' },
      });
      await files['Observation']!.add({
        resourceType: 'Observation', id: `${id}-ht`, meta, status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: LOINC, code: '8302-2', display: 'Body height' }] },
        subject, effectiveDateTime: dateBefore(BENCH_AS_OF, Math.floor(random() * 2000)),
        valueQuantity: { value: Math.round(between(150, 192)), unit: 'cm', system: UCUM, code: 'cm' },
      });
    }
    const condition = random();
    if (condition < 0.1 || (gender === 'female' && condition < 0.14)) {
      const gestational = condition >= 0.1;
      await files['Condition']!.add({
        resourceType: 'Condition', id: `${id}-cond`, meta,
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: gestational ? 'resolved' : 'active' }] },
        verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
        code: { coding: [{ system: SNOMED, code: gestational ? '11687002' : '44054006' }] },
        subject, recordedDate: dateBefore(BENCH_AS_OF, 400 + Math.floor(random() * 3000)),
      });
    }
    if (random() < 0.9) {
      await files['Coverage']!.add({
        resourceType: 'Coverage', id: `${id}-cov`, meta, status: 'active',
        beneficiary: subject, payor: [{ reference: 'Organization/cpam' }],
        period: { start: dateBefore(BENCH_AS_OF, 2000) },
      });
    }
  }
  const list = Object.values(files);
  await Promise.all(list.map((file) => file.close()));
  const output = list.filter((file) => file.count > 0).map((file) => ({ type: file.type, path: file.file, count: file.count }));
  const manifest = path.join(dir, 'manifest.json');
  await writeFile(
    manifest,
    JSON.stringify({
      transactionTime: `${BENCH_AS_OF}T08:00:00.000Z`,
      request: `urn:bench:bulk-generate?patients=${patients}&seed=${seed}`,
      requiresAccessToken: false,
      output: output.map((file) => ({ type: file.type, url: pathToFileURL(file.path).toString(), count: file.count })),
      error: [],
    }),
  );
  return { dir, patients, seed, files: output, manifest, bytes: list.reduce((sum, file) => sum + file.bytes, 0) };
}

/**
 * Awkward NDJSON lines about the patients generated with `seed`, each exercising one path of
 * the bulk reader: broken JSON, a non-resource, resources without a patient, a bad Patient
 * id, CRLF, an orphan, an extension, multi-byte text, a second Patient for one id, an open
 * EpisodeOfCare in the program, a Coverage, empty and blank lines, a last line without newline.
 */
export function awkwardLines(seed: number): string {
  const p = (i: number): string => `s${seed}p${i}`;
  const glucose = (id: string, patient: string, value: number, extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ resourceType: 'Observation', id, status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '1558-6', display: 'Glycémie à jeun 血糖 🩸' }] }, subject: { reference: `Patient/${patient}` }, effectiveDateTime: BENCH_AS_OF, valueQuantity: { value, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' }, ...extra });
  return [
    glucose('extra-1', p(1), 110),
    '{"resourceType": "Observation", broken',
    '',
    '42',
    '{"resourceType":"Observation","id":"no-subject","code":{"coding":[{"system":"http://loinc.org","code":"1558-6"}]}}',
    '{"resourceType":"Observation","id":"group","code":{"coding":[{"system":"http://loinc.org","code":"1558-6"}]},"subject":{"reference":"Group/1"}}',
    '{"resourceType":"Patient","id":"bad id é"}',
    `${glucose('crlf', p(2), 105)}\r`,
    glucose('orphan', 'nobody-here', 100),
    glucose('fasting', p(3), 99, { extension: [{ url: 'http://example.org/fasting', valueBoolean: true }] }),
    JSON.stringify({ resourceType: 'Patient', id: p(4), gender: 'female', birthDate: '1970-02-03', generalPractitioner: [{ reference: 'PractitionerRole/role-1' }] }),
    JSON.stringify({ resourceType: 'EpisodeOfCare', id: 'ep-5', status: 'active', patient: { reference: `Patient/${p(5)}` }, type: [{ coding: [{ system: 'http://forfait-fhir.org/fhir/CodeSystem/program', code: 'fnmf-prediabetes' }] }] }),
    JSON.stringify({ resourceType: 'Coverage', id: 'cov-6', status: 'active', beneficiary: { reference: `Patient/${p(6)}` }, payor: [{ reference: 'Organization/cpam' }] }),
    '   ',
    glucose('last', p(7), 120),
  ].join('\n');
}

/** Generates once per (seed, size) into `root` (default the OS temp dir) and reuses it afterwards. */
export async function cachedBulk(patients: number, seed = 42, root = os.tmpdir()): Promise<GeneratedSet> {
  const dir = path.join(root, `forfait-bulk-s${seed}-n${patients}`);
  const marker = path.join(dir, '.complete.json');
  try {
    return JSON.parse(await readFile(marker, 'utf8')) as GeneratedSet;
  } catch {
    await rm(dir, { recursive: true, force: true });
    const set = await generateBulk(dir, patients, seed);
    await writeFile(marker, JSON.stringify(set));
    return set;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [dir, count, seed] = process.argv.slice(2);
  if (!dir || !count) {
    process.stderr.write('usage: npx tsx bench/bulk-generate.ts <dir> <patients> [seed]\n');
    process.exit(2);
  }
  const started = Date.now();
  const set = await generateBulk(dir, Number(count), seed ? Number(seed) : 42);
  process.stdout.write(`${set.patients} patients, ${set.files.reduce((s, f) => s + f.count, 0)} resources, ${(set.bytes / 1e6).toFixed(1)} MB in ${((Date.now() - started) / 1000).toFixed(1)} s → ${set.dir}\n`);
}
