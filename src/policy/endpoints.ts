// EDS endpoint indexing: every ClusterLoadAssignment's addresses as targets
// (ip:port), with network and workload, and cluster names resolved to the
// targets behind them. Addresses that cannot be entries are recorded as skipped.
import type { Json, JsonObject } from '../xds/types.js';
import { arr, num, obj, path, str } from './json.js';
import type { AddressBook } from './addresses.js';
import { BLACKHOLE, PASSTHROUGH, type Addr, type CompileContext, type Resolved, type Target } from './model.js';

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

export class EndpointIndex {
  /** EDS service name -> targets */
  private readonly claTargets = new Map<string, Target[]>();
  private readonly resolvedCache = new Map<string, Resolved>();
  private readonly wlNames = new Map<string, string | undefined>();
  private localByPort: Map<number, Addr[]> | undefined;
  private outboundByPort: Map<number, string[]> | undefined;

  constructor(
    private readonly ctx: CompileContext,
    private readonly book: AddressBook,
  ) {
    this.index();
  }

  private workloadName(w: string | undefined): string | undefined {
    if (w === undefined) return undefined;
    let n = this.wlNames.get(w);
    if (n === undefined && !this.wlNames.has(w)) this.wlNames.set(w, (n = workloadName(w)));
    return n;
  }

  private index(): void {
    const { snap, problems } = this.ctx;
    // EDS service_name -> cluster, for cluster-level metadata.
    const clusterOfService = new Map<string, JsonObject>();
    for (const [name, c] of snap.clusters) {
      const svc = str(path(c, 'eds_cluster_config', 'service_name'));
      clusterOfService.set(svc ?? name, c);
    }
    for (const [key, cla] of snap.endpoints) {
      const where = `ClusterLoadAssignment ${key}`;
      const cluster = clusterOfService.get(key) ?? snap.clusters.get(key);
      const clusterNet = istioNetwork(cluster?.['metadata']);
      const targets: Target[] = [];
      const eps = cla['endpoints'];
      if (eps !== undefined && !Array.isArray(eps)) problems.add(`${where}: endpoints must be a list`);
      for (const group of arr(eps)) {
        const g = obj(group);
        if (!g) {
          problems.add(`${where}: endpoints[] must be objects`);
          continue;
        }
        const groupNet = istioNetwork(g['metadata']);
        const lbs = g['lb_endpoints'];
        if (lbs !== undefined && !Array.isArray(lbs)) problems.add(`${where}: lb_endpoints must be a list`);
        for (const lbRaw of arr(lbs)) {
          const lb = obj(lbRaw);
          const ep = obj(lb?.['endpoint']);
          if (!lb || !ep) continue; // named endpoints (endpoint_name) carry no address
          const net = istioNetwork(lb['metadata']) ?? groupNet ?? clusterNet;
          const wl = this.workloadName(str(path(lb['metadata'], 'filter_metadata', 'istio', 'workload')));
          const seen = { cluster: key, lb, net, workload: wl, targets };
          this.endpointAddress(seen, ep['address']);
          const extra = ep['additional_addresses'];
          if (extra !== undefined && !Array.isArray(extra)) problems.add(`${where}: additional_addresses must be a list`);
          // Dual-stack: every address is recorded, never "last address wins".
          for (const x of arr(extra)) this.endpointAddress(seen, path(x, 'address'));
        }
      }
      this.claTargets.set(key, targets);
    }
  }

  private endpointAddress(e: { cluster: string; lb: JsonObject; net: string | undefined; workload: string | undefined; targets: Target[] }, address: Json | undefined): void {
    const { cluster, lb, net, workload, targets } = e;
    const skipped = this.ctx.skipped;
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
          this.ctx.problems.add(`ClusterLoadAssignment ${cluster}: bad port_value ${JSON.stringify(pv)} for ${text}`);
          return;
        }
        port = n;
      }
      const ad = this.book.addr(text);
      if (!ad) {
        skipped.push({ cluster, address: `${text}:${port}`, reason: 'address is not an IP (named port / hostname): no entry' });
        return;
      }
      if (ad.special) {
        skipped.push({ cluster, address: `${ad.text}:${port}`, reason: 'loopback/unspecified address is per-pod, not a mesh endpoint: no entry' });
        return;
      }
      ad.mesh = true;
      this.book.network(ad, net);
      if (workload !== undefined && (ad.workload === undefined || workload < ad.workload)) ad.workload = workload;
      if (port > 0) targets.push({ addr: ad, port });
      return;
    }
    const internal = obj(a['envoy_internal_address']);
    if (internal) {
      // HBONE / waypoint tunnels: Envoy wraps the bytes; the socket never talks to the pod directly.
      const via = str(internal['server_listener_name']) ?? '?';
      const id = str(path(lb['metadata'], 'filter_metadata', 'envoy.filters.listener.original_dst', 'local')) ?? str(internal['endpoint_id']) ?? '?';
      skipped.push({ cluster, address: id, reason: `envoy_internal_address via internal listener ${via} (HBONE/waypoint tunnel): not a bypass candidate` });
      return;
    }
    const pipe = str(path(a, 'pipe', 'path'));
    if (pipe !== undefined) {
      skipped.push({ cluster, address: pipe, reason: 'unix socket (pipe) endpoint: no entry' });
      return;
    }
    skipped.push({ cluster, address: '?', reason: `unknown address kind ${Object.keys(a).join(',')}: no entry` });
  }

  /** Local endpoints (this node's network) by the port they serve. */
  localEndpointsByPort(): Map<number, Addr[]> {
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
  outboundClustersByPort(): Map<number, string[]> {
    if (this.outboundByPort) return this.outboundByPort;
    const { snap } = this.ctx;
    const m = new Map<number, string[]>();
    const names = new Set([...snap.clusters.keys(), ...snap.endpoints.keys()]);
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

  /** A cluster name -> the targets behind it, and what kind of cluster it is. */
  resolve(name: string): Resolved {
    const hit = this.resolvedCache.get(name);
    if (hit) return hit;
    let r: Resolved;
    const c = this.ctx.snap.clusters.get(name);
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
      r = t ? { targets: t, kind: 'eds', note: `cluster ${name} (not in CDS; endpoints from EDS)` } : { targets: [], kind: 'unknown', note: `cluster ${name} unknown` };
    }
    this.resolvedCache.set(name, r);
    return r;
  }
}
