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

/**
 * Where the compiler can put its endpoint and policy entries, one at a time in
 * output order, instead of keeping them in DesiredState's lists (the sync paths
 * encode them as they come: src/maps/plan.ts DesiredEncoder).
 */
export interface EntrySink {
  /** Told before the first entry how many of each come (at most): room made once, not by growing. */
  expect?(endpoints: number, policies: number): void;
  endpoint(e: EndpointEntry): void;
  policy(p: PolicyEntry): void;
}

export interface DesiredState {
  endpoints: EndpointEntry[];
  policies: PolicyEntry[];
  rules: RuleInfo[];
  /** network names by id (index = id); networks[0] is this node's network */
  networks: string[];
  /** workload names by id (index = id; 0 = unknown) */
  workloads: string[];
  /**
   * WDS sources only: every Service as istiod sent it, for the service-VIP
   * maps (issue 12). Nothing here is written by src/maps yet; a backend's
   * verdict is the `policies` entry of its ip:targetPort.
   */
  wdsServices?: ServiceVip[];
  /** service VIPs resolved at connect (absent = none: the maps are emptied) */
  services?: ServiceEntry[];
}

/** One WDS Service (istio.workload.Service), in canonical text. */
export interface ServiceVip {
  /** "namespace/hostname", the WDS resource name */
  name: string;
  namespace: string;
  hostname: string;
  /** virtual IPs; network '' = the default network */
  vips: { network: string; ip: string }[];
  /** port: what clients dial; targetPort: what the backend listens on (0: per endpoint, see endpoints[].ports) */
  ports: { port: number; targetPort: number; appProtocol: string }[];
  /** the Service has a waypoint (or weighted waypoints): every flow to it is L7, PROXY */
  waypoint: boolean;
  /** the workloads behind it (Workload.services names this service), by workload name */
  endpoints: ServiceBackend[];
}

export interface ServiceBackend {
  /** "namespace/name" */
  workload: string;
  uid: string;
  ips: string[];
  network: string;
  /** eligible for bypass on this node (the same `local` as its mb_endpoints entries) */
  local: boolean;
  /** service port -> the port this backend listens on (ztunnel: the endpoint's mapping, else the Service's targetPort) */
  ports: { port: number; targetPort: number }[];
}

/** Operator exclusions: never bypass these, whatever the control plane says. */
export interface Exclusions {
  namespaces: string[];
  /** "namespace/name": a pod name or a workload (Deployment...) name */
  workloads: string[];
}

/** What makes an address LOCAL on this node. */
export interface Locality {
  nodeIps: string[]; // every IP of this node, all interfaces, both families
  podCidrs: string[]; // local pod CIDRs, both families
  network: string; // this node's network name ('' = default)
  clusterId?: string;
  /** WDS: the Kubernetes node name; workloads whose `node` equals it are local */
  nodeName?: string;
  /** never bypass these namespaces or workloads (WDS) */
  exclude?: Exclusions;
}
