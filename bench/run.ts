// `npm run bench`: build throwaway nodes (veth pair; bridge + kube-proxy-like
// netfilter), load meshbpf into each, and measure the normal stack against the
// bypass in ONE run, alternating the two modes round by round:
//   - throughput (iperf3) per write size, with CPU per GB moved
//   - request/response latency p50/p99 (sockperf for IPv4, mbrr for both)
//   - short-connection rate with the programs attached vs not attached at all
// for IPv4 and IPv6. Writes report.json, REPORT.md and throughput-ratio.svg.
// Everything it creates is named mbt-* and removed on success, failure and Ctrl-C.
import { execFileSync } from 'node:child_process';
import { setLogLevel } from '../src/log.js';
import { CleanupStack } from '../src/cleanup.js';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { load, unload } from '../src/loader/load.js';
import { checkPrivileges } from '../src/loader/preflight.js';
import { openMaps, readStats, type MeshMaps } from '../src/maps/pinned.js';
import type { Stats } from '../src/maps/codecs.js';
import { PROJECT_ROOT } from '../src/paths.js';
import { leftovers, removeCgroup, Topology } from '../src/topo/topology.js';
import { ArgError, parseArgs, type BenchOptions, type Family, type TopoKind } from './lib/args.js';
import { ratioChart } from './lib/chart.js';
import { kubeProxyRules } from './lib/kubeproxy.js';
import { renderMarkdown } from './lib/markdown.js';
import {
  buildMbrr,
  killOurs,
  LATENCY_CPU,
  pinned,
  iperf,
  tcpOutSegs,
  unixStream,
  mbrrConnectRate,
  mbrrPingPong,
  sockperfPingPong,
  spawnIn,
  toolVersion,
  waitForListen,
  type IperfRun,
  type RrRun,
} from './lib/peers.js';
import { ratio, roundRatio, roundSummary, sig, summarize } from './lib/stats.js';
import type { ConnectRow, LatencyRow, NetfilterInfo, Report, ThroughputRow, Verification, VipRow } from './lib/report.js';
import { runExperiments } from './experiments/small-writes.js';
import { MinimalRedirect } from './lib/minimal.js';

type Mode = 'stack' | 'bypass';
/** throughput compares more: the minimal redirect, AF_UNIX, and (--variants) the minimal program's SK_PASS variants */
type TputMode = Mode | 'minimal' | 'unix' | 'pass' | 'passApply';

const PORTS = { iperf: 5201, iperfMinimal: 5203, sockperf: 11111, rr: { v4: 7001, v6: 7002 }, rrMinimal: { v4: 7003, v6: 7004 }, crr: { v4: [7101, 7102, 7103], v6: [7201, 7202, 7203] } };

const log = (s: string) => process.stderr.write(`${s}\n`);

// ---------- cleanup that also runs on failure and on Ctrl-C

const cleanups = new CleanupStack((e) => log(`cleanup: ${(e as Error).message}`));
const cleanupAll = (): void => cleanups.run();
function onSignal(sig: NodeJS.Signals): void {
  log(`\n${sig}: removing the benchmark's namespaces, cgroups and pins`);
  cleanupAll();
  process.exit(130);
}

// ---------- a node under test

interface Node {
  kind: TopoKind;
  topo: Topology;
  maps: MeshMaps;
  plainCgroup: string;
  /** a sibling cgroup with the minimal redirect attached, and its iperf3 server */
  minimalCgroup: string;
  minimal: MinimalRedirect;
  addr: Record<Family, { a: string; b: string }>;
  netfilter?: NetfilterInfo;
}

const PODS: Record<TopoKind, { a: { v4: string; v6: string }; b: { v4: string; v6: string }; cidr4: string; cidr6: string }> = {
  veth: { a: { v4: '198.18.1.1/24', v6: 'fd00:0:0:1::1/64' }, b: { v4: '198.18.1.2/24', v6: 'fd00:0:0:1::2/64' }, cidr4: '198.18.1.0/24', cidr6: 'fd00:0:0:1::/64' },
  bridge: { a: { v4: '198.18.2.2/24', v6: 'fd00:0:0:2::2/64' }, b: { v4: '198.18.2.3/24', v6: 'fd00:0:0:2::3/64' }, cidr4: '198.18.2.0/24', cidr6: 'fd00:0:0:2::/64' },
};

const SERVICES = 300;
/** The bench's own ClusterIP, outside kubeProxyRules' ranges, DNAT to pod b's iperf3 in pod a's netns. */
const BENCH_VIP = { v4: '198.19.100.1', v6: 'fd00:96::ff:1', port: 80 };

function nsExec(netns: string, cmd: string[], input?: string): string {
  return execFileSync('ip', ['netns', 'exec', netns, ...cmd], { encoding: 'utf8', input: input ?? '', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** br_netfilter inside the node namespace only, plus kube-proxy-shaped rules for both families. */
function setupNetfilter(topo: Topology, cidr4: string, cidr6: string): NetfilterInfo {
  const node = topo.ns('node');
  const hostBefore = existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables') ? execFileSync('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables'], { encoding: 'utf8' }).trim() : undefined;
  let mode: NetfilterInfo['mode'] = 'bridged';
  try {
    nsExec(node, ['sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1']);
  } catch (e) {
    throw new Error(`br_netfilter is not available in the node namespace (${(e as Error).message.split('\n')[0]}); this kernel needs the routed variant, which the bench does not build yet`);
  }
  const hostAfter = hostBefore === undefined ? undefined : execFileSync('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables'], { encoding: 'utf8' }).trim();
  if (hostBefore !== hostAfter) mode = 'bridged (sysctl NOT per-netns: host value changed)';
  // Short-connection runs open tens of thousands of connections; kube-proxy's
  // defaults keep TIME_WAIT entries 120 s. Shorter, in this namespace only, so
  // the conntrack table stays far from full across rounds.
  nsExec(node, ['sysctl', '-q', '-w', 'net.netfilter.nf_conntrack_tcp_timeout_time_wait=5']);
  const r4 = kubeProxyRules('v4', SERVICES, cidr4);
  const r6 = kubeProxyRules('v6', SERVICES, cidr6);
  nsExec(node, ['iptables-restore'], r4.text);
  nsExec(node, ['ip6tables-restore'], r6.text);
  return {
    mode,
    backend: toolVersion(['iptables', '--version']),
    services: SERVICES,
    rulesV4: r4.rules,
    rulesV6: r6.rules,
    conntrackTimeWaitSec: 5,
  };
}

/** kube-proxy's ClusterIP rule for BENCH_VIP in the client pod (OUTPUT DNAT to pod b's iperf3), and a route to it. */
function setupVipDnat(node: Node): void {
  const a = node.topo.ns('a');
  for (const fam of ['v4', 'v6'] as const) {
    const vip = BENCH_VIP[fam];
    const ep = fam === 'v4' ? `${node.addr.v4.b}:${PORTS.iperf}` : `[${node.addr.v6.b}]:${PORTS.iperf}`;
    const host = fam === 'v4' ? '/32' : '/128';
    const rules = [
      '*nat',
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-SVC-MBTBENCH - [0:0]',
      ':KUBE-SEP-MBTBENCH - [0:0]',
      '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      `-A KUBE-SERVICES -d ${vip}${host} -p tcp -m comment --comment "bench/iperf cluster IP" -m tcp --dport ${BENCH_VIP.port} -j KUBE-SVC-MBTBENCH`,
      `-A KUBE-SVC-MBTBENCH -m comment --comment "bench/iperf -> ${ep}" -j KUBE-SEP-MBTBENCH`,
      `-A KUBE-SEP-MBTBENCH -p tcp -m tcp -j DNAT --to-destination ${ep}`,
      'COMMIT',
      '',
    ].join('\n');
    nsExec(a, [fam === 'v4' ? 'iptables-restore' : 'ip6tables-restore'], rules);
    nsExec(a, ['ip', ...(fam === 'v6' ? ['-6'] : []), 'route', 'add', fam === 'v4' ? '198.19.100.0/24' : 'fd00:96::ff:0/112', 'dev', 'eth0']);
  }
}

/** Packets the stack carried through the node's KUBE-FORWARD ESTABLISHED rule, per family. */
function forwardPackets(topo: Topology): { v4: number; v6: number } {
  const node = topo.ns('node');
  const count = (bin: string) => {
    const out = nsExec(node, [bin, '-t', 'filter', '-L', 'KUBE-FORWARD', '-n', '-v', '-x']);
    const line = out.split('\n').find((l) => l.includes('RELATED,ESTABLISHED'));
    return Number(line?.trim().split(/\s+/)[0] ?? 0);
  };
  return { v4: count('iptables'), v6: count('ip6tables') };
}

async function buildNode(kind: TopoKind, mbrr: string): Promise<Node> {
  const topo = new Topology();
  const plainCgroup = `${topo.cgroup}-plain`;
  const minimalCgroup = `${topo.cgroup}-min`;
  let loaded = false;
  let maps: MeshMaps | undefined;
  let minimal: MinimalRedirect | undefined;
  cleanups.add(() => {
    maps?.close();
    killOurs();
    minimal?.close();
    if (loaded) unload({ pinDir: topo.pinDir });
    topo.destroy();
    removeCgroup(plainCgroup);
    removeCgroup(minimalCgroup);
  });
  const p = PODS[kind];
  log(
    `[${kind}] building mbt-${topo.id}: ${kind === 'veth' ? 'pod netns <-> veth <-> pod netns' : `pods on a bridge in a node namespace, br_netfilter + kube-proxy-like rules (${SERVICES} services)`}`,
  );
  topo.build(kind, [
    { name: 'a', ...p.a },
    { name: 'b', ...p.b },
  ]);
  mkdirSync(plainCgroup); // a sibling cgroup with no programs: "not attached at all"
  mkdirSync(minimalCgroup);
  minimal = new MinimalRedirect(minimalCgroup);
  const node: Node = {
    kind,
    topo,
    plainCgroup,
    minimalCgroup,
    minimal,
    maps: undefined as unknown as MeshMaps,
    addr: { v4: { a: topo.pod('a').v4 as string, b: topo.pod('b').v4 as string }, v6: { a: topo.pod('a').v6 as string, b: topo.pod('b').v6 as string } },
  };
  if (kind === 'bridge') {
    node.netfilter = setupNetfilter(topo, p.cidr4, p.cidr6);
    setupVipDnat(node);
  }
  load({ pinDir: topo.pinDir, cgroup: topo.cgroup });
  loaded = true;
  maps = openMaps(topo.pinDir);
  node.maps = maps;
  const local = { local: true, mesh: true, networkId: 0, workloadId: 0 };
  maps.endpoints.set(p.cidr4, local);
  maps.endpoints.set(p.cidr6, local);

  // Servers in pod b. iperf3 listens dual-stack; sockperf is IPv4 only.
  spawnIn(topo, 'b', 'topo', ['iperf3', '-s', '-p', String(PORTS.iperf)]);
  spawnIn(topo, 'b', minimalCgroup, ['iperf3', '-s', '-p', String(PORTS.iperfMinimal)]);
  spawnIn(topo, 'b', 'topo', [...pinned(['sockperf']), 'server', '--tcp', '-i', node.addr.v4.b, '-p', String(PORTS.sockperf)]);
  for (const fam of ['v4', 'v6'] as const) {
    const b = node.addr[fam].b;
    spawnIn(topo, 'b', 'topo', pinned([mbrr, 'server', b, String(PORTS.rr[fam]), 'rr']));
    spawnIn(topo, 'b', minimalCgroup, pinned([mbrr, 'server', b, String(PORTS.rrMinimal[fam]), 'rr']));
    const [bypassPort, ineligiblePort, nonePort] = PORTS.crr[fam] as [number, number, number];
    spawnIn(topo, 'b', 'topo', [mbrr, 'server', b, String(bypassPort), 'crr']);
    spawnIn(topo, 'b', 'topo', [mbrr, 'server', b, String(ineligiblePort), 'crr']);
    spawnIn(topo, 'b', plainCgroup, [mbrr, 'server', b, String(nonePort), 'crr']);
    maps.policy.set({ ip: b, port: bypassPort }, { verdict: 'bypass', ruleId: 1 });
  }
  for (const port of [PORTS.iperf, PORTS.iperfMinimal, PORTS.sockperf, PORTS.rr.v4, PORTS.rr.v6, PORTS.rrMinimal.v4, PORTS.rrMinimal.v6, ...PORTS.crr.v4, ...PORTS.crr.v6])
    await waitForListen(topo, 'b', port);
  return node;
}

// ---------- measuring

let step = 0;
let totalSteps = 0;
const verification: Verification[] = [];

function statDelta(a: Stats, b: Stats): { redirectBytes: number; redirectMsgs: number; inserted: number; streamBytes: number; switched: number; kept: number } {
  return {
    kept: Number(b.stream_kept - a.stream_kept),
    redirectBytes: Number(b.redirect_bytes - a.redirect_bytes),
    redirectMsgs: Number(b.redirect_msgs - a.redirect_msgs),
    inserted: Number(b.sockets_inserted - a.sockets_inserted),
    streamBytes: Number(b.stream_pass_bytes - a.stream_pass_bytes),
    switched: Number(b.stream_switched - a.stream_switched),
  };
}

/** Bypass runs whose sockets a learned stream kept on the stack (inMode). */
const learnedRuns = new WeakSet<object>();

/** Run `fn` with the verdict for (ip, port) set (bypass) or removed (stack); check the counters agree. */
async function inMode<T>(
  node: Node,
  mode: Mode,
  key: { ip: string; port: number },
  what: string,
  family: Family,
  fn: () => Promise<T>,
  /** bypass mode: how many bytes must have been redirected for the run to count as bypassed */
  mustRedirect?: (t: T) => number,
): Promise<T> {
  if (mode === 'bypass') node.maps.policy.set(key, { verdict: 'bypass', ruleId: 1 });
  else node.maps.policy.delete(key);
  const before = readStats(node.maps.stats);
  const r = await fn();
  const d = statDelta(before, readStats(node.maps.stats));
  // A learned stream (mb_streams): sockops kept every socket of the run out of
  // mb_sockets (the pair's earlier connection switched to the stack).
  const learned = mode === 'bypass' && d.kept > 0;
  if (learned && d.inserted !== 0) throw new Error(`${node.kind} ${family} ${what}: ${d.kept} sockets kept on the stack by a learned stream but ${d.inserted} paired in the same run`);
  if (learned && typeof r === 'object' && r !== null) learnedRuns.add(r);
  if (mode === 'bypass' && d.redirectMsgs === 0 && !learned) throw new Error(`${node.kind} ${family} ${what}: bypass mode redirected nothing; the measurement would be meaningless`);
  // A paired socket's bytes are redirected, or passed after its switch to the stack (a stream of small writes)
  if (mode === 'bypass' && !learned && mustRedirect && d.redirectBytes + d.streamBytes < mustRedirect(r)) {
    throw new Error(
      `${node.kind} ${family} ${what}: bypass mode redirected only ${d.redirectBytes} bytes (+${d.streamBytes} after a switch), expected at least ${Math.round(mustRedirect(r))}; the connection was not paired`,
    );
  }
  if (mode === 'stack' && d.redirectMsgs !== 0) throw new Error(`${node.kind} ${family} ${what}: stack mode redirected ${d.redirectMsgs} messages`);
  let v = verification.find((x) => x.topology === node.kind && x.family === family && x.metric === what.split(' ')[0] && x.mode === mode);
  if (!v) {
    v = { topology: node.kind, family, metric: what.split(' ')[0] as string, mode, runs: 0, redirectedMsgs: 0, redirectedBytes: 0, socketsInserted: 0 };
    verification.push(v);
  }
  v.runs++;
  v.redirectedMsgs += d.redirectMsgs;
  v.redirectedBytes += d.redirectBytes;
  v.socketsInserted += d.inserted;
  return r;
}

/** Rounds alternate the mode order (AB, BA, AB, ...) so drift hits both modes alike. */
async function alternate<M extends string, T>(modes: M[], rounds: number, label: (m: M, r: number) => string, run: (m: M) => Promise<T>, show: (t: T) => string): Promise<Record<M, T[]>> {
  const out = Object.fromEntries(modes.map((m) => [m, [] as T[]])) as Record<M, T[]>;
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? modes : [...modes].reverse();
    for (const m of order) {
      const t = await run(m);
      out[m].push(t);
      step++;
      log(`[${String(step).padStart(3)}/${totalSteps}] ${label(m, r)}: ${show(t)}`);
    }
  }
  return out;
}

const gbit = (b: number) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} Gbit/s` : `${(b / 1e6).toFixed(1)} Mbit/s`);
const sizeName = (n: number) => (n >= 1 << 20 ? `${n >> 20} MiB` : n >= 1024 ? `${n >> 10} KiB` : `${n} B`);

/** One throughput run of mode m: meshbpf's two modes through inMode (counters checked), the yardsticks in their own cgroups. */
async function throughputRun(node: Node, fam: Family, o: BenchOptions, mbrr: string, m: TputMode, size: number): Promise<IperfRun> {
  const server = node.addr[fam].b;
  if (m === 'stack' || m === 'bypass') {
    return inMode(
      node,
      m,
      { ip: server, port: PORTS.iperf },
      `throughput ${size}`,
      fam,
      () => iperf(node.topo, 'a', server, PORTS.iperf, size, o.seconds),
      (t) => 0.9 * t.bytes,
    );
  }
  if (m === 'unix') return unixStream(node.topo, mbrr, 'a', node.plainCgroup, size, o.seconds);
  node.minimal.use(m === 'minimal' ? 'min_sk_msg' : m === 'pass' ? 'min_pass' : 'min_pass_apply');
  const before = tcpOutSegs(node.topo, 'a');
  const r = await iperf(node.topo, 'a', server, PORTS.iperfMinimal, size, o.seconds, node.minimalCgroup);
  const segs = tcpOutSegs(node.topo, 'a') - before;
  // Redirected: a handful of segments (handshakes, the control connection's
  // setup, FINs). Through the stack: at least one per 64 KiB moved.
  const redirected = segs <= 64 || segs < r.bytes / 65536 / 4;
  if (m === 'minimal' && !redirected) throw new Error(`${node.kind} ${fam} minimal redirect ${size}: ${segs} TCP segments for ${r.bytes} bytes: it took the stack`);
  if (m !== 'minimal' && redirected) throw new Error(`${node.kind} ${fam} ${m} ${size}: only ${segs} TCP segments for ${r.bytes} bytes: the SK_PASS variant redirected`);
  return r;
}

async function throughput(node: Node, fam: Family, o: BenchOptions, mbrr: string): Promise<ThroughputRow[]> {
  const rows: ThroughputRow[] = [];
  const all: TputMode[] = ['stack', 'bypass', 'minimal', 'unix', ...(o.variants ? (['pass', 'passApply'] as const) : [])];
  const modes = o.modes ? (o.modes as TputMode[]) : all;
  for (const size of o.sizes) {
    // Each write size is a workload of its own: forget what the previous size
    // taught mb_streams, as for a new destination. Within the size, the first
    // bypass run is the probe (paired, then switched if it is a stream) and
    // the later ones meet what it learned.
    for (const [k] of [...node.maps.streams.entries()]) node.maps.streams.delete(k);
    const switchedBefore = readStats(node.maps.stats).stream_switched;
    const res = await alternate<TputMode, IperfRun>(
      modes,
      o.rounds,
      (m, r) => `${node.kind} ${fam} throughput ${sizeName(size)} ${m} round ${r + 1}/${o.rounds}`,
      (m) => throughputRun(node, fam, o, mbrr, m, size),
      (t) => gbit(t.bitsPerSecond),
    );
    const bps = (m: TputMode) => summarize((res[m] ?? []).map((x) => x.bitsPerSecond));
    const stack = bps('stack');
    const bypass = bps('bypass');
    const minimal = bps('minimal');
    const unix = bps('unix');
    const cpu = (xs: IperfRun[], k: 'peerCpuSecPerGB' | 'nodeCpuSecPerGB') => {
      const v = xs.map((x) => x[k]).filter((n): n is number => typeof n === 'number' && n > 0);
      return v.length ? roundSummary(summarize(v), 3) : undefined;
    };
    const row: ThroughputRow = {
      topology: node.kind,
      family: fam,
      size,
      stack: roundSummary(stack),
      bypass: roundSummary(bypass),
      ratio: roundRatio(ratio(bypass, stack)),
      minimal: roundSummary(minimal),
      ratioMinimal: roundRatio(ratio(bypass, minimal)),
      unix: roundSummary(unix),
      ratioUnix: roundRatio(ratio(bypass, unix)),
      switchedToStack: Number(readStats(node.maps.stats).stream_switched - switchedBefore),
      learnedRuns: (res.bypass ?? []).filter((x) => learnedRuns.has(x)).length,
      cpuSecPerGB: {},
    };
    const probes = (res.bypass ?? []).filter((x) => !learnedRuns.has(x));
    if (row.learnedRuns && probes.length) row.probeRatio = Math.round((summarize(probes.map((x) => x.bitsPerSecond)).median / stack.median) * 100) / 100;
    if (o.variants) {
      row.pass = roundSummary(bps('pass'));
      row.passApply = roundSummary(bps('passApply'));
    }
    const ps = cpu(res.stack ?? [], 'peerCpuSecPerGB');
    const pb = cpu(res.bypass ?? [], 'peerCpuSecPerGB');
    const ns = cpu(res.stack ?? [], 'nodeCpuSecPerGB');
    const nb = cpu(res.bypass ?? [], 'nodeCpuSecPerGB');
    if (ps) row.cpuSecPerGB.peersStack = ps;
    if (pb) row.cpuSecPerGB.peersBypass = pb;
    if (ns) row.cpuSecPerGB.nodeStack = ns;
    if (nb) row.cpuSecPerGB.nodeBypass = nb;
    rows.push(row);
  }
  return rows;
}

async function latency(node: Node, fam: Family, o: BenchOptions, mbrr: string): Promise<LatencyRow[]> {
  const rows: LatencyRow[] = [];
  const server = node.addr[fam].b;
  const tools: Array<{ tool: LatencyRow['tool']; port: number; run: (size: number) => Promise<RrRun>; minimal?: (size: number) => Promise<RrRun> }> = [];
  if (fam === 'v4') tools.push({ tool: 'sockperf', port: PORTS.sockperf, run: (size) => sockperfPingPong(node.topo, 'a', server, PORTS.sockperf, size, o.rrSeconds) });
  tools.push({
    tool: 'mbrr',
    port: PORTS.rr[fam],
    run: (size) => mbrrPingPong(node.topo, mbrr, 'a', server, PORTS.rr[fam], size, o.rrSeconds),
    // the same ping-pong between the minimal redirect's cgroup members: the yardstick for meshbpf's per-message cost
    minimal: async (size) => {
      node.minimal.use('min_sk_msg');
      const before = tcpOutSegs(node.topo, 'a');
      const r = await mbrrPingPong(node.topo, mbrr, 'a', server, PORTS.rrMinimal[fam], size, o.rrSeconds, undefined, node.minimalCgroup);
      const segs = tcpOutSegs(node.topo, 'a') - before;
      // Redirected: the handshake and FIN only. Through the stack: a segment per message.
      if (segs > 64 && segs > r.roundTrips / 4) throw new Error(`${node.kind} ${fam} minimal redirect ping-pong ${size}: ${segs} TCP segments for ${r.roundTrips} round trips: it took the stack`);
      return r;
    },
  });
  for (const t of tools) {
    // One discarded run first: the first ping-pong after the throughput runs was
    // seen to be slow in both modes (the machine settling), which is not what we measure.
    await t.run(o.rrSizes[0] ?? 64);
    for (const size of o.rrSizes) {
      const minimal = t.minimal;
      const res = await alternate<Mode | 'minimal', RrRun>(
        minimal ? ['stack', 'bypass', 'minimal'] : ['stack', 'bypass'],
        o.rounds,
        (m, r) => `${node.kind} ${fam} latency ${t.tool} ${sizeName(size)} ${m} round ${r + 1}/${o.rounds}`,
        (m) =>
          m === 'minimal'
            ? minimal!(size)
            : inMode(
                node,
                m,
                { ip: server, port: t.port },
                `latency ${t.tool} ${size}`,
                fam,
                () => t.run(size),
                (x) => 2 * x.roundTrips * size * 0.95,
              ),
        (x) => `p50 ${x.p50.toFixed(1)} us, p99 ${x.p99.toFixed(1)} us`,
      );
      const p = (k: 'p50' | 'p99') => {
        const s = summarize(res.stack.map((x) => x[k]));
        const b = summarize(res.bypass.map((x) => x[k]));
        const mm = res.minimal?.length ? summarize(res.minimal.map((x) => x[k])) : undefined;
        return { stack: roundSummary(s), bypass: roundSummary(b), ratio: roundRatio(ratio(b, s)), ...(mm ? { minimal: roundSummary(mm), ratioMinimal: roundRatio(ratio(b, mm)) } : {}) };
      };
      rows.push({ topology: node.kind, family: fam, tool: t.tool, size, unit: 'us (full round trip)', p50: p('p50'), p99: p('p99') });
    }
  }
  return rows;
}

type ConnMode = 'none' | 'attachedIneligible' | 'attachedBypass';

async function connectRate(node: Node, fam: Family, o: BenchOptions, mbrr: string): Promise<ConnectRow> {
  const server = node.addr[fam].b;
  const [bypassPort, ineligiblePort, nonePort] = PORTS.crr[fam] as [number, number, number];
  const ports: Record<ConnMode, number> = { attachedBypass: bypassPort, attachedIneligible: ineligiblePort, none: nonePort };
  const res = await alternate<ConnMode, number>(
    ['none', 'attachedBypass', 'attachedIneligible'],
    o.rounds,
    (m, r) => `${node.kind} ${fam} connection rate ${m} round ${r + 1}/${o.rounds}`,
    async (m) => {
      const before = readStats(node.maps.stats);
      const r = await mbrrConnectRate(node.topo, mbrr, m === 'none' ? node.plainCgroup : 'topo', 'a', server, ports[m], o.rrSeconds);
      const d = statDelta(before, readStats(node.maps.stats));
      if (m === 'attachedBypass' && d.inserted < r.connections) throw new Error(`${node.kind} ${fam}: only ${d.inserted} sockets inserted for ${r.connections} connections in attachedBypass mode`);
      if (m !== 'attachedBypass' && d.inserted !== 0) throw new Error(`${node.kind} ${fam}: ${d.inserted} sockets inserted in mode ${m}`);
      if (r.errors) log(`  ${r.errors} failed connections`);
      const metric = 'connect';
      let v = verification.find((x) => x.topology === node.kind && x.family === fam && x.metric === metric && x.mode === m);
      if (!v) {
        v = { topology: node.kind, family: fam, metric, mode: m, runs: 0, redirectedMsgs: 0, redirectedBytes: 0, socketsInserted: 0 };
        verification.push(v);
      }
      v.runs++;
      v.redirectedMsgs += d.redirectMsgs;
      v.redirectedBytes += d.redirectBytes;
      v.socketsInserted += d.inserted;
      return r.perSec;
    },
    (x) => `${x.toFixed(0)} conn/s`,
  );
  const none = summarize(res.none);
  const byp = summarize(res.attachedBypass);
  const inel = summarize(res.attachedIneligible);
  return {
    topology: node.kind,
    family: fam,
    unit: 'connections/s (connect, 1-byte request, 1-byte reply, close)',
    none: roundSummary(none),
    attachedIneligible: roundSummary(inel),
    attachedBypass: roundSummary(byp),
    ratioBypass: roundRatio(ratio(byp, none)),
    ratioIneligible: roundRatio(ratio(inel, none)),
  };
}

type VipMode = 'podStack' | 'podBypass' | 'vipStack' | 'vipBypass';

/**
 * The same iperf3 run to pod b's IP and to the VIP, four modes alternating:
 * stack (no verdict; the VIP through kube-proxy's DNAT) and bypass (BYPASS
 * verdict; the VIP resolved at connect to b, as the sync would write it).
 */
async function vipThroughput(node: Node, fam: Family, o: BenchOptions): Promise<VipRow> {
  const size = o.sizes[o.sizes.length - 1] ?? 65536;
  const b = node.addr[fam].b;
  const vipKey = { ip: BENCH_VIP[fam], port: BENCH_VIP.port };
  const setService = (on: boolean) => {
    if (on) {
      node.maps.backends.set({ serviceId: 1, slot: 0 }, { ip: b, port: PORTS.iperf }); // the backend before the count
      node.maps.services.set(vipKey, { id: 1, count: 1, bypass: true, ruleId: 1 });
    } else {
      node.maps.services.delete(vipKey);
      node.maps.backends.delete({ serviceId: 1, slot: 0 });
    }
  };
  const res = await alternate<VipMode, IperfRun>(
    ['podStack', 'podBypass', 'vipStack', 'vipBypass'],
    o.rounds,
    (m, r) => `${node.kind} ${fam} VIP vs pod IP ${sizeName(size)} ${m} round ${r + 1}/${o.rounds}`,
    async (m) => {
      const viaVip = m.startsWith('vip');
      const mode: Mode = m.endsWith('Bypass') ? 'bypass' : 'stack';
      setService(viaVip && mode === 'bypass');
      const before = readStats(node.maps.stats);
      const r = await inMode(
        node,
        mode,
        { ip: b, port: PORTS.iperf },
        `vip-${viaVip ? 'vip' : 'pod'} ${size}`,
        fam,
        () => iperf(node.topo, 'a', viaVip ? BENCH_VIP[fam] : b, viaVip ? BENCH_VIP.port : PORTS.iperf, size, o.seconds),
        (t) => 0.9 * t.bytes,
      );
      const translated = Number(readStats(node.maps.stats).vip_translated - before.vip_translated);
      if (m === 'vipBypass' && translated < 1) throw new Error(`${node.kind} ${fam}: the VIP was not resolved at connect in vipBypass mode`);
      if (m !== 'vipBypass' && translated !== 0) throw new Error(`${node.kind} ${fam}: ${translated} connects resolved in mode ${m}`);
      return r;
    },
    (t) => gbit(t.bitsPerSecond),
  );
  setService(false);
  const pair = (s: IperfRun[], x: IperfRun[]) => {
    const a = summarize(s.map((y) => y.bitsPerSecond));
    const c = summarize(x.map((y) => y.bitsPerSecond));
    return { stack: roundSummary(a), bypass: roundSummary(c), ratio: roundRatio(ratio(c, a)) };
  };
  return { topology: node.kind, family: fam, size, podIp: pair(res.podStack, res.podBypass), vip: pair(res.vipStack, res.vipBypass) };
}

// ---------- report

function machine(): Report['machine'] {
  const model = cpus()[0]?.model?.trim() ?? 'unknown';
  return {
    kernel: release(),
    cpuModel: model,
    cores: cpus().length,
    node: process.version,
    iperf3: toolVersion(['iperf3', '--version']),
    sockperf: toolVersion(['sh', '-c', "dpkg-query -W -f='${Version}' sockperf 2>/dev/null || echo unknown"]),
    libbpf: toolVersion(['sh', '-c', "dpkg-query -W -f='${Version}' libbpf1 2>/dev/null || echo unknown"]),
  };
}

const COLORS: Record<string, { color: string; dash?: string }> = {
  'veth v4': { color: '#1f77b4' },
  'veth v6': { color: '#1f77b4', dash: '5 4' },
  'bridge v4': { color: '#ff7f0e' },
  'bridge v6': { color: '#ff7f0e', dash: '5 4' },
};

function chartFor(rows: ThroughputRow[], subtitle: string): string {
  const groups = new Map<string, ThroughputRow[]>();
  for (const r of rows) {
    const k = `${r.topology} ${r.family}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const series = [...groups].map(([k, rs]) => ({
    label: `${k === k.replace('v4', '') ? k : k.replace('v4', 'IPv4')}`.replace('v6', 'IPv6').replace('bridge', 'bridge+netfilter'),
    ...(COLORS[k] ?? { color: '#444' }),
    points: rs.map((r) => ({ size: r.size, ratio: r.ratio.median, min: r.ratio.min, max: r.ratio.max })),
  }));
  return ratioChart(series, { title: 'meshbpf: throughput through the bypass vs the kernel stack', subtitle, target: 3.5 });
}

async function main(): Promise<void> {
  let o: BenchOptions;
  try {
    o = parseArgs(process.argv.slice(2), join(PROJECT_ROOT, 'bench', 'report'));
  } catch (e) {
    if (e instanceof ArgError) {
      log(e.message);
      process.exit(2);
    }
    throw e;
  }
  if (!process.env.MESHBPF_LOG_LEVEL) setLogLevel('warn'); // progress lines are enough
  checkPrivileges();
  for (const [bin, pkg] of [
    ['iperf3', 'iperf3'],
    ['sockperf', 'sockperf'],
    ['iptables-restore', 'iptables'],
  ] as const) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${bin} not found: apt-get install ${pkg} (scripts/setup.sh lists the bench packages)`);
    }
  }
  const mbrr = buildMbrr(PROJECT_ROOT);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('SIGHUP', onSignal);
  const started = Date.now();
  const nFam = o.families.length;
  // runs per latency size and round: sockperf (IPv4 only) stack + bypass, mbrr stack + bypass + minimal
  const rrRuns = o.families.reduce((a, f) => a + (f === 'v4' ? 5 : 3), 0);
  const has = (p: (typeof o.only)[number]) => (o.only.includes(p) ? 1 : 0);
  const tputModes = o.modes?.length ?? 4 + (o.variants ? 2 : 0);
  totalSteps =
    o.topologies.length * o.rounds * (has('throughput') * nFam * o.sizes.length * tputModes + has('latency') * rrRuns * o.rrSizes.length + has('connect') * nFam * 3) +
    (o.topologies.includes('bridge') ? has('vip') * o.rounds * nFam * 4 : 0);
  log(
    `meshbpf bench: ${o.topologies.join('+')} x ${o.families.join('+')}, ${o.rounds} alternating rounds, ${o.seconds} s per iperf3 run, ${o.rrSeconds} s per latency/connection run (${totalSteps} runs)`,
  );

  const report: Report = {
    schema: 1,
    generatedAt: new Date().toISOString(),
    durationSec: 0,
    machine: machine(),
    options: {
      quick: o.quick,
      seconds: o.seconds,
      rrSeconds: o.rrSeconds,
      rounds: o.rounds,
      sizes: o.sizes,
      rrSizes: o.rrSizes,
      families: o.families,
      topologies: o.topologies,
      only: o.only,
      variants: o.variants,
    },
    method: {
      vip: 'bridge only: iperf3 from pod a to pod b, to the pod IP and to a ClusterIP that kube-proxy-style rules in pod a DNAT to pod b; stack = no verdict (the VIP through the DNAT), bypass = BYPASS verdict and the VIP in mb_services (resolved at connect); the four modes alternate in one run',
      modes:
        'stack = same topology, meshbpf loaded, the server has no policy verdict (connection not eligible); bypass = verdict BYPASS for the server ip:port. Connection rate: none = client and server in a sibling cgroup with no programs; attachedIneligible = programs attached, no verdict; attachedBypass = programs attached and the connection inserted into the sockhash.',
      alternation: 'each round runs every mode once; the order flips every round (AB, BA, ...); figures are the median over rounds with min and max',
      latencyCpu: `both ping-pong peers pinned to CPU ${LATENCY_CPU} (taskset): on this VM an idle vCPU halts and needs ~40-50 us to wake, which would swamp the path measured`,
      tools: {
        throughput: 'iperf3 -l SIZE (default Nagle)',
        latencyV4: 'sockperf ping-pong --tcp --full-rtt, and mbrr rr',
        latencyV6: 'mbrr rr (sockperf 3.7 has no IPv6)',
        connectRate: 'mbrr crr (netperf TCP_CRR is not in Debian main)',
      },
      cpu: 'peers = user+sys of both iperf3 processes (iperf3 -J cpu_utilization_percent) x duration / GB received; node = busy time of all CPUs from /proc/stat during the run / GB (includes softirq and anything else running on the machine)',
    },
    throughput: [],
    latency: [],
    connectRate: [],
    vip: [],
    verification,
    experiments: [],
    noise: { loadAvg1mAtStart: sig(loadavg()[0] ?? 0, 3), loadAvg1mAtEnd: 0, otherMbtNamespacesAtStart: leftovers().netns.length },
  };

  try {
    for (const kind of o.topologies) {
      const node = await buildNode(kind, mbrr);
      if (node.netfilter) report.netfilter = node.netfilter;
      for (const fam of o.families) {
        if (o.only.includes('throughput')) report.throughput.push(...(await throughput(node, fam, o, mbrr)));
        // After the pod-IP runs: pod a's namespace is known to sockops by then.
        if (kind === 'bridge' && o.only.includes('vip')) report.vip!.push(await vipThroughput(node, fam, o));
        if (o.only.includes('latency')) report.latency.push(...(await latency(node, fam, o, mbrr)));
        if (o.only.includes('connect')) report.connectRate.push(await connectRate(node, fam, o, mbrr));
      }
      if (node.netfilter) {
        const fp = forwardPackets(node.topo);
        node.netfilter.forwardEstablishedPackets = fp;
        node.netfilter.conntrackEntriesAtEnd = Number(nsExec(node.topo.ns('node'), ['cat', '/proc/sys/net/netfilter/nf_conntrack_count']).trim());
        log(`[bridge] netfilter saw ${fp.v4} IPv4 / ${fp.v6} IPv6 packets in KUBE-FORWARD's ESTABLISHED rule`);
      }
      if (o.experiments && kind === 'veth') {
        report.experiments.push(
          ...(await runExperiments({
            topo: node.topo,
            maps: node.maps,
            server: node.addr.v4.b,
            port: PORTS.iperf,
            rrPort: PORTS.rr.v4,
            mbrr,
            seconds: o.seconds,
            rrSeconds: o.rrSeconds,
            rounds: o.rounds,
            log,
          })),
        );
      }
      cleanupAll();
    }
  } finally {
    cleanupAll();
  }
  report.durationSec = sig((Date.now() - started) / 1000, 4);
  report.noise.loadAvg1mAtEnd = sig(loadavg()[0] ?? 0, 3);

  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  const subtitle = `${report.machine.cpuModel}, ${report.machine.cores} cores, kernel ${report.machine.kernel}; median of ${o.rounds} alternating rounds`;
  writeFileSync(join(o.out, 'throughput-ratio.svg'), chartFor(report.throughput, subtitle));
  writeFileSync(join(o.out, 'REPORT.md'), renderMarkdown(report));
  log(`done in ${report.durationSec} s: ${join(o.out, 'REPORT.md')}, report.json, throughput-ratio.svg`);
}

main().catch((e: unknown) => {
  cleanupAll();
  log(`bench failed: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
