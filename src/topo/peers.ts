// Real peers from Debian (iperf3) driven inside a Topology's pods.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { UserError } from '../errors.js';
import type { Topology } from './topology.js';

export function requireTool(bin: string, pkg = bin): void {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
  } catch {
    throw new UserError(`${bin} not found: install ${pkg} (scripts/setup.sh does)`);
  }
}

export async function waitForListen(topo: Topology, pod: string, port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { stdout } = await topo.run(pod, ['ss', '-Htln', `sport = :${port}`], { cgroup: false });
    if (stdout.trim()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on port ${port} in ${pod} after ${timeoutMs} ms`);
}

export async function startIperfServer(topo: Topology, pod: string, port: number): Promise<ChildProcess> {
  const c = topo.spawn(pod, ['iperf3', '-s', '-p', String(port)]);
  await waitForListen(topo, pod, port);
  return c;
}

export interface IperfResult {
  bitsPerSecond: number; // receiver side
  bytes: number;
  cpuSender?: number; // % host total (user+sys)
  cpuReceiver?: number;
}

/** One iperf3 TCP run: `size`-byte writes for `seconds`. */
export async function runIperf(topo: Topology, pod: string, server: string, port: number, size: number, seconds: number): Promise<IperfResult> {
  const args = ['iperf3', '-c', server, '-p', String(port), '-t', String(seconds), '-l', String(size), '-J'];
  const { stdout } = await topo.run(pod, args, { timeoutMs: (seconds + 20) * 1000 });
  const j = JSON.parse(stdout) as {
    error?: string;
    end?: { sum_received?: { bits_per_second: number; bytes: number }; cpu_utilization_percent?: { host_total: number; remote_total: number } };
  };
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const r = j.end?.sum_received;
  if (!r) throw new Error('iperf3 printed no receiver summary');
  const out: IperfResult = { bitsPerSecond: r.bits_per_second, bytes: r.bytes };
  if (j.end?.cpu_utilization_percent) {
    out.cpuSender = j.end.cpu_utilization_percent.host_total;
    out.cpuReceiver = j.end.cpu_utilization_percent.remote_total;
  }
  return out;
}

export function formatBits(bps: number): string {
  if (bps >= 1e9) return `${(bps / 1e9).toFixed(2)} Gbit/s`;
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mbit/s`;
  return `${(bps / 1e3).toFixed(0)} kbit/s`;
}

export function formatSize(n: number): string {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n >> 20} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n >> 10} KiB`;
  return `${n} B`;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
