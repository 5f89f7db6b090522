// The benchmark's traffic peers, run inside a Topology's pods: iperf3 (stream
// throughput + its own CPU accounting), sockperf ping-pong (IPv4 latency), and
// bench/tools/mbrr (IPv6 latency, since sockperf 3.7 has no IPv6, and the
// short-connection rate, since netperf is not in Debian main).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import type { Topology } from '../../src/topo/topology.js';
import { waitForListen } from '../../src/topo/peers.js';

const execFileP = promisify(execFile);

/** A cgroup other than the topology's: 'topo' (programs attached) or a path (e.g. one with no programs). */
export type CgroupSel = 'topo' | string;

// `ip netns exec` mounts a fresh /sys, so the cgroup is joined before it (as Topology.wrap does).
function otherCgroupArgv(topo: Topology, pod: string, cg: string, cmd: string[]): string[] {
  return ['sh', '-c', `echo $$ > ${cg}/cgroup.procs && exec "$@"`, 'sh', 'ip', 'netns', 'exec', topo.pod(pod).netns, ...cmd];
}

const ours = new Set<ChildProcess>();
/** Kill the processes started in another cgroup (the topology kills its own). */
export function killOurs(): void {
  for (const c of ours) c.kill('SIGKILL');
  ours.clear();
}

export function spawnIn(topo: Topology, pod: string, cg: CgroupSel, cmd: string[]): ChildProcess {
  if (cg === 'topo') return topo.spawn(pod, cmd);
  const [bin, ...args] = otherCgroupArgv(topo, pod, cg, cmd);
  const c = spawn(bin as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  ours.add(c);
  c.on('exit', () => ours.delete(c));
  return c;
}

export async function runIn(topo: Topology, pod: string, cg: CgroupSel, cmd: string[], timeoutMs: number): Promise<string> {
  if (cg === 'topo') return (await topo.run(pod, cmd, { timeoutMs })).stdout;
  const [bin, ...args] = otherCgroupArgv(topo, pod, cg, cmd);
  return (await execFileP(bin as string, args, { timeout: timeoutMs, maxBuffer: 16 << 20 })).stdout;
}

export { waitForListen };

// ---------- iperf3

export interface IperfRun {
  bitsPerSecond: number; // receiver side
  bytes: number;
  seconds: number;
  /** user+sys of both iperf3 processes (iperf3's own getrusage accounting), CPU-seconds per GB moved */
  peerCpuSecPerGB?: number;
  /** whole-machine busy time (/proc/stat, all CPUs, includes softirq) per GB moved; includes unrelated load */
  nodeCpuSecPerGB?: number;
}

/** Busy and total jiffies over all CPUs. */
export function cpuTimes(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

const HZ = 100; // USER_HZ of /proc/stat

export async function iperf(topo: Topology, client: string, server: string, port: number, size: number, seconds: number, cg: CgroupSel = 'topo'): Promise<IperfRun> {
  const before = cpuTimes();
  const out = await runIn(topo, client, cg, ['iperf3', '-c', server, '-p', String(port), '-t', String(seconds), '-l', String(size), '-J'], (seconds + 30) * 1000);
  const after = cpuTimes();
  const j = JSON.parse(out) as {
    error?: string;
    end?: { sum_received?: { bits_per_second: number; bytes: number; seconds: number }; cpu_utilization_percent?: { host_total: number; remote_total: number } };
  };
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const r = j.end?.sum_received;
  if (!r || !(r.bytes > 0)) throw new Error('iperf3 printed no receiver summary');
  const gb = r.bytes / 1e9;
  const run: IperfRun = { bitsPerSecond: r.bits_per_second, bytes: r.bytes, seconds: r.seconds };
  const cpu = j.end?.cpu_utilization_percent;
  if (cpu && cpu.host_total + cpu.remote_total > 0) run.peerCpuSecPerGB = (((cpu.host_total + cpu.remote_total) / 100) * r.seconds) / gb;
  const busy = (after.busy - before.busy) / HZ;
  if (busy > 0) run.nodeCpuSecPerGB = busy / gb;
  return run;
}

/** An AF_UNIX stream socketpair (mbrr unix): SIZE-byte writes for SECS, receiver-side rate. */
export async function unixStream(topo: Topology, mbrr: string, pod: string, cg: CgroupSel, size: number, seconds: number): Promise<IperfRun> {
  const before = cpuTimes();
  const out = await runIn(topo, pod, cg, [mbrr, 'unix', String(size), String(seconds)], (seconds + 30) * 1000);
  const after = cpuTimes();
  const j = JSON.parse(out) as { bytes?: number; seconds?: number; bits_per_second?: number };
  if (!j.bytes || !j.bits_per_second) throw new Error(`mbrr unix reported nothing (${out.trim()})`);
  const run: IperfRun = { bitsPerSecond: j.bits_per_second, bytes: j.bytes, seconds: j.seconds ?? seconds };
  const busy = (after.busy - before.busy) / HZ;
  if (busy > 0) run.nodeCpuSecPerGB = busy / (j.bytes / 1e9);
  return run;
}

/** TCP segments sent in a pod's namespace so far (/proc/net/snmp OutSegs): a redirected stream sends next to none. */
export function tcpOutSegs(topo: Topology, pod: string): number {
  const out = execFileSync('ip', ['netns', 'exec', topo.pod(pod).netns, 'cat', '/proc/net/snmp'], { encoding: 'utf8' });
  const lines = out.split('\n').filter((l) => l.startsWith('Tcp:'));
  const head = (lines[0] ?? '').trim().split(/\s+/);
  const vals = (lines[1] ?? '').trim().split(/\s+/);
  return Number(vals[head.indexOf('OutSegs')] ?? NaN);
}

// ---------- latency

/**
 * Ping-pong peers run pinned to one CPU. On this VM a vCPU that goes idle halts
 * (cpuidle haltpoll) and takes ~40-50 us to wake by IPI, which swamped the path
 * being measured (p50 8 us vs 50 us for the same run depending on whether other
 * work kept the CPUs busy). On one CPU a round trip is two context switches and
 * no cross-CPU wakeup: what is left is the network path.
 */
export const LATENCY_CPU = String(Math.max(0, cpus().length - 1));
export const pinned = (cmd: string[]): string[] => ['taskset', '-c', LATENCY_CPU, ...cmd];

export interface RrRun {
  p50: number; // microseconds, full round trip
  p99: number;
  count: number;
  /** every round trip of the connection, warm-up included (for the redirect check) */
  roundTrips: number;
}

export async function sockperfPingPong(topo: Topology, client: string, server: string, port: number, size: number, seconds: number): Promise<RrRun> {
  const out = await runIn(
    topo,
    client,
    'topo',
    [...pinned(['sockperf']), 'ping-pong', '--tcp', '-i', server, '-p', String(port), '-m', String(size), '-t', String(seconds), '--full-rtt', '--mps=max'],
    (seconds + 30) * 1000,
  );
  return parseSockperf(out);
}

export function parseSockperf(out: string): RrRun {
  const clean = out.replace(/\x1b\[[0-9;]*m/g, '');
  const pct = (p: string) => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s*([0-9.]+)`).exec(clean);
    if (!m) throw new Error(`sockperf printed no ${p} percentile:\n${clean.slice(-800)}`);
    return Number(m[1]);
  };
  const count = Number(/Total (\d+) observations/.exec(clean)?.[1] ?? 0);
  const roundTrips = Number(/\[Total Run\].*ReceivedMessages=(\d+)/.exec(clean)?.[1] ?? count);
  return { p50: pct('50.000'), p99: pct('99.000'), count, roundTrips };
}

export async function mbrrPingPong(
  topo: Topology,
  tool: string,
  client: string,
  server: string,
  port: number,
  size: number,
  seconds: number,
  timeoutMs = (seconds + 30) * 1000,
  cg: CgroupSel = 'topo',
): Promise<RrRun> {
  const out = await runIn(topo, client, cg, pinned([tool, 'rr', server, String(port), String(size), String(seconds)]), timeoutMs);
  const j = JSON.parse(out) as { count: number; p50_us: number; p99_us: number };
  return { p50: j.p50_us, p99: j.p99_us, count: j.count, roundTrips: j.count + 200 /* mbrr's warm-up */ };
}

export async function mbrrConnectRate(
  topo: Topology,
  tool: string,
  cg: CgroupSel,
  client: string,
  server: string,
  port: number,
  seconds: number,
): Promise<{ perSec: number; connections: number; errors: number }> {
  const out = await runIn(topo, client, cg, [tool, 'crr', server, String(port), String(seconds)], (seconds + 30) * 1000);
  const j = JSON.parse(out) as { connections: number; per_sec: number; errors: number };
  return { perSec: j.per_sec, connections: j.connections, errors: j.errors };
}

/** Compile bench/tools/mbrr.c into build/bench/mbrr when missing or older than its source. */
export function buildMbrr(root: string): string {
  const src = join(root, 'bench', 'tools', 'mbrr.c');
  const outDir = join(root, 'build', 'bench');
  const out = join(outDir, 'mbrr');
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(outDir, { recursive: true });
    let cc = 'cc';
    try {
      execFileSync('sh', ['-c', 'command -v cc'], { stdio: 'ignore' });
    } catch {
      cc = 'clang'; // scripts/setup.sh installs clang for the BPF programs
    }
    execFileSync(cc, ['-O2', '-Wall', '-Werror', '-o', out, src], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
  return out;
}

export function toolVersion(cmd: string[]): string {
  try {
    const out = execFileSync(cmd[0] as string, cmd.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return (out.split('\n')[0] ?? '').replace(/\x1b\[[0-9;]*m/g, '').trim();
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return (
      `${err.stdout ?? ''}${err.stderr ?? ''}`
        .split('\n')[0]
        ?.replace(/\x1b\[[0-9;]*m/g, '')
        .trim() ?? 'unknown'
    );
  }
}
