// Memory by stage (no root, no kernel): the steps of `meshbpf sync` on one
// file in one process (load: read, parse and snapshot; compile; encode; diff
// against empty maps), with RSS, heap and the peak RSS so far after each. For finding
// where the peak of sync-rss.ts comes from, not for reporting.
// Usage: node [--expose-gc] dist/bench/memory/stages.js FILE
import { readFileSync } from 'node:fs';
import { loadSnapshotFile } from '../../src/xds/file.js';
import { compileCheckedInto } from '../../src/policy/index.js';
import { DesiredEncoder, planSync } from '../../src/maps/plan.js';
import { collectBeforeOutput } from '../../src/gc.js';

const file = process.argv[2];
if (!file) throw new Error('usage: stages.js FILE');
const mib = (n: number): string => `${(n / 1048576).toFixed(0)}`.padStart(5);
const hwm = (): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
const gc = (globalThis as { gc?: () => void }).gc;
const t0 = performance.now();
let last = t0;
function stage(name: string): void {
  const now = performance.now();
  const m = process.memoryUsage();
  let line = `${name.padEnd(10)} rss ${mib(m.rss)}  peak ${mib(hwm())}  heap ${mib(m.heapUsed)}  ext+ab ${mib(m.external + m.arrayBuffers)}  ${(now - last).toFixed(0).padStart(5)} ms`;
  if (gc) {
    gc();
    line += `  | after gc: heap ${mib(process.memoryUsage().heapUsed)} rss ${mib(process.memoryUsage().rss)}`;
  }
  console.log(line);
  last = performance.now();
}
stage('start');
const snap = loadSnapshotFile(file, 1 << 30).snapshot;
stage('load');
// as meshbpf sync does: entries encoded as the compiler builds them, a collection before its output
const encoder = new DesiredEncoder();
const checked = compileCheckedInto(snap, { nodeIps: ['10.0.0.1'], podCidrs: ['10.0.0.0/8'], network: '' }, encoder, { beforeOutput: collectBeforeOutput });
if ('error' in checked) throw new Error(checked.error);
stage('compile');
const enc = encoder.done();
stage('encode');
const { counts } = planSync(enc, { endpoints: new Map(), policy: new Map() });
stage('plan');
console.log(`endpoints ${counts.endpoints.added}, policies ${counts.policies.added}; cpu ${(process.cpuUsage().user / 1000).toFixed(0)} ms user`);
