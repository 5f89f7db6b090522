// Sync benchmark (root): snapshots of 1k, 10k and 100k endpoints -> time from
// snapshot to maps converged (compile + diff + apply), map updates per second
// next to raw libbpf in the same run (bench/sync/raw_update.c), peak RSS.
// Usage: npm run bench:sync [-- --sizes 1000,10000,100000 --rounds 3]
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { compile } from '../../src/policy/index.js';
import { load, unload } from '../../src/loader/load.js';
import { openMaps } from '../../src/maps/pinned.js';
import { asCurrent } from '../../src/maps/plan.js';
import { syncMaps } from '../../src/maps/sync.js';
import { Topology } from '../../src/topo/topology.js';
import { median } from '../../src/topo/peers.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { makeSnapshot } from './gen.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
};
const sizes = opt('--sizes', '1000,10000,100000').split(',').map(Number);
const rounds = Number(opt('--rounds', '3'));
const out = opt('--out', join(PROJECT_ROOT, 'bench', 'report'));

const rawBin = join(tmpdir(), `mbt-raw-update-${process.pid}`);
execFileSync('cc', ['-O2', '-o', rawBin, join(PROJECT_ROOT, 'bench', 'sync', 'raw_update.c'), '-lbpf']);

const topo = new Topology();
mkdirSync(topo.cgroup, { recursive: true });
const cleanup = () => {
  try {
    unload({ pinDir: topo.pinDir });
  } catch {
    /* not loaded */
  }
  topo.destroy();
  rmSync(rawBin, { force: true });
};
process.once('SIGINT', () => {
  cleanup();
  process.exit(130);
});

interface Row {
  endpoints: number;
  entries: { endpoints: number; policies: number };
  compileMs: number;
  convergeMs: number; // compile + read + plan + apply, from an empty map
  resyncNoopMs: number;
  churn1pctMs: number;
  oursPolicyRate: number; // entries/s
  rawPolicyBatchRate: number;
  oursEndpointRate: number;
  rawEndpointRate: number;
}

const rows: Row[] = [];
try {
  load({ pinDir: topo.pinDir, cgroup: topo.cgroup, maxEndpoints: 262144, maxPolicies: 262144 });
  const locality = { nodeIps: ['198.18.0.1'], podCidrs: ['10.0.0.0/14', 'fd00::/104'], network: '' };
  for (const n of sizes) {
    const snap = makeSnapshot(n, 0);
    const churned = makeSnapshot(n, 1);
    const samples: Array<Omit<Row, 'endpoints'>> = [];
    for (let r = 0; r < rounds; r++) {
      const maps = openMaps(topo.pinDir);
      try {
        maps.endpoints.deleteMany([...maps.endpoints.keys()]);
        maps.policy.deleteMany([...maps.policy.keys()]);
        const t0 = performance.now();
        const desired = compile(snap, locality);
        const t1 = performance.now();
        const first = syncMaps(maps, desired);
        const t2 = performance.now();
        const applied = asCurrent(first.applied);
        const t2b = performance.now();
        const noop = syncMaps(maps, desired, applied);
        const t3 = performance.now();
        syncMaps(maps, compile(churned, locality), applied);
        const t4 = performance.now();
        if (noop.counts.endpoints.added + noop.counts.policies.added !== 0) throw new Error('no-op resync wrote entries');
        const raw = JSON.parse(execFileSync(rawBin, [String(Math.max(desired.policies.length, desired.endpoints.length)), '262144'], { encoding: 'utf8' })) as {
          n: number;
          hash_batch_ms: number;
          trie_single_ms: number;
        };
        samples.push({
          entries: { endpoints: desired.endpoints.length, policies: desired.policies.length },
          compileMs: t1 - t0,
          convergeMs: t2 - t0,
          resyncNoopMs: t3 - t2b,
          churn1pctMs: t4 - t3,
          oursPolicyRate: desired.policies.length / (first.ms.applyPolicy / 1000),
          rawPolicyBatchRate: raw.n / (raw.hash_batch_ms / 1000),
          oursEndpointRate: desired.endpoints.length / (first.ms.applyEndpoints / 1000),
          rawEndpointRate: raw.n / (raw.trie_single_ms / 1000),
        });
      } finally {
        maps.close();
      }
    }
    const med = (f: (s: Omit<Row, 'endpoints'>) => number) => median(samples.map(f));
    const row: Row = {
      endpoints: n,
      entries: samples[0]!.entries,
      compileMs: med((s) => s.compileMs),
      convergeMs: med((s) => s.convergeMs),
      resyncNoopMs: med((s) => s.resyncNoopMs),
      churn1pctMs: med((s) => s.churn1pctMs),
      oursPolicyRate: med((s) => s.oursPolicyRate),
      rawPolicyBatchRate: med((s) => s.rawPolicyBatchRate),
      oursEndpointRate: med((s) => s.oursEndpointRate),
      rawEndpointRate: med((s) => s.rawEndpointRate),
    };
    rows.push(row);
    process.stderr.write(`sync bench: ${n} endpoints converged in ${row.convergeMs.toFixed(0)} ms (median of ${rounds})\n`);
  }
} finally {
  cleanup();
}

const peakRssMb = process.resourceUsage().maxRSS / 1024;
const k = (x: number) => `${(x / 1000).toFixed(0)}k/s`;
const md = [
  `# Sync benchmark`,
  ``,
  `Kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}, ${rounds} rounds per size (median). Converge = compile + read kernel + diff + apply into empty maps. Rates are entries written per second; "raw" is bench/sync/raw_update.c (libbpf from C, pre-built keys, same run, same map shapes and capacity). Peak RSS of the whole benchmark process: ${peakRssMb.toFixed(0)} MB.`,
  ``,
  `| endpoints | entries (ep/policy) | compile | converge | no-op resync | 1% churn | policy rate (ours / raw batch) | endpoint rate (ours / raw single) |`,
  `|---:|---:|---:|---:|---:|---:|---:|---:|`,
  ...rows.map(
    (r) =>
      `| ${r.endpoints} | ${r.entries.endpoints} / ${r.entries.policies} | ${r.compileMs.toFixed(0)} ms | ${r.convergeMs.toFixed(0)} ms | ${r.resyncNoopMs.toFixed(0)} ms | ${r.churn1pctMs.toFixed(0)} ms | ${k(r.oursPolicyRate)} / ${k(r.rawPolicyBatchRate)} (${((100 * r.oursPolicyRate) / r.rawPolicyBatchRate).toFixed(0)}%) | ${k(r.oursEndpointRate)} / ${k(r.rawEndpointRate)} (${((100 * r.oursEndpointRate) / r.rawEndpointRate).toFixed(0)}%) |`,
  ),
  ``,
];
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'sync.json'), JSON.stringify({ rounds, peakRssMb, rows }, null, 2));
writeFileSync(join(out, 'SYNC.md'), md.join('\n'));
process.stdout.write(md.join('\n'));
