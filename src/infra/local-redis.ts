/**
 * Makes sure a Redis answers at a URL, starting a local `redis-server` when the URL is
 * loopback and nothing answers there. Lets `npm start` and `npm test` work on a machine
 * where Redis is installed but not running, without ever starting anything on a remote
 * host. The server we start is our own child process (not daemonized): stop() or the
 * exit of this process ends it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Redis } from 'ioredis';

export interface EnsureRedisOptions {
  log: (msg: string) => void;
  /** Folder of the started server (AOF files). Default: a fresh temporary folder, removed by stop(). */
  dataDir?: string;
  /** `--appendonly yes` for the started server. @defaultValue false */
  appendOnly?: boolean;
  /** Start a local server when a loopback URL does not answer. @defaultValue true */
  startLocal?: boolean;
  /** How long to wait for the started server to answer PING, ms. @defaultValue 10000 */
  startTimeoutMs?: number;
  /** How long one probe of the URL may take, ms. @defaultValue 2000 */
  probeTimeoutMs?: number;
}

export interface EnsuredRedis {
  url: string;
  /** True when ensureRedis started the server (and stop() will stop it). */
  started: boolean;
  /** Stops the server if we started it; a no-op otherwise. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_PORT = 6379;
const OUTPUT_TAIL_BYTES = 4000;

/** True for the hosts that name this machine: 127.0.0.0/8, localhost, ::1. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (h.startsWith('::ffff:')) return isLoopbackHost(h.slice('::ffff:'.length));
  const octets = h.split('.');
  return (
    octets.length === 4 &&
    octets.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255) &&
    octets[0] === '127'
  );
}

interface RedisTarget {
  host: string;
  port: number;
  username: string;
  password: string;
  /** host:port, safe to print (no credentials). */
  label: string;
  tls: boolean;
}

function parseRedisUrl(url: string): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('REDIS_URL is not a valid URL (expected redis://[user:password@]host:port[/db])');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL must start with redis:// or rediss://, not ${parsed.protocol}//`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = parsed.port ? Number(parsed.port) : DEFAULT_PORT;
  const label = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return {
    host,
    port,
    username: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    label,
    tls: parsed.protocol === 'rediss:',
  };
}

type ProbeResult = { ok: true } | { ok: false; reachable: boolean; reason: string };

/**
 * One PING with a short timeout, no reconnection, no offline queue; the connection is
 * always closed. `reachable` tells a Redis that answered with an error (wrong password,
 * say) from nothing answering at all.
 */
async function probe(url: string, timeoutMs: number): Promise<ProbeResult> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    reconnectOnError: () => false,
  });
  let lastError: Error | undefined;
  client.on('error', (err: Error) => {
    lastError = err;
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs + 500);
  });
  try {
    await Promise.race([
      (async () => {
        await client.connect();
        await client.ping();
      })(),
      timeout,
    ]);
    return { ok: true };
  } catch (err) {
    // ioredis rejects with a bare "Connection is closed."; the cause is in the 'error' event.
    const e = lastError ?? (err instanceof Error ? err : new Error(String(err)));
    // A Redis still loading its data set answers soon: it is there.
    if (/^LOADING\b/.test(e.message)) return { ok: true };
    // A reply error (NOAUTH, WRONGPASS, DENIED...) means a Redis is there.
    const reachable = e.name === 'ReplyError' || /^(NOAUTH|WRONGPASS|ERR|DENIED)\b/.test(e.message);
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, reachable, reason: code && !e.message.includes(code) ? `${code}: ${e.message}` : e.message };
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `redis-server` on PATH, else /usr/bin/redis-server; undefined when neither exists. */
export function findRedisServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'redis-server');
    if (isExecutable(candidate)) return candidate;
  }
  return isExecutable('/usr/bin/redis-server') ? '/usr/bin/redis-server' : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Ends the children we started if this process exits or is signalled before stop(). */
const ownedChildren = new Set<ChildProcess>();
/** Temporary folders of those children, removed at exit if stop() did not run. */
const ownedTempDirs = new Set<string>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const child of ownedChildren) child.kill('SIGTERM');
    for (const dir of ownedTempDirs) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const child of ownedChildren) child.kill('SIGTERM');
      // If nobody else handles the signal, keep its default meaning: end the process.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

function redisConfigLine(directive: string, ...args: string[]): string {
  const quote = (v: string): string => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return [directive, ...args.map(quote)].join(' ');
}

async function startRedisServer(
  url: string,
  target: RedisTarget,
  options: EnsureRedisOptions,
): Promise<EnsuredRedis> {
  const binary = findRedisServer();
  if (!binary) {
    throw new Error(
      `Redis at ${target.label} does not answer and redis-server is not installed ` +
        '(not on PATH, not /usr/bin/redis-server). Install it with ' +
        '`apt-get install redis-server`, or point REDIS_URL at a running Redis.',
    );
  }

  const ownDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'redis-data-')));
  if (!ownDataDir) await mkdir(dataDir, { recursive: true });

  // A password in the URL goes into a config file readable by us only, not onto the
  // command line where `ps` would show it.
  let confDir: string | undefined;
  const args: string[] = [];
  if (target.password) {
    confDir = await mkdtemp(join(tmpdir(), 'redis-conf-'));
    const confFile = join(confDir, 'redis.conf');
    const lines =
      target.username && target.username !== 'default'
        ? [redisConfigLine('user', target.username, 'on', `>${target.password}`, '~*', '&*', '+@all')]
        : [redisConfigLine('requirepass', target.password)];
    await writeFile(confFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    await chmod(confFile, 0o600);
    args.push(confFile);
  }
  args.push(
    // `-::1`: also listen on ::1 when the machine has IPv6 (the leading '-' makes it optional).
    '--bind', '127.0.0.1', '-::1',
    '--port', String(target.port),
    '--save', '',
    '--appendonly', options.appendOnly ? 'yes' : 'no',
    '--maxmemory-policy', 'noeviction',
    '--dir', dataDir,
    '--daemonize', 'no',
  );

  options.log(`Redis at ${target.label} does not answer: starting ${binary} on port ${target.port} (dir ${dataDir})`);
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  ownedChildren.add(child);
  installExitHooks();

  let output = '';
  const keepTail = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES);
  };
  child.stdout?.on('data', keepTail);
  child.stderr?.on('data', keepTail);
  // The child must not keep this process alive on its own: stop() or exit ends it.
  child.unref();
  (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
  (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();

  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      ownedChildren.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      spawnError = err;
      ownedChildren.delete(child);
      resolve();
    });
  });

  if (confDir) ownedTempDirs.add(confDir);
  if (ownDataDir) ownedTempDirs.add(dataDir);
  const cleanUpFiles = async (): Promise<void> => {
    for (const dir of [confDir, ownDataDir ? dataDir : undefined]) {
      if (!dir) continue;
      await rm(dir, { recursive: true, force: true });
      ownedTempDirs.delete(dir);
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited && !spawnError) {
        child.kill('SIGTERM');
        const killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exitPromise;
        clearTimeout(killTimer);
      }
      await cleanUpFiles();
      options.log(`Stopped the redis-server started on port ${target.port}`);
    })();
    return stopping;
  };

  const timeoutMs = options.startTimeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let lastReason = 'not probed yet';
  for (;;) {
    if (spawnError || exited) {
      await cleanUpFiles();
      const how = spawnError
        ? `could not be run (${spawnError.message})`
        : `exited (code ${exited?.code ?? 'none'}, signal ${exited?.signal ?? 'none'})`;
      throw new Error(`redis-server on port ${target.port} ${how}. Its output:\n${output.trim() || '(none)'}`);
    }
    // Stop waiting for a probe as soon as the server exits (a port held by another program).
    const result = await Promise.race([probe(url, 1000), exitPromise.then(() => undefined)]);
    if (result === undefined) continue;
    if (result.ok) break;
    lastReason = result.reason;
    if (Date.now() >= deadline) {
      await stop();
      throw new Error(
        `redis-server on port ${target.port} did not answer PING within ${timeoutMs} ms ` +
          `(last: ${lastReason}). Its output:\n${output.trim() || '(none)'}`,
      );
    }
    await sleep(100);
  }
  options.log(`redis-server answers on ${target.label}`);
  return { url, started: true, stop };
}

/**
 * Returns a Redis that answers at `url`. Nothing is started when one already answers
 * (started=false, stop() does nothing). When none answers and the host is loopback, a
 * `redis-server` child is started on that port (`noeviction`, no RDB snapshots, AOF per
 * `appendOnly`); otherwise an Error names host:port (never the password).
 */
export async function ensureRedis(url: string, options: EnsureRedisOptions): Promise<EnsuredRedis> {
  const target = parseRedisUrl(url);
  const first = await probe(url, options.probeTimeoutMs ?? 2000);
  if (first.ok) return { url, started: false, stop: async () => {} };
  if (first.reachable) {
    throw new Error(`Redis at ${target.label} answered but refused the connection: ${first.reason}`);
  }
  if (!isLoopbackHost(target.host)) {
    throw new Error(`Redis at ${target.label} does not answer (${first.reason})`);
  }
  if (target.tls) {
    throw new Error(`Redis at ${target.label} does not answer (${first.reason}); a TLS (rediss://) server is not started locally`);
  }
  if (options.startLocal === false) {
    throw new Error(
      `Redis at ${target.label} does not answer (${first.reason}) and starting a local one is disabled`,
    );
  }
  return startRedisServer(url, target, options);
}

/** The part of an ioredis client that checkMaxmemoryPolicy uses. */
export interface ConfigReader {
  config(subcommand: 'GET', parameter: string): Promise<unknown>;
}

/**
 * A warning when Redis may evict keys (BullMQ needs `maxmemory-policy noeviction`:
 * an evicted job key corrupts a queue); undefined when the policy is noeviction or
 * cannot be read (managed services often disable CONFIG).
 */
export async function checkMaxmemoryPolicy(redis: ConfigReader): Promise<string | undefined> {
  let reply: unknown;
  try {
    reply = await redis.config('GET', 'maxmemory-policy');
  } catch {
    return undefined;
  }
  let policy: unknown;
  if (Array.isArray(reply)) policy = reply[1];
  else if (reply instanceof Map) policy = reply.get('maxmemory-policy');
  else if (reply && typeof reply === 'object') policy = (reply as Record<string, unknown>)['maxmemory-policy'];
  if (Buffer.isBuffer(policy)) policy = policy.toString('utf8');
  if (typeof policy !== 'string' || policy === '') return undefined;
  if (policy === 'noeviction') return undefined;
  return (
    `Redis maxmemory-policy is "${policy}", not "noeviction": Redis may evict queue keys ` +
    'under memory pressure and lose or corrupt jobs. Set `maxmemory-policy noeviction`.'
  );
}
