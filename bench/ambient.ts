// `npm run bench:ambient` (and the last part of `npm run bench`): an Istio
// ambient node with istio-cni's in-pod rules (IPv4, as the golden file) and a
// ztunnel stand-in in each pod, measured two ways in ONE run, alternating
// round by round, pod a -> pod b with a bypass verdict from WDS:
//   - captured: meshbpf loaded, no pod enrolled: every connection goes
//     app a -> stand-in a (15001) -> stand-in b (15006) -> app b;
//   - meshbpf: both pods enrolled (`meshbpf inpod attach`): socket to socket.
// Throughput (iperf3, 128 KiB writes) and ping-pong latency (mbrr, 64 B). The
// stand-in is test/peers/ztunnel-standin.py: a threaded Python proxy, far
// slower than ztunnel (Rust, no mTLS here either), so the captured column is a
// lower bound of a real node's, not its measure. Each round checks what it
// claims: captured rounds must reach both stand-ins, meshbpf rounds neither
// (and move bytes by redirect). Servers restart after every switch (listeners
// are recorded when they start). Writes bench/report/ambient.json and
// AMBIENT.md. Everything is named mbt-* and removed on success, failure, Ctrl-C.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { setLogLevel } from '../src/log.js';
import { load, unload } from '../src/loader/load.js';
import { attachInpod, detachAllInpod } from '../src/loader/inpod.js';
import { checkPrivileges } from '../src/loader/preflight.js';
import { openMaps, readStats } from '../src/maps/pinned.js';
import { PROJECT_ROOT } from '../src/paths.js';
import { Topology } from '../src/topo/topology.js';
import { CleanupStack } from '../src/cleanup.js';
import { buildMbrr, iperf, mbrrPingPong, pinned, spawnIn, waitForListen } from './lib/peers.js';
import { median } from './lib/stats.js';

type Mode = 'captured' | 'meshbpf';
const A = '198.18.31.2';
const B = '198.18.31.3';
const IPERF = 5201;
const RR = 7000;
const log = (s: string) => process.stderr.write(`${s}\n`);

function parse(argv: string[]): { rounds: number; seconds: number; out: string } {
  const o = { rounds: 3, seconds: 3, out: join(PROJECT_ROOT, 'bench', 'report') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--seconds') o.seconds = Number(v());
    else if (a === '--out') o.out = v();
    else if (a === '--quick') Object.assign(o, { rounds: 2, seconds: 1 });
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: bench:ambient [--quick] [--rounds N] [--seconds N] [--out DIR]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  for (const k of ['rounds', 'seconds'] as const) if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`--${k}: ${o[k]} is not a positive integer`);
  return o;
}

function wds(): unknown {
  const b64 = (ip: string) => Buffer.from(ip.split('.').map(Number)).toString('base64');
  const wl = (name: string, ip: string, extra: object = {}) => ({
    '@type': 'type.googleapis.com/istio.workload.Address',
    workload: {
      uid: `Kubernetes//Pod/bench/${name}`,
      name,
      namespace: 'bench',
      addresses: [b64(ip)],
      tunnel_protocol: 'HBONE',
      trust_domain: 'cluster.local',
      service_account: 'default',
      node: 'node-a',
      cluster_id: 'Kubernetes',
      ...extra,
    },
  });
  const ports = [IPERF, RR].map((p) => ({ service_port: p, target_port: p }));
  return {
    resources: [
      wl('a', A),
      wl('b', B, { services: { 'bench/srv.bench.svc.cluster.local': { ports } } }),
      {
        '@type': 'type.googleapis.com/istio.workload.Address',
        service: { name: 'srv', namespace: 'bench', hostname: 'srv.bench.svc.cluster.local', addresses: [{ network: '', address: b64('198.19.31.10') }], ports },
      },
    ],
  };
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  setLogLevel('warn');
  checkPrivileges();
  const cleanups = new CleanupStack((e) => log(`cleanup: ${(e as Error).message}`));
  const onSig = () => {
    cleanups.run();
    process.exit(130);
  };
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  const topo = new Topology();
  cleanups.add(() => topo.destroy());
  const dir = join('/tmp', `mbt-${topo.id}-ambient`);
  mkdirSync(dir, { recursive: true });
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, MESHBPF_STATE_DIR: join(dir, 'state'), MESHBPF_LOG_LEVEL: 'warn' };
  try {
    topo.build('bridge', [
      { name: 'a', v4: `${A}/24` },
      { name: 'b', v4: `${B}/24` },
    ]);
    load({ pinDir: topo.pinDir, cgroup: topo.cgroup });
    cleanups.add(() => void unload({ pinDir: topo.pinDir }));
    process.env.MESHBPF_STATE_DIR = env.MESHBPF_STATE_DIR; // attachInpod keeps its record there (unload reads it)
    const f = join(dir, 'wds.json');
    writeFileSync(f, JSON.stringify(wds()));
    execFileSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'meshbpf.js'), 'sync', '--xds-file', f, '--pin-dir', topo.pinDir, '--node-name', 'node-a', '--node-ip', '198.18.31.1'], {
      env,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const rules = join(PROJECT_ROOT, 'test', 'peers', 'istio-cni-inpod.rules');
    const standin = join(PROJECT_ROOT, 'test', 'peers', 'ztunnel-standin.py');
    const logs: Record<string, string> = {};
    for (const pod of ['a', 'b']) {
      logs[pod] = join(dir, `standin-${pod}.log`);
      writeFileSync(logs[pod] as string, '');
      await topo.run(pod, ['sh', '-c', `iptables-restore < ${rules} && ip rule add fwmark 0x111/0xfff pref 32764 lookup 100 && ip route add local 0.0.0.0/0 dev lo table 100`], { cgroup: false });
      const p = topo.spawn(pod, ['python3', standin, logs[pod] as string]);
      let out = '';
      p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      for (let i = 0; i < 200 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
      if (!out.includes('ready')) throw new Error(`ztunnel stand-in in ${pod} did not start`);
    }
    const mbrr = buildMbrr(PROJECT_ROOT);
    const nsPath = (pod: string) => `/var/run/netns/${topo.pod(pod).netns}`;
    let servers: ChildProcess[] = [];
    const restartServers = async () => {
      for (const s of servers) s.kill();
      await new Promise((r) => setTimeout(r, 200));
      servers = [spawnIn(topo, 'b', 'topo', ['iperf3', '-s', '-p', String(IPERF)]), spawnIn(topo, 'b', 'topo', pinned([mbrr, 'server', B, String(RR), 'rr']))];
      await waitForListen(topo, 'b', IPERF);
      await waitForListen(topo, 'b', RR);
    };
    cleanups.add(() => servers.forEach((s) => s.kill()));
    const lines = (pod: string) =>
      readFileSync(logs[pod] as string, 'utf8')
        .split('\n')
        .filter(Boolean).length;
    const redirected = () => {
      const m = openMaps(topo.pinDir, { readOnly: true });
      try {
        return Number(readStats(m.stats).redirect_bytes);
      } finally {
        m.close();
      }
    };
    const res: Record<Mode, { gbps: number[]; p50: number[]; p99: number[] }> = { captured: { gbps: [], p50: [], p99: [] }, meshbpf: { gbps: [], p50: [], p99: [] } };
    for (let round = 1; round <= o.rounds; round++) {
      for (const mode of ['captured', 'meshbpf'] as Mode[]) {
        if (mode === 'meshbpf') for (const pod of ['a', 'b']) attachInpod(topo.pinDir, nsPath(pod));
        else detachAllInpod(topo.pinDir);
        await restartServers();
        const before = { a: lines('a'), b: lines('b'), red: redirected() };
        const t = await iperf(topo, 'a', B, IPERF, 128 << 10, o.seconds);
        const rr = await mbrrPingPong(topo, mbrr, 'a', B, RR, 64, o.seconds);
        const seen = lines('a') - before.a + (lines('b') - before.b);
        const red = redirected() - before.red;
        if (mode === 'captured' && seen < 4) throw new Error(`captured round ${round}: the stand-ins saw ${seen} connections, expected every one at both ends`);
        if (mode === 'meshbpf' && (seen !== 0 || red <= 0)) throw new Error(`meshbpf round ${round}: stand-ins saw ${seen} connections, ${red} bytes redirected`);
        res[mode].gbps.push(t.bitsPerSecond / 1e9);
        res[mode].p50.push(rr.p50);
        res[mode].p99.push(rr.p99);
        log(`round ${round} ${mode}: ${(t.bitsPerSecond / 1e9).toFixed(2)} Gbit/s, p50 ${rr.p50.toFixed(1)} us, stand-in connections ${seen}, redirected ${red} B`);
      }
    }
    const med = (m: Mode, k: 'gbps' | 'p50' | 'p99') => median(res[m][k]);
    const report = {
      when: new Date().toISOString(),
      kernel: release(),
      cpus: cpus().length,
      rounds: o.rounds,
      seconds: o.seconds,
      results: res,
      medians: Object.fromEntries((['captured', 'meshbpf'] as Mode[]).map((m) => [m, { gbps: med(m, 'gbps'), p50: med(m, 'p50'), p99: med(m, 'p99') }])),
    };
    mkdirSync(o.out, { recursive: true });
    writeFileSync(join(o.out, 'ambient.json'), JSON.stringify(report, null, 2) + '\n');
    const r = (x: number, y: number) => (x / y).toFixed(2);
    const md = [
      '# meshbpf on an Istio ambient node (in-pod capture)',
      '',
      `\`npm run bench:ambient\`, ${report.when.slice(0, 10)}, kernel ${report.kernel}, ${report.cpus} CPUs, ${o.rounds} rounds x ${o.seconds} s, alternating, medians (range in brackets).`,
      'Pod a -> pod b (bridge), istio-cni in-pod rules and a ztunnel stand-in in each pod (test/peers/ztunnel-standin.py, a threaded',
      'Python proxy: much slower than ztunnel, so the captured column is a lower bound of a real node, not its measure).',
      'Captured: no pod enrolled, every connection crosses both stand-ins (checked each round). meshbpf: both pods enrolled',
      '(`meshbpf inpod attach`), no stand-in sees a connection and the bytes move by redirect (checked each round).',
      '',
      '| measure | captured (2 stand-ins) | meshbpf (in-pod skipped) | meshbpf / captured |',
      '|---|---|---|---|',
      `| iperf3 throughput, 128 KiB writes | ${med('captured', 'gbps').toFixed(2)} Gbit/s (${range(res.captured.gbps)}) | ${med('meshbpf', 'gbps').toFixed(2)} Gbit/s (${range(res.meshbpf.gbps)}) | **${r(med('meshbpf', 'gbps'), med('captured', 'gbps'))}x** |`,
      `| ping-pong p50, 64 B | ${med('captured', 'p50').toFixed(1)} us (${range(res.captured.p50)}) | ${med('meshbpf', 'p50').toFixed(1)} us (${range(res.meshbpf.p50)}) | **${r(med('meshbpf', 'p50'), med('captured', 'p50'))}x** |`,
      `| ping-pong p99, 64 B | ${med('captured', 'p99').toFixed(1)} us | ${med('meshbpf', 'p99').toFixed(1)} us | ${r(med('meshbpf', 'p99'), med('captured', 'p99'))}x |`,
      '',
    ].join('\n');
    writeFileSync(join(o.out, 'AMBIENT.md'), md);
    process.stdout.write(md);
  } finally {
    cleanups.run();
    process.removeListener('SIGINT', onSig);
    process.removeListener('SIGTERM', onSig);
  }
}

function range(xs: number[]): string {
  const d = Math.max(...xs) >= 100 ? 0 : Math.max(...xs) >= 10 ? 1 : 2;
  return `${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)}`;
}

main().catch((e: unknown) => {
  log(`bench:ambient: ${(e as Error).message}`);
  process.exit(1);
});
