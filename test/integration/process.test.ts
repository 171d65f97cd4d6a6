/**
 * The real process: `node --import tsx src/main.ts --demo` as `npm start` runs it (from the
 * sources here). It starts, loads the demo data through its own API, evaluates it, drains
 * and exits 0 on SIGTERM; bad configuration and bad program data stop it at once with a
 * message naming the culprit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisOptionsFromUrl } from '../../src/service.js';
import { eventually } from './harness.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DEMO_PATIENT_SYSTEM = 'http://forfait-fhir.org/fhir/NamingSystem/demo-patient';
const START_TIMEOUT_MS = 60_000;

interface Spawned {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Exit code (or the signal's name) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const spawned: Spawned[] = [];
const prefixes: string[] = [];
const tempDirs: string[] = [];

function start(env: Record<string, string>, args: string[] = ['--demo']): Spawned {
  const prefix = `p${randomUUID().slice(0, 8)}`;
  prefixes.push(prefix);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', EMBEDDED_FHIR_PORT: '0', LOG_LEVEL: 'warn', QUEUE_PREFIX: prefix, REDIS_URL, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const handle = { child, stdout: () => out, stderr: () => err, exited };
  spawned.push(handle);
  return handle;
}

/** Resolves with the match once stdout has the pattern; rejects if the process exits first or time is up. */
async function waitForOutput(proc: Spawned, pattern: RegExp, timeoutMs = START_TIMEOUT_MS): Promise<RegExpExecArray> {
  let exited = false;
  void proc.exited.then(() => (exited = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(proc.stdout());
    if (match) return match;
    if (exited) throw new Error(`process exited before printing ${pattern}:\n${proc.stdout()}\n${proc.stderr()}`);
    if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${proc.stdout()}\n${proc.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Resolves with the exit once the process ends; rejects after timeoutMs. */
async function exitWithin(proc: Spawned, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`process still running after ${timeoutMs} ms:\n${proc.stderr()}`)), timeoutMs);
  });
  try {
    return await Promise.race([proc.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

afterAll(async () => {
  // Only the processes this file started, by pid.
  for (const proc of spawned) {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
  }
  const redis = new Redis(redisOptionsFromUrl(REDIS_URL));
  try {
    for (const prefix of prefixes) {
      const stream = redis.scanStream({ match: `${prefix}:*`, count: 500 });
      for await (const keys of stream as AsyncIterable<string[]>) if (keys.length) await redis.del(...keys);
    }
  } finally {
    redis.disconnect();
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url);
  // Arbitrary JSON (FHIR resources or the readiness report), inspected by assertions.
  return { status: response.status, body: (await response.json()) as any };
}

function outcomeOf(parameters: fhir4.Parameters): string | undefined {
  return parameters.parameter?.find((p) => p.name === 'outcome')?.valueCode;
}

describe('node src/main.ts --demo', () => {
  it('starts, loads and evaluates the demo data, then drains and exits 0 on SIGTERM', { timeout: 150_000 }, async () => {
    const proc = start({});
    const [, url] = await waitForOutput(proc, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const [, fhirUrl] = await waitForOutput(proc, /FHIR server of record: (http:\/\/\S+)/);
    expect(proc.stdout()).toMatch(/\(embedded, in memory\)/);
    expect(proc.stdout()).toContain(`CapabilityStatement: ${url}/fhir/metadata`);

    const ready = await getJson(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', redis: 'ok', fhir: 'ok' });

    const ids: Record<number, string> = {};
    for (const n of [1, 2, 3, 4]) {
      const found = await getJson(`${fhirUrl}/Patient?identifier=${encodeURIComponent(`${DEMO_PATIENT_SYSTEM}|DEMO-${n}`)}`);
      expect(found.status).toBe(200);
      expect(found.body.entry, `DEMO-${n}`).toHaveLength(1);
      ids[n] = found.body.entry[0].resource.id as string;
    }

    // The queued evaluations of the demo data ran: DEMO-1's FNMF verdict is recorded.
    const recorded = await eventually(async () => {
      const bundle = await getJson(`${fhirUrl}/GuidanceResponse?subject=Patient/${ids[1]}`);
      const responses = ((bundle.body.entry ?? []) as fhir4.BundleEntry[]).map((e) => e.resource as fhir4.GuidanceResponse);
      return responses.find((r) => r.moduleUri?.endsWith('fnmf-prediabetes') && r.status === 'success');
    }, 30_000);
    expect(recorded.reasonCode?.[0]?.coding?.[0]?.code).toBe('eligible');

    const expected: [number, string, string][] = [
      [1, 'fnmf-prediabetes', 'eligible'],
      [2, 'fnmf-prediabetes', 'undetermined'],
      [3, 'fnmf-prediabetes', 'not-eligible'],
      [4, 'rediab', 'eligible'],
    ];
    for (const [n, program, outcome] of expected) {
      const answer = await getJson(`${url}/fhir/Patient/${ids[n]}/$evaluate-eligibility?program=${program}`);
      expect(answer.status).toBe(200);
      expect(outcomeOf(answer.body as fhir4.Parameters), `DEMO-${n} ${program}`).toBe(outcome);
    }

    expect(proc.child.kill('SIGTERM')).toBe(true);
    const exit = await exitWithin(proc, 30_000);
    expect(exit).toEqual({ code: 0, signal: null });
    // Drained and stopped: nothing answers any more.
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  it('a bad configuration (PORT=notaport) exits non-zero naming PORT', { timeout: 90_000 }, async () => {
    const proc = start({ PORT: 'notaport' });
    const exit = await exitWithin(proc, 60_000);
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(proc.stderr()).toMatch(/Invalid configuration/);
    expect(proc.stderr()).toMatch(/\bPORT\b/);
    expect(proc.stdout()).not.toMatch(/listening on/);
  });

  it.each([
    ['not JSON', (text: string) => text.slice(0, text.length / 2)],
    ['schema violation', (text: string) => JSON.stringify({ ...(JSON.parse(text) as object), criteria: 'none' })],
  ])('bad program data (%s) exits non-zero naming the file', { timeout: 90_000 }, async (_label, breakIt) => {
    const dir = mkdtempSync(join(tmpdir(), 'forfait-mappings-'));
    tempDirs.push(dir);
    cpSync(join(ROOT, 'mappings'), dir, { recursive: true });
    const file = join(dir, 'programs', 'fnmf-prediabetes', 'program.json');
    writeFileSync(file, breakIt(readFileSync(file, 'utf8')));

    const proc = start({ MAPPINGS_DIR: dir });
    const exit = await exitWithin(proc, 60_000);
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(proc.stderr()).toMatch(/failed to start/);
    expect(proc.stderr()).toContain(file);
    expect(proc.stdout()).not.toMatch(/listening on/);
  });
});
