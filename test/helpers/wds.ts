// WDS resource builders for tests (proto3 JSON with "@type", bytes in base64),
// shared by the WDS client, file and compiler tests. The fake istiod is the
// generic FakeAdsServer (test/helpers/ads-server.ts): it encodes these with the
// vendored Istio protos like any other resource.
import { parseIp } from '../../src/net/ip.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION, type JsonObject } from '../../src/xds/types.js';

/** An IP as proto bytes in JSON: 4 bytes for IPv4, 16 for IPv6, base64. */
export function ipB64(ip: string): string {
  const p = parseIp(ip);
  return (p.family === 4 ? p.bytes.subarray(12) : p.bytes).toString('base64');
}

export interface WorkloadSpec {
  uid?: string;
  name: string;
  namespace: string;
  ips: string[];
  node: string;
  network?: string;
  /** default HBONE (captured by ztunnel) */
  tunnel?: 'HBONE' | 'NONE' | 'LEGACY_ISTIO_MTLS';
  waypoint?: string;
  /** "ns/hostname" -> [service_port, target_port][] */
  services?: Record<string, [number, number][]>;
  policies?: string[];
  extra?: JsonObject;
}

export function workloadUid(ns: string, name: string): string {
  return `Kubernetes//Pod/${ns}/${name}`;
}

export function workload(w: WorkloadSpec): JsonObject {
  const body: JsonObject = {
    uid: w.uid ?? workloadUid(w.namespace, w.name),
    name: w.name,
    namespace: w.namespace,
    addresses: w.ips.map(ipB64),
    tunnel_protocol: w.tunnel ?? 'HBONE',
    trust_domain: 'cluster.local',
    service_account: 'default',
    node: w.node,
    cluster_id: 'Kubernetes',
  };
  if (w.network) body.network = w.network;
  if (w.waypoint) body.waypoint = { address: { network: '', address: ipB64(w.waypoint) }, hbone_mtls_port: 15008 };
  if (w.services) {
    const m: JsonObject = {};
    for (const [k, ports] of Object.entries(w.services)) m[k] = { ports: ports.map(([sp, tp]) => ({ service_port: sp, target_port: tp })) };
    body.services = m;
  }
  if (w.policies) body.authorization_policies = w.policies;
  Object.assign(body, w.extra ?? {});
  return { '@type': TYPE_ADDRESS, workload: body };
}

export interface ServiceSpec {
  name: string;
  namespace: string;
  vips: string[];
  /** [service_port, target_port, app_protocol?][] */
  ports: [number, number, string?][];
  waypoint?: string;
  extra?: JsonObject;
}

export function serviceHost(s: { name: string; namespace: string }): string {
  return `${s.name}.${s.namespace}.svc.cluster.local`;
}

export function service(s: ServiceSpec): JsonObject {
  const body: JsonObject = {
    name: s.name,
    namespace: s.namespace,
    hostname: serviceHost(s),
    addresses: s.vips.map((v) => ({ network: '', address: ipB64(v) })),
    ports: s.ports.map(([sp, tp, ap]) => ({ service_port: sp, target_port: tp, ...(ap ? { app_protocol: ap } : {}) })),
  };
  if (s.waypoint) body.waypoint = { address: { network: '', address: ipB64(s.waypoint) }, hbone_mtls_port: 15008 };
  Object.assign(body, s.extra ?? {});
  return { '@type': TYPE_ADDRESS, service: body };
}

export function authorization(a: { name: string; namespace: string; scope: 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR'; action?: 'ALLOW' | 'DENY' }): JsonObject {
  return { '@type': TYPE_AUTHORIZATION, name: a.name, namespace: a.namespace, scope: a.scope, action: a.action ?? 'ALLOW', groups: [] };
}

/** The resource name istiod gives an Address: the workload uid, or "namespace/hostname". */
export function addressName(r: JsonObject): string {
  const w = r.workload as JsonObject | undefined;
  if (w) return w.uid as string;
  const s = r.service as JsonObject;
  return `${s.namespace as string}/${s.hostname as string}`;
}
