// WDS snapshot (Istio ambient: istio.workload.Address + istio.security.Authorization)
// -> desired kernel state. Pure, sorted, deterministic, like the Envoy stages.
//
// What a node agent in ambient mode may short-circuit, and nothing more:
// - LOCAL endpoints are the workloads whose `node` is this node's NODE_NAME, on
//   this node's network, captured by ztunnel (tunnel_protocol HBONE), not
//   host-network, not excluded by the operator: every address, both families.
//   Every other workload gets entries that are not local (never short-circuited).
// - Verdicts go to a local workload's ip:targetPort for each service port that
//   reaches it (ztunnel's resolution: the endpoint's port mapping, else the
//   Service's target_port). Ports no Service names get no verdict: unknown
//   stays on ztunnel's path.
// - PROXY (the flow goes to ztunnel, and on to the waypoint) when: the workload
//   or the Service has a waypoint; any Authorization selects the workload
//   (GLOBAL, its namespace, or listed in authorization_policies: ztunnel
//   enforces them, meshbpf does not); the Service is unknown; anything we do not
//   model is set (extensions, application_tunnel, native_tunnel, unknown enum
//   values, fields newer than our protos, an unhealthy status).
// - BYPASS only when none of that holds.
import type { Json, JsonObject, XdsSnapshot } from '../xds/types.js';
import { UNKNOWN_FIELDS } from '../xds/state.js';
import { ipBytes } from '../xds/validate-wds.js';
import { formatIp } from '../net/ip.js';
import { arr, num, obj, str } from './json.js';
import type { EndpointEntry, Exclusions, Locality, PolicyEntry, RuleInfo, ServiceBackend, ServiceEntry, ServiceVip, Verdict } from './types.js';
import type { CompiledState, SkippedEndpoint } from './model.js';

interface IpRec {
  text: string;
  bytes: Buffer;
  family: 4 | 6;
  /** every claim on this address is local (one non-local claim makes it non-local) */
  local: boolean;
  mesh: boolean;
  /** lowest foreign network claimed for it */
  remoteNet: string | undefined;
  workload: string | undefined;
}

interface Slot {
  ip: IpRec;
  port: number;
  verdict: Verdict;
  key: string;
}

/** 4 or 16 proto bytes -> 16 bytes (IPv4 mapped), canonical text. */
function ip16(b: Buffer): Buffer {
  if (b.length === 16) return b;
  const out = Buffer.alloc(16);
  out[10] = 0xff;
  out[11] = 0xff;
  b.copy(out, 12);
  return out;
}

function hasWaypoint(x: JsonObject): boolean {
  return x.waypoint !== undefined || arr(x.weighted_waypoints).length > 0;
}

/** What we do not model on a resource: any of it keeps the destination on ztunnel's path. */
function unmodelled(x: JsonObject, unknown: Json | undefined): string[] {
  const why: string[] = [];
  if (arr(x.extensions).length)
    why.push(
      `extensions ${arr(x.extensions)
        .map((e) => str(obj(e)?.name) ?? '?')
        .join(',')}`,
    );
  const u = arr(unknown).map(String);
  if (u.length) why.push(`fields unknown to our workload.proto (${u.join(', ')})`);
  return why;
}

export function isExcluded(ex: Exclusions | undefined, ns: string, name: string, workloadName: string | undefined): string | undefined {
  if (!ex) return undefined;
  if (ex.namespaces.includes(ns)) return `namespace ${ns} excluded by the operator (--exclude-namespace)`;
  for (const n of [name, workloadName]) if (n && ex.workloads.includes(`${ns}/${n}`)) return `workload ${ns}/${n} excluded by the operator (--exclude-workload)`;
  return undefined;
}

interface AuthIndex {
  /** applies to every workload: GLOBAL, or a scope/field we do not know */
  global: string[];
  byNamespace: Map<string, string[]>;
  /** selector policies held (names "ns/name") */
  held: Set<string>;
}

function indexAuthorizations(auths: Map<string, JsonObject>): AuthIndex {
  const ix: AuthIndex = { global: [], byNamespace: new Map(), held: new Set() };
  for (const [name, a] of auths) {
    ix.held.add(name);
    const scope = a.scope ?? 'GLOBAL'; // proto3 default: GLOBAL = 0
    const odd = unmodelled(a, a[UNKNOWN_FIELDS]);
    if (scope === 'GLOBAL' || odd.length || (scope !== 'NAMESPACE' && scope !== 'WORKLOAD_SELECTOR')) {
      const why = scope === 'GLOBAL' ? 'GLOBAL' : odd.length ? `treated as GLOBAL: ${odd.join('; ')}` : `unknown scope ${JSON.stringify(scope)}, treated as GLOBAL`;
      ix.global.push(`authorization ${name} (${why})`);
    } else if (scope === 'NAMESPACE') {
      const ns = str(a.namespace) ?? '';
      const l = ix.byNamespace.get(ns) ?? [];
      l.push(`authorization ${name} (NAMESPACE ${ns})`);
      ix.byNamespace.set(ns, l);
    }
  }
  return ix;
}

/** Compile a WDS snapshot. Problems (NACK reasons) are structural only; the validators caught the rest. */
export function compileWds(snap: XdsSnapshot, loc: Locality): { state: CompiledState; problems: string[] } {
  const addresses = snap.addresses ?? new Map<string, JsonObject>();
  const auths = indexAuthorizations(snap.authorizations ?? new Map());
  const notes: string[] = [];
  const skipped: SkippedEndpoint[] = [];
  const problems: string[] = [];

  const services = new Map<string, JsonObject>();
  const workloads: [string, JsonObject, Json | undefined][] = [];
  for (const [name, a] of addresses) {
    const w = obj(a.workload);
    const s = obj(a.service);
    if (w) workloads.push([name, w, a[UNKNOWN_FIELDS]]);
    else if (s) services.set(name, { ...s, ...(a[UNKNOWN_FIELDS] !== undefined ? { [UNKNOWN_FIELDS]: a[UNKNOWN_FIELDS] } : {}) });
    else notes.push(`Address ${name}: neither workload nor service (a newer type?): no entry`);
  }

  const ips = new Map<string, IpRec>();
  const slots = new Map<string, Slot>();
  const backends = new Map<string, ServiceBackend[]>();

  const ipRec = (b: Buffer): IpRec => {
    const bytes = ip16(b);
    const text = formatIp(bytes);
    let r = ips.get(text);
    if (!r) {
      r = { text, bytes, family: b.length === 4 ? 4 : 6, local: true, mesh: false, remoteNet: undefined, workload: undefined };
      ips.set(text, r);
    }
    return r;
  };
  const slot = (ip: IpRec, port: number, verdict: Verdict, reasons: string[]): void => {
    const key = reasons.join('\n');
    const k = `${ip.text}|${port}`;
    const cur = slots.get(k);
    // PROXY beats BYPASS; between equal verdicts the smallest reason key (order-independent)
    if (!cur || (cur.verdict === verdict ? key < cur.key : verdict === 'proxy')) slots.set(k, { ip, port, verdict, key });
  };

  for (const [uid, w, unknown] of workloads) {
    const ns = str(w.namespace) ?? '';
    const pod = str(w.name) ?? '';
    const wname = pod ? `${ns}/${pod}` : uid;
    const net = str(w.network) ?? '';
    const head = (): string => `WDS workload ${wname} (${uid})`;
    const addrs: IpRec[] = [];
    for (const a of arr(w.addresses)) {
      const b = ipBytes(a);
      if (typeof b === 'string') {
        problems.push(`Address ${uid}: workload.addresses: ${b}`);
        continue;
      }
      addrs.push(ipRec(b));
    }
    if (!addrs.length) {
      skipped.push({ cluster: uid, address: str(w.hostname) ?? '-', reason: 'no addresses (hostname-only workload): no entry' });
      continue;
    }

    // --- locality: why this workload is not a local bypass candidate, if it is not
    const tunnel = w.tunnel_protocol ?? 'NONE';
    // (reasons are texts only for this node's workloads: most of a mesh is elsewhere)
    const onNode = !!loc.nodeName && str(w.node) === loc.nodeName;
    const otherNet = net !== loc.network;
    const captured = tunnel === 'HBONE';
    const hostNet = w.network_mode !== undefined && w.network_mode !== 'STANDARD';
    const excluded = onNode ? isExcluded(loc.exclude, ns, pod, str(w.workload_name)) : undefined;
    const local = onNode && !otherNet && captured && !hostNet && !excluded;
    const notLocal = (): string[] => {
      const why: string[] = [];
      if (otherNet) why.push(`on network ${JSON.stringify(net)}, not ${JSON.stringify(loc.network)}`);
      if (!captured) why.push(`tunnel_protocol ${String(tunnel)}: not captured by ztunnel`);
      if (hostNet) why.push(`network_mode ${String(w.network_mode)}: shares the node's addresses`);
      return why;
    };
    for (const r of addrs) {
      if (!local) r.local = false;
      if (tunnel === 'HBONE') r.mesh = true;
      if (net !== loc.network && (r.remoteNet === undefined || net < r.remoteNet)) r.remoteNet = net;
      if (r.workload === undefined || wname < r.workload) r.workload = wname;
    }

    // --- ports: every (service port -> target port) that reaches this workload
    const svcMap = obj(w.services) ?? {};
    const targets: { tp: number; svc: string; sp: number }[] = [];
    for (const [svcName, pl] of Object.entries(svcMap)) {
      const svc = services.get(svcName);
      const svcPorts = svc ? arr(svc.ports).map((p) => obj(p) ?? {}) : [];
      const my: { port: number; targetPort: number }[] = [];
      for (const p of arr(obj(pl)?.ports)) {
        const po = obj(p);
        const sp = num(po?.service_port) ?? 0;
        let tp = num(po?.target_port) ?? 0;
        if (tp === 0) tp = num(svcPorts.find((x) => num(x.service_port) === sp)?.target_port) ?? 0;
        if (sp === 0) continue;
        my.push({ port: sp, targetPort: tp });
        if (tp === 0) {
          notes.push(`${head()}: service ${svcName} port ${sp}: no target port: no verdict`);
          continue;
        }
        targets.push({ tp, svc: svcName, sp });
      }
      const be = backends.get(svcName) ?? [];
      be.push({ workload: wname, uid, ips: addrs.map((r) => r.text), network: net, local, ports: my.sort((a, b) => a.port - b.port) });
      backends.set(svcName, be);
    }
    // Verdicts only where the kernel could act: a local destination. An excluded one gets
    // PROXY verdicts anyway, so explain says why.
    const onlyExcluded = excluded !== undefined && !otherNet && captured && !hostNet;
    if (!local && !onlyExcluded) {
      if (onNode) notes.push(`${head()}: ${[...notLocal(), ...(excluded ? [excluded] : [])].join('; ')}: not local`);
      continue;
    }
    if (!targets.length) {
      notes.push(`${head()}: no service names a port of it: no verdict (direct pod traffic keeps ztunnel's path)`);
      continue;
    }

    // --- why not L4-only, workload-wide
    const wlProxy: string[] = [];
    if (excluded) wlProxy.push(excluded);
    if (hasWaypoint(w)) wlProxy.push('the workload has a waypoint: L7 at the waypoint');
    if (w.native_tunnel === true) wlProxy.push('native_tunnel: it expects tunnelled traffic');
    if (w.application_tunnel !== undefined) wlProxy.push('application_tunnel: ztunnel speaks to it in a tunnel protocol');
    if (w.status !== undefined && w.status !== 'HEALTHY') wlProxy.push(`status ${String(w.status)}`);
    wlProxy.push(...unmodelled(w, unknown));
    for (const p of auths.global) wlProxy.push(`${p} selects it: ztunnel enforces it`);
    for (const p of auths.byNamespace.get(ns) ?? []) wlProxy.push(`${p} selects it: ztunnel enforces it`);
    for (const p of arr(w.authorization_policies).map(String)) {
      wlProxy.push(`authorization ${p} (WORKLOAD_SELECTOR)${auths.held.has(p) ? '' : ', not received'} selects it: ztunnel enforces it`);
    }

    for (const { tp, svc: svcName, sp } of targets) {
      const svc = services.get(svcName);
      const why = [...wlProxy];
      if (!svc) why.push(`service ${svcName} not received: unknown`);
      else {
        if (hasWaypoint(svc)) why.push(`service ${svcName} has a waypoint: L7 at the waypoint`);
        why.push(...unmodelled(svc, svc[UNKNOWN_FIELDS]).map((x) => `service ${svcName}: ${x}`));
      }
      const verdict: Verdict = why.length ? 'proxy' : 'bypass';
      const reasons = [head(), `port ${tp} (service ${svcName} port ${sp})`, ...(verdict === 'proxy' ? why.map((x) => `${x} => proxy`) : ['no waypoint, no authorization policy: L4 only => bypass'])];
      for (const r of addrs) slot(r, tp, verdict, reasons);
    }
  }

  // --- output, sorted as the Envoy compiler's
  const list = [...ips.values()].sort((a, b) => a.bytes.compare(b.bytes));
  const foreign = [...new Set(list.map((r) => r.remoteNet).filter((n): n is string => n !== undefined))].sort();
  const networks = [loc.network, ...foreign];
  const netId = new Map(networks.map((n, i) => [n, i] as const));
  const wlNames = ['', ...[...new Set(list.map((r) => r.workload).filter((n): n is string => n !== undefined))].sort()];
  const wlId = new Map(wlNames.map((n, i) => [n, i] as const));
  const endpoints: EndpointEntry[] = list.map((r) => {
    const networkId = r.remoteNet === undefined ? 0 : (netId.get(r.remoteNet) ?? 0);
    return { cidr: `${r.text}/${r.family === 4 ? 32 : 128}`, local: r.local && networkId === 0, mesh: r.mesh, networkId, workloadId: r.workload === undefined ? 0 : (wlId.get(r.workload) ?? 0) };
  });
  const sortedSlots = [...slots.values()].sort((a, b) => a.ip.bytes.compare(b.ip.bytes) || a.port - b.port);
  const ruleKeys = [...new Set(sortedSlots.map((s) => s.key))].sort();
  const ruleId = new Map(ruleKeys.map((k, i) => [k, i] as const));
  const rules: RuleInfo[] = ruleKeys.map((k, i) => ({ id: i, reasons: k.split('\n') }));
  // a verdict for an address that one claim made non-local or foreign is harmless (the kernel
  // checks locality), but a foreign-network address never gets one, as in the Envoy compiler
  const policies: PolicyEntry[] = sortedSlots.filter((s) => s.ip.remoteNet === undefined).map((s) => ({ ip: s.ip.text, port: s.port, verdict: s.verdict, ruleId: ruleId.get(s.key) ?? 0 }));

  const svcOut: ServiceVip[] = [...services.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, s]) => {
      const vips: ServiceVip['vips'] = [];
      for (const a of arr(s.addresses)) {
        const b = ipBytes(obj(a)?.address);
        if (typeof b !== 'string') vips.push({ network: str(obj(a)?.network) ?? '', ip: formatIp(ip16(b)) });
      }
      return {
        name,
        namespace: str(s.namespace) ?? '',
        hostname: str(s.hostname) ?? '',
        vips,
        ports: arr(s.ports).map((p) => ({ port: num(obj(p)?.service_port) ?? 0, targetPort: num(obj(p)?.target_port) ?? 0, appProtocol: String(obj(p)?.app_protocol ?? 'UNKNOWN') })),
        waypoint: hasWaypoint(s),
        endpoints: (backends.get(name) ?? []).sort((a, b) => (a.workload < b.workload ? -1 : a.workload > b.workload ? 1 : 0)),
      };
    });

  skipped.sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0));
  const vipEntries = serviceEntries(svcOut, policies, rules, loc.network);
  return {
    state: { endpoints, policies, rules, networks, workloads: wlNames, skipped, notes: [...new Set(notes)].sort(), wdsServices: svcOut, services: vipEntries },
    problems,
  };
}

/**
 * WDS Services as service-VIP entries (the maps of bpf/connect.c): one per
 * VIP:port on this node's network. BYPASS only without a waypoint and when
 * every local backend's own verdict at its target port is BYPASS (the connect
 * hook checks the backend's verdict again); otherwise PROXY, and the connect is
 * left to kube-proxy / ztunnel. A VIP:port named twice: PROXY wins.
 */
export function serviceEntries(svcs: readonly ServiceVip[], policies: readonly PolicyEntry[], rules: RuleInfo[], network: string): ServiceEntry[] {
  const verdictOf = new Map(policies.map((p) => [`${p.ip}|${p.port}`, p.verdict] as const));
  const byKey = new Map<string, ServiceEntry>();
  for (const s of svcs) {
    for (const v of s.vips) {
      if (v.network !== '' && v.network !== network) continue;
      const fam = v.ip.includes(':') ? 6 : 4;
      for (const p of s.ports) {
        if (p.port <= 0) continue;
        const backends = s.endpoints
          .filter((e) => e.local)
          .flatMap((e) => {
            const tp = e.ports.find((x) => x.port === p.port)?.targetPort || p.targetPort;
            return tp > 0 ? e.ips.filter((ip) => (ip.includes(':') ? 6 : 4) === fam).map((ip) => ({ ip, port: tp })) : [];
          })
          .sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
        const allBypass = backends.length > 0 && backends.every((b) => verdictOf.get(`${b.ip}|${b.port}`) === 'bypass');
        const verdict: Verdict = !s.waypoint && allBypass ? 'bypass' : 'proxy';
        const why = s.waypoint
          ? 'the service has a waypoint: L7, PROXY'
          : allBypass
            ? 'every local backend is BYPASS at its target port'
            : backends.length
              ? 'a local backend is not BYPASS: PROXY'
              : 'no local backend: kube-proxy / ztunnel handle every connect';
        const id = rules.length;
        rules.push({ id, reasons: [`WDS service ${s.name} ${v.ip.includes(':') ? `[${v.ip}]` : v.ip}:${p.port}`, why] });
        const key = `${v.ip}|${p.port}`;
        const prev = byKey.get(key);
        if (prev && (prev.verdict === 'proxy' || verdict === 'proxy')) byKey.set(key, { ...prev, verdict: 'proxy', ruleId: prev.verdict === 'proxy' ? prev.ruleId : id });
        else if (!prev) byKey.set(key, { vip: v.ip, port: p.port, verdict, backends, ruleId: id });
      }
    }
  }
  return [...byKey.values()].sort((a, b) => (a.vip < b.vip ? -1 : a.vip > b.vip ? 1 : a.port - b.port));
}
