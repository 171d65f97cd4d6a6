/**
 * A worker-only service (`ROLE=worker`) in a process of its own, on the same Redis and queue
 * prefix as an API in the bench process: the deployment that lets the API and the workers use
 * two cores. Its CPU is read from /proc (Linux; undefined elsewhere).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import { EVALUATION_QUEUE } from '../../src/queue/queues.js';
import { redisOptionsFromUrl } from '../../src/service.js';
import { redisUrl, until } from './common.js';

export interface WorkerProcess {
  /** CPU time the process has used so far, ms; undefined where /proc is not readable. */
  cpuMs(): number | undefined;
  stop(): Promise<void>;
}

/** Linux reports utime and stime in clock ticks, 100 per second on every mainstream kernel build (USER_HZ). */
const TICKS_PER_SECOND = 100;

function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, inside parentheses): utime is the 14th field, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

export async function startWorkerProcess(prefix: string, env: Record<string, string>): Promise<WorkerProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, REDIS_URL: redisUrl(), QUEUE_PREFIX: prefix, ROLE: 'worker', LOG_LEVEL: 'error', NODE_ENV: 'development', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const queue = new Queue(EVALUATION_QUEUE, { connection: redisOptionsFromUrl(redisUrl()), prefix });
  try {
    await until(async () => {
      if (gone) throw new Error('the worker process exited before it was ready');
      return (await queue.getWorkersCount()) > 0;
    }, 60_000, 'the worker process to take jobs', 100);
  } finally {
    await queue.close();
  }
  const pid = child.pid as number;
  return {
    cpuMs: () => procCpuMs(pid),
    async stop() {
      if (gone) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
