// iptables-restore input shaped like what kube-proxy (iptables mode) leaves on a
// node: KUBE-SERVICES with one ClusterIP match per service, KUBE-SVC-*/KUBE-SEP-*
// chains with DNAT, KUBE-MARK-MASQ / KUBE-POSTROUTING, KUBE-FORWARD with the
// conntrack state rules, REJECT rules for services without endpoints. None of
// it matches the benchmark's pod-to-pod traffic (no ClusterIP is ever dialled),
// but every packet the stack carries walks these chains and conntrack.
// Service and endpoint addresses come from 198.19.0.0/16 and fd00:96::/32 so
// nothing leaves the benchmarking ranges.
import { createHash } from 'node:crypto';
import type { Family } from './args.js';

export interface KubeRules {
  text: string;
  rules: number; // -A lines
  services: number;
}

function chainId(kind: string, name: string): string {
  // kube-proxy: base32 of sha256, 16 chars. Hex is close enough for a chain name.
  return `${kind}-${createHash('sha256').update(name).digest('hex').slice(0, 16).toUpperCase()}`;
}

function svcIp(family: Family, i: number): string {
  return family === 'v4' ? `198.19.${(i >> 8) & 0x7f}.${i & 0xff}` : `fd00:96::${i.toString(16)}`;
}

function epIp(family: Family, i: number, j: number): string {
  const n = i * 2 + j;
  return family === 'v4' ? `198.19.${128 + ((n >> 8) & 0x7f)}.${n & 0xff}` : `fd00:97::${n.toString(16)}`;
}

/** Rules for `services` ClusterIP services (every 10th has no endpoints: a REJECT in filter). */
export function kubeProxyRules(family: Family, services: number, podCidr: string): KubeRules {
  const host = family === 'v4' ? '/32' : '/128';
  const reject = family === 'v4' ? 'icmp-port-unreachable' : 'icmp6-port-unreachable';
  const filter: string[] = [];
  const nat: string[] = [];
  const natChains = new Set(['KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-NODEPORTS']);

  filter.push(
    '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
    '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    '-A INPUT -j KUBE-FIREWALL',
    '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -j KUBE-FIREWALL',
    '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  );
  if (family === 'v4') {
    filter.push('-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP');
  }
  nat.push(
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  );
  for (let i = 0; i < services; i++) {
    const name = `bench/svc-${i}:http`;
    const ip = svcIp(family, i);
    const port = 80 + (i % 5) * 1000;
    if (i % 10 === 9) {
      filter.push(`-A KUBE-SERVICES -d ${ip}${host} -p tcp -m comment --comment "${name} has no endpoints" -m tcp --dport ${port} -j REJECT --reject-with ${reject}`);
      continue;
    }
    const svc = chainId('KUBE-SVC', name);
    const seps = [0, 1].map((j) => chainId('KUBE-SEP', `${name}/${j}`));
    natChains.add(svc);
    for (const s of seps) natChains.add(s);
    nat.push(`-A KUBE-SERVICES -d ${ip}${host} -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport ${port} -j ${svc}`);
    nat.push(`-A ${svc} ! -s ${podCidr} -d ${ip}${host} -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport ${port} -j KUBE-MARK-MASQ`);
    seps.forEach((sep, j) => {
      const ep = epIp(family, i, j);
      const epAddr = family === 'v4' ? `${ep}:8080` : `[${ep}]:8080`;
      nat.push(
        j === 0
          ? `-A ${svc} -m comment --comment "${name} -> ${epAddr}" -m statistic --mode random --probability 0.50000000000 -j ${sep}`
          : `-A ${svc} -m comment --comment "${name} -> ${epAddr}" -j ${sep}`,
      );
      nat.push(`-A ${sep} -s ${ep}${host} -m comment --comment "${name}" -j KUBE-MARK-MASQ`);
      nat.push(`-A ${sep} -p tcp -m comment --comment "${name}" -m tcp -j DNAT --to-destination ${epAddr}`);
    });
  }
  nat.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');

  const filterChains = ['KUBE-FORWARD', 'KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FIREWALL', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL'];
  const text = ['*filter', ...filterChains.map((c) => `:${c} - [0:0]`), ...filter, 'COMMIT', '*nat', ...[...natChains].map((c) => `:${c} - [0:0]`), ...nat, 'COMMIT', ''].join('\n');
  return { text, rules: filter.length + nat.length, services };
}
