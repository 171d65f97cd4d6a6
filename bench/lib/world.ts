/**
 * Starts bench/outside-world.ts (FHIR responder + insurer gateway) as a child process and
 * talks to its control endpoints.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ResponderStats } from '../fhir-responder.js';

export interface OutsideWorld {
  fhirBaseUrl: string;
  gatewayBaseUrl: string;
  stats(): Promise<ResponderStats>;
  resetStats(): Promise<void>;
  seed(resources: readonly fhir4.Resource[]): Promise<void>;
  /** Copies `first` to `first + count - 1` of the template (copy n has ids of its own). */
  clone(template: readonly fhir4.Resource[], count: number, first?: number): Promise<void>;
  all<T extends fhir4.Resource>(type: string): Promise<T[]>;
  /** Every write time (ms since the epoch, sub-ms) per GuidanceResponse id. */
  guidanceResponseWrites(): Promise<Record<string, number[]>>;
  /** CPU time the outside world's process has used so far, ms. */
  cpuMs(): Promise<number>;
  gateway(): Promise<{ submissions: number; identifiers: number; unique: number; duplicates: number }>;
  stop(): Promise<void>;
}

export async function startOutsideWorld(): Promise<OutsideWorld> {
  const script = fileURLToPath(new URL('../outside-world.ts', import.meta.url));
  // The outside world keeps everything it is sent in memory: 100,000 enrolments with their claims,
  // ClaimResponses and audit records outgrow V8's default 4 GB heap (it ran out at 97,000).
  const child: ChildProcess = spawn(process.execPath, ['--max-old-space-size=12288', '--import', 'tsx', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const urls = await new Promise<{ fhirBaseUrl: string; gatewayBaseUrl: string }>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.once('line', (line) => resolve(JSON.parse(line) as { fhirBaseUrl: string; gatewayBaseUrl: string }));
    child.once('exit', (code) => reject(new Error(`outside world exited (${code}) before starting`)));
  });
  const origin = new URL(urls.fhirBaseUrl).origin;
  const call = async <T>(path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${origin}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    ...urls,
    stats: () => call<ResponderStats>('/_bench/stats'),
    resetStats: async () => {
      await call('/_bench/reset', {});
    },
    seed: async (resources) => {
      for (let i = 0; i < resources.length; i += 5000) await call('/_bench/seed', resources.slice(i, i + 5000));
    },
    clone: async (template, count, first = 0) => {
      await call('/_world/clone', { template, count, first });
    },
    all: <T extends fhir4.Resource>(type: string) => call<T[]>(`/_world/all?type=${encodeURIComponent(type)}`),
    guidanceResponseWrites: () => call<Record<string, number[]>>('/_bench/gr-writes'),
    gateway: () => call('/_world/gateway'),
    cpuMs: async () => (await call<{ ms: number }>('/_bench/cpu')).ms,
    stop: async () => {
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
