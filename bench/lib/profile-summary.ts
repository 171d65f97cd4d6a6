/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per file,
 * top N. `npx tsx bench/lib/profile-summary.ts <file.cpuprofile> [N]`.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

const [file, top = '40'] = process.argv.slice(2);
if (!file) throw new Error('usage: profile-summary <file.cpuprofile> [N]');
const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
for (const [id, time] of self) {
  const node = byId.get(id);
  if (!node) continue;
  const url = node.callFrame.url.replace(/^file:\/\/\/work\/main\//, '').replace(/.*node_modules\//, 'nm/');
  const fn = `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber + 1}`;
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + time);
  const pkg = url.startsWith('nm/') ? url.split('/').slice(0, url.split('/')[1]?.startsWith('@') ? 3 : 2).join('/') : url || node.callFrame.functionName;
  byFile.set(pkg, (byFile.get(pkg) ?? 0) + time);
}
const show = (title: string, map: Map<string, number>): void => {
  console.log(`\n${title} (total ${(total / 1000).toFixed(0)} ms)`);
  for (const [name, time] of [...map].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) {
    console.log(`${((time / total) * 100).toFixed(1).padStart(5)} %  ${(time / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  }
};
// Inclusive time of the project's own functions (src/ and bench/): where the time is spent from.
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const inclusive = new Map<string, number>();
for (const [id, time] of self) {
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const node = byId.get(at);
    if (!node) break;
    const url = node.callFrame.url.replace(/^file:\/\/\/work\/main\//, '');
    if (!url.startsWith('src/') && !url.startsWith('bench/')) continue;
    const fn = `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber + 1}`;
    if (seen.has(fn)) continue;
    seen.add(fn);
    inclusive.set(fn, (inclusive.get(fn) ?? 0) + time);
  }
}
// Self time of packages, charged to the nearest project frame that called them.
const charged = new Map<string, number>();
for (const [id, time] of self) {
  const leaf = byId.get(id);
  if (!leaf) continue;
  const leafUrl = leaf.callFrame.url.replace(/^file:\/\/\/work\/main\//, '');
  const pkg = leafUrl.includes('node_modules/') ? leafUrl.replace(/.*node_modules\//, '').split('/').slice(0, leafUrl.replace(/.*node_modules\//, '').startsWith('@') ? 2 : 1).join('/') : leafUrl.startsWith('node:') ? leafUrl : leaf.callFrame.functionName;
  let owner = '(no project frame)';
  for (let at: number | undefined = parent.get(id); at !== undefined; at = parent.get(at)) {
    const node = byId.get(at);
    const url = node?.callFrame.url.replace(/^file:\/\/\/work\/main\//, '') ?? '';
    if (url.startsWith('src/') || url.startsWith('bench/')) {
      owner = `${node?.callFrame.functionName || '(anonymous)'} ${url}`;
      break;
    }
  }
  const key = `${pkg} <- ${owner}`;
  charged.set(key, (charged.get(key) ?? 0) + time);
}
show('package self time by nearest project caller', charged);
show('self time by file/package', byFile);
show('inclusive time of project functions', inclusive);
show('self time by function', byFunction);
