// File source: real Istio config dumps, YAML and resource lists, watch, and
// equality with what the ADS client yields for the same resources.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { XdsClient } from '../../src/xds/client.js';
import { loadSnapshotFile, snapshotFromDocument, parseText, XdsFileSource } from '../../src/xds/file.js';
import { XdsParseError } from '../../src/errors.js';
import { FakeAdsServer, type RecordedRequest } from '../helpers/ads-server.js';
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type Json, type JsonObject, type XdsSnapshot, type XdsStateEvent } from '../../src/xds/types.js';
import { edsCluster, staticCluster, tcpListener } from '../helpers/resources.js';

// the repo's copy of the Istio dumps (test/fixtures/istio), from dist/test/unit or test/unit
const here = path.dirname(fileURLToPath(import.meta.url));
const FIX = [path.resolve(here, '../../../test/fixtures/istio'), path.resolve(here, '../fixtures/istio')].find((d) => fs.existsSync(path.join(d, 'waypoint-configdump.json'))) as string;
const SIDECAR = path.join(FIX, 'sidecar-endpoints-configdump.json');
const WAYPOINT = path.join(FIX, 'waypoint-configdump.json');
const CLUSTERS_LISTENERS = path.join(FIX, 'clusters-listeners-configdump.json');

/** Every "@type" anywhere inside a value. */
function typesIn(v: Json | undefined, out = new Set<string>()): Set<string> {
  if (Array.isArray(v)) v.forEach((x) => typesIn(x, out));
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === '@type' && typeof x === 'string') out.add(x);
      else typesIn(x, out);
    }
  }
  return out;
}

function addresses(cla: JsonObject | undefined): string[] {
  const out: string[] = [];
  for (const loc of (cla?.endpoints ?? []) as JsonObject[]) {
    for (const lbe of (loc.lb_endpoints ?? []) as JsonObject[]) {
      const sa = ((lbe.endpoint as JsonObject).address as JsonObject).socket_address as JsonObject | undefined;
      if (sa) out.push(`${String(sa.address)}:${String(sa.port_value)}`);
    }
  }
  return out;
}

test('fixture: sidecar EndpointsConfigDump parses; static and dynamic CLAs by cluster_name', (t) => {
  const { snapshot: s } = loadSnapshotFile(SIDECAR);
  t.is(s.endpoints.size, 37);
  t.is(s.clusters.size, 0);
  t.deepEqual(addresses(s.endpoints.get('outbound|9080||reviews.default.svc.cluster.local')).sort(), ['10.244.0.192:9080', '10.244.0.193:9080', '10.244.0.195:9080'].sort());
  t.deepEqual(addresses(s.endpoints.get('outbound|443||kubernetes.default.svc.cluster.local')), ['172.18.0.2:6443']);
  t.deepEqual(addresses(s.endpoints.get('outbound|53||kube-dns.kube-system.svc.cluster.local')).sort(), ['10.244.0.3:53', '10.244.0.8:53']);
  // pipe endpoints are kept as they are
  t.regex(JSON.stringify(s.endpoints.get('sds-grpc')), /"pipe":\{"path":".\/var\/run\/secrets\/workload-spiffe-uds\/socket"\}/);
  // a resource in the snapshot is the message itself, not the Any around it
  t.is(s.endpoints.get('agent')?.['@type'], undefined);
});

test('fixture: waypoint dump parses; unnamed static listener keyed by address; Istio-only types kept as they are', (t) => {
  const { snapshot: s, ignored } = loadSnapshotFile(WAYPOINT);
  t.deepEqual([...s.clusters.keys()].sort(), ['agent', 'inbound-vip|8000|http|httpbin.default.svc.cluster.local', 'prometheus_stats']);
  t.deepEqual([...s.listeners.keys()].sort(), ['0.0.0.0_15021', 'main_internal']);
  t.is(s.versions.cds, '2023-12-26T05:56:10Z/3');
  t.is(s.versions.lds, '2023-12-26T05:57:39Z/1');
  const internal = s.endpoints.get('inbound-vip|8100|http|httpbin.default.svc.cluster.local');
  t.regex(JSON.stringify(internal), /"envoy_internal_address":\{"server_listener_name":"connect_originate","endpoint_id":"192\.168\.195\.248:800"\}/);
  t.is(s.clusters.get('inbound-vip|8000|http|httpbin.default.svc.cluster.local')?.type, 'EDS');
  const types = typesIn([...s.listeners.values()]);
  t.true(types.has('type.googleapis.com/udpa.type.v1.TypedStruct'));
  t.true(types.has('type.googleapis.com/xds.type.matcher.v3.IPMatcher'));
  t.true(ignored.includes('type.googleapis.com/envoy.admin.v3.SecretsConfigDump'));
});

test('fixture: clusters+listeners dump parses with inbound-vip EDS cluster and internal listeners', (t) => {
  const { snapshot: s } = loadSnapshotFile(CLUSTERS_LISTENERS);
  const c = s.clusters.get('inbound-vip|9080|http|ratings.default.svc.cluster.local');
  t.truthy(c);
  t.is((c?.eds_cluster_config as JsonObject).service_name, 'inbound-vip|9080|http|ratings.default.svc.cluster.local');
  t.deepEqual([...s.listeners.keys()].sort(), ['connect_originate', 'connect_terminate', 'main_internal']);
  t.deepEqual((s.listeners.get('connect_terminate')?.address as JsonObject).socket_address, { address: '0.0.0.0', port_value: 15008 });
  const types = typesIn(s.listeners.get('connect_terminate'));
  t.true(types.has('type.googleapis.com/udpa.type.v1.TypedStruct'));
  t.regex(JSON.stringify(s.listeners.get('connect_terminate')), /io\.istio\.http\.peer_metadata\.Config/);
});

test('a snapshot from ADS equals the one from config_dump for the same resources', async (t) => {
  const dumpCL = loadSnapshotFile(CLUSTERS_LISTENERS).snapshot;
  const dumpEP = loadSnapshotFile(SIDECAR).snapshot;
  const raw = JSON.parse(fs.readFileSync(CLUSTERS_LISTENERS, 'utf8')) as { configs: JsonObject[] };
  const clusters = (raw.configs[0]?.dynamic_active_clusters as JsonObject[]).map((e) => e.cluster as JsonObject);
  const listeners = (raw.configs[1]?.dynamic_listeners as JsonObject[]).map((e) => (e.active_state as JsonObject).listener as JsonObject);
  const sidecar = JSON.parse(fs.readFileSync(SIDECAR, 'utf8')) as { configs: JsonObject[] };
  const eps = (sidecar.configs[0]?.dynamic_endpoint_configs as JsonObject[]).map((e) => e.endpoint_config as JsonObject);

  const server = new FakeAdsServer();
  await server.start();
  const client = new XdsClient({ server: server.address(), node: { podName: 'p', namespace: 'ns', ips: ['10.0.0.1'] } });
  t.teardown(async () => {
    client.close();
    await server.stop();
  });
  client.start();
  const ackOf = (url: string, nonce: string) => (r: RecordedRequest) => r.req.type_url === url && r.req.response_nonce === nonce;
  await server.waitFor((r) => r.req.type_url === TYPE_CLUSTER);
  const n1 = server.sendSotw(TYPE_CLUSTER, [...clusters, ...eps.map((e) => edsCluster(String(e.cluster_name)))], 'v1');
  await server.waitFor(ackOf(TYPE_CLUSTER, n1));
  await server.waitFor((r) => r.req.type_url === TYPE_ENDPOINT);
  const n2 = server.sendSotw(TYPE_ENDPOINT, eps, 'v1');
  const a2 = await server.waitFor(ackOf(TYPE_ENDPOINT, n2));
  t.is(a2.req.error_detail, undefined);
  const n3 = server.sendSotw(TYPE_LISTENER, listeners, 'v1');
  const a3 = await server.waitFor(ackOf(TYPE_LISTENER, n3));
  t.is(a3.req.error_detail, undefined);

  const ads = client.snapshot();
  t.is(ads.endpoints.size, eps.length);
  const expected = new Map([...dumpEP.endpoints].filter(([k]) => eps.some((e) => e.cluster_name === k)));
  t.is(expected.size, 32);
  t.deepEqual(ads.endpoints, expected);
  t.deepEqual(ads.listeners, dumpCL.listeners);
  const name = 'inbound-vip|9080|http|ratings.default.svc.cluster.local';
  t.deepEqual(ads.clusters.get(name), dumpCL.clusters.get(name));
});

test('YAML config_dump, YAML list and {resources:[...]} inputs give the same snapshot', (t) => {
  const res: JsonObject[] = [edsCluster('a', 'svc-a'), staticCluster('s', '10.0.0.9', 80), tcpListener('l', '::', 8080, 'a')];
  const fromJsonList = snapshotFromDocument(parseText(JSON.stringify({ resources: res }))).snapshot;
  const fromYamlList = snapshotFromDocument(parseText(toYaml(res))).snapshot;
  const dump = {
    configs: [
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
        version_info: 'v7',
        dynamic_active_clusters: [{ version_info: 'v7', cluster: res[0] }],
        static_clusters: [{ cluster: res[1] }],
      },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
        dynamic_listeners: [
          { name: 'l', active_state: { listener: res[2] } },
          { name: 'w', warming_state: { listener: tcpListener('w', '::', 1, 'a') } },
        ],
      },
    ],
  };
  const fromYamlDump = snapshotFromDocument(parseText(toYaml(dump))).snapshot;
  const keys = (s: XdsSnapshot): string[][] => [[...s.clusters.keys()].sort(), [...s.endpoints.keys()], [...s.listeners.keys()]];
  t.deepEqual(keys(fromJsonList), [['a', 's'], [], ['l']]);
  t.deepEqual(fromYamlList.clusters, fromJsonList.clusters);
  t.deepEqual(fromYamlList.listeners, fromJsonList.listeners);
  t.deepEqual(fromYamlDump.clusters, fromJsonList.clusters);
  t.deepEqual(fromYamlDump.listeners, fromJsonList.listeners, 'warming listeners are not current config');
  t.is(fromYamlDump.versions.cds, 'v7');
});

test('invalid documents are rejected with reasons naming each resource', (t) => {
  const bad = [
    { ...staticCluster('s', '10.0.0.999', 80) },
    { ...tcpListener('p0', '0.0.0.0', 0, 'a') },
    { ...edsCluster('x'), name: '' },
    { '@type': TYPE_ENDPOINT, cluster_name: 'e', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 65536 } } } }] }] },
    { '@type': TYPE_LISTENER, address: { socket_address: { address: '0.0.0.0', port_value: 80 } } },
    { '@type': TYPE_CLUSTER, name: 'dup' },
    { '@type': TYPE_CLUSTER, name: 'dup' },
    { name: 'no-type' },
  ];
  const e = t.throws(() => snapshotFromDocument(bad as Json), { instanceOf: XdsParseError }) as XdsParseError;
  const all = e.reasons.join('\n');
  t.regex(all, /cluster "s": .*bad IP address "10\.0\.0\.999"/);
  t.regex(all, /listener "p0": .*port out of range/);
  t.regex(all, /cluster #\d+ \(no name\): missing required field name/);
  t.regex(all, /ClusterLoadAssignment "e": .*port out of range.*65536/);
  t.regex(all, /listener #\d+ \(no name\): missing required field name/);
  t.regex(all, /cluster "dup": duplicate/);
  t.regex(all, /resources\[7\]: no "@type"/);
  t.throws(() => snapshotFromDocument(parseText('{ not: [valid')), { instanceOf: XdsParseError });
  t.throws(() => snapshotFromDocument({ hello: 'world' }), { instanceOf: XdsParseError });
});

test('file watch: picks up a change; an invalid file keeps the last good snapshot and reports the error', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-xdsfile-'));
  const file = path.join(dir, 'dump.yaml');
  fs.writeFileSync(file, toYaml({ resources: [edsCluster('one')] }));
  const src = new XdsFileSource({ path: file, debounceMs: 30 });
  const states: XdsStateEvent[] = [];
  src.on('state', (e) => states.push(e));
  t.teardown(() => {
    src.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  src.start();
  t.deepEqual([...src.snapshot().clusters.keys()], ['one']);
  const good = src.snapshot();

  const waitState = (kind: string): Promise<XdsStateEvent> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${kind} state`)), 5000);
      const fn = (e: XdsStateEvent): void => {
        if (e.kind !== kind) return;
        clearTimeout(timer);
        src.off('state', fn);
        resolve(e);
      };
      src.on('state', fn);
    });

  let p = waitState('error');
  fs.writeFileSync(file, toYaml({ resources: [staticCluster('broken', 'nope', 80)] }));
  const err = await p;
  t.regex(err.kind === 'error' ? err.error : '', /cluster "broken": .*bad IP address "nope"/);
  t.is(src.snapshot(), good, 'last good snapshot kept');
  t.regex(src.status().lastError ?? '', /broken/);

  // replace by rename, as editors and kubectl cp do
  const snap = new Promise<XdsSnapshot>((resolve) => src.once('snapshot', resolve));
  p = waitState('loaded');
  const tmp = path.join(dir, '.dump.tmp');
  fs.writeFileSync(tmp, JSON.stringify({ resources: [edsCluster('two'), edsCluster('three')] }));
  fs.renameSync(tmp, file);
  await p;
  const s = await snap;
  t.deepEqual([...s.clusters.keys()].sort(), ['three', 'two']);
  t.is(src.snapshot(), s);
  t.is(src.status().lastError, undefined);
  src.close();
  src.close();
  t.is(src.status().state, 'closed');
});
