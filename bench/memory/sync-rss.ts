// Memory benchmark (root): peak RSS of `meshbpf sync` on a large config_dump,
// against the file's size. The dump is generated from the real Istio fixtures
// (test/fixtures/istio): every cluster, endpoint set and listener copied with
// its names and 10.x addresses rewritten per copy, until the file reaches --mb.
// With --kind endpoints, a resource list of the sync bench's generated services
// (endpoint-heavy) instead.
// Usage: npm run build && sudo node dist/bench/memory/sync-rss.js [--mb 50] [--runs 3] [--kind fixtures|endpoints] [--bin other/bin/meshbpf.js]
// (--bin: another build's launcher, e.g. the base commit's, for a before/after in one session)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load, unload } from '../../src/loader/load.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { Topology } from '../../src/topo/topology.js';
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type XdsSnapshot } from '../../src/xds/types.js';
import { makeSnapshot } from '../sync/gen.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
};
const targetMb = Number(opt('--mb', '50'));
const runs = Number(opt('--runs', '3'));
// fixtures: copies of the Istio dumps (listener-heavy); endpoints: the sync bench's generator (endpoint-heavy)
const kind = opt('--kind', 'fixtures');

type Obj = Record<string, unknown>;
const FIX = join(PROJECT_ROOT, 'test', 'fixtures', 'istio');
const ADMIN = 'type.googleapis.com/envoy.admin.v3.';

function section(file: string, type: string, field: string): Obj[] {
  const d = JSON.parse(readFileSync(join(FIX, file), 'utf8')) as { configs: Obj[] };
  return (d.configs.find((c) => c['@type'] === ADMIN + type)?.[field] ?? []) as Obj[];
}

/** One copy of a fixture entry: service hosts (so cluster names) suffixed, 10.A.B.C moved to copy k's range. */
function rewrite(text: string, k: number): string {
  return text
    .replace(/\b([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local\b/g, (_m, host: string, ns: string) => `${host}-k${k}.${ns}.svc.cluster.local`)
    .replace(/\b10\.(\d+)\.(\d+)\.(\d+)\b/g, (_m, _a, b: string, c: string) => `10.${(k >> 4) & 255}.${((k & 15) << 4) | (Number(b) & 15)}.${c}`);
}

/** Write a config_dump of about `mb` MiB; returns its path and how many copies it holds. */
function generate(dir: string, mb: number): { file: string; copies: number } {
  const endpoints = section('sidecar-endpoints-configdump.json', 'EndpointsConfigDump', 'dynamic_endpoint_configs');
  // every endpoint set gets its EDS cluster, as in a full Istio dump
  const clusters = section('clusters-listeners-configdump.json', 'ClustersConfigDump', 'dynamic_active_clusters');
  const template = clusters[0] as Obj;
  for (const e of endpoints) {
    const name = (e.endpoint_config as Obj | undefined)?.cluster_name;
    if (typeof name !== 'string' || !name.startsWith('outbound|')) continue;
    const c = JSON.parse(JSON.stringify(template)) as Obj;
    const body = c.cluster as Obj;
    body.name = name;
    (body.eds_cluster_config as Obj).service_name = name;
    clusters.push(c);
  }
  const kinds = [
    { type: 'ClustersConfigDump', field: 'dynamic_active_clusters', items: clusters },
    { type: 'EndpointsConfigDump', field: 'dynamic_endpoint_configs', items: endpoints },
    { type: 'ListenersConfigDump', field: 'dynamic_listeners', items: section('clusters-listeners-configdump.json', 'ListenersConfigDump', 'dynamic_listeners') },
  ];
  const perCopy = kinds.reduce((n, k) => n + JSON.stringify(k.items, null, 2).length, 0);
  const copies = Math.ceil((mb * 1024 * 1024) / perCopy);
  const file = join(dir, 'dump.json');
  const fd = openSync(file, 'w');
  writeSync(fd, '{\n "configs": [\n');
  kinds.forEach((kind, ki) => {
    writeSync(fd, `  {\n   "@type": "${ADMIN}${kind.type}",\n   "${kind.field}": [\n`);
    for (let k = 0; k < copies; k++) {
      // names without a service host (BlackHoleCluster, agent, ...) exist once
      const items =
        k === 0
          ? kind.items
          : kind.items.filter(
              (it) =>
                kind.type === 'ListenersConfigDump' || /svc\.cluster\.local/.test(JSON.stringify((it.cluster as Obj | undefined)?.name ?? (it.endpoint_config as Obj | undefined)?.cluster_name ?? '')),
            );
      const parts = items.map((it) => {
        const x = JSON.parse(rewrite(JSON.stringify(it), k)) as Obj;
        const l = (x.active_state as Obj | undefined)?.listener as Obj | undefined;
        if (l && typeof l.name === 'string') l.name = `${l.name}-k${k}`; // listener names must stay unique
        return JSON.stringify(x, null, 2);
      });
      writeSync(fd, `${k ? ',\n' : ''}${parts.join(',\n')}`);
    }
    writeSync(fd, `\n   ]\n  }${ki < kinds.length - 1 ? ',' : ''}\n`);
  });
  writeSync(fd, ' ]\n}\n');
  closeSync(fd);
  return { file, copies };
}

/** A resource list of the sync bench's generated services, about `mb` MiB, pretty-printed as Envoy prints. */
function generateEndpoints(dir: string, mb: number): { file: string; copies: number } {
  const list = (s: XdsSnapshot): unknown[] => [
    ...[...s.clusters.values()].map((r) => ({ '@type': TYPE_CLUSTER, ...r })),
    ...[...s.endpoints.values()].map((r) => ({ '@type': TYPE_ENDPOINT, ...r })),
    ...[...s.listeners.values()].map((r) => ({ '@type': TYPE_LISTENER, ...r })),
  ];
  const per = JSON.stringify({ resources: list(makeSnapshot(10_000, 0)) }, null, 2).length / 10_000;
  const n = Math.ceil((mb * 1024 * 1024) / per);
  const file = join(dir, 'dump.json');
  const fd = openSync(file, 'w');
  writeSync(fd, JSON.stringify({ resources: list(makeSnapshot(n, 0)) }, null, 2));
  closeSync(fd);
  return { file, copies: n };
}

/** Peak RSS (MiB, VmHWM) of `meshbpf agent` on the file, read once it logged its first sync. */
async function agentPeak(bin: string, file: string, pinDir: string, cgroup: string, env: NodeJS.ProcessEnv): Promise<number> {
  const a = spawn(
    process.execPath,
    [
      bin,
      'agent',
      '--xds-file',
      file,
      '--pin-dir',
      pinDir,
      '--cgroup',
      cgroup,
      '--listen',
      '',
      '--pod-cidr',
      '10.0.0.0/8',
      '--node-ip',
      '10.0.0.1',
      '--max-endpoints',
      String(1 << 20),
      '--max-policies',
      String(1 << 19),
      '--xds-file-max-mb',
      '1024',
      '--log-level',
      'info',
    ],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  try {
    await new Promise<void>((res, rej) => {
      a.stderr!.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes('maps synced')) res();
      });
      a.on('exit', () => rej(new Error(`agent exited: ${log.slice(-2000)}`)));
    });
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${a.pid}/status`, 'utf8'));
    return hwm ? Number(hwm[1]) / 1024 : Number.NaN;
  } finally {
    a.kill('SIGTERM');
    await new Promise((r) => (a.exitCode !== null ? r(undefined) : a.on('exit', r)));
  }
}

/** Peak RSS (MiB) of a command, from GNU time's %M (KiB), and its CPU time (user + system, s). */
function peakRss(argv: string[], env: NodeJS.ProcessEnv): { mib: number; cpu: number; stderr: string; code: number } {
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS %M CPU %U %S', ...argv], { env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const m = /MAXRSS (\d+) CPU ([\d.]+) ([\d.]+)/.exec(r.stderr);
  return { mib: m ? Number(m[1]) / 1024 : Number.NaN, cpu: m ? Number(m[2]) + Number(m[3]) : Number.NaN, stderr: r.stderr.replace(/MAXRSS .*\n?/, ''), code: r.status ?? 1 };
}

const dir = mkdtempSync(join(tmpdir(), 'mbt-rss-'));

if (args.includes('--generate-only')) {
  // for profiling by hand: print the file's path and leave it
  console.log((kind === 'endpoints' ? generateEndpoints(dir, targetMb) : generate(dir, targetMb)).file);
  process.exit(0);
}
const topo = new Topology();
mkdirSync(topo.cgroup, { recursive: true });
const cleanup = (): void => {
  try {
    unload({ pinDir: topo.pinDir });
  } catch {
    /* not loaded */
  }
  topo.destroy();
  rmSync(dir, { recursive: true, force: true });
};
process.once('SIGINT', () => {
  cleanup();
  process.exit(130);
});
try {
  const { file, copies } = kind === 'endpoints' ? generateEndpoints(dir, targetMb) : generate(dir, targetMb);
  const size = statSync(file).size / (1024 * 1024);
  load({ pinDir: topo.pinDir, cgroup: topo.cgroup, maxEndpoints: 1 << 20, maxPolicies: 1 << 19 });
  const env = { ...process.env, MESHBPF_STATE_DIR: join(dir, 'state'), MESHBPF_LOG_LEVEL: 'warn' };
  const bin = opt('--bin', join(PROJECT_ROOT, 'bin', 'meshbpf.js'));
  const baseline = peakRss([process.execPath, '-e', '0'], env).mib;
  const results: number[] = [];
  const cpus: number[] = [];
  let summary = '';
  for (let i = 0; i < runs; i++) {
    // a fresh map each run would be a first sync every time: unload and load again
    if (i > 0) {
      unload({ pinDir: topo.pinDir });
      load({ pinDir: topo.pinDir, cgroup: topo.cgroup, maxEndpoints: 1 << 20, maxPolicies: 1 << 19 });
    }
    const r = peakRss([process.execPath, bin, 'sync', '--xds-file', file, '--pin-dir', topo.pinDir, '--pod-cidr', '10.0.0.0/8', '--node-ip', '10.0.0.1', '--xds-file-max-mb', '1024'], env);
    if (r.code !== 0) throw new Error(`meshbpf sync failed: ${r.stderr}`);
    summary = r.stderr.trim() || summary;
    results.push(r.mib);
    cpus.push(r.cpu);
  }
  const sorted = [...results].sort((a, b) => a - b);
  const med = sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
  const cpuMed = [...cpus].sort((a, b) => a - b)[Math.floor(cpus.length / 2)] ?? Number.NaN;
  const out = execFileSync(process.execPath, [bin, 'maps', 'list', '--pin-dir', topo.pinDir], { env, encoding: 'utf8' });
  // the agent's first sync, into fresh maps each run (it leaves them pinned when it stops)
  const agents: number[] = [];
  for (let i = 0; i < runs; i++) {
    unload({ pinDir: topo.pinDir });
    agents.push(await agentPeak(bin, file, topo.pinDir, topo.cgroup, env));
  }
  const agent = [...agents].sort((a, b) => a - b)[Math.floor(agents.length / 2)] ?? Number.NaN;
  console.log(kind === 'endpoints' ? `resource list: ${size.toFixed(1)} MiB (${copies} generated endpoints)` : `config_dump: ${size.toFixed(1)} MiB (${copies} copies of the fixtures)`);
  console.log(out.trim());
  console.log(`node baseline (node -e 0): ${baseline.toFixed(0)} MiB`);
  console.log(
    `meshbpf sync peak RSS, ${runs} runs: ${results.map((x) => x.toFixed(0)).join(', ')} MiB; median ${med.toFixed(0)} MiB = ${(med / size).toFixed(2)}x the file size; CPU (user + sys) median ${cpuMed.toFixed(2)} s`,
  );
  console.log(
    `meshbpf agent peak RSS through its first sync, ${runs} runs: ${agents.map((x) => x.toFixed(0)).join(', ')} MiB; median ${agent.toFixed(0)} MiB = ${(agent / size).toFixed(2)}x the file size`,
  );
} finally {
  cleanup();
}
