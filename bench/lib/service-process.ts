/**
 * The service under measurement, as users run it: the production build (`node
 * dist/src/main.js`, what `npm start` runs; `npm run bench` builds it first) in a process of
 * its own, on the bench's Redis and queue prefix. Its CPU is read from /proc (Linux; undefined
 * elsewhere), so it is the service's alone: not the bench's orchestration, the raw BullMQ
 * baseline, nor the load generator's.
 *
 * `ROLE=worker` processes (the split run) come from here too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { EVALUATION_QUEUE } from '../../src/queue/queues.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import { redisUrl, until } from './common.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN = path.join(ROOT, 'dist', 'src', 'main.js');

export interface ServiceProcess {
  /** The API's base URL (absent for ROLE=worker). */
  url?: string;
  /** The FHIR server of record it uses (the embedded one's, when FHIR_BASE_URL is not given). */
  fhirBaseUrl: string;
  /** CPU time the process has used so far, ms; undefined where /proc is not readable. */
  cpuMs(): number | undefined;
  stop(): Promise<void>;
}

/** Linux reports utime and stime in clock ticks, 100 per second on every mainstream kernel build (USER_HZ). */
const TICKS_PER_SECOND = 100;

export function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, inside parentheses): utime is the 14th field, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/**
 * Starts `node dist/src/main.js` with the bench's Redis and `prefix` (auth off: development; any
 * free port), `env` on top, and resolves once it is up: its start-up lines printed and, for a
 * worker, its evaluation worker registered with Redis.
 */
export async function startServiceProcess(prefix: string, env: Record<string, string>): Promise<ServiceProcess> {
  if (!existsSync(MAIN)) throw new Error(`${path.relative(ROOT, MAIN)} is missing: the benchmarks run the production build (npm run build; npm run bench builds it)`);
  // BENCH_SERVICE_NODE_ARGS: Node options for the service only (profiling: --cpu-prof; V8 flags to compare).
  const nodeArgs = process.env.BENCH_SERVICE_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, MAIN], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL: redisUrl(), QUEUE_PREFIX: prefix, PORT: '0', EMBEDDED_FHIR_PORT: '0', LOG_LEVEL: 'error', NODE_ENV: 'development', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  let output = '';
  child.stdout?.setEncoding('utf8');
  // BENCH_SERVICE_STDOUT: a file that gets the service's whole stdout (with --trace-gc, say).
  const copy = process.env.BENCH_SERVICE_STDOUT ? createWriteStream(process.env.BENCH_SERVICE_STDOUT, { flags: 'a' }) : undefined;
  // When it was spawned (epoch ms): --trace-gc times count from the process start.
  copy?.write(`# spawned ${Date.now()}\n`);
  child.stdout?.on('data', (chunk: string) => {
    copy?.write(chunk);
    // Start-up lines only: the service logs to stdout at LOG_LEVEL error, i.e. hardly ever.
    if (output.length < 64 * 1024) output += chunk;
  });
  child.once('exit', () => copy?.end());
  const stop = async (): Promise<void> => {
    if (gone) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const started = /(?:listening on (http:\/\/\S+)|worker running) \(role \w+\)\n\s+FHIR server of record: (\S+)/;
    await until(async () => {
      if (gone) throw new Error(`the service process exited before it was up: ${output}`);
      return started.test(output);
    }, 60_000, 'the service process to start', 50);
    const [, url, fhirBaseUrl] = started.exec(output) as RegExpExecArray;
    if (env['ROLE'] === 'worker') {
      const queue = new Queue(EVALUATION_QUEUE, { connection: redisOptionsFromUrl(redisUrl()), prefix });
      try {
        await until(async () => (await queue.getWorkersCount()) > 0, 60_000, 'the worker process to take jobs', 100);
      } finally {
        await queue.close();
      }
    }
    const pid = child.pid as number;
    return { ...(url ? { url } : {}), fhirBaseUrl: fhirBaseUrl as string, cpuMs: () => procCpuMs(pid), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
