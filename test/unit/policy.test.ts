// Policy compiler against Istio-shaped resources built here from the Envoy v3
// proto shapes (proto3-JSON, snake_case, Any expanded with "@type").
import test from 'ava';
import type { JsonObject, XdsSnapshot } from '../../src/xds/types.js';
import { compile, explain, validate, type CompiledState } from '../../src/policy/index.js';
import type { Locality } from '../../src/policy/types.js';

const T = 'type.googleapis.com/';
const TCP = `${T}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`;
const HCM = `${T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
const RBAC = `${T}envoy.extensions.filters.network.rbac.v3.RBAC`;
const TS = `${T}udpa.type.v1.TypedStruct`;

const mx: JsonObject = {
  name: 'istio.metadata_exchange',
  typed_config: { '@type': TS, type_url: `${T}envoy.tcp.metadataexchange.config.MetadataExchange`, value: { protocol: 'istio-peer-exchange' } },
};
const stats: JsonObject = {
  name: 'istio.stats',
  typed_config: { '@type': TS, type_url: `${T}stats.PluginConfig`, value: { reporter: 'SERVER' } },
};
const tcp = (cluster: string): JsonObject => ({ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP, stat_prefix: cluster, cluster } });
const hcmRds = (route: string): JsonObject => ({
  name: 'envoy.filters.network.http_connection_manager',
  typed_config: {
    '@type': HCM,
    stat_prefix: route,
    rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: route },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': `${T}envoy.extensions.filters.http.router.v3.Router` } }],
  },
});
const rbac: JsonObject = {
  name: 'envoy.filters.network.rbac',
  typed_config: { '@type': RBAC, stat_prefix: 'tcp.', rules: { policies: { 'ns[default]-policy[deny-all]-rule[0]': { permissions: [{ any: true }], principals: [{ any: true }] } } } },
};

const edsCluster = (name: string): JsonObject => ({
  '@type': `${T}envoy.config.cluster.v3.Cluster`,
  name,
  type: 'EDS',
  eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
});
const origDstCluster = (name: string): JsonObject => ({ name, type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '10s' });

interface Ep {
  ip: string;
  port: number;
  extra?: string[];
  network?: string;
  workload?: string;
}
function cla(name: string, eps: Ep[]): JsonObject {
  return {
    cluster_name: name,
    endpoints: [
      {
        locality: {},
        lb_endpoints: eps.map((e) => {
          const istio: JsonObject = { workload: e.workload ?? 'w;default;w;v1;Kubernetes' };
          if (e.network !== undefined) istio['network'] = e.network;
          const endpoint: JsonObject = { address: { socket_address: { address: e.ip, port_value: e.port } } };
          if (e.extra) endpoint['additional_addresses'] = e.extra.map((ip) => ({ address: { socket_address: { address: ip, port_value: e.port } } }));
          return { endpoint, health_status: 'HEALTHY', metadata: { filter_metadata: { istio } }, load_balancing_weight: 1 };
        }),
      },
    ],
  };
}

const chain = (name: string, match: JsonObject | undefined, filters: JsonObject[]): JsonObject => {
  const c: JsonObject = { name, filters };
  if (match) c['filter_chain_match'] = match;
  return c;
};

function snapshot(clusters: JsonObject[], clas: JsonObject[], listeners: JsonObject[]): XdsSnapshot {
  return {
    clusters: new Map(clusters.map((c) => [c['name'] as string, c])),
    endpoints: new Map(clas.map((c) => [c['cluster_name'] as string, c])),
    listeners: new Map(listeners.map((l) => [l['name'] as string, l])),
    versions: {},
  };
}

const loc: Locality = {
  // two NICs (198.18.0.10 and 198.19.0.10) and an IPv6 node address
  nodeIps: ['198.18.0.10', '198.19.0.10', 'fd00:18::10'],
  podCidrs: ['10.244.1.0/24', 'fd00:244:1::/64'],
  network: 'net-a',
};

const TCP_ECHO = 'outbound|9000||tcp-echo.default.svc.cluster.local';
const HTTPBIN = 'outbound|8000||httpbin.default.svc.cluster.local';
const AUTO = 'outbound|7070||auto.default.svc.cluster.local';
const SECURE = 'outbound|9100||secure-tcp.default.svc.cluster.local';
const HOSTSVC = 'outbound|9200||host-agent.kube-system.svc.cluster.local';
const MAGIC = 'outbound|9400||magic.default.svc.cluster.local';
const AMBIENT = 'outbound|9300||ambient.default.svc.cluster.local';
const REMOTE = 'outbound|9500||remote.default.svc.cluster.local';

function istioNode(): XdsSnapshot {
  const clusters = [
    edsCluster(TCP_ECHO),
    edsCluster(HTTPBIN),
    edsCluster(AUTO),
    edsCluster(SECURE),
    edsCluster(HOSTSVC),
    edsCluster(MAGIC),
    edsCluster(AMBIENT),
    edsCluster(REMOTE),
    origDstCluster('inbound|9000||'),
    origDstCluster('inbound|7070||'),
    origDstCluster('inbound|9100||'),
    origDstCluster('inbound|9200||'),
    origDstCluster('inbound|9400||'),
    { name: 'PassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED' },
    { name: 'BlackHoleCluster', type: 'STATIC' },
    origDstCluster('InboundPassthroughClusterIpv4'),
  ];
  const clas = [
    cla(TCP_ECHO, [
      // dual-stack local pod: both addresses recorded
      { ip: '10.244.1.5', port: 9000, extra: ['fd00:244:1::5'], workload: 'tcp-echo-v1;default;tcp-echo;v1;Kubernetes' },
      // a pod on another node of this network
      { ip: '10.244.2.7', port: 9000, workload: 'tcp-echo-v2;default;tcp-echo;v2;Kubernetes' },
      // east-west gateway of another network (Istio multi-network)
      { ip: '203.0.113.9', port: 15443, network: 'net-b' },
    ]),
    cla(HTTPBIN, [{ ip: '10.244.1.6', port: 80, workload: 'httpbin;default;httpbin;v1;Kubernetes' }]),
    cla(AUTO, [{ ip: '10.244.1.7', port: 7070 }]),
    cla(SECURE, [{ ip: '10.244.1.8', port: 9100 }]),
    // hostNetwork pod on the node's second NIC
    cla(HOSTSVC, [{ ip: '198.19.0.10', port: 9200, workload: 'host-agent;kube-system;host-agent;v1;Kubernetes' }]),
    cla(MAGIC, [{ ip: '10.244.1.11', port: 9400 }]),
    {
      cluster_name: AMBIENT,
      endpoints: [
        {
          lb_endpoints: [
            {
              endpoint: { address: { envoy_internal_address: { server_listener_name: 'connect_originate', endpoint_id: '10.244.1.12:9300' } } },
              metadata: { filter_metadata: { 'envoy.filters.listener.original_dst': { local: '10.244.1.12:9300' } } },
            },
          ],
        },
      ],
    },
    cla(REMOTE, [
      // address inside our pod CIDR but labelled with another network: never local
      { ip: '10.244.1.9', port: 9500, network: 'net-b' },
      // same address seen twice with conflicting networks: the foreign one wins
      { ip: '10.244.1.10', port: 9500 },
      { ip: '10.244.1.10', port: 9500, network: 'net-c' },
    ]),
  ];
  const virtualInbound: JsonObject = {
    name: 'virtualInbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
    traffic_direction: 'INBOUND',
    use_original_dst: true,
    listener_filters: [
      { name: 'envoy.filters.listener.original_dst', typed_config: { '@type': `${T}envoy.extensions.filters.listener.original_dst.v3.OriginalDst` } },
      { name: 'envoy.filters.listener.http_inspector', typed_config: { '@type': `${T}envoy.extensions.filters.listener.http_inspector.v3.HttpInspector` } },
    ],
    filter_chains: [
      chain('virtualInbound-blackhole', { destination_port: 15006 }, [tcp('BlackHoleCluster')]),
      // TCP port: plain tcp_proxy with Istio's harmless filters => BYPASS
      chain('0.0.0.0_9000', { destination_port: 9000 }, [mx, stats, tcp('inbound|9000||')]),
      // HTTP port => PROXY
      chain('0.0.0.0_80', { destination_port: 80 }, [mx, hcmRds('inbound|80||')]),
      // sniffed port: HTTP when ALPN says so, else TCP => PROXY
      chain('0.0.0.0_7070', { destination_port: 7070, application_protocols: ['http/1.1', 'h2c'] }, [hcmRds('inbound|7070||')]),
      chain('0.0.0.0_7070', { destination_port: 7070 }, [tcp('inbound|7070||')]),
      // TCP port with an authorization policy => PROXY
      chain('0.0.0.0_9100', { destination_port: 9100 }, [mx, rbac, tcp('inbound|9100||')]),
      // second-NIC host endpoint, TCP => BYPASS
      chain('0.0.0.0_9200', { destination_port: 9200 }, [tcp('inbound|9200||')]),
      // unknown filter => never BYPASS
      chain('0.0.0.0_9400', { destination_port: 9400 }, [{ name: 'acme.magic', typed_config: { '@type': `${T}acme.filters.network.Magic` } }, tcp('inbound|9400||')]),
      // catch-all
      chain('virtualInbound', { prefix_ranges: [{ address_prefix: '0.0.0.0', prefix_len: 0 }] }, [tcp('InboundPassthroughClusterIpv4')]),
    ],
  };
  const virtualOutbound: JsonObject = {
    name: 'virtualOutbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
    use_original_dst: true,
    traffic_direction: 'OUTBOUND',
    filter_chains: [chain('virtualOutbound-blackhole', { destination_port: 15001 }, [tcp('BlackHoleCluster')]), chain('virtualOutbound-catchall-tcp', undefined, [tcp('PassthroughCluster')])],
  };
  const tcpEchoOut: JsonObject = {
    name: '10.96.0.20_9000',
    address: { socket_address: { address: '10.96.0.20', port_value: 9000 } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [chain('', undefined, [mx, tcp(TCP_ECHO)])],
    bind_to_port: false,
  };
  const httpOut: JsonObject = {
    name: '0.0.0.0_8000',
    address: { socket_address: { address: '0.0.0.0', port_value: 8000 } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [chain('', undefined, [hcmRds('8000')])],
    bind_to_port: false,
  };
  // The outbound side of the unknown-filter service says BYPASS; the inbound side must still win.
  const magicOut: JsonObject = {
    name: '10.96.0.40_9400',
    address: { socket_address: { address: '10.96.0.40', port_value: 9400 } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [chain('', undefined, [tcp(MAGIC)])],
  };
  const remoteOut: JsonObject = {
    name: '10.96.0.50_9500',
    address: { socket_address: { address: '10.96.0.50', port_value: 9500 } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [chain('', undefined, [tcp(REMOTE)])],
  };
  return snapshot(clusters, clas, [virtualInbound, virtualOutbound, tcpEchoOut, httpOut, magicOut, remoteOut]);
}

function ep(s: CompiledState, cidr: string) {
  return s.endpoints.find((e) => e.cidr === cidr);
}
function pol(s: CompiledState, ip: string, port: number) {
  return s.policies.find((p) => p.ip === ip && p.port === port);
}

test('locality: pod CIDRs and node IPs are local entries; pod CIDRs are mesh', (t) => {
  const s = compile(istioNode(), loc);
  t.deepEqual(ep(s, '10.244.1.0/24'), { cidr: '10.244.1.0/24', local: true, mesh: true, networkId: 0, workloadId: 0 });
  t.deepEqual(ep(s, 'fd00:244:1::/64'), { cidr: 'fd00:244:1::/64', local: true, mesh: true, networkId: 0, workloadId: 0 });
  t.deepEqual(ep(s, '198.18.0.10/32'), { cidr: '198.18.0.10/32', local: true, mesh: false, networkId: 0, workloadId: 0 });
  t.is(ep(s, 'fd00:18::10/128')?.local, true);
  t.deepEqual(s.networks, ['net-a', 'net-b', 'net-c']);
});

test('dual-stack endpoint: both addresses recorded, both LOCAL, same workload', (t) => {
  const s = compile(istioNode(), loc);
  const v4 = ep(s, '10.244.1.5/32');
  const v6 = ep(s, 'fd00:244:1::5/128');
  t.truthy(v4);
  t.truthy(v6);
  t.true(v4?.local && v6?.local && v4.mesh && v6.mesh);
  t.is(s.workloads[v4?.workloadId ?? 0], 'default/tcp-echo-v1');
  t.is(v6?.workloadId, v4?.workloadId);
  t.is(pol(s, '10.244.1.5', 9000)?.verdict, 'bypass');
  t.is(pol(s, 'fd00:244:1::5', 9000)?.verdict, 'bypass');
});

test('non-local mesh endpoint is emitted with local=false', (t) => {
  const s = compile(istioNode(), loc);
  t.deepEqual(ep(s, '10.244.2.7/32'), { cidr: '10.244.2.7/32', local: false, mesh: true, networkId: 0, workloadId: s.workloads.indexOf('default/tcp-echo-v2') });
});

test('TCP port with tcp_proxy on inbound and outbound => BYPASS with reasons', (t) => {
  const s = compile(istioNode(), loc);
  const p = pol(s, '10.244.1.5', 9000);
  t.is(p?.verdict, 'bypass');
  const reasons = s.rules[p?.ruleId ?? -1]?.reasons ?? [];
  t.true(
    reasons.some((r) => r.startsWith('listener ')),
    reasons.join(' | '),
  );
  t.true(reasons.some((r) => /=> bypass/.test(r)));
});

test('HTTP port => PROXY (inbound HCM and outbound HCM via RDS convention)', (t) => {
  const s = compile(istioNode(), loc);
  const p = pol(s, '10.244.1.6', 80);
  t.is(p?.verdict, 'proxy');
  t.regex(s.rules[p?.ruleId ?? -1]?.reasons.join('\n') ?? '', /HttpConnectionManager|HTTP/);
  // Only the outbound listener knows about httpbin in a snapshot without virtualInbound.
  const snap = istioNode();
  snap.listeners.delete('virtualInbound');
  const s2 = compile(snap, loc);
  t.is(pol(s2, '10.244.1.6', 80)?.verdict, 'proxy');
  t.regex(s2.rules[pol(s2, '10.244.1.6', 80)?.ruleId ?? -1]?.reasons.join('\n') ?? '', /outbound\|8000\|/);
});

test('sniffed port (application_protocols + tcp_proxy fallback) => PROXY', (t) => {
  const s = compile(istioNode(), loc);
  const p = pol(s, '10.244.1.7', 7070);
  t.is(p?.verdict, 'proxy');
  t.regex(s.rules[p?.ruleId ?? -1]?.reasons.join('\n') ?? '', /application_protocols|HTTP/);
});

test('RBAC network filter => PROXY', (t) => {
  const s = compile(istioNode(), loc);
  const p = pol(s, '10.244.1.8', 9100);
  t.is(p?.verdict, 'proxy');
  t.regex(s.rules[p?.ruleId ?? -1]?.reasons.join('\n') ?? '', /authorization/);
});

test('unknown network filter => PROXY even when another listener says BYPASS', (t) => {
  const s = compile(istioNode(), loc);
  const p = pol(s, '10.244.1.11', 9400);
  t.is(p?.verdict, 'proxy');
  t.regex(s.rules[p?.ruleId ?? -1]?.reasons.join('\n') ?? '', /unknown/);
  // Without the inbound listener, the outbound tcp_proxy alone is BYPASS: so the above is the merge.
  const snap = istioNode();
  snap.listeners.delete('virtualInbound');
  t.is(pol(compile(snap, loc), '10.244.1.11', 9400)?.verdict, 'bypass');
});

test('node with two NICs: endpoint on the second NIC IP is LOCAL and gets its verdict', (t) => {
  const s = compile(istioNode(), loc);
  t.deepEqual(ep(s, '198.19.0.10/32'), {
    cidr: '198.19.0.10/32',
    local: true,
    mesh: true,
    networkId: 0,
    workloadId: s.workloads.indexOf('kube-system/host-agent'),
  });
  t.is(pol(s, '198.19.0.10', 9200)?.verdict, 'bypass');
});

test('envoy_internal_address endpoint: no entry, reason kept for explain', (t) => {
  const s = compile(istioNode(), loc);
  t.is(ep(s, '10.244.1.12/32'), undefined);
  t.is(pol(s, '10.244.1.12', 9300), undefined);
  const sk = s.skipped.find((x) => x.cluster === AMBIENT);
  t.is(sk?.address, '10.244.1.12:9300');
  t.regex(sk?.reason ?? '', /envoy_internal_address/);
  const e = explain(s, { ip: '10.244.1.12', port: 9300 });
  t.is(e.verdict, 'none');
  t.true(
    e.reasons.some((r) => /HBONE/.test(r)),
    e.reasons.join(' | '),
  );
});

test('other network: different networkId, never local, no verdict; conflicts pick the foreign network', (t) => {
  const s = compile(istioNode(), loc);
  const gw = ep(s, '203.0.113.9/32');
  t.is(gw?.networkId, s.networks.indexOf('net-b'));
  t.is(gw?.local, false);
  t.is(pol(s, '203.0.113.9', 15443), undefined);
  // inside our pod CIDR, but on another network: the /32 overrides the CIDR's LOCAL in the LPM trie
  t.deepEqual(ep(s, '10.244.1.9/32'), { cidr: '10.244.1.9/32', local: false, mesh: true, networkId: 1, workloadId: s.workloads.indexOf('default/w') });
  const c = ep(s, '10.244.1.10/32');
  t.is(c?.networkId, s.networks.indexOf('net-c'));
  t.is(c?.local, false);
  t.is(pol(s, '10.244.1.10', 9500), undefined);
});

test('PassthroughCluster, BlackHoleCluster and ORIGINAL_DST chains produce no BYPASS', (t) => {
  const clusters = [
    { name: 'PassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED' },
    { name: 'BlackHoleCluster', type: 'STATIC' },
    origDstCluster('some-orig-dst'),
    edsCluster(TCP_ECHO),
  ];
  const clas = [cla(TCP_ECHO, [{ ip: '10.244.1.5', port: 9000 }]), cla('PassthroughCluster', []), cla('some-orig-dst', [{ ip: '10.244.1.5', port: 9000 }])];
  const listeners: JsonObject[] = [
    {
      name: 'virtualOutbound',
      address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
      use_original_dst: true,
      filter_chains: [chain('virtualOutbound-blackhole', { destination_port: 15001 }, [tcp('BlackHoleCluster')]), chain('virtualOutbound-catchall-tcp', undefined, [tcp('PassthroughCluster')])],
    },
    { name: '0.0.0.0_9000', address: { socket_address: { address: '0.0.0.0', port_value: 9000 } }, filter_chains: [chain('', undefined, [tcp('some-orig-dst')])] },
    {
      name: 'virtualInbound',
      address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
      use_original_dst: true,
      traffic_direction: 'INBOUND',
      filter_chains: [
        chain('virtualInbound', undefined, [tcp('InboundPassthroughClusterIpv4')]),
        // a port-specific chain that only passes through: no mesh service behind it
        chain('0.0.0.0_9000', { destination_port: 9000 }, [tcp('InboundPassthroughClusterIpv4')]),
      ],
    },
  ];
  const s = compile(snapshot(clusters, clas, listeners), loc);
  t.deepEqual(s.policies, []);
  t.true(s.notes.some((n) => /catch-all/.test(n)));
  t.true(s.notes.some((n) => /original-destination/.test(n)));
  // A per-port chain to BlackHoleCluster is a deny: PROXY so Envoy keeps dropping it.
  (listeners[2]?.['filter_chains'] as JsonObject[]).push(
    chain('0.0.0.0_9000', { destination_port: 9000, prefix_ranges: [{ address_prefix: '10.244.1.5', prefix_len: 32 }] }, [tcp('BlackHoleCluster')]),
  );
  const s2 = compile(snapshot(clusters, clas, listeners), loc);
  t.is(pol(s2, '10.244.1.5', 9000)?.verdict, 'proxy');
});

test('inbound chain prefix_ranges restrict which local endpoints a port verdict covers', (t) => {
  const clusters = [edsCluster(TCP_ECHO), origDstCluster('inbound|9000||')];
  const clas = [
    cla(TCP_ECHO, [
      { ip: '10.244.1.5', port: 9000 },
      { ip: '10.244.1.6', port: 9000 },
    ]),
  ];
  const vi: JsonObject = {
    name: 'virtualInbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
    use_original_dst: true,
    filter_chains: [chain('p', { destination_port: 9000, prefix_ranges: [{ address_prefix: '10.244.1.5', prefix_len: 32 }] }, [tcp('inbound|9000||')])],
  };
  const s = compile(snapshot(clusters, clas, [vi]), loc);
  t.is(pol(s, '10.244.1.5', 9000)?.verdict, 'bypass');
  t.is(pol(s, '10.244.1.6', 9000), undefined);
});

test('transport_protocol match (TLS detection) and TLS termination => PROXY', (t) => {
  const clusters = [edsCluster(TCP_ECHO), origDstCluster('inbound|9000||')];
  const clas = [cla(TCP_ECHO, [{ ip: '10.244.1.5', port: 9000 }])];
  const vi: JsonObject = {
    name: 'virtualInbound',
    use_original_dst: true,
    address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
    filter_chains: [
      {
        ...chain('0.0.0.0_9000', { destination_port: 9000, transport_protocol: 'tls' }, [mx, tcp('inbound|9000||')]),
        transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: { '@type': `${T}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext` } },
      },
      chain('0.0.0.0_9000', { destination_port: 9000, transport_protocol: 'raw_buffer' }, [tcp('inbound|9000||')]),
    ],
  };
  const s = compile(snapshot(clusters, clas, [vi]), loc);
  t.is(pol(s, '10.244.1.5', 9000)?.verdict, 'proxy');
});

test('filter_chain_matcher listener never yields BYPASS', (t) => {
  const clusters = [edsCluster(TCP_ECHO)];
  const clas = [cla(TCP_ECHO, [{ ip: '10.244.1.5', port: 9000 }])];
  const l: JsonObject = {
    name: 'main_internal',
    filter_chains: [chain('direct-tcp', undefined, [mx, tcp(TCP_ECHO)])],
    filter_chain_matcher: {
      matcher_tree: {
        input: { name: 'port', typed_config: { '@type': `${T}envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput` } },
        exact_match_map: { map: { '9000': { action: { name: 'direct-tcp', typed_config: { '@type': `${T}google.protobuf.StringValue`, value: 'direct-tcp' } } } } },
      },
    },
  };
  const s = compile(snapshot(clusters, clas, [l]), loc);
  t.is(pol(s, '10.244.1.5', 9000)?.verdict, 'proxy');
  t.regex(s.rules[pol(s, '10.244.1.5', 9000)?.ruleId ?? -1]?.reasons.join('\n') ?? '', /filter_chain_matcher/);
});

test('legacy filter names without typed_config are understood', (t) => {
  const clusters = [edsCluster(TCP_ECHO), edsCluster(HTTPBIN)];
  const clas = [cla(TCP_ECHO, [{ ip: '10.244.1.5', port: 9000 }]), cla(HTTPBIN, [{ ip: '10.244.1.6', port: 80 }])];
  const ls: JsonObject[] = [
    { name: 'a', address: { socket_address: { address: '10.96.0.20', port_value: 9000 } }, filter_chains: [{ filters: [{ name: 'envoy.tcp_proxy', config: { cluster: TCP_ECHO } }] }] },
    {
      name: 'b',
      address: { socket_address: { address: '10.96.0.21', port_value: 8000 } },
      filter_chains: [
        {
          filters: [
            { name: 'envoy.http_connection_manager', config: { route_config: { virtual_hosts: [{ name: 'x', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: HTTPBIN } }] }] } } },
          ],
        },
      ],
    },
  ];
  const s = compile(snapshot(clusters, clas, ls), loc);
  t.is(pol(s, '10.244.1.5', 9000)?.verdict, 'bypass');
  t.is(pol(s, '10.244.1.6', 80)?.verdict, 'proxy');
});

test('weighted_clusters: every target cluster gets the verdict', (t) => {
  const A = 'outbound|9000|v1|tcp-echo.default.svc.cluster.local';
  const B = 'outbound|9000|v2|tcp-echo.default.svc.cluster.local';
  const clusters = [edsCluster(A), edsCluster(B)];
  const clas = [cla(A, [{ ip: '10.244.1.5', port: 9000 }]), cla(B, [{ ip: '10.244.1.6', port: 9000 }])];
  const l: JsonObject = {
    name: '10.96.0.20_9000',
    address: { socket_address: { address: '10.96.0.20', port_value: 9000 } },
    filter_chains: [
      chain('', undefined, [
        {
          name: 'envoy.filters.network.tcp_proxy',
          typed_config: {
            '@type': TCP,
            stat_prefix: 'x',
            weighted_clusters: {
              clusters: [
                { name: A, weight: 50 },
                { name: B, weight: 50 },
              ],
            },
          },
        },
      ]),
    ],
  };
  const s = compile(snapshot(clusters, clas, [l]), loc);
  t.is(pol(s, '10.244.1.5', 9000)?.verdict, 'bypass');
  t.is(pol(s, '10.244.1.6', 9000)?.verdict, 'bypass');
});

test('explain: reason chain, and a pure client in the pod CIDR short-circuits to a local BYPASS destination', (t) => {
  const s = compile(istioNode(), loc);
  // 10.244.1.200 is no service endpoint, only inside the local pod CIDR
  t.is(ep(s, '10.244.1.200/32'), undefined);
  const e = explain(s, { ip: '10.244.1.5', port: 9000 }, '10.244.1.200');
  t.is(e.verdict, 'bypass');
  t.is(e.shortCircuit, true);
  t.is(e.from?.entry?.cidr, '10.244.1.0/24');
  t.true(
    e.reasons.some((r) => r.startsWith('listener ')),
    e.reasons.join(' | '),
  );
  // same destination from a pod on another node: normal path
  const far = explain(s, { ip: '10.244.1.5', port: 9000 }, '10.244.2.3');
  t.is(far.shortCircuit, false);
  t.regex(far.reasons.join('\n'), /source is not a local address/);
  // IPv4-mapped spelling of the destination is the same endpoint
  t.is(explain(s, { ip: '::ffff:10.244.1.5', port: '9000' }).verdict, 'bypass');
  // HTTP destination: proxy, not short-circuited
  const h = explain(s, { ip: '10.244.1.6', port: 80 }, '10.244.1.200');
  t.is(h.verdict, 'proxy');
  t.is(h.shortCircuit, false);
  // other network
  const n = explain(s, { ip: '10.244.1.9', port: 9500 }, '10.244.1.200');
  t.is(n.verdict, 'none');
  t.false(n.shortCircuit);
  t.regex(n.reasons.join('\n'), /another network/);
});

test('deterministic: same input in another order gives identical output', (t) => {
  const a = istioNode();
  const rev = <V>(m: Map<string, V>) => new Map([...m].reverse());
  const b: XdsSnapshot = { clusters: rev(a.clusters), endpoints: rev(a.endpoints), listeners: rev(a.listeners), versions: {} };
  const sa = compile(a, loc);
  const sb = compile(b, loc);
  t.deepEqual(sb, sa);
  const sorted = [...sa.policies].sort((x, y) => (x.ip < y.ip ? -1 : x.ip > y.ip ? 1 : x.port - y.port));
  t.is(sa.policies.length, sorted.length);
  t.deepEqual(
    sa.rules.map((r) => r.id),
    sa.rules.map((_, i) => i),
  );
});

test('validate: structural problems NACK; unknown filters and types do not', (t) => {
  t.is(validate(istioNode()), undefined);
  const bad = istioNode();
  const vi = bad.listeners.get('virtualInbound') as JsonObject;
  (vi['filter_chains'] as JsonObject[]).push(chain('x', { destination_port: 70000 }, [tcp('inbound|9000||')]));
  t.regex(validate(bad) ?? '', /destination_port/);
  const bad2 = istioNode();
  bad2.endpoints.set('x', { cluster_name: 'x', endpoints: { not: 'a list' } });
  t.regex(validate(bad2) ?? '', /endpoints must be a list/);
  const bad3 = istioNode();
  bad3.endpoints.set('y', cla('y', [{ ip: '10.244.1.5', port: 123456 }]));
  t.regex(validate(bad3) ?? '', /port_value/);
});

test('locality errors are thrown (our own config), xDS garbage is not', (t) => {
  t.throws(() => compile(istioNode(), { ...loc, podCidrs: ['10.244.1.1/24'] }), { message: /host bits/ });
  const snap = istioNode();
  snap.endpoints.set('h', cla('h', [{ ip: 'not-an-ip.example', port: 80 }]));
  const s = compile(snap, loc);
  t.true(s.skipped.some((x) => x.cluster === 'h'));
});

// Scale check: correct counts at 100k endpoints. Speed is measured in bench/, never asserted here.
test('100,000 endpoints (10% dual-stack) compile to the expected entries', (t) => {
  const clusters: JsonObject[] = [];
  const clas: JsonObject[] = [];
  const chains: JsonObject[] = [];
  const listeners: JsonObject[] = [];
  for (let c = 0; c < 1000; c++) {
    const port = 10000 + c;
    const name = `outbound|${port}||svc${c}.default.svc.cluster.local`;
    clusters.push(edsCluster(name));
    const eps: Ep[] = [];
    for (let i = 0; i < 100; i++) {
      const n = c * 100 + i;
      // every tenth pod is dual-stack
      const e: Ep = { ip: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, port, workload: `w${n % 5000};default;svc${c};v1;K` };
      if (n % 10 === 0) e.extra = [`fd00::${(n >> 16).toString(16)}:${(n & 0xffff).toString(16)}`];
      eps.push(e);
    }
    clas.push(cla(name, eps));
    chains.push(chain(`0.0.0.0_${port}`, { destination_port: port }, c % 3 === 0 ? [hcmRds(String(port))] : [mx, tcp(`inbound|${port}||`)]));
    listeners.push({
      name: `10.96.${c >> 8}.${c & 255}_${port}`,
      address: { socket_address: { address: `10.96.${c >> 8}.${c & 255}`, port_value: port } },
      filter_chains: [chain('', undefined, [tcp(name)])],
    });
  }
  listeners.push({ name: 'virtualInbound', use_original_dst: true, address: { socket_address: { address: '0.0.0.0', port_value: 15006 } }, traffic_direction: 'INBOUND', filter_chains: chains });
  // JSON round trip: flat strings, as a decoded xDS response has
  const rt = (xs: JsonObject[]) => xs.map((x) => JSON.parse(JSON.stringify(x)) as JsonObject);
  const snap = snapshot(rt(clusters), rt(clas), rt(listeners));
  const big: Locality = { nodeIps: ['198.18.0.10'], podCidrs: ['10.0.0.0/15', 'fd00::/110'], network: '' };
  compile(snap, big); // warm-up (JIT)
  const t0 = process.hrtime.bigint();
  const s = compile(snap, big);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  t.log(`compile: ${ms.toFixed(0)} ms, ${s.endpoints.length} endpoints, ${s.policies.length} policies, ${s.rules.length} rules`);
  t.is(s.endpoints.length, 110_000 + 2 + 1);
  t.is(s.policies.length, 110_000);
  t.is(s.policies.filter((p) => p.verdict === 'proxy').length, 334 * 110);
});
