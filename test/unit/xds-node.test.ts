// Node identity, backoff, proto3-JSON codec details, and TLS + token transport.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backoffDelay, XdsClient } from '../../src/xds/client.js';
import { anyToJson, decodeToJson, encodeJson, jsonToAny } from '../../src/xds/json.js';
import { buildNode, discoverNodeIps } from '../../src/xds/node.js';
import { lookupType } from '../../src/xds/protos.js';
import { FakeAdsServer } from '../helpers/ads-server.js';
import { TYPE_CLUSTER, type JsonObject } from '../../src/xds/types.js';

const iface = (address: string, family: 'IPv4' | 'IPv6', internal = false): os.NetworkInterfaceInfo =>
  family === 'IPv4'
    ? { address, family, internal, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: null }
    : { address, family, internal, netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', cidr: null, scopeid: 0 };

test('discoverNodeIps: every interface, both families, no loopback, no fe80::', (t) => {
  const ips = discoverNodeIps({
    lo: [iface('127.0.0.1', 'IPv4', true), iface('::1', 'IPv6', true)],
    eth0: [iface('10.1.2.3', 'IPv4'), iface('fe80::1%eth0', 'IPv6'), iface('fd00::5', 'IPv6')],
    eth1: [iface('192.168.7.9', 'IPv4'), iface('2001:db8::1', 'IPv6'), iface('FE80::abcd', 'IPv6')],
    cni0: [iface('10.244.0.1', 'IPv4'), iface('10.1.2.3', 'IPv4')],
    // loopback and link-local addresses on an interface not flagged internal are still left out
    dummy0: [iface('127.0.0.53', 'IPv4'), iface('::1', 'IPv6'), iface('febf::9', 'IPv6'), iface('198.18.0.4', 'IPv4')],
  });
  t.deepEqual(ips, ['10.1.2.3', '192.168.7.9', '10.244.0.1', '198.18.0.4', 'fd00::5', '2001:db8::1']);
});

test('buildNode: Istio node id, INSTANCE_IPS as one comma-separated string, optional keys only when set', (t) => {
  const n = buildNode({ type: 'router', podName: 'meshbpf-node1', namespace: 'istio-system', ips: ['10.1.2.3', 'FD00:0::5'], clusterId: 'c1' });
  t.is(n.id, 'router~10.1.2.3~meshbpf-node1.istio-system~istio-system.svc.cluster.local');
  const md = n.metadata as JsonObject;
  t.is(md.INSTANCE_IPS, '10.1.2.3,fd00::5');
  t.is(md.CLUSTER_ID, 'c1');
  t.false('NETWORK' in md);
  t.false('NODE_NAME' in md);
  t.is(buildNode({ podName: 'p', namespace: 'n', ips: ['fd00::1'] }).id, 'sidecar~fd00::1~p.n~n.svc.cluster.local');
  t.throws(() => buildNode({ podName: 'p', namespace: 'n', ips: ['10.0.0.256'] }), { message: /not an IP/ });
  t.throws(() => buildNode({ podName: 'p', namespace: 'n', ips: [] }), { message: /no IP/ });
  // the node survives the trip through the real proto
  const ty = lookupType('envoy.config.core.v3.Node');
  t.truthy(ty);
  if (ty) t.deepEqual(decodeToJson(ty, encodeJson(ty, n)), n);
});

test('backoffDelay: exponential, capped, jittered downwards within the configured fraction', (t) => {
  const o = { initialMs: 100, maxMs: 1000, multiplier: 2, jitter: 0.5 };
  t.is(
    backoffDelay(0, o, () => 0),
    100,
  );
  t.is(
    backoffDelay(3, o, () => 0),
    800,
  );
  t.is(
    backoffDelay(10, o, () => 0),
    1000,
  );
  t.is(
    backoffDelay(10, o, () => 1),
    500,
  );
  for (let i = 0; i < 50; i++) {
    const d = backoffDelay(2, o);
    t.true(d >= 200 && d <= 400, String(d));
  }
});

test('codec: durations, 64-bit ints, enums, wrappers and Struct in config_dump shape; unknown Any opaque', (t) => {
  const c: JsonObject = {
    '@type': TYPE_CLUSTER,
    name: 'x',
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    connect_timeout: '0.250s',
    per_connection_buffer_limit_bytes: 32768,
    max_requests_per_connection: 1,
    metadata: { filter_metadata: { istio: { services: [{ host: 'a', port: 80 }], on: true, none: null } } },
    circuit_breakers: { thresholds: [{ max_connections: 4294967295, max_retries: 3 }] },
    upstream_connection_options: { tcp_keepalive: { keepalive_time: 300 } },
    common_lb_config: { healthy_panic_threshold: { value: 50 } },
    dns_refresh_rate: '5.000001s',
  };
  const any = jsonToAny(c);
  const back = anyToJson(any.type_url, any.value);
  t.deepEqual(back, c);
  t.is(back.connect_timeout, '0.250s');
  // proto3 JSON omits defaults inside messages (Envoy prints {"value": 0} Percent as {}), but a wrapper keeps its 0
  const z = anyToJson(TYPE_CLUSTER, jsonToAny({ '@type': TYPE_CLUSTER, name: 'z', common_lb_config: { healthy_panic_threshold: { value: 0 } }, max_requests_per_connection: 0 }).value);
  t.deepEqual(z.common_lb_config, { healthy_panic_threshold: {} });
  t.is(z.max_requests_per_connection, 0);
  t.deepEqual(anyToJson('type.googleapis.com/foo.Bar', Buffer.from('hi')), { '@type': 'type.googleapis.com/foo.Bar', value: 'aGk=' });
  t.deepEqual(anyToJson('type.googleapis.com/google.protobuf.StringValue', jsonToAny({ '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'v' }).value), {
    '@type': 'type.googleapis.com/google.protobuf.StringValue',
    value: 'v',
  });
  t.throws(() => anyToJson(TYPE_CLUSTER, Buffer.from('ffff', 'hex')), { message: /cannot decode/ });
});

test('TLS with a root cert file and a bearer token from a file', async (t) => {
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/unit/fixtures/xds/tls');
  const cert = fs.readFileSync(path.join(dir, 'server.crt'));
  const key = fs.readFileSync(path.join(dir, 'server.key'));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-xdstls-'));
  const tok = path.join(tmp, 'istio-token');
  fs.writeFileSync(tok, 'jwt-abc');
  const server = new FakeAdsServer();
  await server.start({ cert, key });
  const client = new XdsClient({
    server: server.address(),
    node: { podName: 'p', namespace: 'n', ips: ['10.0.0.1'] },
    tls: { rootCertFile: path.join(dir, 'server.crt'), serverName: 'istiod.meshbpf.test' },
    tokenFile: tok,
    backoff: { initialMs: 20, maxMs: 50 },
  });
  t.teardown(async () => {
    client.close();
    await server.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  client.start();
  const r = await server.waitFor((x) => x.req.type_url === TYPE_CLUSTER);
  t.is(r.metadata.authorization, 'Bearer jwt-abc');
  t.truthy(r.req.node);

  // a client that does not trust the server's cert never gets a request through
  const plain = new XdsClient({ server: server.address(), node: { podName: 'p', namespace: 'n', ips: ['10.0.0.2'] }, backoff: { initialMs: 20, maxMs: 50 } });
  t.teardown(() => plain.close());
  const failed = new Promise<string>((resolve) => plain.on('state', (e) => e.kind === 'disconnected' && resolve(e.error ?? '')));
  plain.start();
  t.truthy(await failed);
  t.false(server.requests.some((x) => ((x.req.node as JsonObject | undefined)?.metadata as JsonObject | undefined)?.INSTANCE_IPS === '10.0.0.2'));
});
