// Throwaway nodes for the demo, the kernel tests and the benchmarks: network
// namespaces, veth pairs, a bridge in a "node" namespace, a child cgroup, and a
// pin directory, all named mbt-<run>-*, all removed by destroy() (idempotent,
// also after a failure). Nothing is added to the host's own network namespace.
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cgroup2Mount } from '../loader/preflight.js';

const execFileP = promisify(execFile);

export function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface PodSpec {
  name: string; // short: <= 5 chars
  v4?: string; // e.g. 198.18.0.2/24
  v6?: string; // e.g. fd00:0:0:1::2/64
}

export interface Pod {
  name: string;
  netns: string;
  v4?: string; // bare address
  v6?: string;
}

export type TopologyKind = 'veth' | 'bridge';

export class Topology {
  readonly id: string;
  readonly cgroup: string;
  readonly pinDir: string;
  readonly pods = new Map<string, Pod>();
  readonly netnses: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;

  constructor(opts: { id?: string; pinRoot?: string } = {}) {
    this.id = opts.id ?? randomBytes(2).toString('hex');
    this.cgroup = join(cgroup2Mount(), `mbt-${this.id}`);
    this.pinDir = join(opts.pinRoot ?? '/sys/fs/bpf', `mbt-${this.id}`);
  }

  ns(name: string): string {
    return `mbt-${this.id}-${name}`;
  }

  /** Create the cgroup and the namespaces. kind 'veth': two pods on one veth pair; 'bridge': pods on a bridge inside a node namespace. */
  build(kind: TopologyKind, pods: PodSpec[]): this {
    mkdirSync(this.cgroup, { recursive: true });
    if (kind === 'veth') {
      if (pods.length !== 2) throw new Error('veth topology takes exactly two pods');
      const [a, b] = pods as [PodSpec, PodSpec];
      this.addNs(this.ns(a.name));
      this.addNs(this.ns(b.name));
      const va = `mbt-${this.id}-${a.name}`;
      const vb = `mbt-${this.id}-${b.name}`;
      ip(['link', 'add', va, 'netns', this.ns(a.name), 'type', 'veth', 'peer', 'name', vb, 'netns', this.ns(b.name)]);
      this.configure(a, va);
      this.configure(b, vb);
    } else {
      const node = this.ns('node');
      this.addNs(node);
      ip(['-n', node, 'link', 'add', 'br0', 'type', 'bridge']);
      ip(['-n', node, 'link', 'set', 'br0', 'up']);
      for (const p of pods) {
        this.addNs(this.ns(p.name));
        const inPod = `eth0`;
        const onNode = `v-${p.name}`;
        ip(['-n', node, 'link', 'add', onNode, 'type', 'veth', 'peer', 'name', inPod, 'netns', this.ns(p.name)]);
        ip(['-n', node, 'link', 'set', onNode, 'master', 'br0', 'up']);
        this.configure(p, inPod);
      }
    }
    return this;
  }

  private addNs(name: string): void {
    ip(['netns', 'add', name]);
    this.netnses.push(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
  }

  private configure(p: PodSpec, dev: string): void {
    const netns = this.ns(p.name);
    if (p.v4) ip(['-n', netns, 'addr', 'add', p.v4, 'dev', dev]);
    if (p.v6) ip(['-n', netns, 'addr', 'add', p.v6, 'dev', dev, 'nodad']); // no DAD wait
    ip(['-n', netns, 'link', 'set', dev, 'up']);
    const pod: Pod = { name: p.name, netns };
    if (p.v4) pod.v4 = p.v4.split('/')[0] as string;
    if (p.v6) pod.v6 = p.v6.split('/')[0] as string;
    this.pods.set(p.name, pod);
  }

  pod(name: string): Pod {
    const p = this.pods.get(name);
    if (!p) throw new Error(`no pod ${name}`);
    return p;
  }

  /** argv that runs `cmd` inside the pod's netns, as a member of the topology's cgroup. */
  wrap(podOrNs: string, cmd: string[], opts: { cgroup?: boolean } = {}): string[] {
    const netns = this.pods.get(podOrNs)?.netns ?? podOrNs;
    const joinCg = opts.cgroup ?? true;
    // Sockets belong to the cgroup their creator was in: join it before exec.
    const script = joinCg ? `echo $$ > ${this.cgroup}/cgroup.procs && exec "$@"` : 'exec "$@"';
    return ['sh', '-c', script, 'sh', 'ip', 'netns', 'exec', netns, ...cmd];
  }

  spawn(pod: string, cmd: string[], opts: SpawnOptions & { cgroup?: boolean } = {}): ChildProcess {
    const [bin, ...args] = this.wrap(pod, cmd, opts.cgroup === undefined ? {} : { cgroup: opts.cgroup });
    const c = spawn(bin as string, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(c);
    c.on('exit', () => this.children.delete(c));
    return c;
  }

  async run(pod: string, cmd: string[], opts: { cgroup?: boolean; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
    const [bin, ...args] = this.wrap(pod, cmd, opts.cgroup === undefined ? {} : { cgroup: opts.cgroup });
    return execFileP(bin as string, args, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 });
  }

  /** Remove everything this topology made. Safe to call twice and after partial builds. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const c of this.children) c.kill('SIGKILL');
    for (const n of this.netnses) {
      // Kill whatever still runs in the namespace, then delete it (veths go with it).
      try {
        const pids = execFileSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).split('\n').filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      } catch {
        /* netns gone */
      }
      try {
        ip(['netns', 'del', n]);
      } catch {
        /* already gone */
      }
    }
    removeCgroup(this.cgroup);
  }
}

/** Move stragglers out, then remove the cgroup (retrying while the kernel drains it). */
export function removeCgroup(path: string): void {
  if (!existsSync(path)) return;
  const parent = join(path, '..');
  for (let i = 0; i < 50; i++) {
    try {
      const procs = readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
      for (const pid of procs) {
        try {
          writeFileSync(join(parent, 'cgroup.procs'), pid);
        } catch {
          /* exited */
        }
      }
      rmdirSync(path);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      execFileSync('sleep', ['0.1']);
    }
  }
}

/** Find leftovers of earlier runs (names mbt-*), for tests that check cleanup. */
export function leftovers(): { netns: string[]; cgroups: string[]; pins: string[] } {
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith('mbt-'));
  const mount = cgroup2Mount();
  const cgroups = readdirSync(mount).filter((n) => n.startsWith('mbt-'));
  const pins = existsSync('/sys/fs/bpf') ? readdirSync('/sys/fs/bpf').filter((n) => n.startsWith('mbt-')) : [];
  return { netns, cgroups, pins };
}
