// Helpers for tests that run `meshbpf agent` as a real process: free ports,
// spawn/stop with output captured, HTTP reads of its endpoints, and snapshot
// files derived from examples/snapshot.yaml.
import { get as httpGet } from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { PROJECT_ROOT } from '../../src/paths.js';
import { waitFor } from './kernel.js';
import { cla, edsCluster, hcmRdsFilter, listener, tcpProxyFilter } from './resources.js';

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((res, rej) => {
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => res());
  });
  const a = s.address();
  await new Promise<void>((res) => s.close(() => res()));
  if (!a || typeof a !== 'object') throw new Error('no port');
  return a.port;
}

export interface AgentProcess {
  proc: ChildProcess;
  pid: number;
  listen: string;
  /** stdout+stderr so far */
  output(): string;
  /** exit code (or signal name) once it exited */
  exited: Promise<number | string>;
  get(path: string): Promise<{ status: number; text: string; json(): unknown }>;
}

/** Every agent started by startAgent, so teardown can kill the ones still running. */
export const agents = new Set<AgentProcess>();

export interface StartAgentOptions {
  cgroup: string;
  pinDir: string;
  /** a file source, or (when absent) pass `--xds ADDRESS` in extra */
  xdsFile?: string;
  stateDir: string;
  podCidr: string;
  nodeIp: string;
  extra?: string[];
}

export async function startAgent(o: StartAgentOptions): Promise<AgentProcess> {
  const port = await freePort();
  const listen = `127.0.0.1:${port}`;
  const bin = join(PROJECT_ROOT, 'bin', 'meshbpf.js');
  const args = [
    bin,
    'agent',
    '--cgroup',
    o.cgroup,
    '--pin-dir',
    o.pinDir,
    ...(o.xdsFile ? ['--xds-file', o.xdsFile] : []),
    '--pod-cidr',
    o.podCidr,
    '--node-ip',
    o.nodeIp,
    '--listen',
    listen,
    '--log-level',
    'warn',
    ...(o.extra ?? []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHBPF_STATE_DIR: o.stateDir } });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((res) => proc.on('exit', (code, sig) => res(code ?? sig ?? 'unknown')));
  const a: AgentProcess = {
    proc,
    pid: proc.pid!,
    listen,
    output: () => out,
    exited,
    // One connection per request (no keep-alive): a reused idle connection can
    // race the server's keep-alive timeout ("other side closed"), seen under TCG.
    get(path: string) {
      return new Promise((resolve, reject) => {
        const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];
        const req = httpGet({ host, port, path, agent: false }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text, json: () => JSON.parse(text) as unknown }));
        });
        req.on('error', (e) => reject(new Error(`GET ${path} failed (${e.message}); agent output:\n${out.slice(-2000)}`)));
      });
    },
  };
  agents.add(a);
  void exited.then(() => agents.delete(a));
  return a;
}

/** Wait until /readyz answers 200 (a snapshot has been applied); fails early if the agent dies. */
export async function waitReady(a: AgentProcess, timeoutMs = 60_000): Promise<void> {
  let dead = false;
  void a.exited.then(() => (dead = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (dead) throw new Error(`agent exited before it was ready:\n${a.output()}`);
    try {
      if ((await a.get('/readyz')).status === 200) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`agent not ready after ${timeoutMs} ms:\n${a.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function stopAgent(a: AgentProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
  if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill(signal);
  return a.exited;
}

// If the test worker dies (uncaught exception) teardown may not run: never leave an agent behind.
process.on('exit', () => killAllAgents());

export function killAllAgents(): void {
  for (const a of agents) {
    try {
      a.proc.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Prometheus text: the value of an unlabelled sample, or undefined. */
export function metric(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

// ---- snapshots -----------------------------------------------------------

type Res = Record<string, unknown>;

/** examples/snapshot.yaml's resources with 198.18.0.x replaced by `${prefix}.x` (e.g. prefix 198.18.5). */
export function exampleResources(prefix: string): Res[] {
  const text = readFileSync(join(PROJECT_ROOT, 'examples', 'snapshot.yaml'), 'utf8').replaceAll('198.18.0.', `${prefix}.`);
  const doc = parseYaml(text) as { resources: Res[] };
  return doc.resources;
}

/** Cluster + endpoints + listener of one service with one endpoint; `http` picks HCM, else tcp_proxy. */
export function service(name: string, ip: string, port: number, vip: string, opts: { http?: boolean; listener?: boolean } = {}): Res[] {
  const cluster = `outbound|${port}||${name}.default.svc.cluster.local`;
  const out: Res[] = [edsCluster(cluster, cluster), cla(cluster, [[ip, port]])];
  if (opts.listener ?? true) out.push(listener(`${vip}_${port}`, vip, port, [opts.http ? hcmRdsFilter(port) : tcpProxyFilter(cluster)]));
  return out;
}

/** Write `{resources}` as JSON atomically (rename), so the watcher never reads half a file. */
export function writeSnapshot(file: string, resources: Res[], comment = ''): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify({ resources, ...(comment ? { comment } : {}) }, null, 1));
  renameSync(tmp, file);
}

export { waitFor };
