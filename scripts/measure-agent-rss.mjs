#!/usr/bin/env node
// Measure the agent's memory for the DaemonSet's resources: start the real
// agent (as root) on a throwaway cgroup and pin dir (mbt-rss-*), follow a
// snapshot of N endpoints (bench/sync/gen: Istio-shaped, 10% dual-stack), wait
// until /readyz, read VmRSS (now) and VmHWM (peak) from /proc, stop it with
// --unload-on-exit, remove everything. Needs `npm run build`.
//   node scripts/measure-agent-rss.mjs [N ...]        default: 0 (the example) 1000 10000 100000
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { makeSnapshot } = await import(join(root, 'dist/bench/sync/gen.js'));
const { cgroup2Mount } = await import(join(root, 'dist/src/loader/preflight.js'));
const T = 'type.googleapis.com/envoy.';
const sizes = process.argv.slice(2).map(Number);
const run = Math.random().toString(16).slice(2, 6);
const tmp = mkdtempSync(join(tmpdir(), 'mbt-rss-'));
const ready = (port) =>
  new Promise((res) =>
    get({ host: '127.0.0.1', port, path: '/readyz', agent: false }, (r) => {
      r.resume();
      res(r.statusCode === 200);
    }).on('error', () => res(false)),
  );
const kb = (pid, key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

console.log('ENDPOINTS  READY_S  RSS_MB  PEAK_MB');
for (const [i, n] of (sizes.length ? sizes : [0, 1000, 10000, 100000]).entries()) {
  const cg = join(cgroup2Mount(), `mbt-rss-${run}${i}`);
  const pin = `/sys/fs/bpf/mbt-rss-${run}${i}`;
  let file = join(root, 'examples', 'snapshot.yaml');
  if (n > 0) {
    const s = makeSnapshot(n, 0);
    const resources = [
      ...[...s.clusters.values()].map((r) => ({ '@type': `${T}config.cluster.v3.Cluster`, ...r })),
      ...[...s.endpoints.values()].map((r) => ({ '@type': `${T}config.endpoint.v3.ClusterLoadAssignment`, ...r })),
      ...[...s.listeners.values()].map((r) => ({ '@type': `${T}config.listener.v3.Listener`, ...r })),
    ];
    file = join(tmp, `snap-${n}.json`);
    writeFileSync(file, JSON.stringify({ resources }));
  }
  mkdirSync(cg);
  const port = 19750 + i;
  const t0 = Date.now();
  const p = spawn(
    process.execPath,
    [
      join(root, 'bin/meshbpf.js'),
      'agent',
      '--cgroup',
      cg,
      '--pin-dir',
      pin,
      '--xds-file',
      file,
      '--pod-cidr',
      '10.0.0.0/8',
      '--pod-cidr',
      'fd00::/64',
      '--node-ip',
      '198.18.99.1',
      '--listen',
      `127.0.0.1:${port}`,
      '--max-endpoints',
      String(Math.max(131072, 2 * n)),
      '--max-policies',
      String(Math.max(65536, 2 * n)),
      '--unload-on-exit',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, MESHBPF_STATE_DIR: join(tmp, 'state') } },
  );
  try {
    while (!(await ready(port))) {
      if (p.exitCode !== null) throw new Error('agent exited');
      if (Date.now() - t0 > 300_000) throw new Error(`agent not ready after 300 s (${n} endpoints)`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const secs = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 5000)); // let a post-sync GC settle
    console.log(`${String(n || 'example').padEnd(9)}  ${secs.toFixed(1).padStart(7)}  ${(kb(p.pid, 'VmRSS') / 1024).toFixed(0).padStart(6)}  ${(kb(p.pid, 'VmHWM') / 1024).toFixed(0).padStart(7)}`);
  } finally {
    p.kill('SIGTERM');
    await new Promise((r) => (p.exitCode !== null ? r() : p.on('exit', r)));
    rmSync(pin, { recursive: true, force: true });
    rmdirSync(cg);
  }
}
rmSync(tmp, { recursive: true, force: true });
