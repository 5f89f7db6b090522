// Policy compiler against real Istio config dumps (istio/istio test data; see
// test/fixtures/istio/README.md), read by the xDS file source's parser, as
// `meshbpf sync --xds-file` and the agent read a dump.
import test from 'ava';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { XdsSnapshot } from '../../src/xds/types.js';
import { loadSnapshotFile } from '../../src/xds/file.js';
import { compile, explain, validate } from '../../src/policy/index.js';
import type { Locality } from '../../src/policy/types.js';

const here = dirname(fileURLToPath(import.meta.url));
const candidates = [
  process.env['MESHBPF_ISTIO_FIXTURES'],
  resolve(here, '../../../test/fixtures/istio'), // from dist/test/unit
  resolve(here, '../fixtures/istio'),
].filter((x): x is string => !!x);
const dir = candidates.find((d) => existsSync(join(d, 'README.md')));

/** config_dump JSON -> XdsSnapshot, by the product's own parser (the file source's). */
function load(file: string): XdsSnapshot {
  if (!dir) throw new Error(`Istio fixtures not found (tried ${candidates.join(', ')}); set MESHBPF_ISTIO_FIXTURES`);
  return loadSnapshotFile(join(dir, file)).snapshot;
}

// The kind cluster these dumps came from: pods in 10.244.0.0/24, node 172.18.0.2
const kind: Locality = { nodeIps: ['172.18.0.2'], podCidrs: ['10.244.0.0/24'], network: '' };

test('fixtures are present', (t) => {
  t.truthy(dir, `Istio fixtures not found in ${candidates.join(', ')}`);
});

test('sidecar endpoints dump: every socket endpoint recorded, local by pod CIDR, workloads named', (t) => {
  const snap = load('sidecar-endpoints-configdump.json');
  t.is(validate(snap), undefined);
  const s = compile(snap, kind);
  const hosts = s.endpoints.filter((e) => e.cidr.endsWith('/32')).map((e) => e.cidr);
  // 21 distinct pod IPs + the API server endpoint (the node IP); 127.0.0.1 and pipes are not endpoints
  t.is(hosts.length, 22, hosts.join(' '));
  t.true(hosts.includes('10.244.0.192/32'));
  t.false(hosts.includes('127.0.0.1/32'));
  const reviews3 = s.endpoints.find((e) => e.cidr === '10.244.0.192/32');
  t.like(reviews3, { local: true, mesh: true, networkId: 0 });
  t.is(s.workloads[reviews3?.workloadId ?? 0], 'default/reviews-v3');
  t.is(s.workloads[s.endpoints.find((e) => e.cidr === '10.244.0.175/32')?.workloadId ?? 0], 'istio-system/istiod');
  // kubernetes.default's endpoint is the node itself: local, and a mesh endpoint per EDS
  t.like(
    s.endpoints.find((e) => e.cidr === '172.18.0.2/32'),
    { local: true, mesh: true },
  );
  t.deepEqual(s.endpoints[0], { cidr: '10.244.0.0/24', local: true, mesh: true, networkId: 0, workloadId: 0 });
  // no listeners in this dump => no verdicts
  t.deepEqual(s.policies, []);
  t.deepEqual(s.networks, ['']);
  t.true(s.skipped.some((x) => x.cluster === 'sds-grpc' && /pipe/.test(x.reason)));
  t.true(s.skipped.some((x) => x.cluster === 'agent' && /loopback/.test(x.reason)));
});

test('sidecar endpoints + Istio outbound listeners: bookinfo HTTP is PROXY, a TCP service is BYPASS', (t) => {
  const snap = load('sidecar-endpoints-configdump.json');
  const T = 'type.googleapis.com/';
  // what Istio generates for these services: 0.0.0.0_9080 HTTP (RDS "9080"), and a TCP listener for elasticsearch transport
  snap.listeners.set('0.0.0.0_9080', {
    name: '0.0.0.0_9080',
    address: { socket_address: { address: '0.0.0.0', port_value: 9080 } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': `${T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
              stat_prefix: 'outbound_0.0.0.0_9080',
              rds: { route_config_name: '9080', config_source: { ads: {} } },
            },
          },
        ],
      },
    ],
  });
  snap.listeners.set('10.96.12.34_9300', {
    name: '10.96.12.34_9300',
    address: { socket_address: { address: '10.96.12.34', port_value: 9300 } },
    traffic_direction: 'OUTBOUND',
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.tcp_proxy',
            typed_config: {
              '@type': `${T}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`,
              stat_prefix: 'outbound|9300||elasticsearch.skywalking.svc.cluster.local',
              cluster: 'outbound|9300||elasticsearch.skywalking.svc.cluster.local',
            },
          },
        ],
      },
    ],
  });
  const s = compile(snap, kind);
  const v = (ip: string, port: number) => s.policies.find((p) => p.ip === ip && p.port === port)?.verdict;
  for (const ip of ['10.244.0.192', '10.244.0.193', '10.244.0.195', '10.244.0.191', '10.244.0.190', '10.244.0.194']) t.is(v(ip, 9080), 'proxy', ip);
  t.is(v('10.244.0.185', 9300), 'bypass');
  t.is(v('10.244.0.185', 9200), undefined);
  const e = explain(s, { ip: '10.244.0.185', port: 9300 }, '10.244.0.177');
  t.true(e.shortCircuit);
  t.true(
    e.reasons.some((r) => r.includes('listener 10.96.12.34_9300')),
    e.reasons.join(' | '),
  );
  t.true(e.reasons.some((r) => r.includes('outbound|9300||elasticsearch.skywalking.svc.cluster.local')));
});

test('waypoint dump: HBONE internal endpoints and filter_chain_matcher produce no BYPASS', (t) => {
  const snap = load('waypoint-configdump.json');
  t.true(snap.listeners.has('main_internal'));
  t.is(validate(snap), undefined);
  const s = compile(snap, { nodeIps: ['172.18.0.3'], podCidrs: ['192.168.195.0/24'], network: '' });
  t.false(s.policies.some((p) => p.verdict === 'bypass'));
  // the only EDS endpoint is an envoy_internal_address (HBONE via connect_originate)
  const sk = s.skipped.find((x) => x.cluster === 'inbound-vip|8100|http|httpbin.default.svc.cluster.local');
  t.is(sk?.address, '192.168.195.248:800');
  t.regex(sk?.reason ?? '', /envoy_internal_address via internal listener connect_originate/);
  t.is(
    s.endpoints.find((e) => e.cidr === '192.168.195.248/32'),
    undefined,
  );
  t.true(s.notes.some((n) => n.includes('main_internal') && n.includes('filter_chain_matcher')));
  const e = explain(s, { ip: '192.168.195.248', port: 800 }, '192.168.195.10');
  t.is(e.verdict, 'none');
  t.false(e.shortCircuit);
  t.true(e.reasons.some((r) => /HBONE/.test(r)));
});

test('clusters/listeners dump: compiles, no endpoints, no verdicts, and says why', (t) => {
  const snap = load('clusters-listeners-configdump.json');
  t.deepEqual([...snap.listeners.keys()].sort(), ['connect_originate', 'connect_terminate', 'main_internal']);
  t.is(validate(snap), undefined);
  const s = compile(snap, kind);
  t.deepEqual(s.policies, []);
  t.deepEqual(
    s.endpoints.map((e) => e.cidr),
    ['10.244.0.0/24', '172.18.0.2/32'],
  );
  // connect_originate tunnels to a cluster that is not in the dump
  t.true(
    s.notes.some((n) => n.includes('connect_originate') && n.includes('unknown')),
    s.notes.join('\n'),
  );
  // inbound-vip ratings cluster has no ClusterLoadAssignment here
  t.true(s.notes.some((n) => n.includes('inbound-vip|9080|http|details.default.svc.cluster.local')));
});

test('clusters/listeners dump + an EDS assignment for the waypoint route: HTTP route => PROXY, never BYPASS', (t) => {
  const snap = load('clusters-listeners-configdump.json');
  const name = 'inbound-vip|9080|http|details.default.svc.cluster.local';
  snap.clusters.set(name, { name, type: 'EDS', eds_cluster_config: { service_name: name, eds_config: { ads: {} } } });
  snap.endpoints.set(name, {
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.244.0.190', port_value: 9080 } } } }] }],
  });
  const s = compile(snap, kind);
  const p = s.policies.find((x) => x.ip === '10.244.0.190' && x.port === 9080);
  t.is(p?.verdict, 'proxy');
  t.regex(s.rules[p?.ruleId ?? -1]?.reasons.join('\n') ?? '', /main_internal[\s\S]*filter_chain_matcher/);
});

test('all three dumps together compile deterministically', (t) => {
  const parts = ['sidecar-endpoints-configdump.json', 'waypoint-configdump.json', 'clusters-listeners-configdump.json'].map(load);
  const merge = (xs: XdsSnapshot[]): XdsSnapshot => ({
    clusters: new Map(xs.flatMap((x) => [...x.clusters])),
    endpoints: new Map(xs.flatMap((x) => [...x.endpoints])),
    listeners: new Map(xs.flatMap((x) => [...x.listeners])),
    versions: {},
  });
  const m = merge(parts);
  const rev = <V>(x: Map<string, V>) => new Map([...x].reverse());
  const s1 = compile(m, kind);
  const s2 = compile({ clusters: rev(m.clusters), endpoints: rev(m.endpoints), listeners: rev(m.listeners), versions: {} }, kind);
  t.deepEqual(JSON.stringify(s1), JSON.stringify(s2));
  t.true(s1.endpoints.length > 20);
});
