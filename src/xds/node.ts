// Node identity as Istio expects it from a proxy:
//   id       TYPE~IP~POD.NS~NS.svc.cluster.local
//   metadata INSTANCE_IPS = every IP of this node, comma-separated, in ONE string
//            (Kmesh-style "last address wins" loses dual-stack peers), plus
//            NAMESPACE, NODE_NAME, CLUSTER_ID, NETWORK when configured.
import os from 'node:os';
import { formatIp, isLoopback, parseIp } from '../net/ip.js';
import { VERSION } from '../paths.js';
import type { Json, JsonObject } from './types.js';

export interface NodeOptions {
  /** proxy type in the node id; Istio knows sidecar, router, waypoint, ztunnel */
  type?: string;
  /** pod (or agent) name, e.g. "meshbpf-node1" */
  podName: string;
  namespace: string;
  /** every IP of this node; default discoverNodeIps() */
  ips?: string[];
  /** DNS domain suffix after the namespace; default "svc.cluster.local" */
  domain?: string;
  /** Node.cluster (Istio: service cluster); default "meshbpf.<namespace>" */
  cluster?: string;
  nodeName?: string;
  clusterId?: string;
  network?: string;
  /** extra metadata keys, merged last */
  metadata?: JsonObject;
  locality?: { region?: string; zone?: string; sub_zone?: string };
  userAgentVersion?: string;
}

type Ifaces = NodeJS.Dict<os.NetworkInterfaceInfo[]>;

/**
 * Every non-loopback, non-link-local (fe80::/10) address of this host, both
 * families, IPv4 first, deduplicated, canonical text.
 */
export function discoverNodeIps(ifaces: Ifaces = os.networkInterfaces()): string[] {
  const v4: string[] = [];
  const v6: string[] = [];
  const seen = new Set<string>();
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      let ip;
      try {
        ip = parseIp(a.address.split('%')[0] ?? '');
      } catch {
        continue;
      }
      const b = ip.bytes;
      if (ip.family === 6 && b[0] === 0xfe && ((b[1] ?? 0) & 0xc0) === 0x80) continue; // fe80::/10
      if (isLoopback(ip)) continue;
      const text = formatIp(b);
      if (seen.has(text)) continue;
      seen.add(text);
      (ip.family === 4 ? v4 : v6).push(text);
    }
  }
  return [...v4, ...v6];
}

function canonicalIps(ips: string[]): string[] {
  const out: string[] = [];
  for (const s of ips) {
    const t = formatIp(parseIp(s).bytes); // throws AddressError on a bad IP
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

export function nodeId(o: NodeOptions, ips: string[]): string {
  const ip = ips[0];
  if (ip === undefined) throw new Error('node identity: no IP address (set ips or check interfaces)');
  const domain = o.domain ?? 'svc.cluster.local';
  return `${o.type ?? 'sidecar'}~${ip}~${o.podName}.${o.namespace}~${o.namespace}.${domain}`;
}

/** The envoy.config.core.v3.Node (proto3 JSON) sent on the first request of every stream. */
export function buildNode(o: NodeOptions): JsonObject {
  const ips = canonicalIps(o.ips ?? discoverNodeIps());
  const md: JsonObject = {
    INSTANCE_IPS: ips.join(','),
    NAMESPACE: o.namespace,
    POD_NAME: o.podName,
  };
  if (o.nodeName) md.NODE_NAME = o.nodeName;
  if (o.clusterId) md.CLUSTER_ID = o.clusterId;
  if (o.network) md.NETWORK = o.network;
  Object.assign(md, o.metadata ?? {});
  const node: JsonObject = {
    id: nodeId(o, ips),
    cluster: o.cluster ?? `meshbpf.${o.namespace}`,
    metadata: md,
    user_agent_name: 'meshbpf',
    user_agent_version: o.userAgentVersion ?? VERSION,
  };
  if (o.locality) {
    const loc: { [k: string]: Json } = {};
    for (const [k, v] of Object.entries(o.locality)) if (v) loc[k] = v;
    node.locality = loc;
  }
  return node;
}

export interface ZtunnelNodeOptions {
  /** pod (or agent) name: NAME, and the POD in the node id */
  podName: string;
  namespace: string;
  /** this node's IPs; the first is the IP in the node id */
  ips?: string[];
  /** the Kubernetes node name (NODE_NAME): which workloads are local */
  nodeName: string;
  /** CLUSTER_ID; ztunnel's default is "Kubernetes" */
  clusterId?: string;
  /** extra metadata keys (ztunnel: ISTIO_META_*), merged last */
  metadata?: JsonObject;
}

/**
 * The node a WDS client sends, exactly as ztunnel builds it (istio/ztunnel
 * src/xds/client.rs Config::node, with CLUSTER_ID from its proxy metadata):
 * id `ztunnel~IP~POD.NS~NS.svc.cluster.local`, metadata NAME, NAMESPACE,
 * INSTANCE_IPS, NODE_NAME, CLUSTER_ID. istiod treats a `ztunnel` id as a node
 * proxy and serves it every workload (wildcard WDS).
 */
export function buildZtunnelNode(o: ZtunnelNodeOptions): JsonObject {
  if (!o.nodeName) throw new Error('ztunnel node identity: NODE_NAME is required (which workloads are local)');
  const ips = canonicalIps(o.ips ?? discoverNodeIps());
  const md: JsonObject = {
    NAME: o.podName,
    NAMESPACE: o.namespace,
    INSTANCE_IPS: ips.join(','),
    NODE_NAME: o.nodeName,
    CLUSTER_ID: o.clusterId ?? 'Kubernetes',
  };
  Object.assign(md, o.metadata ?? {});
  return { id: nodeId({ type: 'ztunnel', podName: o.podName, namespace: o.namespace }, ips), metadata: md };
}
