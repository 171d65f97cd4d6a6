/**
 * `npm run bench` (`-- --quick` for a short smoke run, `-- --only push-mode,claims` for some,
 * `-- --claims 100000` for the claims count):
 * runs every benchmark in sequence against a local Redis (REDIS_URL, or 127.0.0.1:6379, started
 * as the service does when nothing answers), prints one markdown table with the machine it ran
 * on, and writes it to bench/results/latest.md (`latest-quick.md` for --quick; a `-partial`
 * suffix with --only).
 *
 * Every figure is compared with a baseline measured in the same run (the machine is shared and
 * noisy): the ratio is what counts. Each benchmark uses a queue prefix of its own and removes
 * its keys.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { ensureRedis } from '../src/infra/local-redis.js';
import { redisOptionsFromUrl } from '../src/service.js';
import type { Bench, BenchRow } from './types.js';

/** In order; each of the others also measures raw BullMQ again right before its own measured phase. */
const BENCHES = ['bullmq-baseline', 'push-mode', 'claims', 'bulk-screening'] as const;
/** May not exist yet (another piece of work adds it): skipped with a note when absent. */
const OPTIONAL = new Set<string>(['bulk-screening']);

function argValue(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function markdownTable(rows: readonly BenchRow[]): string {
  const lines = ['| name | value | baseline | ratio | goal | met |', '|---|---|---|---|---|---|'];
  for (const row of rows) {
    const met = row.met === null ? '' : row.met ? 'yes' : '**no**';
    lines.push(`| ${[row.name, row.value, row.baseline, row.ratio, row.goal].map(cell).join(' | ')} | ${met} |`);
  }
  return lines.join('\n');
}

async function redisVersion(url: string): Promise<string> {
  const redis = new Redis(redisOptionsFromUrl(url));
  try {
    const info = await redis.info('server');
    return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  } finally {
    redis.disconnect();
  }
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const only = argValue('--only')?.split(',').map((name) => name.trim());
  const claims = argValue('--claims');
  if (claims) process.env.BENCH_CLAIMS = claims;
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const ensured = await ensureRedis(url, { log: (msg) => console.error(msg) });
  process.env.REDIS_URL = ensured.url;
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  const started = Date.now();
  try {
    for (const name of BENCHES) {
      if (only && !only.includes(name)) continue;
      let bench: Bench;
      try {
        ({ run: bench } = (await import(`./${name}.js`)) as { run: Bench });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (OPTIONAL.has(name) && (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && String((error as Error).message).includes(name)) {
          notes.push(`bench/${name}.ts is not there yet: skipped.`);
          continue;
        }
        throw error;
      }
      const benchStarted = Date.now();
      console.error(`[bench] ${name}${quick ? ' (quick)' : ''}...`);
      try {
        const produced = await bench({ quick });
        rows.push(...produced);
        for (const row of produced) console.error(`[bench]   ${row.name}: ${row.value}${row.ratio ? ` (${row.ratio})` : ''}`);
      } catch (error) {
        // One failing benchmark is reported in the table; the others still run.
        console.error(`[bench] ${name} failed:`, error);
        rows.push({ name: `${name}: FAILED`, value: cell((error as Error).message).slice(0, 200), baseline: '', ratio: '', goal: '', met: false });
      }
      console.error(`[bench] ${name} took ${((Date.now() - benchStarted) / 1000).toFixed(0)} s`);
    }
    const cpu = cpus();
    const machine =
      `Machine: ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} cores; Node ${process.version}; ` +
      `Redis ${await redisVersion(ensured.url)}; ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ` +
      `${quick ? 'quick' : 'normal'}${only ? ` partial (--only ${only.join(',')})` : ''} run in ${((Date.now() - started) / 1000).toFixed(0)} s.`;
    const text = [`## Benchmarks${quick ? ' (quick)' : ''}`, '', markdownTable(rows), '', machine, ...notes.map((n) => `\n${n}`), ''].join('\n');
    console.log(text);
    // A partial run (--only) never replaces the published table.
    const file = `latest${quick ? '-quick' : ''}${only ? '-partial' : ''}.md`;
    const dir = fileURLToPath(new URL('./results/', import.meta.url));
    await mkdir(dir, { recursive: true });
    await writeFile(`${dir}${file}`, text);
    console.error(`[bench] written to bench/results/${file}`);
  } finally {
    await ensured.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
