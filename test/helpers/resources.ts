// The one set of xDS resource builders for tests (proto3 JSON with "@type"):
// the xDS client/file/delta tests and the agent's kernel tests.
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type JsonObject } from '../../src/xds/types.js';

const T = 'type.googleapis.com/envoy.';

export function edsCluster(name: string, serviceName?: string): JsonObject {
  const c: JsonObject = {
    '@type': TYPE_CLUSTER,
    name,
    type: 'EDS',
    connect_timeout: '10s',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
  };
  if (serviceName) (c.eds_cluster_config as JsonObject).service_name = serviceName;
  return c;
}

export function staticCluster(name: string, ip: string, port: number): JsonObject {
  return {
    '@type': TYPE_CLUSTER,
    name,
    connect_timeout: '1s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: ip, port_value: port } } } }] }] },
  };
}

export function cla(name: string, addrs: [string, number][]): JsonObject {
  return {
    '@type': TYPE_ENDPOINT,
    cluster_name: name,
    endpoints: [{ lb_endpoints: addrs.map(([ip, port]) => ({ endpoint: { address: { socket_address: { address: ip, port_value: port } } } })) }],
  };
}

export function tcpProxyFilter(cluster: string, statPrefix = cluster): JsonObject {
  return { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': `${T}extensions.filters.network.tcp_proxy.v3.TcpProxy`, stat_prefix: statPrefix, cluster } };
}

/** An HTTP connection manager whose routes come from RDS (Istio's outbound listener for `port`). */
export function hcmRdsFilter(port: number): JsonObject {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': `${T}extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
      stat_prefix: `outbound_0.0.0.0_${port}`,
      rds: { route_config_name: String(port), config_source: { ads: {} } },
      http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': `${T}extensions.filters.http.router.v3.Router` } }],
    },
  };
}

export function listener(name: string, ip: string, port: number, filters: JsonObject[]): JsonObject {
  return { '@type': TYPE_LISTENER, name, address: { socket_address: { address: ip, port_value: port } }, filter_chains: [{ filters }] };
}

export function tcpListener(name: string, ip: string, port: number, cluster: string): JsonObject {
  return listener(name, ip, port, [tcpProxyFilter(cluster, name)]);
}
