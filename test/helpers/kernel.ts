// Shared helpers for kernel tests: capability check, hashed transfers through
// real peers (socat), counter deltas. Topologies come from src/topo.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { Topology, type PodSpec, type TopologyKind } from '../../src/topo/topology.js';
import { load, unload } from '../../src/loader/load.js';
import { waitForListen } from '../../src/topo/peers.js';
import { openMaps, readStats } from '../../src/maps/pinned.js';
import type { Stats, StatName } from '../../src/maps/codecs.js';

/** Why kernel tests cannot run here, or undefined when they can. */
export function kernelUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'kernel tests need root';
  if (!existsSync('/sys/fs/bpf')) return 'no /sys/fs/bpf';
  for (const bin of ['ip', 'socat', 'clang', 'bpftool']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      return `${bin} is not installed (run scripts/setup.sh)`;
    }
  }
  return undefined;
}

/**
 * The scaffolding every kernel test file shares: skip (with the reason printed)
 * where kernel tests cannot run, build a throwaway topology before the tests,
 * load meshbpf into it, and remove everything after them, also on failure.
 */
export function kernelSuite(what: string, spec: { pods: PodSpec[]; kind?: TopologyKind; load?: boolean; teardown?: () => void }): { ktest: typeof test.serial; topo: Topology | undefined } {
  const why = kernelUnavailable();
  if (why) console.log(`SKIPPING ${what}: ${why}`);
  const topo = why ? undefined : new Topology();
  test.before(() => {
    if (!topo) return;
    topo.build(spec.kind ?? 'veth', spec.pods);
    if (spec.load ?? true) load({ pinDir: topo.pinDir, cgroup: topo.cgroup });
  });
  test.after.always(() => {
    try {
      if (!topo) return;
      try {
        unload({ pinDir: topo.pinDir });
      } catch {
        /* not loaded */
      }
      topo.destroy();
    } finally {
      spec.teardown?.();
    }
  });
  return { ktest: why ? (test.skip as typeof test.serial) : test.serial, topo };
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'mbt-'));
}

export interface TransferSpec {
  server: string; // pod running the server
  client: string; // pod running the client
  listen: string; // socat listen address, e.g. TCP4-LISTEN:5001,reuseaddr
  connect: string; // socat connect address, e.g. TCP4:198.18.1.2:5001
  port: number;
  bytes?: number;
  /** data flows server -> client instead of client -> server */
  reverse?: boolean;
}

/**
 * Move random bytes through a real TCP connection with socat; return both hashes.
 * Client -> server: the client connects first and sends only once sockops has
 * judged both ends (sockops_established +2), so whether a flow is redirected
 * never depends on who wins the handshake race (slow VMs lose it). Server ->
 * client needs no wait: the server sends after accept, when both ends are in.
 */
export async function transfer(topo: Topology, s: TransferSpec): Promise<{ sent: string; received: string; bytes: number }> {
  const dir = tempDir();
  try {
    const n = s.bytes ?? 4 << 20;
    const data = randomBytes(n);
    const input = join(dir, 'in.bin');
    const output = join(dir, 'out.bin');
    writeFileSync(input, data);
    const listenSide = s.reverse ? ['socat', '-u', `OPEN:${input}`, s.listen] : ['socat', '-u', s.listen, `OPEN:${output},creat,trunc`];
    const srv = topo.spawn(s.server, listenSide);
    const srvDone = new Promise<number | null>((res) => srv.on('exit', (code) => res(code)));
    await waitForListen(topo, s.server, s.port);
    if (s.reverse) {
      await topo.run(s.client, ['socat', '-u', s.connect, `OPEN:${output},creat,trunc`], { timeoutMs: 30_000 });
    } else {
      const before = stats(topo.pinDir).sockops_established;
      const client = topo.spawn(s.client, ['socat', '-u', 'STDIN', s.connect], { stdio: ['pipe', 'ignore', 'pipe'] });
      const clientDone = new Promise<number | null>((res) => client.on('exit', (code) => res(code)));
      await waitFor(() => stats(topo.pinDir).sockops_established - before >= 2n, 10_000, 'both ends of the connection to be established');
      client.stdin!.end(data);
      const cc = await clientDone;
      if (cc !== 0) throw new Error(`socat client exited with ${cc}`);
    }
    const code = await srvDone;
    if (code !== 0) throw new Error(`socat server exited with ${code}: ${srv.stderr?.read()?.toString() ?? ''}`);
    return { sent: sha256(data), received: existsSync(output) ? sha256(readFileSync(output)) : 'missing', bytes: n };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function stats(pinDir: string): Stats {
  const m = openMaps(pinDir, { readOnly: true });
  try {
    return readStats(m.stats);
  } finally {
    m.close();
  }
}

export function delta(before: Stats, after: Stats): Record<StatName, number> {
  return Object.fromEntries(Object.keys(after).map((k) => [k, Number(after[k as StatName] - before[k as StatName])])) as Record<StatName, number>;
}

export async function waitFor(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function fileSize(p: string): number {
  return existsSync(p) ? statSync(p).size : 0;
}

/** Run the built CLI; returns exit code and output (never throws on non-zero). */
export function cli(args: string[], opts: { asUser?: number; env?: Record<string, string> } = {}): { code: number; stdout: string; stderr: string } {
  const bin = join(process.cwd(), 'bin', 'meshbpf.js');
  const argv = opts.asUser === undefined ? [process.execPath, bin, ...args] : ['setpriv', `--reuid=${opts.asUser}`, `--regid=${opts.asUser}`, '--clear-groups', process.execPath, bin, ...args];
  try {
    const stdout = execFileSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHBPF_LOG_LEVEL: 'silent', ...opts.env } });
    return { code: 0, stdout, stderr: '' };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { code: err.status ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}
