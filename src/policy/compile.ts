// xDS snapshot -> desired kernel state. Pure: no I/O, no clock, no randomness;
// output sorted so identical input gives identical output (and rule ids).
//
// Safety direction everywhere: unknown or unparseable input yields no entry
// (normal path) or PROXY, never BYPASS. PROXY beats BYPASS for one ip:port.
//
// Decisions (see the tests in test/unit/policy*.test.ts):
// - Chains are grouped as Envoy matches them: (destination_port, prefix_ranges).
//   A group is BYPASS only if every chain in it is tcp_proxy + harmless filters.
// - Unknown network filter => PROXY (not "no entry"), so it also beats a BYPASS
//   that another listener derives for the same endpoint.
// - Any chain matching on application_protocols, transport_protocol or
//   server_names (sniffing/TLS detection), or terminating TLS => PROXY.
// - filter_chain_matcher is not evaluated: its chains give PROXY, never BYPASS.
// - Verdict entries go to EDS endpoints (real ip:port) behind a chain's
//   clusters; Istio inbound per-port chains map to LOCAL endpoints on that port.
//   Catch-all/ORIGINAL_DST/BlackHole clusters name no endpoints (BlackHole on a
//   per-port inbound chain is a deny => PROXY).
// - Foreign-network addresses: networkId != 0, local=false, no verdicts.
import type { Json, JsonObject, XdsSnapshot } from '../xds/types.js';
import { cidrContains, formatIp, maskBytes, parseCidr, parseIp, tryParseIp, type Family } from '../net/ip.js';
import type { DesiredState, EndpointEntry, Locality, PolicyEntry, RuleInfo, Verdict } from './types.js';
import { arr, num, obj, path, Problems, str } from './json.js';
import { classifyFilter, type FilterInfo } from './filters.js';

/** An endpoint address that got no entry, and why (for explain and dumps). */
export interface SkippedEndpoint {
  cluster: string;
  /** best-effort text: "ip:port", internal endpoint id, pipe path */
  address: string;
  reason: string;
}

/** DesiredState plus what explain() wants to know about things without entries. */
export interface CompiledState extends DesiredState {
  skipped: SkippedEndpoint[];
  /** decisions that produced no entry (unresolved clusters, catch-all chains, ...) */
  notes: string[];
}

// Istio catch-all clusters: traffic to whatever the original destination was.
const PASSTHROUGH = /^(PassthroughCluster|InboundPassthroughCluster.*)$/;
const BLACKHOLE = 'BlackHoleCluster';
/** Istio inbound-vip|PORT|PROTO|host and outbound|PORT|SUBSET|host: PROTO names an HTTP family. */
const HTTP_PORT_NAMES = /^(http|http2|https?-.*|http2-.*|grpc|grpc-web|grpc-.*)$/;

interface Addr {
  idx: number;
  text: string;
  bytes: Buffer;
  family: Family;
  /** the 16 bytes as four big-endian words: a cheap total order for sorting */
  k0: number;
  k1: number;
  k2: number;
  k3: number;
  /** verdicts for this address by port (few per address: a linear list beats a global map) */
  slots: VerdictSlot[] | undefined;
  /** loopback or unspecified: per-pod, never a mesh endpoint */
  special: boolean;
  /** node IP or inside a local pod CIDR */
  inLocalRange: boolean;
  nodeIp: boolean;
  /** seen as a control-plane endpoint */
  mesh: boolean;
  /** lowest-sorting foreign network seen for this address (undefined = this node's) */
  remoteNet: string | undefined;
  workload: string | undefined;
}

interface Target {
  addr: Addr;
  port: number;
}

interface VerdictSlot {
  addr: Addr;
  port: number;
  verdict: Verdict;
  reasons: string[];
  key: string;
}

interface Ranges {
  list: { bytes: Buffer; prefixLen: number }[];
  text: string; // '' = any
}

interface Member {
  name: string;
  match: string;
  dport: number | undefined;
  ranges: Ranges;
  /** reason when the chain selects on protocol (sniffing / TLS detection) */
  sniff: string | undefined;
  /** chain has criteria beyond port and destination IP (a connection may fall through) */
  partial: boolean;
  filters: FilterInfo[];
  proxy: string | undefined;
  tcpClusters: string[];
  httpClusters: string[];
  rds: boolean;
  harmless: string[];
}

interface Resolved {
  targets: Target[];
  note: string;
  kind: 'eds' | 'passthrough' | 'blackhole' | 'origdst' | 'other' | 'unknown';
}

function cmpAddr(x: Addr, y: Addr): number {
  return x.k0 - y.k0 || x.k1 - y.k1 || x.k2 - y.k2 || x.k3 - y.k3;
}

function isSpecial(b: Buffer): boolean {
  // 0.0.0.0, 127.0.0.0/8 (v4-mapped), ::, ::1
  if (b.readUInt32BE(0) !== 0 || b.readUInt32BE(4) !== 0) return false;
  const w2 = b.readUInt32BE(8);
  const w3 = b.readUInt32BE(12);
  if (w2 === 0xffff) return w3 === 0 || b[12] === 127;
  return w2 === 0 && (w3 === 0 || w3 === 1);
}

/** "name;namespace;app;version;cluster" (Istio) -> "namespace/name". */
function workloadName(w: string | undefined): string | undefined {
  if (!w) return undefined;
  const parts = w.split(';');
  if (parts.length >= 2) {
    const [name, ns] = parts as [string, string];
    if (!name) return undefined;
    return ns ? `${ns}/${name}` : name;
  }
  return w;
}

function istioNetwork(meta: Json | undefined): string | undefined {
  const istio = path(meta, 'filter_metadata', 'istio');
  return str(path(istio, 'network')) ?? str(path(istio, 'labels', 'topology.istio.io/network'));
}

class Compiler {
  readonly problems = new Problems();
  private readonly addrs = new Map<string, Addr | null>();
  private readonly addrList: Addr[] = [];
  private readonly podCidrs: { bytes: Buffer; prefixLen: number; family: Family; text: string }[] = [];
  private readonly nodeIps = new Set<string>();
  /** EDS service name -> targets */
  private readonly claTargets = new Map<string, Target[]>();
  private readonly resolvedCache = new Map<string, Resolved>();
  private localByPort: Map<number, Addr[]> | undefined;
  private outboundByPort: Map<number, string[]> | undefined;
  readonly skipped: SkippedEndpoint[] = [];
  readonly notes: string[] = [];
  private readonly wlNames = new Map<string, string | undefined>();

  constructor(
    private readonly snap: XdsSnapshot,
    private readonly loc: Locality,
  ) {}

  run(): CompiledState {
    this.locality();
    this.endpoints();
    const listenerNames = [...this.snap.listeners.keys()].sort();
    for (const n of listenerNames) {
      const l = this.snap.listeners.get(n);
      if (l) this.listener(n, l);
    }
    return this.output();
  }

  // ---- addresses and locality -------------------------------------------

  private addr(text: string): Addr | undefined {
    const hit = this.addrs.get(text);
    if (hit !== undefined) return hit ?? undefined;
    const ip = tryParseIp(text);
    if (!ip) {
      this.addrs.set(text, null);
      return undefined;
    }
    // A dotted quad that passed the parser is already canonical (no leading zeros).
    const canon = ip.family === 4 && !text.includes(':') ? text.trim() : formatIp(ip.bytes);
    // Different spellings of one address share one record.
    let a = canon === text ? undefined : this.addrs.get(canon) ?? undefined;
    if (!a) {
      let inLocal = this.nodeIps.has(canon);
      if (!inLocal) for (const p of this.podCidrs) if (cidrContains(p, ip.bytes)) { inLocal = true; break; }
      a = {
        idx: this.addrList.length,
        text: canon,
        bytes: ip.bytes,
        family: ip.family,
        k0: ip.bytes.readUInt32BE(0),
        k1: ip.bytes.readUInt32BE(4),
        k2: ip.bytes.readUInt32BE(8),
        k3: ip.bytes.readUInt32BE(12),
        slots: undefined,
        special: isSpecial(ip.bytes),
        inLocalRange: inLocal,
        nodeIp: this.nodeIps.has(canon),
        mesh: false,
        remoteNet: undefined,
        workload: undefined,
      };
      this.addrList.push(a);
      this.addrs.set(canon, a);
    }
    if (text !== canon) this.addrs.set(text, a);
    return a;
  }

  private workloadName(w: string | undefined): string | undefined {
    if (w === undefined) return undefined;
    let n = this.wlNames.get(w);
    if (n === undefined && !this.wlNames.has(w)) this.wlNames.set(w, (n = workloadName(w)));
    return n;
  }

  private locality(): void {
    // Locality is our own configuration: a bad entry is a bug to surface, so parse strictly (throws).
    for (const c of this.loc.podCidrs) {
      const p = parseCidr(c);
      const family: Family = p.ip.family;
      const len = family === 4 ? p.prefixLen - 96 : p.prefixLen;
      this.podCidrs.push({ bytes: p.ip.bytes, prefixLen: p.prefixLen, family, text: `${formatIp(p.ip.bytes)}/${len}` });
    }
    for (const n of this.loc.nodeIps) this.nodeIps.add(formatIp(parseIp(n).bytes));
    for (const n of this.nodeIps) this.addr(n);
  }

  private network(a: Addr, net: string | undefined): void {
    if (net === undefined || net === '' || net === this.loc.network) return;
    // Conflicting networks for one address: the foreign one wins (never local-eligible);
    // between two foreign networks the lowest name, so the result is order-independent.
    if (a.remoteNet === undefined || net < a.remoteNet) a.remoteNet = net;
  }

  // ---- endpoints (EDS) ------------------------------------------------------

  private endpoints(): void {
    // EDS service_name -> cluster, for cluster-level metadata.
    const clusterOfService = new Map<string, JsonObject>();
    for (const [name, c] of this.snap.clusters) {
      const svc = str(path(c, 'eds_cluster_config', 'service_name'));
      clusterOfService.set(svc ?? name, c);
    }
    for (const [key, cla] of this.snap.endpoints) {
      const where = `ClusterLoadAssignment ${key}`;
      const cluster = clusterOfService.get(key) ?? this.snap.clusters.get(key);
      const clusterNet = istioNetwork(cluster?.['metadata']);
      const targets: Target[] = [];
      const eps = cla['endpoints'];
      if (eps !== undefined && !Array.isArray(eps)) this.problems.add(`${where}: endpoints must be a list`);
      for (const group of arr(eps)) {
        const g = obj(group);
        if (!g) {
          this.problems.add(`${where}: endpoints[] must be objects`);
          continue;
        }
        const groupNet = istioNetwork(g['metadata']);
        const lbs = g['lb_endpoints'];
        if (lbs !== undefined && !Array.isArray(lbs)) this.problems.add(`${where}: lb_endpoints must be a list`);
        for (const lbRaw of arr(lbs)) {
          const lb = obj(lbRaw);
          const ep = obj(lb?.['endpoint']);
          if (!lb || !ep) continue; // named endpoints (endpoint_name) carry no address
          const net = istioNetwork(lb['metadata']) ?? groupNet ?? clusterNet;
          const wl = this.workloadName(str(path(lb['metadata'], 'filter_metadata', 'istio', 'workload')));
          this.endpointAddress(key, ep['address'], lb, net, wl, targets);
          const extra = ep['additional_addresses'];
          if (extra !== undefined && !Array.isArray(extra)) this.problems.add(`${where}: additional_addresses must be a list`);
          // Dual-stack: every address is recorded, never "last address wins".
          for (const x of arr(extra)) this.endpointAddress(key, path(x, 'address'), lb, net, wl, targets);
        }
      }
      this.claTargets.set(key, targets);
    }
  }

  private endpointAddress(
    cluster: string,
    address: Json | undefined,
    lb: JsonObject,
    net: string | undefined,
    workload: string | undefined,
    targets: Target[],
  ): void {
    const a = obj(address);
    if (!a) return;
    const sa = obj(a['socket_address']);
    if (sa) {
      const text = str(sa['address']) ?? '';
      const pv = sa['port_value'];
      let port = 0;
      if (pv !== undefined) {
        const n = num(pv);
        if (n === undefined || !Number.isInteger(n) || n < 0 || n > 65535) {
          this.problems.add(`ClusterLoadAssignment ${cluster}: bad port_value ${JSON.stringify(pv)} for ${text}`);
          return;
        }
        port = n;
      }
      const ad = this.addr(text);
      if (!ad) {
        this.skipped.push({ cluster, address: `${text}:${port}`, reason: 'address is not an IP (named port / hostname): no entry' });
        return;
      }
      if (ad.special) {
        this.skipped.push({ cluster, address: `${ad.text}:${port}`, reason: 'loopback/unspecified address is per-pod, not a mesh endpoint: no entry' });
        return;
      }
      ad.mesh = true;
      this.network(ad, net);
      if (workload !== undefined && (ad.workload === undefined || workload < ad.workload)) ad.workload = workload;
      if (port > 0) targets.push({ addr: ad, port });
      return;
    }
    const internal = obj(a['envoy_internal_address']);
    if (internal) {
      // HBONE / waypoint tunnels: Envoy wraps the bytes; the socket never talks to the pod directly.
      const via = str(internal['server_listener_name']) ?? '?';
      const id =
        str(path(lb['metadata'], 'filter_metadata', 'envoy.filters.listener.original_dst', 'local')) ??
        str(internal['endpoint_id']) ??
        '?';
      this.skipped.push({ cluster, address: id, reason: `envoy_internal_address via internal listener ${via} (HBONE/waypoint tunnel): not a bypass candidate` });
      return;
    }
    const pipe = str(path(a, 'pipe', 'path'));
    if (pipe !== undefined) {
      this.skipped.push({ cluster, address: pipe, reason: 'unix socket (pipe) endpoint: no entry' });
      return;
    }
    this.skipped.push({ cluster, address: '?', reason: `unknown address kind ${Object.keys(a).join(',')}: no entry` });
  }

  private localEndpointsByPort(): Map<number, Addr[]> {
    if (this.localByPort) return this.localByPort;
    const sets = new Map<number, Set<Addr>>();
    for (const ts of this.claTargets.values()) {
      for (const t of ts) {
        if (!t.addr.inLocalRange || t.addr.remoteNet !== undefined) continue;
        let l = sets.get(t.port);
        if (!l) sets.set(t.port, (l = new Set()));
        l.add(t.addr);
      }
    }
    const m = new Map<number, Addr[]>();
    for (const [p, set] of sets) m.set(p, [...set]);
    return (this.localByPort = m);
  }

  /** Istio's outbound|PORT|SUBSET|HOST clusters by PORT (for HCM routes we cannot see: RDS). */
  private outboundClustersByPort(): Map<number, string[]> {
    if (this.outboundByPort) return this.outboundByPort;
    const m = new Map<number, string[]>();
    const names = new Set([...this.snap.clusters.keys(), ...this.snap.endpoints.keys()]);
    for (const n of [...names].sort()) {
      const mm = /^outbound\|(\d+)\|/.exec(n);
      if (!mm) continue;
      const p = Number(mm[1]);
      let l = m.get(p);
      if (!l) m.set(p, (l = []));
      l.push(n);
    }
    return (this.outboundByPort = m);
  }

  private resolve(name: string): Resolved {
    const hit = this.resolvedCache.get(name);
    if (hit) return hit;
    let r: Resolved;
    const c = this.snap.clusters.get(name);
    if (name === BLACKHOLE) r = { targets: [], kind: 'blackhole', note: `cluster ${name} drops the connection` };
    else if (PASSTHROUGH.test(name)) r = { targets: [], kind: 'passthrough', note: `cluster ${name} is a catch-all passthrough: no mesh endpoints` };
    else if (c) {
      const type = str(c['type']) ?? (obj(c['cluster_type']) ? 'custom' : 'STATIC');
      const lbPolicy = str(c['lb_policy']);
      if (type === 'ORIGINAL_DST' || lbPolicy === 'CLUSTER_PROVIDED' || lbPolicy === 'ORIGINAL_DST_LB') {
        r = { targets: [], kind: 'origdst', note: `cluster ${name} is original-destination: no mesh endpoints` };
      } else if (type === 'EDS') {
        const svc = str(path(c, 'eds_cluster_config', 'service_name')) ?? name;
        const t = this.claTargets.get(svc);
        r = t
          ? { targets: t, kind: 'eds', note: `cluster ${name} (EDS${svc !== name ? ` ${svc}` : ''})` }
          : { targets: [], kind: 'unknown', note: `cluster ${name}: EDS but no ClusterLoadAssignment yet` };
      } else {
        r = { targets: [], kind: 'other', note: `cluster ${name} is ${type}, not EDS: no mesh endpoints` };
      }
    } else {
      const t = this.claTargets.get(name);
      r = t
        ? { targets: t, kind: 'eds', note: `cluster ${name} (not in CDS; endpoints from EDS)` }
        : { targets: [], kind: 'unknown', note: `cluster ${name} unknown` };
    }
    this.resolvedCache.set(name, r);
    return r;
  }

  // ---- listeners --------------------------------------------------------------

  private ranges(where: string, m: JsonObject | undefined): Ranges {
    const raw = m?.['prefix_ranges'];
    if (raw !== undefined && !Array.isArray(raw)) this.problems.add(`${where}: prefix_ranges must be a list`);
    const list: Ranges['list'] = [];
    const texts: string[] = [];
    for (const r of arr(raw)) {
      const ap = str(path(r, 'address_prefix')) ?? '';
      const ip = tryParseIp(ap);
      const plRaw = path(r, 'prefix_len');
      const pl = plRaw === undefined ? (ip?.family === 4 ? 32 : 128) : num(plRaw);
      const max = ip?.family === 4 ? 32 : 128;
      if (!ip || pl === undefined || !Number.isInteger(pl) || pl < 0 || pl > max) {
        this.problems.add(`${where}: bad prefix_range ${JSON.stringify(r)}`);
        continue;
      }
      const prefixLen = ip.family === 4 ? pl + 96 : pl;
      const bytes = maskBytes(ip.bytes, prefixLen);
      list.push({ bytes, prefixLen });
      texts.push(`${formatIp(bytes)}/${pl}`);
    }
    texts.sort();
    return { list, text: texts.join(',') };
  }

  private member(lname: string, raw: Json | undefined, i: number, isDefault: boolean): Member | undefined {
    const fc = obj(raw);
    const where = `listener ${lname} chain ${i}`;
    if (!fc) {
      this.problems.add(`${where}: filter chain must be an object`);
      return undefined;
    }
    const name = str(fc['name']) ?? (isDefault ? 'default_filter_chain' : `#${i}`);
    const m = obj(fc['filter_chain_match']);
    if (fc['filter_chain_match'] !== undefined && !m) this.problems.add(`${where}: filter_chain_match must be an object`);
    let dport: number | undefined;
    const dp = m?.['destination_port'];
    if (dp !== undefined) {
      const n = num(dp);
      if (n === undefined || !Number.isInteger(n) || n < 1 || n > 65535) this.problems.add(`${where}: bad destination_port ${JSON.stringify(dp)}`);
      else dport = n;
    }
    const ranges = this.ranges(where, m);
    const tp = str(m?.['transport_protocol']);
    const aps = arr(m?.['application_protocols']).filter((x): x is string => typeof x === 'string');
    const sns = arr(m?.['server_names']).filter((x): x is string => typeof x === 'string');
    let sniff: string | undefined;
    if (aps.length) sniff = `chain ${name} matches application_protocols [${aps.join(',')}] (protocol sniffing)`;
    else if (tp) sniff = `chain ${name} matches transport_protocol ${tp} (protocol detection)`;
    else if (sns.length) sniff = `chain ${name} matches server_names (TLS SNI inspection)`;
    const partial =
      sniff !== undefined ||
      ['source_prefix_ranges', 'direct_source_prefix_ranges', 'source_ports', 'source_type'].some((k) => m?.[k] !== undefined && m[k] !== 'ANY');
    const matchBits: string[] = [];
    if (dport !== undefined) matchBits.push(`destination_port=${dport}`);
    if (ranges.text) matchBits.push(`prefix_ranges=${ranges.text}`);
    if (tp) matchBits.push(`transport_protocol=${tp}`);
    if (aps.length) matchBits.push(`application_protocols=${aps.join(',')}`);
    if (sns.length) matchBits.push(`server_names=${sns.join(',')}`);

    const filtersRaw = fc['filters'];
    if (filtersRaw !== undefined && !Array.isArray(filtersRaw)) this.problems.add(`${where}: filters must be a list`);
    const filters = arr(filtersRaw).map(classifyFilter);
    const mem: Member = {
      name,
      match: matchBits.length ? `[${matchBits.join(' ')}]` : '[any]',
      dport,
      ranges,
      sniff,
      partial,
      filters,
      proxy: undefined,
      tcpClusters: [],
      httpClusters: [],
      rds: false,
      harmless: [],
    };
    for (const f of filters) {
      switch (f.kind) {
        case 'tcp_proxy':
          if (f.noCluster) this.problems.add(`${where}: tcp_proxy without cluster`);
          if (f.tunnel) mem.proxy ??= `filter ${f.label} tunnels (tunneling_config) => proxy`;
          mem.tcpClusters.push(...f.clusters);
          break;
        case 'http':
          mem.proxy ??= `filter ${f.label} is L7 (HTTP) => proxy`;
          mem.httpClusters.push(...f.clusters);
          mem.rds ||= f.rds;
          break;
        case 'authz':
          mem.proxy ??= `filter ${f.label} is a network authorization filter => proxy`;
          break;
        case 'l7':
          mem.proxy ??= `filter ${f.label} is a protocol-aware (L7) filter => proxy`;
          break;
        case 'harmless':
          mem.harmless.push(f.label);
          break;
        case 'unknown':
          // Unknown code may inspect, authorize or rewrite: keep Envoy in the path.
          mem.proxy ??= `filter ${f.label} is unknown (unknown never widens bypass) => proxy`;
          break;
      }
    }
    if (!filters.some((f) => f.kind === 'tcp_proxy' || f.kind === 'http')) mem.proxy ??= `chain ${name} has no terminal filter (tcp_proxy/HCM) => proxy`;
    const ts = obj(fc['transport_socket']);
    if (ts) {
      const t = str(path(ts, 'typed_config', '@type')) ?? str(ts['name']) ?? '';
      if (!t.endsWith('raw_buffer.v3.RawBuffer')) mem.proxy ??= `chain ${name} terminates ${/tls/i.test(t) ? 'TLS' : 'a transport socket'} (${str(ts['name']) ?? t}) => proxy`;
    }
    for (const c of mem.tcpClusters) {
      if (c === BLACKHOLE) mem.proxy ??= `tcp_proxy to ${BLACKHOLE}: Envoy drops it; bypass would let it through => proxy`;
      const pn = /^(?:inbound-vip|inbound|outbound)\|\d+\|([^|]*)\|/.exec(c)?.[1];
      if (pn && HTTP_PORT_NAMES.test(pn)) mem.proxy ??= `cluster ${c}: Istio port name '${pn}' says HTTP => proxy`;
    }
    return mem;
  }

  private listener(lname: string, l: JsonObject): void {
    const inbound = lname === 'virtualInbound' || str(l['traffic_direction']) === 'INBOUND';
    const origDst =
      lname === 'virtualInbound' ||
      lname === 'virtualOutbound' ||
      l['use_original_dst'] === true ||
      arr(l['listener_filters']).some((f) => str(path(f, 'name')) === 'envoy.filters.listener.original_dst');
    const sa = obj(path(l, 'address', 'socket_address'));
    const lport = num(sa?.['port_value']);
    const lip = tryParseIp(str(sa?.['address']) ?? '');
    const lipSpecific = lip && !lip.bytes.equals(UNSPEC4) && !lip.bytes.equals(UNSPEC6) ? lip : undefined;
    const lhead = `listener ${lname}${inbound ? ' (inbound)' : ''}`;

    const fcs = l['filter_chains'];
    if (fcs !== undefined && !Array.isArray(fcs)) this.problems.add(`listener ${lname}: filter_chains must be a list`);
    const members: Member[] = [];
    arr(fcs).forEach((fc, i) => {
      const m = this.member(lname, fc, i, false);
      if (m) members.push(m);
    });
    const def = l['default_filter_chain'] !== undefined ? this.member(lname, l['default_filter_chain'], members.length, true) : undefined;

    if (l['filter_chain_matcher'] !== undefined) {
      // xDS matcher trees select chains by inputs we do not evaluate (ALPN, SNI, IP, port):
      // every chain it can reach is PROXY-leaning, never BYPASS.
      const why = `listener ${lname} selects chains with filter_chain_matcher (not evaluated) => proxy, never bypass`;
      this.notes.push(`${why}: ${members.length + (def ? 1 : 0)} chain(s), only clusters they name get entries`);
      for (const m of def ? [...members, def] : members) this.emitMember(lhead, m, 'proxy', why, undefined, undefined, undefined);
      return;
    }

    // Envoy picks chains by destination port first (exact beats none), then destination IP.
    // Chains with the same (port, prefixes) compete on later criteria: one match group.
    const groups = new Map<string, Member[]>();
    for (const m of members) {
      const k = `${m.dport ?? '*'}|${m.ranges.text}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = []));
      g.push(m);
    }
    if (def) {
      // The default chain catches what no chain matched: it competes in groups that can fall through.
      for (const g of groups.values()) if (g.some((m) => m.partial)) g.push(def);
      groups.set('default', [def]);
    }
    for (const g of groups.values()) {
      const first = g[0];
      if (!first) continue;
      const sniff = g.find((m) => m.sniff)?.sniff;
      const proxyMember = g.find((m) => m.proxy);
      const isDefaultGroup = g.length === 1 && first === def;
      // The port this group serves on the server side (inbound only).
      let port: number | undefined;
      if (inbound) {
        if (!isDefaultGroup && first.dport !== undefined) port = first.dport;
        else if (!origDst && lport !== undefined && lport > 0) port = lport;
      }
      for (const m of g) {
        let verdict: Verdict = 'bypass';
        let why: string;
        if (m.proxy) {
          verdict = 'proxy';
          why = m.proxy;
        } else if (sniff) {
          verdict = 'proxy';
          why = `${sniff} => proxy`;
        } else if (proxyMember) {
          verdict = 'proxy';
          why = `chain ${proxyMember.name} matches the same traffic: ${proxyMember.proxy}`;
        } else {
          const extra = m.harmless.length ? `; harmless: ${m.harmless.join(', ')}` : '';
          why = `plain tcp_proxy, no authorization filter${extra} => bypass`;
        }
        const rdsPort = m.dport ?? (!origDst && lport !== undefined && lport > 0 ? lport : undefined);
        this.emitMember(lhead, m, verdict, why, port, inbound ? { ranges: m.ranges, lip: lipSpecific?.bytes } : undefined, rdsPort);
      }
    }
  }

  private emitMember(
    lhead: string,
    m: Member,
    verdict: Verdict,
    why: string,
    inboundPort: number | undefined,
    inboundFilter: { ranges: Ranges; lip: Buffer | undefined } | undefined,
    rdsPort: number | undefined,
  ): void {
    const chainHead = `chain ${m.name} ${m.match}`;
    let emitted = false;
    const viaClusters = (names: string[], filterDesc: string): void => {
      for (const c of names) {
        const r = this.resolve(c);
        if (r.targets.length === 0) {
          this.notes.push(`${lhead}, ${chainHead}: ${r.note}: no entry`);
          continue;
        }
        const reasons = [lhead, chainHead, `${filterDesc} -> ${r.note}`, why];
        this.emitTargets(r.targets, verdict, reasons);
        emitted = true;
      }
    };
    viaClusters(m.tcpClusters, 'tcp_proxy');
    viaClusters(m.httpClusters, 'HTTP route');
    if (m.rds && !inboundFilter && verdict === 'proxy' && rdsPort !== undefined) {
      // Routes come from RDS (not in the snapshot). Istio convention: the outbound HTTP listener
      // for port P routes to outbound|P|*|* clusters. PROXY evidence only, never BYPASS.
      viaClusters(this.outboundClustersByPort().get(rdsPort) ?? [], `HCM via RDS (Istio convention: outbound|${rdsPort}|*)`);
    }
    if (inboundPort !== undefined && inboundFilter) {
      // A port-specific inbound chain serves the local endpoints listening on that port. For BYPASS
      // a mesh service must stand behind it: not only catch-all passthrough clusters.
      const onlyCatchAll = m.tcpClusters.length > 0 && m.tcpClusters.every((c) => this.resolve(c).kind === 'passthrough');
      if (verdict === 'proxy' || !onlyCatchAll) {
        const locals = (this.localEndpointsByPort().get(inboundPort) ?? []).filter(
          (a) =>
            (inboundFilter.ranges.list.length === 0 || inboundFilter.ranges.list.some((p) => cidrContains(p, a.bytes))) &&
            (!inboundFilter.lip || inboundFilter.lip.equals(a.bytes)),
        );
        if (locals.length) {
          const reasons = [lhead, chainHead, `local endpoints serving port ${inboundPort}`, why];
          this.emitTargets(
            locals.map((a) => ({ addr: a, port: inboundPort })),
            verdict,
            reasons,
          );
          emitted = true;
        }
      } else {
        this.notes.push(`${lhead}, ${chainHead}: only catch-all passthrough clusters: no bypass entry`);
      }
    }
    if (!emitted && m.tcpClusters.length === 0 && m.httpClusters.length === 0) this.notes.push(`${lhead}, ${chainHead}: ${why}: no endpoints resolved, no entry`);
  }

  private emitTargets(targets: Target[], verdict: Verdict, reasons: string[]): void {
    const key = reasons.join('\n');
    for (const t of targets) {
      // A foreign-network address can never short-circuit: no verdict for it.
      if (t.addr.remoteNet !== undefined) continue;
      const list = (t.addr.slots ??= []);
      let cur: VerdictSlot | undefined;
      for (const x of list) if (x.port === t.port) cur = x;
      if (!cur) {
        list.push({ addr: t.addr, port: t.port, verdict, reasons, key });
        continue;
      }
      // PROXY wins over BYPASS; between equal verdicts the smallest reason key, so the
      // result does not depend on the order resources arrived in.
      if (cur.verdict === verdict ? key < cur.key : verdict === 'proxy') {
        cur.verdict = verdict;
        cur.reasons = reasons;
        cur.key = key;
      }
    }
  }

  // ---- output -----------------------------------------------------------------

  private output(): CompiledState {
    const foreign = new Set<string>();
    const workloadSet = new Set<string>();
    for (const a of this.addrList) {
      if (a.remoteNet !== undefined) foreign.add(a.remoteNet);
      if (a.workload !== undefined) workloadSet.add(a.workload);
    }
    const networks = [this.loc.network, ...[...foreign].sort()];
    const netId = new Map(networks.map((n, i) => [n, i] as const));
    const workloads = ['', ...[...workloadSet].sort()];
    const wlId = new Map(workloads.map((n, i) => [n, i] as const));

    // Sort addresses once; everything else sorts by (rank, port) numerically.
    const sorted = [...this.addrList].sort(cmpAddr);
    const cidrs = [...this.podCidrs].sort((x, y) => x.bytes.compare(y.bytes) || x.prefixLen - y.prefixLen);

    const endpoints: EndpointEntry[] = [];
    const seenCidr = new Set<string>();
    const hostCidr = (a: Addr): string => `${a.text}/${a.family === 4 ? 32 : 128}`;
    let ci = 0;
    const flushCidrsBefore = (b: Buffer | undefined): void => {
      // Pod CIDRs go just before the first host address they do not precede.
      for (; ci < cidrs.length; ci++) {
        const p = cidrs[ci]!;
        if (b && p.bytes.compare(b) > 0) return;
        if (seenCidr.has(p.text)) continue;
        seenCidr.add(p.text);
        endpoints.push({ cidr: p.text, local: true, mesh: true, networkId: 0, workloadId: 0 });
      }
    };
    for (const a of sorted) {
      if (!a.mesh && !a.nodeIp) continue;
      flushCidrsBefore(a.bytes);
      const networkId = a.remoteNet === undefined ? 0 : netId.get(a.remoteNet) ?? 0;
      const cidr = hostCidr(a);
      if (seenCidr.has(cidr)) continue; // a pod CIDR written as a host prefix
      endpoints.push({
        cidr,
        // Another network is never local-eligible, whatever its address looks like.
        local: a.inLocalRange && networkId === 0,
        // Node IPs are local but are not mesh workloads unless the control plane says so.
        mesh: a.mesh,
        networkId,
        workloadId: a.workload === undefined ? 0 : wlId.get(a.workload) ?? 0,
      });
    }
    flushCidrsBefore(undefined);

    const slots: VerdictSlot[] = [];
    for (const a of sorted) {
      if (!a.slots) continue;
      if (a.slots.length > 1) a.slots.sort((x, y) => x.port - y.port);
      for (const x of a.slots) slots.push(x);
    }
    const ruleKeys = [...new Set(slots.map((s) => s.key))].sort();
    const ruleId = new Map(ruleKeys.map((k, i) => [k, i] as const));
    const rules: RuleInfo[] = ruleKeys.map((k, i) => ({ id: i, reasons: k.split('\n') }));
    const policies: PolicyEntry[] = slots.map((s) => ({ ip: s.addr.text, port: s.port, verdict: s.verdict, ruleId: ruleId.get(s.key) ?? 0 }));

    this.skipped.sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    return {
      endpoints,
      policies,
      rules,
      networks,
      workloads,
      skipped: this.skipped,
      notes: [...new Set(this.notes)].sort(),
    };
  }
}

const UNSPEC4 = parseIp('0.0.0.0').bytes;
const UNSPEC6 = parseIp('::').bytes;

/**
 * Compile an xDS snapshot into the desired kernel state for this node.
 * Throws only for a malformed `locality` (our own configuration).
 */
export function compile(snapshot: XdsSnapshot, locality: Locality): CompiledState {
  return new Compiler(snapshot, locality).run();
}

/**
 * A reason to refuse (NACK) a snapshot the compiler cannot accept safely:
 * malformed structure in fields that decide verdicts (ports, prefixes, chain
 * lists, filters). Unknown types or filters are NOT errors: they simply get
 * no entry (or PROXY). Returns undefined when the snapshot is acceptable.
 */
export function validate(snapshot: XdsSnapshot): string | undefined {
  const r = compileChecked(snapshot, { nodeIps: [], podCidrs: [], network: '' });
  return 'error' in r ? r.error : undefined;
}

/**
 * validate() and compile() in one pass: the agent validates every update and
 * then needs its compiled state; compiling twice doubled the time and the
 * garbage of a 100k-endpoint sync.
 */
export function compileChecked(snapshot: XdsSnapshot, locality: Locality): { state: CompiledState } | { error: string } {
  for (const [kind, m] of [
    ['cluster', snapshot.clusters],
    ['ClusterLoadAssignment', snapshot.endpoints],
    ['listener', snapshot.listeners],
  ] as const) {
    for (const [k, v] of m) if (!obj(v as Json)) return { error: `${kind} ${k}: resource must be an object` };
  }
  const c = new Compiler(snapshot, locality);
  const state = c.run();
  const p = c.problems.list;
  if (p.length === 0) return { state };
  return { error: p.length === 1 ? (p[0] as string) : `${p[0]} (and ${p.length - 1} more problem${p.length > 2 ? 's' : ''})` };
}
