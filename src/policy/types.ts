// The desired kernel state: what src/policy computes from an xDS snapshot (pure)
// and what src/maps/sync.ts makes true in the kernel maps. Text addresses here
// are canonical (src/net/ip.ts formatIp/formatCidr) so diffs compare strings.

export type Verdict = 'bypass' | 'proxy';

export interface EndpointEntry {
  /** canonical prefix, e.g. "10.1.2.3/32", "10.1.0.0/16", "fd00::5/128" */
  cidr: string;
  local: boolean; // on this node (node IP or local pod CIDR)
  mesh: boolean; // known to the control plane / inside the mesh
  /** 0 = this node's network; any other id never short-circuits against 0 */
  networkId: number;
  /** opaque id for dump/explain; 0 when unknown */
  workloadId: number;
}

export interface PolicyEntry {
  ip: string; // canonical IP text
  port: number; // host order 1..65535
  verdict: Verdict;
  /** index into DesiredState.rules: why this verdict */
  ruleId: number;
}

/** One local endpoint of a service: where a connect to the VIP may go instead. */
export interface BackendEntry {
  ip: string; // canonical, same family as the VIP
  port: number; // the target port
}

/**
 * A service VIP:port as the control plane names it (an outbound listener's
 * address), with its LOCAL backends on this node's network. Connects to the
 * VIP are resolved in the kernel only when verdict is bypass and backends is
 * not empty.
 */
export interface ServiceEntry {
  vip: string; // canonical IP text
  port: number;
  verdict: Verdict;
  /** local backends, sorted (ip, port); empty = kube-proxy handles every connect */
  backends: BackendEntry[];
  /** index into DesiredState.rules: why this verdict and these backends */
  ruleId: number;
}

export interface RuleInfo {
  id: number;
  /** human-readable reason chain, e.g. ["listener virtualInbound", "chain 0.0.0.0_9080", "filter envoy.filters.network.http_connection_manager => proxy"] */
  reasons: string[];
}

export interface DesiredState {
  endpoints: EndpointEntry[];
  policies: PolicyEntry[];
  rules: RuleInfo[];
  /** network names by id (index = id); networks[0] is this node's network */
  networks: string[];
  /** workload names by id (index = id; 0 = unknown) */
  workloads: string[];
  /** service VIPs resolved at connect (absent = none: the maps are emptied) */
  services?: ServiceEntry[];
}

/** What makes an address LOCAL on this node. */
export interface Locality {
  nodeIps: string[]; // every IP of this node, all interfaces, both families
  podCidrs: string[]; // local pod CIDRs, both families
  network: string; // this node's network name ('' = default)
  clusterId?: string;
}
