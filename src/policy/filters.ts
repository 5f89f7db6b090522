// Classification of Envoy network filters for the L4/L7 verdict. Filters are
// recognised by typed_config "@type" (the legacy filter name only when there is
// no typed_config). Only filters listed here as harmless may sit next to a
// tcp_proxy in a BYPASS chain; anything unknown makes the chain PROXY, so an
// unknown filter never widens what is bypassed (README, "What decides a bypass").
import type { Json, JsonObject } from '../xds/types.js';
import { arr, obj, path, str } from './json.js';

const T = 'type.googleapis.com/';

export const TCP_PROXY_TYPES = new Set([`${T}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`, `${T}envoy.config.filter.network.tcp_proxy.v2.TcpProxy`]);
export const HCM_TYPES = new Set([
  `${T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
  `${T}envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager`,
]);
export const AUTHZ_TYPES = new Set([
  `${T}envoy.extensions.filters.network.rbac.v3.RBAC`,
  `${T}envoy.config.filter.network.rbac.v2.RBAC`,
  `${T}envoy.extensions.filters.network.ext_authz.v3.ExtAuthz`,
  `${T}envoy.config.filter.network.ext_authz.v2.ExtAuthz`,
]);
/** Protocol-aware network filters: the bytes must reach Envoy. */
const L7_TYPE_MARKERS = [
  '.redis_proxy.',
  '.mongo_proxy.',
  '.mysql_proxy.',
  '.postgres_proxy.',
  '.kafka_broker.',
  '.kafka_mesh.',
  '.dubbo_proxy.',
  '.thrift_proxy.',
  '.zookeeper_proxy.',
  '.sni_cluster.',
  '.sni_dynamic_forward_proxy.',
];
/**
 * Filters that only observe or annotate a connection (Istio metadata exchange,
 * Istio stats, filter-state setters). They neither authorize nor route bytes.
 */
const HARMLESS_TYPES = new Set([
  `${T}envoy.tcp.metadataexchange.config.MetadataExchange`,
  `${T}io.istio.network.metadata_exchange.Config`,
  `${T}stats.PluginConfig`,
  `${T}envoy.extensions.filters.network.set_filter_state.v3.Config`,
]);
const TYPED_STRUCT_TYPES = new Set([`${T}udpa.type.v1.TypedStruct`, `${T}xds.type.v3.TypedStruct`]);
const WASM_TYPES = new Set([`${T}envoy.extensions.filters.network.wasm.v3.Wasm`]);
/** Istio's Wasm builds of stats / metadata exchange (pre-native extensions). */
const HARMLESS_WASM = new Set(['stats_inbound', 'stats_outbound', 'envoy.wasm.stats', 'envoy.wasm.metadata_exchange']);

const LEGACY_TCP = new Set(['envoy.tcp_proxy', 'envoy.filters.network.tcp_proxy']);
const LEGACY_HCM = new Set(['envoy.http_connection_manager', 'envoy.filters.network.http_connection_manager']);
const LEGACY_AUTHZ = new Set(['envoy.filters.network.rbac', 'envoy.ext_authz', 'envoy.filters.network.ext_authz']);

export type FilterKind = 'tcp_proxy' | 'http' | 'authz' | 'l7' | 'harmless' | 'unknown';

export interface FilterInfo {
  kind: FilterKind;
  /** "name (@type)" for reasons */
  label: string;
  /** tcp_proxy: upstream cluster(s); HCM: clusters named by inline routes */
  clusters: string[];
  /** HCM whose routes come from RDS (not in the snapshot) */
  rds: boolean;
  /** tcp_proxy that tunnels (HTTP CONNECT / HBONE): not plain L4 to the endpoint */
  tunnel: boolean;
  /** tcp_proxy with neither cluster nor weighted_clusters (Envoy refuses it) */
  noCluster: boolean;
}

function shortType(t: string): string {
  return t.startsWith(T) ? t.slice(T.length) : t;
}

function tcpClusters(cfg: JsonObject | undefined): string[] {
  if (!cfg) return [];
  const out: string[] = [];
  const c = str(cfg['cluster']);
  if (c) out.push(c);
  for (const w of arr(path(cfg, 'weighted_clusters', 'clusters'))) {
    const n = str(path(w, 'name'));
    if (n) out.push(n);
  }
  return out;
}

function hcmClusters(cfg: JsonObject | undefined): { clusters: string[]; rds: boolean } {
  const rc = obj(cfg?.['route_config']);
  if (!rc) return { clusters: [], rds: cfg?.['rds'] !== undefined || cfg?.['scoped_routes'] !== undefined };
  const out = new Set<string>();
  for (const vh of arr(rc['virtual_hosts'])) {
    for (const r of arr(path(vh, 'routes'))) {
      const route = obj(path(r, 'route'));
      if (!route) continue;
      const c = str(route['cluster']);
      if (c) out.add(c);
      for (const w of arr(path(route, 'weighted_clusters', 'clusters'))) {
        const n = str(path(w, 'name'));
        if (n) out.add(n);
      }
    }
  }
  return { clusters: [...out], rds: false };
}

function make(kind: FilterKind, label: string, extra: Partial<FilterInfo> = {}): FilterInfo {
  return { kind, label, clusters: [], rds: false, tunnel: false, noCluster: false, ...extra };
}

function byType(type: string, cfg: JsonObject | undefined, name: string): FilterInfo {
  const label = `${name} (${shortType(type)})`;
  if (TCP_PROXY_TYPES.has(type)) {
    const clusters = tcpClusters(cfg);
    return make('tcp_proxy', label, {
      clusters,
      tunnel: cfg?.['tunneling_config'] !== undefined,
      noCluster: clusters.length === 0,
    });
  }
  if (HCM_TYPES.has(type)) return make('http', label, hcmClusters(cfg));
  if (AUTHZ_TYPES.has(type)) return make('authz', label);
  if (HARMLESS_TYPES.has(type)) return make('harmless', label);
  if (TYPED_STRUCT_TYPES.has(type)) {
    // A wrapper: judge what it wraps, never the wrapper itself.
    const inner = str(cfg?.['type_url']);
    if (!inner) return make('unknown', label);
    const r = byType(inner, obj(cfg?.['value']), name);
    return { ...r, label: `${name} (TypedStruct ${shortType(inner)})` };
  }
  if (WASM_TYPES.has(type)) {
    const rootId = str(path(cfg, 'config', 'root_id'));
    const code = str(path(cfg, 'config', 'vm_config', 'code', 'local', 'inline_string'));
    if ((rootId && HARMLESS_WASM.has(rootId)) || (code && HARMLESS_WASM.has(code))) return make('harmless', label);
    return make('unknown', label);
  }
  if (L7_TYPE_MARKERS.some((m) => type.includes(m))) return make('l7', label);
  return make('unknown', label);
}

/** Classify one entry of filter_chains[].filters. */
export function classifyFilter(f: Json | undefined): FilterInfo {
  const o = obj(f);
  const name = str(o?.['name']) ?? '(unnamed)';
  const tc = obj(o?.['typed_config']);
  if (tc) {
    const type = str(tc['@type']);
    if (!type) return make('unknown', `${name} (typed_config without @type)`);
    return byType(type, tc, name);
  }
  // Legacy configs: no typed_config, recognised by name; v2 `config` Struct.
  const cfg = obj(o?.['config']);
  if (LEGACY_TCP.has(name)) {
    const clusters = tcpClusters(cfg);
    return make('tcp_proxy', name, { clusters, tunnel: cfg?.['tunneling_config'] !== undefined, noCluster: clusters.length === 0 });
  }
  if (LEGACY_HCM.has(name)) return make('http', name, hcmClusters(cfg));
  if (LEGACY_AUTHZ.has(name)) return make('authz', name);
  return make('unknown', name);
}
