import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkMaxmemoryPolicy,
  ensureRedis,
  isLoopbackHost,
  type EnsuredRedis,
} from '../../src/infra/local-redis.js';

const quiet = { log: (): void => {} };

/** A loopback port where nothing listens (just released by the OS). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

const lastErrors = new WeakMap<Redis, Error>();

function connect(url: string): Redis {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1000,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  client.on('error', (err: Error) => lastErrors.set(client, err));
  return client;
}

/** PING through a fresh connection, closed afterwards; rejects with the cause. */
async function ping(url: string): Promise<string> {
  const client = connect(url);
  try {
    await client.connect();
    return await client.ping();
  } catch (err) {
    throw lastErrors.get(client) ?? err;
  } finally {
    client.disconnect();
  }
}

const started: EnsuredRedis[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  for (const redis of started.splice(0)) await redis.stop();
  for (const dir of tempDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.0.0.2', true],
    ['127.255.255.254', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['redis.localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['redis', false],
    ['10.0.0.5', false],
    ['192.0.2.1', false],
    ['128.0.0.1', false],
    ['127.0.0', false],
    ['127.0.0.256', false],
    ['::2', false],
    ['localhost.example.org', false],
    ['', false],
  ])('%s -> %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});

describe('ensureRedis', () => {
  it('gets REDIS_URL from the global setup', () => {
    expect(process.env.REDIS_URL).toMatch(/^rediss?:\/\//);
  });

  it('returns the Redis that already answers without starting one, and its stop() leaves it running', async () => {
    const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    const redis = await ensureRedis(url, quiet);
    expect(redis).toMatchObject({ url, started: false });
    await redis.stop();
    expect(await ping(url)).toBe('PONG');
  });

  it('starts a redis-server on a free loopback port, with noeviction, and stop() ends it', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const messages: string[] = [];
    const redis = await ensureRedis(url, { log: (m) => messages.push(m) });
    started.push(redis);
    expect(redis).toMatchObject({ url, started: true });
    expect(messages.join('\n')).toContain(`127.0.0.1:${port}`);

    const client = connect(url);
    await client.connect();
    try {
      expect(await client.ping()).toBe('PONG');
      expect(await client.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
      expect(await client.config('GET', 'save')).toEqual(['save', '']);
      expect(await checkMaxmemoryPolicy(client)).toBeUndefined();
      const [, dir] = (await client.config('GET', 'dir')) as string[];
      expect(dir && existsSync(dir)).toBe(true);

      await redis.stop();
      await redis.stop(); // idempotent
      await expect(ping(url)).rejects.toThrow();
      expect(existsSync(dir!)).toBe(false); // its temporary folder is removed
    } finally {
      client.disconnect();
    }
  });

  it('uses the given data folder and append-only file, and keeps the folder', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'local-redis-test-'));
    tempDirs.push(dataDir);
    const url = `redis://localhost:${await freePort()}`;
    const redis = await ensureRedis(url, { ...quiet, dataDir, appendOnly: true });
    started.push(redis);
    expect(redis.started).toBe(true);

    const client = connect(url);
    await client.connect();
    try {
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await client.config('GET', 'dir')).toEqual(['dir', dataDir]);
      await client.set('k', 'v');
    } finally {
      client.disconnect();
    }
    await redis.stop();
    expect(await readdir(dataDir)).toContain('appendonlydir');
  });

  it('starts a password-protected server for a URL with a password', async () => {
    const port = await freePort();
    const url = `redis://:s3cr%40t@127.0.0.1:${port}`;
    const redis = await ensureRedis(url, quiet);
    started.push(redis);
    expect(redis.started).toBe(true);
    expect(await ping(url)).toBe('PONG');
    await expect(ping(`redis://127.0.0.1:${port}`)).rejects.toThrow(/NOAUTH/);

    // A second call finds it answering.
    const again = await ensureRedis(url, quiet);
    expect(again.started).toBe(false);
    // A wrong password is reported, not answered by starting another server.
    const wrong = ensureRedis(`redis://:wrong-pass@127.0.0.1:${port}`, quiet);
    await expect(wrong).rejects.toThrow(new RegExp(`127\\.0\\.0\\.1:${port} answered but refused`));
    await expect(wrong).rejects.not.toThrow(/wrong-pass/);
  });

  it('with startLocal: false, names host:port but never the password when nothing answers', async () => {
    const port = await freePort();
    const attempt = ensureRedis(`redis://user:hunter2@127.0.0.1:${port}/0`, { ...quiet, startLocal: false });
    await expect(attempt).rejects.toThrow(`127.0.0.1:${port}`);
    await expect(attempt).rejects.not.toThrow(/hunter2/);
    await expect(ping(`redis://127.0.0.1:${port}`)).rejects.toThrow();
  });

  it('reports the server output when redis-server cannot start (port held by something else)', async () => {
    // A TCP server that accepts and never answers: the probe times out, then
    // redis-server cannot bind the port.
    const sockets: Socket[] = [];
    const squatter: Server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const port = (squatter.address() as { port: number }).port;
    try {
      const attempt = ensureRedis(`redis://127.0.0.1:${port}`, { ...quiet, probeTimeoutMs: 300 });
      await expect(attempt).rejects.toThrow(new RegExp(`redis-server on port ${port} exited[\\s\\S]*Its output:`));
      await expect(attempt).rejects.toThrow(/in use|bind|listening socket/i);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  it('does not start a local server for a rediss:// (TLS) URL', async () => {
    const port = await freePort();
    await expect(ensureRedis(`rediss://127.0.0.1:${port}`, { ...quiet, probeTimeoutMs: 500 })).rejects.toThrow(
      /TLS/,
    );
  });

  it('rejects a URL that is not redis://', async () => {
    await expect(ensureRedis('http://127.0.0.1:6379', quiet)).rejects.toThrow(/redis:\/\//);
  });
});

describe('checkMaxmemoryPolicy', () => {
  const reader = (reply: unknown) => ({ config: async () => reply });

  it('warns when the policy may evict keys', async () => {
    expect(await checkMaxmemoryPolicy(reader(['maxmemory-policy', 'allkeys-lru']))).toMatch(
      /"allkeys-lru".*noeviction/,
    );
    expect(await checkMaxmemoryPolicy(reader({ 'maxmemory-policy': 'volatile-ttl' }))).toMatch(/volatile-ttl/);
    expect(await checkMaxmemoryPolicy(reader(new Map([['maxmemory-policy', 'allkeys-lfu']])))).toMatch(
      /allkeys-lfu/,
    );
  });

  it('is silent for noeviction, and when CONFIG is disabled or answers nothing', async () => {
    expect(await checkMaxmemoryPolicy(reader(['maxmemory-policy', 'noeviction']))).toBeUndefined();
    expect(await checkMaxmemoryPolicy(reader([]))).toBeUndefined();
    const disabled = {
      config: async (): Promise<unknown> => {
        throw new Error("ERR unknown command 'CONFIG'");
      },
    };
    expect(await checkMaxmemoryPolicy(disabled)).toBeUndefined();
  });

  it('reads the machine Redis', async () => {
    const client = connect(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    await client.connect();
    try {
      const warning = await checkMaxmemoryPolicy(client);
      expect(warning === undefined || typeof warning === 'string').toBe(true);
    } finally {
      client.disconnect();
    }
  });
});
