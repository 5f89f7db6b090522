// Locality options shared by `sync` and `agent`: what makes an address LOCAL.
import { Option, type Command } from 'commander';
import { discoverNodeIps } from '../xds/node.js';
import { formatCidr, formatIp, parseCidr, parseIp } from '../net/ip.js';
import type { Locality } from '../policy/types.js';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function addLocalityOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--node-ip <ip>', 'an IP of this node (repeatable; all interfaces, both families). Default: discovered from the interfaces').argParser(collect))
    .addOption(new Option('--pod-cidr <cidr>', 'a local pod CIDR (repeatable, both families): every address in it is a local mesh address').argParser(collect))
    .option('--network <name>', "this node's network (Istio topology.istio.io/network); endpoints on other networks never short-circuit", '')
    .option('--cluster-id <id>', 'this cluster id (Istio CLUSTER_ID)');
}

export function localityFrom(o: { nodeIp?: string[]; podCidr?: string[]; network?: string; clusterId?: string }): Locality {
  const nodeIps = (o.nodeIp?.length ? o.nodeIp : discoverNodeIps()).map((x) => formatIp(parseIp(x).bytes));
  const podCidrs = (o.podCidr ?? []).map((x) => formatCidr(parseCidr(x)));
  const l: Locality = { nodeIps, podCidrs, network: o.network ?? '' };
  if (o.clusterId) l.clusterId = o.clusterId;
  return l;
}
