// Delta ADS (DeltaAggregatedResources) against the in-process server.
import test from 'ava';
import { XdsClient } from '../../src/xds/client.js';
import { FakeAdsServer, type RecordedRequest } from '../helpers/ads-server.js';
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type JsonObject, type XdsStateEvent } from '../../src/xds/types.js';
import { cla, edsCluster, tcpListener } from '../helpers/resources.js';

const isType = (url: string) => (r: RecordedRequest) => r.req.type_url === url;
const ackOf = (url: string, nonce: string) => (r: RecordedRequest) => r.req.type_url === url && r.req.response_nonce === nonce;

test('Delta: subscribe, upserts, removed_resources (cluster takes its endpoints), NACK, initial_resource_versions on reconnect', async (t) => {
  const server = new FakeAdsServer();
  await server.start();
  const client = new XdsClient({
    server: server.address(),
    mode: 'delta',
    node: { podName: 'meshbpf-node1', namespace: 'istio-system', ips: ['10.1.2.3', 'fd00::5'] },
    backoff: { initialMs: 20, maxMs: 50 },
  });
  const states: XdsStateEvent[] = [];
  client.on('state', (e) => states.push(e));
  t.teardown(async () => {
    client.close();
    await server.stop();
  });
  client.start();

  const first = await server.waitFor(() => true);
  t.is(first.mode, 'delta');
  t.is(first.req.type_url, TYPE_CLUSTER);
  t.is((first.req.node as JsonObject).id, 'sidecar~10.1.2.3~meshbpf-node1.istio-system~istio-system.svc.cluster.local');
  t.is(((first.req.node as JsonObject).metadata as JsonObject).INSTANCE_IPS, '10.1.2.3,fd00::5');
  t.is(first.req.resource_names_subscribe, undefined, 'wildcard CDS');
  t.is(first.req.initial_resource_versions, undefined, 'nothing known yet');

  const n1 = server.sendDelta(
    TYPE_CLUSTER,
    [
      { name: 'a', version: 'ca1', resource: edsCluster('a', 'svc-a') },
      { name: 'b', version: 'cb1', resource: edsCluster('b') },
    ],
    [],
    'sys1',
  );
  const ack1 = await server.waitFor(ackOf(TYPE_CLUSTER, n1));
  t.is(ack1.req.error_detail, undefined);
  t.is(ack1.req.node, undefined);
  const edsSub = await server.waitFor(isType(TYPE_ENDPOINT));
  t.deepEqual([...(edsSub.req.resource_names_subscribe as string[])].sort(), ['b', 'svc-a']);
  await server.waitFor(isType(TYPE_LISTENER));

  const n2 = server.sendDelta(TYPE_ENDPOINT, [
    { name: 'svc-a', version: 'ea1', resource: cla('svc-a', [['10.0.0.1', 80]]) },
    { name: 'b', version: 'eb1', resource: cla('b', [['fd00::2', 80]]) },
  ]);
  await server.waitFor(ackOf(TYPE_ENDPOINT, n2));
  const n3 = server.sendDelta(TYPE_LISTENER, [{ name: 'l1', version: 'lv1', resource: tcpListener('l1', '::', 15001, 'b') }], [], 'lsys1');
  await server.waitFor(ackOf(TYPE_LISTENER, n3));
  let s = client.snapshot();
  t.deepEqual([...s.clusters.keys()].sort(), ['a', 'b']);
  t.deepEqual([...s.endpoints.keys()].sort(), ['b', 'svc-a']);
  t.deepEqual(s.versions, { cds: 'sys1', lds: 'lsys1' });

  // removal of cluster a: its EDS entry goes too, and EDS is unsubscribed
  const mark = server.requests.length;
  const n4 = server.sendDelta(TYPE_CLUSTER, [], ['a'], 'sys2');
  await server.waitFor(ackOf(TYPE_CLUSTER, n4));
  s = client.snapshot();
  t.deepEqual([...s.clusters.keys()], ['b']);
  t.deepEqual([...s.endpoints.keys()], ['b']);
  const unsub = await server.waitFor(isType(TYPE_ENDPOINT), { from: mark });
  t.deepEqual(unsub.req.resource_names_unsubscribe, ['svc-a']);
  t.is(unsub.req.resource_names_subscribe, undefined);

  // NACK keeps state
  const before = client.snapshot();
  const n5 = server.sendDelta(TYPE_LISTENER, [{ name: 'zero', version: 'lz', resource: tcpListener('zero', '0.0.0.0', 0, 'b') }]);
  const nack = await server.waitFor(ackOf(TYPE_LISTENER, n5));
  t.is((nack.req.error_detail as JsonObject).code, 3);
  t.regex(String((nack.req.error_detail as JsonObject).message), /listener "zero": .*port out of range/);
  t.is(client.snapshot(), before);

  // Resource.name must match the resource's own name
  const n6 = server.sendDelta(TYPE_CLUSTER, [{ name: 'x', version: 'cx', resource: edsCluster('y') }]);
  const nack2 = await server.waitFor(ackOf(TYPE_CLUSTER, n6));
  t.regex(String((nack2.req.error_detail as JsonObject).message), /cluster "y": resource name "x" does not match/);

  // reconnect: initial_resource_versions for what we hold
  const mark2 = server.requests.length;
  server.dropStreams();
  const cds = await server.waitFor(isType(TYPE_CLUSTER), { from: mark2 });
  t.truthy(cds.req.node);
  t.deepEqual(cds.req.initial_resource_versions, { b: 'cb1' });
  const eds = await server.waitFor(isType(TYPE_ENDPOINT), { from: mark2 });
  t.deepEqual(eds.req.resource_names_subscribe, ['b']);
  t.deepEqual(eds.req.initial_resource_versions, { b: 'eb1' });
  const lds = await server.waitFor(isType(TYPE_LISTENER), { from: mark2 });
  t.deepEqual(lds.req.initial_resource_versions, { l1: 'lv1' });
  t.is(client.snapshot(), before, 'state kept across the reconnect');
  t.true(states.some((e) => e.kind === 'disconnected'));

  // an update on the new stream still works
  const n7 = server.sendDelta(TYPE_LISTENER, [], ['l1'], 'lsys2');
  await server.waitFor(ackOf(TYPE_LISTENER, n7));
  t.is(client.snapshot().listeners.size, 0);
  t.is(client.status().types.lds.lastAckVersion, 'lsys2');
});
