// ADS client against an in-process ADS server built on the real Envoy protos.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XdsClient, type XdsClientOptions } from '../../src/xds/client.js';
import { FakeAdsServer, type RecordedRequest, type ServedResource } from '../helpers/ads-server.js';
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type JsonObject, type XdsSnapshot, type XdsStateEvent } from '../../src/xds/types.js';
import { mustType } from '../../src/xds/protos.js';
import { encodeJson } from '../../src/xds/json.js';
import { cla, edsCluster, staticCluster, tcpListener } from '../helpers/resources.js';

const NODE = {
  podName: 'meshbpf-node1',
  namespace: 'istio-system',
  ips: ['10.1.2.3', 'fd00::5', '192.168.7.9', '2001:db8::1'],
  nodeName: 'node1',
  clusterId: 'Kubernetes',
  network: 'net-a',
};

interface Harness {
  server: FakeAdsServer;
  client: XdsClient;
  states: XdsStateEvent[];
  snapshots: XdsSnapshot[];
}

async function setup(t: ExecutionContext, extra: Partial<XdsClientOptions> = {}): Promise<Harness> {
  const server = new FakeAdsServer();
  await server.start();
  const client = new XdsClient({ server: server.address(), node: NODE, backoff: { initialMs: 20, maxMs: 100 }, ...extra });
  const states: XdsStateEvent[] = [];
  const snapshots: XdsSnapshot[] = [];
  client.on('state', (e) => states.push(e));
  client.on('snapshot', (s) => snapshots.push(s));
  t.teardown(async () => {
    client.close();
    await server.stop();
  });
  client.start();
  return { server, client, states, snapshots };
}

function nextState(c: XdsClient, pred: (e: XdsStateEvent) => boolean, timeoutMs = 5000): Promise<XdsStateEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout waiting for state')), timeoutMs);
    const fn = (e: XdsStateEvent): void => {
      if (!pred(e)) return;
      clearTimeout(timer);
      c.off('state', fn);
      resolve(e);
    };
    c.on('state', fn);
  });
}

const isType = (url: string) => (r: RecordedRequest) => r.req.type_url === url;
const ackOf = (url: string, nonce: string) => (r: RecordedRequest) => r.req.type_url === url && r.req.response_nonce === nonce;

/** Bring a SotW client to a synced state: clusters a (svc-a), b, s (static); endpoints; one listener. */
async function sync(h: Harness): Promise<void> {
  const { server } = h;
  await server.waitFor(isType(TYPE_CLUSTER));
  const n1 = server.sendSotw(TYPE_CLUSTER, [edsCluster('a', 'svc-a'), edsCluster('b'), staticCluster('s', '10.9.9.9', 80)], 'c1');
  await server.waitFor(ackOf(TYPE_CLUSTER, n1));
  await server.waitFor(isType(TYPE_ENDPOINT));
  await server.waitFor(isType(TYPE_LISTENER));
  const n2 = server.sendSotw(
    TYPE_ENDPOINT,
    [
      cla('svc-a', [
        ['10.0.0.1', 8080],
        ['fd00::1', 8080],
      ]),
      cla('b', [['10.0.0.2', 9090]]),
    ],
    'e1',
  );
  await server.waitFor(ackOf(TYPE_ENDPOINT, n2));
  const n3 = server.sendSotw(TYPE_LISTENER, [tcpListener('l1', '0.0.0.0', 15001, 'a')], 'l1');
  await server.waitFor(ackOf(TYPE_LISTENER, n3));
}

test('SotW: node on first request, CDS wildcard, ACK echoes version and nonce, then EDS for service names and LDS', async (t) => {
  const h = await setup(t);
  const { server, client } = h;
  const first = await server.waitFor(() => true);
  t.is(first.req.type_url, TYPE_CLUSTER);
  t.is(first.req.resource_names, undefined, 'CDS is a wildcard subscription');
  const node = first.req.node as JsonObject;
  t.is(node.id, 'sidecar~10.1.2.3~meshbpf-node1.istio-system~istio-system.svc.cluster.local');
  const md = node.metadata as JsonObject;
  t.is(md.INSTANCE_IPS, '10.1.2.3,fd00::5,192.168.7.9,2001:db8::1');
  t.is(md.NAMESPACE, 'istio-system');
  t.is(md.NODE_NAME, 'node1');
  t.is(md.CLUSTER_ID, 'Kubernetes');
  t.is(md.NETWORK, 'net-a');

  const n1 = server.sendSotw(TYPE_CLUSTER, [edsCluster('a', 'svc-a'), edsCluster('b'), staticCluster('s', '10.9.9.9', 80)], 'c1', 'nonce-c1');
  const ack = await server.waitFor(ackOf(TYPE_CLUSTER, n1));
  t.is(ack.req.version_info, 'c1');
  t.is(ack.req.response_nonce, 'nonce-c1');
  t.is(ack.req.error_detail, undefined);
  t.is(ack.req.node, undefined, 'node only on the first request of a stream');
  const eds = await server.waitFor(isType(TYPE_ENDPOINT));
  t.deepEqual([...(eds.req.resource_names as string[])].sort(), ['b', 'svc-a'], 'EDS names: service_name or cluster name, EDS clusters only');
  const ldsReq = await server.waitFor(isType(TYPE_LISTENER));
  t.true(server.requests.indexOf(ldsReq) > server.requests.indexOf(ack), 'LDS after CDS');

  const n2 = server.sendSotw(
    TYPE_ENDPOINT,
    [
      cla('svc-a', [
        ['10.0.0.1', 8080],
        ['fd00::1', 8080],
      ]),
      cla('b', [['10.0.0.2', 9090]]),
    ],
    'e1',
  );
  const edsAck = await server.waitFor(ackOf(TYPE_ENDPOINT, n2));
  t.is(edsAck.req.version_info, 'e1');
  t.deepEqual([...(edsAck.req.resource_names as string[])].sort(), ['b', 'svc-a']);
  server.sendSotw(TYPE_LISTENER, [tcpListener('l1', '0.0.0.0', 15001, 'a')], 'l1');
  await nextState(client, (e) => e.kind === 'ack' && e.type === 'lds');

  const s = client.snapshot();
  t.deepEqual([...s.clusters.keys()].sort(), ['a', 'b', 's']);
  t.deepEqual(s.versions, { cds: 'c1', eds: 'e1', lds: 'l1' });
  // proto3-JSON, snake_case, enums as names, Any expanded
  const a = s.clusters.get('a');
  t.is(a?.type, 'EDS');
  t.is(a?.connect_timeout, '10s');
  t.deepEqual(a?.eds_cluster_config, { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: 'svc-a' });
  const ep = s.endpoints.get('svc-a') as JsonObject;
  t.is(JSON.stringify(ep).includes('"port_value":8080'), true);
  t.is(JSON.stringify(ep).includes('"address":"fd00::1"'), true);
  const l1 = s.listeners.get('l1') as JsonObject;
  const filter = ((l1.filter_chains as JsonObject[])[0]?.filters as JsonObject[])[0] as JsonObject;
  t.deepEqual(filter.typed_config, {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
    stat_prefix: 'l1',
    cluster: 'a',
  });
  const st = client.status();
  t.is(st.state, 'connected');
  t.is(st.types.cds.lastAckVersion, 'c1');
  t.is(st.types.eds.resources, 2);
  t.true(h.states.some((e) => e.kind === 'connected'));
});

test('SotW: NACK carries error_detail (INVALID_ARGUMENT) and the last good version; consumers keep the last good state', async (t) => {
  const h = await setup(t);
  const { server, client } = h;
  await sync(h);
  const before = client.snapshot();
  const snapsBefore = h.snapshots.length;
  const n = server.sendSotw(TYPE_CLUSTER, [edsCluster('a', 'svc-a'), staticCluster('bad', '10.0.0.300', 80)], 'c2');
  const nack = await server.waitFor(ackOf(TYPE_CLUSTER, n));
  t.is(nack.req.version_info, 'c1', 'NACK reports the last accepted version');
  const ed = nack.req.error_detail as JsonObject;
  t.is(ed.code, 3);
  t.regex(String(ed.message), /cluster "bad".*bad IP address "10\.0\.0\.300"/);
  t.is(client.snapshot(), before, 'snapshot untouched');
  t.is(h.snapshots.length, snapsBefore, 'no snapshot emitted for a NACKed update');
  t.true(client.snapshot().clusters.has('b'));
  const st = client.status();
  t.is(st.types.cds.lastAckVersion, 'c1');
  t.is(st.types.cds.lastNackVersion, 'c2');
  t.regex(st.types.cds.lastNackError ?? '', /bad IP/);
  t.true(h.states.some((e) => e.kind === 'nack' && e.type === 'cds' && e.version === 'c2' && e.nonce === n));

  // a good update after the NACK is applied
  const n3 = server.sendSotw(TYPE_CLUSTER, [edsCluster('a', 'svc-a'), edsCluster('b')], 'c3');
  const ack = await server.waitFor(ackOf(TYPE_CLUSTER, n3));
  t.is(ack.req.version_info, 'c3');
  t.is(ack.req.error_detail, undefined);
  t.false(client.snapshot().clusters.has('s'));
});

test('SotW: duplicate resource names in one response are NACKed', async (t) => {
  const h = await setup(t);
  const { server, client } = h;
  await sync(h);
  const n = server.sendSotw(TYPE_LISTENER, [tcpListener('dup', '0.0.0.0', 80, 'a'), tcpListener('dup', '0.0.0.0', 81, 'b')], 'l2');
  const nack = await server.waitFor(ackOf(TYPE_LISTENER, n));
  t.regex(String((nack.req.error_detail as JsonObject).message), /listener "dup": duplicate/);
  t.is(nack.req.version_info, 'l1');
  t.deepEqual([...client.snapshot().listeners.keys()], ['l1']);
});

test('SotW: malformed resources are each rejected with a reason naming the resource', async (t) => {
  const h = await setup(t);
  const { server, client } = h;
  await sync(h);
  const bytes = (s: string): Uint8Array => Buffer.from(s, 'hex');
  const cases: { url: string; res: ServedResource[]; want: RegExp }[] = [
    { url: TYPE_CLUSTER, res: [{ ...edsCluster('x'), name: '' }], want: /cluster #0 \(no name\): missing required field name/ },
    { url: TYPE_ENDPOINT, res: [{ ...cla('svc-a', [['10.0.0.1', 80]]), cluster_name: '' }], want: /ClusterLoadAssignment #0 \(no name\): missing required field cluster_name/ },
    { url: TYPE_LISTENER, res: [{ ...tcpListener('x', '0.0.0.0', 80, 'a'), name: '' }], want: /listener #0 \(no name\): missing required field name/ },
    { url: TYPE_ENDPOINT, res: [cla('svc-a', [['not-an-ip', 80]])], want: /ClusterLoadAssignment "svc-a": .*bad IP address "not-an-ip"/ },
    { url: TYPE_ENDPOINT, res: [cla('b', [['10.0.0.2', 0]])], want: /ClusterLoadAssignment "b": .*port out of range.*0/ },
    { url: TYPE_LISTENER, res: [tcpListener('big', '0.0.0.0', 70000, 'a')], want: /listener "big": address\.socket_address\.port_value: port out of range.*70000/ },
    { url: TYPE_LISTENER, res: [tcpListener('v6bad', 'fd00::zz', 80, 'a')], want: /listener "v6bad": .*bad IP address/ },
    // a known nested Any whose bytes do not decode: named by the outer resource
    {
      url: TYPE_CLUSTER,
      res: [
        {
          raw: (() => {
            const t2 = mustType('envoy.config.cluster.v3.Cluster');
            const any = { type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', value: bytes('ffffffff0f') };
            const m = { name: 'bad-any', transport_socket: { name: 'tls', typed_config: any } };
            return { type_url: TYPE_CLUSTER, value: t2.encode(m as never).finish() };
          })(),
        },
      ],
      want: /cluster "bad-any": unparseable: transport_socket\.typed_config: cannot decode/,
    },
    // the resource itself does not decode
    { url: TYPE_LISTENER, res: [{ raw: { type_url: TYPE_LISTENER, value: bytes('0aff') } }], want: /listener #0 \(no name\): unparseable/ },
    // wrong type inside the response
    { url: TYPE_LISTENER, res: [edsCluster('zz')], want: /listener #0 .*type type\.googleapis\.com\/envoy\.config\.cluster\.v3\.Cluster in a/ },
  ];
  const before = client.snapshot();
  let i = 0;
  for (const c of cases) {
    const n = server.sendSotw(c.url, c.res, `bad${i++}`);
    const nack = await server.waitFor(ackOf(c.url, n));
    const ed = nack.req.error_detail as JsonObject | undefined;
    t.truthy(ed, `NACK expected for ${String(c.want)}`);
    t.regex(String(ed?.message), c.want);
  }
  t.is(client.snapshot(), before, 'no malformed update reached consumers');
  t.is(client.status().types.eds.nacks, 3);
});

test('SotW: unknown Any types and unknown filters are kept opaque, never fatal', async (t) => {
  const h = await setup(t);
  const { server, client } = h;
  await sync(h);
  const pluginBytes = Buffer.from([0x0a, 0x03, 0x61, 0x62, 0x63]);
  const listener: JsonObject = {
    '@type': TYPE_LISTENER,
    name: 'virtualInbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
    filter_chains: [
      {
        filter_chain_match: { destination_port: 9080, prefix_ranges: [{ address_prefix: '10.0.0.0', prefix_len: 8 }] },
        filters: [
          { name: 'istio.metadata_exchange', typed_config: { '@type': 'type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange', value: pluginBytes.toString('base64') } },
          {
            name: 'istio.stats',
            typed_config: { '@type': 'type.googleapis.com/udpa.type.v1.TypedStruct', type_url: 'type.googleapis.com/stats.PluginConfig', value: { disable_host_header_fallback: true } },
          },
          { name: 'x.unknown', typed_config: { '@type': 'type.googleapis.com/istio.stats.PluginConfig', value: pluginBytes.toString('base64') } },
          { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: 'in', cluster: 'a' } },
        ],
      },
    ],
  };
  const n = server.sendSotw(TYPE_LISTENER, [listener], 'l2');
  const ack = await server.waitFor(ackOf(TYPE_LISTENER, n));
  t.is(ack.req.error_detail, undefined);
  t.is(ack.req.version_info, 'l2');
  const l = client.snapshot().listeners.get('virtualInbound') as JsonObject;
  const filters = (l.filter_chains as JsonObject[])[0]?.filters as JsonObject[];
  t.deepEqual(filters[0]?.typed_config, { '@type': 'type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange', value: pluginBytes.toString('base64') });
  t.deepEqual(filters[1]?.typed_config, {
    '@type': 'type.googleapis.com/udpa.type.v1.TypedStruct',
    type_url: 'type.googleapis.com/stats.PluginConfig',
    value: { disable_host_header_fallback: true },
  });
  t.deepEqual(filters[2]?.typed_config, { '@type': 'type.googleapis.com/istio.stats.PluginConfig', value: pluginBytes.toString('base64') });
  t.is((filters[3]?.typed_config as JsonObject).cluster, 'a');
  const m = (l.filter_chains as JsonObject[])[0]?.filter_chain_match as JsonObject;
  t.is(m.destination_port, 9080, 'UInt32Value unwrapped to a number');
  t.deepEqual(m.prefix_ranges, [{ address_prefix: '10.0.0.0', prefix_len: 8 }]);
});

test('SotW: CDS deletion removes the cluster and its EDS entries, and unsubscribes', async (t) => {
  const h = await setup(t);
  const { server, client } = h;
  await sync(h);
  t.true(client.snapshot().endpoints.has('svc-a'));
  const mark = server.requests.length;
  const n = server.sendSotw(TYPE_CLUSTER, [edsCluster('b'), staticCluster('s', '10.9.9.9', 80)], 'c2');
  await server.waitFor(ackOf(TYPE_CLUSTER, n));
  const s = client.snapshot();
  t.false(s.clusters.has('a'));
  t.false(s.endpoints.has('svc-a'), 'endpoints of the removed cluster dropped');
  t.true(s.endpoints.has('b'));
  const eds = await server.waitFor(isType(TYPE_ENDPOINT), { from: mark });
  t.deepEqual(eds.req.resource_names, ['b']);
  t.is(eds.req.version_info, 'e1');
  t.is(h.snapshots.at(-1), s);
});

test('SotW: reconnect after the server drops the stream; state kept while down; node and re-subscription on the new stream', async (t) => {
  const h = await setup(t, { backoff: { initialMs: 150, maxMs: 300 } });
  const { server, client } = h;
  await sync(h);
  const before = client.snapshot();
  const snapsBefore = h.snapshots.length;
  const mark = server.requests.length;
  const down = nextState(client, (e) => e.kind === 'disconnected');
  server.dropStreams();
  const d = await down;
  t.is(d.kind, 'disconnected');
  t.is(client.status().state, 'disconnected');
  t.is(client.snapshot(), before, 'outage does not change the snapshot');
  t.is(h.snapshots.length, snapsBefore);

  const cds = await server.waitFor(isType(TYPE_CLUSTER), { from: mark });
  t.truthy(cds.req.node, 'node on the first request of the new stream');
  t.is((cds.req.node as JsonObject).id, 'sidecar~10.1.2.3~meshbpf-node1.istio-system~istio-system.svc.cluster.local');
  t.is(cds.req.version_info, 'c1');
  t.is(cds.req.response_nonce, undefined, 'nonces do not cross streams');
  const eds = await server.waitFor(isType(TYPE_ENDPOINT), { from: mark });
  t.deepEqual([...(eds.req.resource_names as string[])].sort(), ['b', 'svc-a']);
  t.is(eds.req.version_info, 'e1');
  t.is(eds.req.node, undefined);
  const lds = await server.waitFor(isType(TYPE_LISTENER), { from: mark });
  t.is(lds.req.version_info, 'l1');
  t.true(lds.stream > cds.stream - 1 && lds.stream === cds.stream);
  t.is(client.snapshot(), before, 'still the last good state before the server answers');
  t.is(client.status().reconnects, 1);

  // the server answers on the new stream with the same config: consumers see no change
  const n = server.sendSotw(TYPE_CLUSTER, [edsCluster('a', 'svc-a'), edsCluster('b'), staticCluster('s', '10.9.9.9', 80)], 'c1');
  await server.waitFor(ackOf(TYPE_CLUSTER, n));
  t.is(h.snapshots.length, snapsBefore, 'identical config after reconnect emits no snapshot');
  t.deepEqual([...client.snapshot().endpoints.keys()].sort(), ['b', 'svc-a']);
});

test('consumer validate hook turns a veto into a NACK with its reason', async (t) => {
  const h = await setup(t, { validate: (s) => (s.clusters.has('forbidden') ? 'policy: cluster forbidden is not acceptable' : undefined) });
  const { server, client } = h;
  await sync(h);
  const n = server.sendSotw(TYPE_CLUSTER, [edsCluster('a', 'svc-a'), edsCluster('forbidden')], 'c9');
  const nack = await server.waitFor(ackOf(TYPE_CLUSTER, n));
  t.is((nack.req.error_detail as JsonObject).message, 'policy: cluster forbidden is not acceptable');
  t.is((nack.req.error_detail as JsonObject).code, 3);
  t.false(client.snapshot().clusters.has('forbidden'));
  t.true(client.snapshot().clusters.has('b'));
});

test('token file is sent as per-call authorization metadata and re-read for every stream', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-xds-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tok = path.join(dir, 'token');
  fs.writeFileSync(tok, 'tok-1\n');
  const h = await setup(t, { tokenFile: tok });
  const { server, client } = h;
  const r1 = await server.waitFor(isType(TYPE_CLUSTER));
  t.is(r1.metadata.authorization, 'Bearer tok-1');
  fs.writeFileSync(tok, 'tok-2');
  const mark = server.requests.length;
  const down = nextState(client, (e) => e.kind === 'disconnected');
  server.dropStreams();
  await down;
  const r2 = await server.waitFor(isType(TYPE_CLUSTER), { from: mark });
  t.is(r2.metadata.authorization, 'Bearer tok-2');
});

test('close() is idempotent and stops reconnecting', async (t) => {
  const h = await setup(t);
  const { server, client } = h;
  await server.waitFor(isType(TYPE_CLUSTER));
  client.close();
  client.close();
  t.is(client.status().state, 'closed');
  t.is(h.states.filter((e) => e.kind === 'closed').length, 1);
  const n = server.requests.length;
  await new Promise((r) => setTimeout(r, 100));
  t.is(server.requests.length, n, 'no new stream after close');
});

test('backoff: a server that is not there is retried with growing delays; nothing changes for consumers', async (t) => {
  const dead = new FakeAdsServer();
  await dead.start();
  const addr = dead.address();
  await dead.stop();
  const client = new XdsClient({ server: addr, node: NODE, backoff: { initialMs: 10, maxMs: 40, jitter: 0 } });
  t.teardown(() => client.close());
  const delays: number[] = [];
  client.on('state', (e) => {
    if (e.kind === 'disconnected' && e.retryInMs !== undefined) delays.push(e.retryInMs);
  });
  client.start();
  const start = Date.now();
  while (delays.length < 4 && Date.now() - start < 5000) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(delays.slice(0, 4), [10, 20, 40, 40]);
  t.is(client.snapshot().clusters.size, 0);
  t.is(client.status().state === 'disconnected' || client.status().state === 'connecting', true);
});

// encodeJson is used by the fake server; keep it exercised here as well
test('requests the fake server records decode as the real DiscoveryRequest', (t) => {
  const ty = mustType('envoy.service.discovery.v3.DiscoveryRequest');
  const b = encodeJson(ty, { type_url: TYPE_CLUSTER, version_info: 'v', error_detail: { code: 3, message: 'm' } });
  const m = ty.decode(b) as unknown as { error_detail: { code: number; message: string } };
  t.is(m.error_detail.code, 3);
  t.is(m.error_detail.message, 'm');
});
