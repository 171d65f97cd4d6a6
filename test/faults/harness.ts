/**
 * Process harness of the fault-injection suite: real processes, spawned and killed for real.
 * - `ServiceProcess`: `node --import tsx src/main.ts` with its own environment (ROLE, QUEUE_PREFIX,
 *   FHIR_BASE_URL, ...); `start()` waits until it prints that it listens (api, all) or runs (worker)
 *   and, for an HTTP role, until `/readyz` answers 200; `kill9()`, `stop()` (SIGTERM, drained),
 *   `restart()` with the same environment (the same port once it had one).
 * - `NodeProcess`: any other script (the insurer gateway runner).
 * - `RedisProcess`: an own redis-server on a free port, AOF on, in its own temp dir: restartable
 *   without touching the machine's Redis that other tests share.
 * - `Scenario`: owns the processes, queue prefixes and temp dirs of one test file, writes every
 *   process's output to test-results/faults/<scenario>-<process>.log when a test failed, and
 *   removes everything (own processes by pid, own Redis keys by prefix) at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { findRedisServer } from '../../src/infra/local-redis.js';
import { redisOptionsFromUrl } from '../../src/service.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SHARED_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const LOG_DIR = join(ROOT, 'test-results', 'faults');
/** Output kept per process (the tail: what explains a failure). */
const MAX_LOG_CHARS = 4_000_000;

/** A free TCP port on 127.0.0.1 (bound then released: good enough for a test on one machine). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` returns a value (not undefined); throws with `what` (and the last value seen) when time is up. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not met within ${timeoutMs} ms${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

/** A spawned node process with its output captured. */
export class NodeProcess {
  child: ChildProcess | undefined;
  private output = '';
  private exitPromise: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({ code: null, signal: null });
  /** How many times it was started (1 = first start). */
  starts = 0;

  constructor(
    readonly name: string,
    private readonly args: string[],
    public env: Record<string, string>,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  log(): string {
    return this.output;
  }

  private append(text: string): void {
    this.output += text;
    if (this.output.length > MAX_LOG_CHARS) this.output = this.output.slice(-MAX_LOG_CHARS / 2);
  }

  /** Spawns and resolves once stdout matches `ready` (rejects if it exits first or time is up). */
  async start(ready: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    if (this.running) throw new Error(`${this.name} is already running`);
    this.starts += 1;
    this.append(`\n===== start #${this.starts} of ${this.name} at ${new Date().toISOString()} =====\n`);
    const child = spawn(process.execPath, ['--import', 'tsx', ...this.args], {
      cwd: ROOT,
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      stdout += text;
      this.append(text);
    });
    child.stderr?.on('data', (chunk: Buffer) => this.append(chunk.toString('utf8')));
    this.exitPromise = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.append(`\n===== ${this.name} exited: code ${code}, signal ${signal} at ${new Date().toISOString()} =====\n`);
        resolve({ code, signal });
      }),
    );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = ready.exec(stdout);
      if (match) return match;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${this.name} exited before printing ${ready}:\n${this.output.slice(-4000)}`);
      if (Date.now() > deadline) throw new Error(`${this.name}: no ${ready} within ${timeoutMs} ms:\n${this.output.slice(-4000)}`);
      await sleep(50);
    }
  }

  /** SIGKILL, and waits for the exit. */
  async kill9(): Promise<void> {
    if (!this.running) return;
    this.append(`\n===== kill -9 ${this.name} (pid ${this.pid}) at ${new Date().toISOString()} =====\n`);
    this.child?.kill('SIGKILL');
    await this.exitPromise;
  }

  /** SIGTERM (graceful), SIGKILL after `graceMs`; resolves with the exit. */
  async stop(graceMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.running) return this.exitPromise;
    this.child?.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    try {
      return await this.exitPromise;
    } finally {
      clearTimeout(timer);
    }
  }
}

export type Role = 'all' | 'api' | 'worker';

/** The service as a process: `node --import tsx src/main.ts`. */
export class ServiceProcess extends NodeProcess {
  url = '';
  fhirUrl = '';

  constructor(
    name: string,
    readonly role: Role,
    env: Record<string, string>,
  ) {
    super(name, ['src/main.ts'], { ROLE: role, ...env });
  }

  /** Starts and waits until ready (the pattern is the role's own: `ready` is ignored). */
  override async start(_ready?: RegExp, timeoutMs = 90_000): Promise<RegExpExecArray> {
    const ready = this.role === 'worker' ? /worker running \(role worker\)[\s\S]*FHIR server of record: (\S+)/ : /listening on (http:\/\/\S+) \(role \w+\)\n\s+FHIR server of record: (\S+)/;
    const match = await super.start(ready, timeoutMs);
    if (this.role === 'worker') {
      this.fhirUrl = match[1] as string;
      return match;
    }
    this.url = match[1] as string;
    this.fhirUrl = match[2] as string;
    // Restarts keep the port the clients know.
    this.env = { ...this.env, PORT: new URL(this.url).port };
    await eventually(`${this.name} /readyz`, async () => ((await fetch(`${this.url}/readyz`)).status === 200 ? true : undefined), timeoutMs);
    return match;
  }

  async restart(timeoutMs?: number): Promise<void> {
    await this.start(undefined, timeoutMs);
  }
}

/** redis-server on a free port, AOF on (appendfsync always), RDB snapshots off, data in its own temp dir. */
export class RedisProcess {
  child: ChildProcess | undefined;
  port = 0;
  readonly dir: string;
  private output = '';

  constructor(readonly name = 'redis') {
    this.dir = mkdtempSync(join(tmpdir(), 'forfait-faults-redis-'));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  log(): string {
    return this.output;
  }

  async start(): Promise<void> {
    if (!this.port) this.port = await freePort();
    this.output += `\n===== start redis-server on ${this.port} at ${new Date().toISOString()} =====\n`;
    const child = spawn(
      process.env.REDIS_SERVER ?? findRedisServer() ?? '/usr/bin/redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--daemonize', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
    await eventually(
      `redis-server on ${this.port}`,
      async () => {
        const probe = new Redis({ port: this.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        probe.on('error', () => undefined);
        try {
          await probe.connect();
          // Loading the AOF answers LOADING until done.
          return (await probe.ping()) === 'PONG' ? true : undefined;
        } finally {
          probe.disconnect();
        }
      },
      30_000,
      100,
    );
  }

  /** SIGKILL: with appendfsync always, every acknowledged write is on disk. */
  async kill9(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    this.output += `\n===== kill -9 redis-server at ${new Date().toISOString()} =====\n`;
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One scenario's processes, prefix and clean-up. */
export class Scenario {
  readonly prefix: string;
  readonly processes: NodeProcess[] = [];
  readonly redisServers: RedisProcess[] = [];
  private readonly queues: Queue[] = [];
  private readonly tempDirs: string[] = [];

  constructor(
    readonly name: string,
    readonly redisUrl: string = SHARED_REDIS_URL,
  ) {
    this.prefix = `flt-${name}-${randomUUID().slice(0, 6)}`;
  }

  /** Environment every service process of the scenario shares. */
  baseEnv(extra: Record<string, string> = {}): Record<string, string> {
    return {
      REDIS_URL: this.redisUrl,
      // Never start a redis-server of its own (a restarted Redis must be waited for, not replaced).
      REDIS_START_LOCAL: 'false',
      QUEUE_PREFIX: this.prefix,
      PORT: '0',
      EMBEDDED_FHIR_PORT: '0',
      LOG_LEVEL: 'warn',
      NODE_ENV: 'test',
      ...extra,
    };
  }

  service(name: string, role: Role, env: Record<string, string> = {}): ServiceProcess {
    const proc = new ServiceProcess(name, role, this.baseEnv(env));
    this.processes.push(proc);
    return proc;
  }

  node(name: string, args: string[], env: Record<string, string>): NodeProcess {
    const proc = new NodeProcess(name, args, env);
    this.processes.push(proc);
    return proc;
  }

  redisServer(): RedisProcess {
    const redis = new RedisProcess(`${this.name}-redis`);
    this.redisServers.push(redis);
    return redis;
  }

  queue(name: string): Queue {
    const queue = new Queue(name, { connection: redisOptionsFromUrl(this.redisUrl), prefix: this.prefix });
    queue.on('error', () => undefined);
    this.queues.push(queue);
    return queue;
  }

  tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), `forfait-faults-${this.name}-`));
    this.tempDirs.push(dir);
    return dir;
  }

  /** Writes every process's output to test-results/faults/<scenario>-<process>.log. */
  writeLogs(): string[] {
    mkdirSync(LOG_DIR, { recursive: true });
    const files: string[] = [];
    for (const proc of [...this.processes, ...this.redisServers]) {
      const file = join(LOG_DIR, `${this.name}-${proc.name}.log`);
      writeFileSync(file, proc.log());
      files.push(file);
    }
    return files;
  }

  /** Stops its processes (by pid), closes its queues, removes its Redis keys and temp dirs. */
  async cleanup(): Promise<void> {
    await Promise.all(this.processes.map((proc) => proc.kill9()));
    await Promise.all(this.queues.map((queue) => queue.close().catch(() => undefined)));
    const anyRedisUp = this.redisServers.length === 0 || this.redisServers.some((r) => r.child && r.child.exitCode === null);
    if (anyRedisUp) {
      const redis = new Redis({ ...redisOptionsFromUrl(this.redisUrl), maxRetriesPerRequest: 1 });
      redis.on('error', () => undefined);
      try {
        const stream = redis.scanStream({ match: `${this.prefix}:*`, count: 1000 });
        for await (const keys of stream as AsyncIterable<string[]>) if (keys.length) await redis.del(...keys);
      } catch {
        // best effort: an own Redis is removed with its directory below
      } finally {
        redis.disconnect();
      }
    }
    for (const redis of this.redisServers) await redis.remove();
    for (const dir of this.tempDirs) rmSync(dir, { recursive: true, force: true });
  }
}

/** JSON over HTTP, for the tests' own requests (bodies are arbitrary FHIR JSON inspected by assertions). */
export async function http(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(url, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/fhir+json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON (metrics): the text
  }
  return { status: response.status, body: parsed as any, headers: response.headers };
}

/** Every resource of a type on a FHIR server (the embedded one answers a whole search in one page). */
export async function fhirAll<T extends fhir4.Resource>(fhirUrl: string, type: string, query: Record<string, string> = {}): Promise<T[]> {
  const params = new URLSearchParams({ _count: '100000', ...query });
  const answer = await http('GET', `${fhirUrl}/${type}?${params.toString()}`);
  if (answer.status !== 200) throw new Error(`GET ${type}: HTTP ${answer.status}`);
  return ((answer.body as fhir4.Bundle).entry ?? []).map((entry) => entry.resource as T).filter((r) => r?.resourceType === type);
}

/** One Prometheus sample's value (sum over the series matching every label given), from /metrics text. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = /\{([^}]*)\}/.exec(line)?.[1] ?? '';
    const matches = Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`));
    if (!matches) continue;
    found = true;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return found ? total : 0;
}

/** Prints a scenario's counts in one line, the way the suite reports them. */
export function report(scenario: string, counts: Record<string, number | string>): void {
  const text = Object.entries(counts)
    .map(([key, value]) => `${key}: ${value}`)
    .join(', ');
  process.stdout.write(`[faults] ${scenario}: ${text}\n`);
}
