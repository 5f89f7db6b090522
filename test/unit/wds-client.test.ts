// The WDS client (XdsClient api 'wds') against an in-process fake istiod:
// Delta ADS on grpc-js with the vendored Istio protos, TLS, token, clusterid.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { WDS_MAX_RECEIVE_BYTES, XdsClient } from '../../src/xds/client.js';
import { UNKNOWN_FIELDS } from '../../src/xds/state.js';
import { mustType } from '../../src/xds/protos.js';
import { jsonToAny } from '../../src/xds/json.js';
import { FakeAdsServer, type RecordedRequest } from '../helpers/ads-server.js';
import { addressName, authorization, service, workload } from '../helpers/wds.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION, type JsonObject, type XdsSnapshot } from '../../src/xds/types.js';

const TLS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/unit/fixtures/xds/tls');
const isType = (url: string) => (r: RecordedRequest) => r.req.type_url === url && r.req.response_nonce === undefined;
const ackOf = (url: string, nonce: string) => (r: RecordedRequest) => r.req.type_url === url && r.req.response_nonce === nonce;
const named = (r: JsonObject, version = 'v1') => ({ name: addressName(r), version, resource: r });

async function setup(t: import('ava').ExecutionContext, extra: Partial<ConstructorParameters<typeof XdsClient>[0]> = {}) {
  const server = new FakeAdsServer();
  await server.start({ cert: fs.readFileSync(path.join(TLS_DIR, 'server.crt')), key: fs.readFileSync(path.join(TLS_DIR, 'server.key')) });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-wds-'));
  const token = path.join(tmp, 'istio-token');
  fs.writeFileSync(token, 'jwt-ztunnel\n');
  const client = new XdsClient({
    server: server.address(),
    api: 'wds',
    node: { ztunnel: { podName: 'meshbpf-abcde', namespace: 'istio-system', ips: ['198.18.0.1', 'fd00::1'], nodeName: 'node-a', clusterId: 'cluster1' } },
    tls: { rootCertFile: path.join(TLS_DIR, 'server.crt'), serverName: 'istiod.meshbpf.test' },
    tokenFile: token,
    clusterIdHeader: 'cluster1',
    backoff: { initialMs: 20, maxMs: 50 },
    ...extra,
  });
  const snaps: XdsSnapshot[] = [];
  client.on('snapshot', (s) => snaps.push(s));
  t.teardown(async () => {
    client.close();
    await server.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  client.start();
  return { server, client, snaps };
}

const wa = workload({ name: 'a', namespace: 'ns1', ips: ['198.18.1.1', 'fd00::1:1'], node: 'node-a', services: { 'ns1/svc.ns1.svc.cluster.local': [[80, 8080]] } });
const wb = workload({ name: 'b', namespace: 'ns1', ips: ['198.18.1.2'], node: 'node-b' });
const svc = service({ name: 'svc', namespace: 'ns1', vips: ['198.19.0.10'], ports: [[80, 8080, 'HTTP11']] });
const pol = authorization({ name: 'deny-all', namespace: 'ns1', scope: 'NAMESPACE', action: 'DENY' });

test('WDS: subscribes as ztunnel (node, wildcard Address then Authorization, token, clusterid), full state, incremental, NACK, reconnect', async (t) => {
  const { server, client, snaps } = await setup(t);

  // --- subscription, exactly as ztunnel: one initial request per type, node on each, wildcard
  const first = await server.waitFor(() => true);
  t.is(first.mode, 'delta');
  t.is(first.req.type_url, TYPE_ADDRESS, 'Address first, as ztunnel registers it first');
  const node = first.req.node as JsonObject;
  t.is(node.id, 'ztunnel~198.18.0.1~meshbpf-abcde.istio-system~istio-system.svc.cluster.local');
  t.deepEqual(node.metadata, { NAME: 'meshbpf-abcde', NAMESPACE: 'istio-system', INSTANCE_IPS: '198.18.0.1,fd00::1', NODE_NAME: 'node-a', CLUSTER_ID: 'cluster1' });
  t.deepEqual(Object.keys(node).sort(), ['id', 'metadata'], 'ztunnel sends only id and metadata');
  t.is(first.req.resource_names_subscribe, undefined, 'wildcard');
  t.is(first.req.initial_resource_versions, undefined, 'nothing known yet');
  t.is(first.metadata.authorization, 'Bearer jwt-ztunnel');
  t.is(first.metadata.clusterid, 'cluster1');
  const authReq = await server.waitFor(isType(TYPE_AUTHORIZATION));
  t.is(authReq.stream, first.stream);
  t.deepEqual(authReq.req.node, node, 'node on every initial request, as ztunnel');
  t.is(authReq.req.resource_names_subscribe, undefined);

  // --- full state
  const n1 = server.sendDelta(TYPE_ADDRESS, [named(wa), named(wb), named(svc)], [], 'sys1');
  const ack1 = await server.waitFor(ackOf(TYPE_ADDRESS, n1));
  t.is(ack1.req.error_detail, undefined);
  t.is(ack1.req.node, undefined, 'an ACK carries no node');
  const n2 = server.sendDelta(TYPE_AUTHORIZATION, [{ name: 'ns1/deny-all', version: 'p1', resource: pol }]);
  await server.waitFor(ackOf(TYPE_AUTHORIZATION, n2));
  let s = client.snapshot();
  t.deepEqual([...(s.addresses ?? new Map()).keys()], ['Kubernetes//Pod/ns1/a', 'Kubernetes//Pod/ns1/b', 'ns1/svc.ns1.svc.cluster.local']);
  t.deepEqual([...(s.authorizations ?? new Map()).keys()], ['ns1/deny-all']);
  const a = (s.addresses?.get('Kubernetes//Pod/ns1/a') as JsonObject).workload as JsonObject;
  t.deepEqual(a.addresses, ['xhIBAQ==', '/QAAAAAAAAAAAAAAAAEAAQ=='], 'both families, as bytes');
  t.is(a.node, 'node-a');
  t.deepEqual(a.services, { 'ns1/svc.ns1.svc.cluster.local': { ports: [{ service_port: 80, target_port: 8080 }] } });
  t.is((s.authorizations?.get('ns1/deny-all') as JsonObject).scope, 'NAMESPACE');
  t.is(client.status().types.address?.resources, 3);
  t.is(client.status().api, 'wds');
  t.is(s.clusters.size + s.endpoints.size + s.listeners.size, 0);

  // --- incremental: add c, update b (moved to node-a), remove the service
  const wc = workload({ name: 'c', namespace: 'ns2', ips: ['198.18.1.3'], node: 'node-a' });
  const wb2 = workload({ name: 'b', namespace: 'ns1', ips: ['198.18.1.2'], node: 'node-a' });
  const n3 = server.sendDelta(TYPE_ADDRESS, [named(wc, 'v1'), named(wb2, 'v2')], ['ns1/svc.ns1.svc.cluster.local'], 'sys2');
  await server.waitFor(ackOf(TYPE_ADDRESS, n3));
  s = client.snapshot();
  t.deepEqual([...(s.addresses ?? new Map()).keys()], ['Kubernetes//Pod/ns1/a', 'Kubernetes//Pod/ns1/b', 'Kubernetes//Pod/ns2/c']);
  t.is(((s.addresses?.get('Kubernetes//Pod/ns1/b') as JsonObject).workload as JsonObject).node, 'node-a');
  t.is(s.versions.address, 'sys2');

  // --- a malformed Address (a 5-byte IP): NACK with error_detail, the last good state stays
  const before = snaps.length;
  const bad = workload({ name: 'bad', namespace: 'ns1', ips: [], node: 'node-a', extra: { addresses: ['AQIDBAU='] } });
  const n4 = server.sendDelta(TYPE_ADDRESS, [named(bad, 'v9'), named(workload({ name: 'd', namespace: 'ns1', ips: ['198.18.1.4'], node: 'node-a' }))], ['Kubernetes//Pod/ns1/a'], 'sys3');
  const nack = await server.waitFor(ackOf(TYPE_ADDRESS, n4));
  const detail = nack.req.error_detail as JsonObject;
  t.is(detail.code, 3);
  t.regex(detail.message as string, /Kubernetes\/\/Pod\/ns1\/bad.*workload\.addresses\[0\]: an IP address must be 4 or 16 bytes, got 5/);
  t.is(snaps.length, before, 'no new snapshot');
  t.deepEqual(
    [...(client.snapshot().addresses ?? new Map()).keys()],
    ['Kubernetes//Pod/ns1/a', 'Kubernetes//Pod/ns1/b', 'Kubernetes//Pod/ns2/c'],
    'neither the good item nor the removal of the NACKed response applied',
  );
  t.is(client.status().types.address?.nacks, 1);
  t.is(client.status().types.address?.lastAckVersion, 'sys2');

  // --- reconnect: the new stream names every resource held, per type, with its version
  const from = server.requests.length;
  server.dropStreams();
  const re = await server.waitFor(isType(TYPE_ADDRESS), { from });
  t.not(re.stream, first.stream);
  t.truthy(re.req.node);
  t.deepEqual(re.req.initial_resource_versions, { 'Kubernetes//Pod/ns1/a': 'v1', 'Kubernetes//Pod/ns1/b': 'v2', 'Kubernetes//Pod/ns2/c': 'v1' });
  const reAuth = await server.waitFor(isType(TYPE_AUTHORIZATION), { from });
  t.deepEqual(reAuth.req.initial_resource_versions, { 'ns1/deny-all': 'p1' });
  t.is(re.metadata.authorization, 'Bearer jwt-ztunnel', 'token re-read for the new stream');
  // istiod answers a reconnect with only what changed
  const n5 = server.sendDelta(TYPE_ADDRESS, [], ['Kubernetes//Pod/ns2/c'], 'sys4');
  await server.waitFor(ackOf(TYPE_ADDRESS, n5));
  t.deepEqual([...(client.snapshot().addresses ?? new Map()).keys()], ['Kubernetes//Pod/ns1/a', 'Kubernetes//Pod/ns1/b']);
  t.is(client.snapshot().authorizations?.size, 1, 'the other type is untouched');
});

test('WDS: a 50 MiB response is accepted (grpc-js would refuse it at its 4 MiB default)', async (t) => {
  t.timeout(60_000);
  const pad = 'x'.repeat(10 * 1024);
  const N = 5200;
  const big = Array.from({ length: N }, (_, i) => named(workload({ name: `w${i}`, namespace: 'big', ips: [`198.18.${(i >> 8) & 255}.${i & 255}`], node: 'node-a', extra: { canonical_name: pad } })));
  const t0 = mustType('envoy.service.discovery.v3.DeltaDiscoveryResponse');
  const size = t0.encode({ type_url: TYPE_ADDRESS, nonce: 'x', resources: big.map((r) => ({ name: r.name, version: r.version, resource: jsonToAny(r.resource) })) } as never).finish().length;
  t.true(size > 50 * 1024 * 1024, `response is ${size} bytes`);
  t.true(size < WDS_MAX_RECEIVE_BYTES);

  const { server, client } = await setup(t);
  await server.waitFor(isType(TYPE_AUTHORIZATION));
  const n = server.sendDelta(TYPE_ADDRESS, big, [], 'big1');
  await server.waitFor(ackOf(TYPE_ADDRESS, n), { timeoutMs: 50_000 });
  t.is(client.snapshot().addresses?.size, N);

  // the same response to a client left at grpc-js's default limit never arrives
  const small = new XdsClient({
    server: server.address(),
    api: 'wds',
    node: { ztunnel: { podName: 'p', namespace: 'n', ips: ['198.18.0.2'], nodeName: 'node-b' } },
    tls: { rootCertFile: path.join(TLS_DIR, 'server.crt'), serverName: 'istiod.meshbpf.test' },
    channelOptions: { 'grpc.max_receive_message_length': 4 * 1024 * 1024 },
    backoff: { initialMs: 5000, maxMs: 5000 },
  });
  t.teardown(() => small.close());
  const down = new Promise<string>((resolve) => small.on('state', (e) => e.kind === 'disconnected' && resolve(e.error ?? '')));
  small.start();
  await server.waitFor((r) => r.req.type_url === TYPE_AUTHORIZATION && (r.req.node as JsonObject | undefined)?.id === 'ztunnel~198.18.0.2~p.n~n.svc.cluster.local');
  server.sendDelta(TYPE_ADDRESS, big, [], 'big1');
  t.regex(await down, /^8 /, 'RESOURCE_EXHAUSTED');
  t.is(small.snapshot().addresses?.size, 0);
});

test('WDS: fields newer than our protos are kept as paths on the decoded resource', async (t) => {
  const { server, client } = await setup(t);
  await server.waitFor(isType(TYPE_AUTHORIZATION));
  // an Address whose Workload carries field 99 (unknown to workload.proto)
  const any = jsonToAny(workload({ name: 'new', namespace: 'ns1', ips: ['198.18.1.9'], node: 'node-a' }));
  const inner = Buffer.from(any.value).subarray(2); // skip tag + 1-byte length of field 1 (workload)
  t.is(any.value[0], 0x0a);
  const extra = Buffer.from([0x98, 0x06, 0x01]); // field 99, varint 1
  const wl = Buffer.concat([inner, extra]);
  const value = Buffer.concat([Buffer.from([0x0a, wl.length]), wl]);
  t.true(wl.length < 128);
  const n = server.sendDelta(TYPE_ADDRESS, [{ name: 'Kubernetes//Pod/ns1/new', version: 'v1', resource: { raw: { type_url: TYPE_ADDRESS, value } } }]);
  const ack = await server.waitFor(ackOf(TYPE_ADDRESS, n));
  t.is(ack.req.error_detail, undefined, 'accepted, as ztunnel would');
  const r = client.snapshot().addresses?.get('Kubernetes//Pod/ns1/new') as JsonObject;
  t.deepEqual(r[UNKNOWN_FIELDS], ['workload#99']);
});
