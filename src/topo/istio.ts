// Istio sidecar pods for the kernel tests and the benchmark, built the way
// Istio builds them: the nat rules istio-iptables writes in REDIRECT mode
// (istio/istio tools/istio-iptables, golden output for the default injection),
// and a real L7 proxy as the sidecar (HAProxy in HTTP mode, uid/gid 1337,
// forwarding to the original destination; the inbound leg from 127.0.0.6).
// HAProxy reads the original destination (SO_ORIGINAL_DST) only for IPv4, so
// IPv6 sidecars are test/peers/sidecar-proxy.py, which reads IP6T_SO_ORIGINAL_DST.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Topology } from './topology.js';

export const PROXY_UID = 1337;

/** iptables-restore input (nat table) as istio-iptables writes it, per family. */
export function istioIptables(family: 4 | 6, opts: { inboundExclude?: number[] } = {}): string {
  const lo = family === 4 ? '127.0.0.1/32' : '::1/128';
  const pass = family === 4 ? '127.0.0.6/32' : '::6/128';
  const excl = opts.inboundExclude ?? [15008, 15090, 15021, 15020];
  return [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ':ISTIO_INBOUND - [0:0]',
    ':ISTIO_IN_REDIRECT - [0:0]',
    ':ISTIO_OUTPUT - [0:0]',
    ':ISTIO_REDIRECT - [0:0]',
    '-A PREROUTING -p tcp -j ISTIO_INBOUND',
    '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
    ...excl.map((p) => `-A ISTIO_INBOUND -p tcp -m tcp --dport ${p} -j RETURN`),
    '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT',
    '-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
    `-A ISTIO_OUTPUT -s ${pass} -o lo -j RETURN`,
    `-A ISTIO_OUTPUT ! -d ${lo} -o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT`,
    '-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN',
    '-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN',
    `-A ISTIO_OUTPUT ! -d ${lo} -o lo -p tcp -m tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT`,
    '-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN',
    '-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN',
    `-A ISTIO_OUTPUT -d ${lo} -j RETURN`,
    '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
    '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
    'COMMIT',
    '',
  ].join('\n');
}

/** HAProxy as an IPv4 sidecar: outbound on 15001, inbound on 15006, one header per direction. */
export function haproxySidecarConfig(pod: string): string {
  return `global
  maxconn 1000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend outbound
  bind 0.0.0.0:15001
  http-request set-header x-sidecar-out ${pod}
  default_backend original_out
backend original_out
  server orig 0.0.0.0
frontend inbound
  bind 0.0.0.0:15006
  http-request set-header x-sidecar-in ${pod}
  default_backend original_in
backend original_in
  source 127.0.0.6
  server orig 0.0.0.0
`;
}

export interface SidecarPod {
  /** SIGKILL the proxy; resolves once it is gone (its ports are free again) */
  stop(): Promise<void>;
}

/**
 * Make `pod` a sidecar pod: Istio's nat rules for `family`, ::6 on lo for the
 * IPv6 passthrough, and a sidecar proxy running as uid/gid 1337 in the
 * topology's cgroup. Everything lives in the pod's netns (gone with it).
 */
export async function makeSidecarPod(topo: Topology, pod: string, family: 4 | 6, dir: string, root: string): Promise<SidecarPod> {
  const netns = topo.pod(pod).netns;
  chmodSync(dir, 0o755); // the proxy runs as uid 1337 and reads its config here
  const rules = join(dir, `${pod}-iptables-${family}.txt`);
  writeFileSync(rules, istioIptables(family));
  execFileSync('ip', ['netns', 'exec', netns, family === 4 ? 'iptables-restore' : 'ip6tables-restore', rules], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (family === 6) execFileSync('ip', ['-n', netns, 'addr', 'replace', '::6/128', 'dev', 'lo'], { stdio: 'ignore' });
  const asProxy = ['setpriv', `--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups'];
  let c: ChildProcess;
  if (family === 4) {
    const cfg = join(dir, `${pod}-haproxy.cfg`);
    writeFileSync(cfg, haproxySidecarConfig(pod));
    c = topo.spawn(pod, [...asProxy, 'haproxy', '-db', '-f', cfg]);
  } else {
    c = topo.spawn(pod, [...asProxy, '/usr/bin/python3', join(root, 'test', 'peers', 'sidecar-proxy.py'), '--pod', pod]);
  }
  let err = '';
  c.stderr?.on('data', (d) => (err = (err + String(d)).slice(-2000)));
  try {
    for (const port of [15001, 15006]) await waitForListenFamily(topo, pod, port, family, 10_000);
  } catch (e) {
    c.kill('SIGKILL');
    throw new Error(`sidecar proxy in ${pod} did not start: ${(e as Error).message}; stderr: ${err}`);
  }
  const exited = new Promise<void>((res) => (c.exitCode !== null || c.signalCode !== null ? res() : c.once('exit', () => res())));
  return {
    stop: () => {
      c.kill('SIGKILL');
      return exited;
    },
  };
}

async function waitForListenFamily(topo: Topology, pod: string, port: number, family: 4 | 6, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { stdout } = await topo.run(pod, ['ss', '-Htln', `-${family}`, `sport = :${port}`], { cgroup: false });
    if (stdout.trim()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on IPv${family} port ${port} in ${pod} after ${timeoutMs} ms`);
}
