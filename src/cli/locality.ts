// Locality options shared by `sync` and `agent`: what makes an address LOCAL.
import { Option, type Command } from 'commander';
import { discoverNodeIps } from '../xds/node.js';
import { formatCidr, formatIp, parseCidr, parseIp } from '../net/ip.js';
import type { Locality } from '../policy/types.js';
import { ISTIO_SIDECAR_DEFAULTS, sidecarSettings, type SidecarSettings } from '../maps/sidecar.js';
import { UserError } from '../errors.js';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function addLocalityOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--node-ip <ip>', 'an IP of this node (repeatable; all interfaces, both families). Default: discovered from the interfaces').argParser(collect))
    .addOption(new Option('--pod-cidr <cidr>', 'a local pod CIDR (repeatable, both families): every address in it is a local mesh address').argParser(collect))
    .option('--network <name>', "this node's network (Istio topology.istio.io/network); endpoints on other networks never short-circuit", '')
    .option('--cluster-id <id>', 'this cluster id (Istio CLUSTER_ID)')
    .option('--node-name <name>', "this node's Kubernetes name (WDS: workloads whose node is this name are local)", process.env.NODE_NAME)
    .addOption(new Option('--exclude-namespace <ns>', 'never bypass workloads of this namespace, as client or server (repeatable; WDS)').argParser(collect))
    .addOption(new Option('--exclude-workload <ns/name>', 'never bypass this workload: a pod or a workload (Deployment...) name (repeatable; WDS)').argParser(collect))
    .addOption(
      new Option(
        '--sidecar-cidr <cidr>',
        "a local pod IP or CIDR whose pods run an Istio sidecar with istio-iptables' REDIRECT capture (repeatable, both families): pair the sockets of each captured leg; without it, sidecar pairing is off",
      ).argParser(collect),
    )
    .option('--sidecar-outbound-port <port>', 'the capture port for outbound traffic (ISTIO_REDIRECT)', String(ISTIO_SIDECAR_DEFAULTS.outboundPort))
    .option('--sidecar-inbound-port <port>', 'the capture port for inbound traffic (ISTIO_IN_REDIRECT)', String(ISTIO_SIDECAR_DEFAULTS.inboundPort))
    .option('--sidecar-proxy-uid <uid>', "the proxy's uid, exempt from capture", String(ISTIO_SIDECAR_DEFAULTS.proxyUid))
    .option('--sidecar-proxy-gid <gid>', "the proxy's gid, exempt from capture", String(ISTIO_SIDECAR_DEFAULTS.proxyGid))
    .option('--sidecar-exclude-inbound-ports <ports>', 'comma-separated ports not captured inbound (at most 8)', ISTIO_SIDECAR_DEFAULTS.inboundExclude.join(','))
    .option('--sidecar-exclude-outbound-ports <ports>', 'comma-separated ports not captured outbound (at most 8)', '');
}

type SidecarFlags = {
  sidecarCidr?: string[];
  sidecarOutboundPort?: string;
  sidecarInboundPort?: string;
  sidecarProxyUid?: string;
  sidecarProxyGid?: string;
  sidecarExcludeInboundPorts?: string;
  sidecarExcludeOutboundPorts?: string;
};

/** The sidecar settings from the flags, or undefined (pairing off) without --sidecar-cidr. */
export function sidecarFrom(o: SidecarFlags): SidecarSettings | undefined {
  if (!o.sidecarCidr?.length) return undefined;
  const num = (v: string | undefined, d: number) => (v === undefined || v === '' ? d : Number(v));
  const list = (v: string | undefined) =>
    (v ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean)
      .map(Number);
  try {
    return sidecarSettings(o.sidecarCidr, {
      outboundPort: num(o.sidecarOutboundPort, ISTIO_SIDECAR_DEFAULTS.outboundPort),
      inboundPort: num(o.sidecarInboundPort, ISTIO_SIDECAR_DEFAULTS.inboundPort),
      proxyUid: num(o.sidecarProxyUid, ISTIO_SIDECAR_DEFAULTS.proxyUid),
      proxyGid: num(o.sidecarProxyGid, ISTIO_SIDECAR_DEFAULTS.proxyGid),
      inboundExclude: list(o.sidecarExcludeInboundPorts),
      outboundExclude: list(o.sidecarExcludeOutboundPorts),
    });
  } catch (e) {
    throw new UserError(`--sidecar-*: ${(e as Error).message}`);
  }
}

export function localityFrom(o: { nodeIp?: string[]; podCidr?: string[]; network?: string; clusterId?: string; nodeName?: string; excludeNamespace?: string[]; excludeWorkload?: string[] }): Locality {
  const nodeIps = (o.nodeIp?.length ? o.nodeIp : discoverNodeIps()).map((x) => formatIp(parseIp(x).bytes));
  const podCidrs = (o.podCidr ?? []).map((x) => formatCidr(parseCidr(x)));
  const l: Locality = { nodeIps, podCidrs, network: o.network ?? '' };
  if (o.clusterId) l.clusterId = o.clusterId;
  if (o.nodeName) l.nodeName = o.nodeName;
  for (const w of o.excludeWorkload ?? []) if (!/^[^/]+\/[^/]+$/.test(w)) throw new UserError(`--exclude-workload ${JSON.stringify(w)}: expected namespace/name`);
  if (o.excludeNamespace?.length || o.excludeWorkload?.length) l.exclude = { namespaces: [...(o.excludeNamespace ?? [])].sort(), workloads: [...(o.excludeWorkload ?? [])].sort() };
  return l;
}
