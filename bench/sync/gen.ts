// Istio-shaped snapshots of N endpoints for the sync benchmark: N/100 services,
// 100 endpoints each, every tenth pod dual-stack; two thirds of the services
// plain TCP (BYPASS), one third HTTP (PROXY). `churn` shifts 1% of the pods.
import type { JsonObject, XdsSnapshot } from '../../src/xds/types.js';

export function makeSnapshot(n: number, churn: number): XdsSnapshot {
  const clusters = new Map<string, JsonObject>();
  const endpoints = new Map<string, JsonObject>();
  const listeners = new Map<string, JsonObject>();
  const services = Math.max(1, Math.ceil(n / 100));
  for (let c = 0; c < services; c++) {
    const port = 10000 + c;
    const name = `outbound|${port}||svc${c}.default.svc.cluster.local`;
    clusters.set(name, { name, type: 'EDS', eds_cluster_config: { service_name: name, eds_config: { ads: {} } } });
    const lbs: JsonObject[] = [];
    for (let i = 0; i < 100 && c * 100 + i < n; i++) {
      let p = c * 100 + i;
      if (churn && p % 100 === 0) p += 1 << 20; // 1% of pods replaced by new ones
      const ep: JsonObject = { address: { socket_address: { address: `10.${(p >> 16) & 255}.${(p >> 8) & 255}.${p & 255}`, port_value: port } } };
      if (p % 10 === 0) ep['additional_addresses'] = [{ address: { socket_address: { address: `fd00::${(p >> 16).toString(16)}:${(p & 0xffff).toString(16)}`, port_value: port } } }];
      lbs.push({ endpoint: ep });
    }
    endpoints.set(name, { cluster_name: name, endpoints: [{ lb_endpoints: lbs }] });
    const vip = `10.96.${c >> 8}.${c & 255}`;
    const filter =
      c % 3 === 2
        ? {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: name,
              rds: { route_config_name: String(port) },
            },
          }
        : { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: name, cluster: name } };
    listeners.set(`${vip}_${port}`, { name: `${vip}_${port}`, address: { socket_address: { address: vip, port_value: port } }, filter_chains: [{ filters: [filter] }] });
  }
  return { clusters, endpoints, listeners, versions: {} };
}
