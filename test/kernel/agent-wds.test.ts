// `meshbpf agent --xds-mode wds` as a real process against a fake istiod
// (Delta WDS over TLS with a bearer token): the maps follow the workloads and
// policies it serves, the data path follows the maps, status tells the truth.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openMaps } from '../../src/maps/pinned.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import type { AgentStatus } from '../../src/agent/agent.js';
import type { PolicyKey } from '../../src/maps/codecs.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION, type JsonObject } from '../../src/xds/types.js';
import { FakeAdsServer, type RecordedRequest } from '../helpers/ads-server.js';
import { killAllAgents, startAgent, stopAgent } from '../helpers/agent.js';
import { cli, delta, kernelSuite, stats, tempDir, transfer, waitFor } from '../helpers/kernel.js';
import { addressName, authorization, service, workload } from '../helpers/wds.js';

const dir = tempDir();
const stateDir = join(dir, 'state');
const TLS = join(PROJECT_ROOT, 'test', 'unit', 'fixtures', 'xds', 'tls');
const { ktest, topo } = kernelSuite('kernel agent WDS tests', {
  pods: [
    { name: 'a', v4: '198.18.6.2/24' },
    { name: 'b', v4: '198.18.6.3/24' },
  ],
  load: false, // the agent loads
  teardown: () => {
    killAllAgents();
    rmSync(dir, { recursive: true, force: true });
  },
});

function verdict(pin: string, k: PolicyKey): string | undefined {
  try {
    const m = openMaps(pin, { readOnly: true });
    try {
      return m.policy.get(k)?.verdict;
    } finally {
      m.close();
    }
  } catch {
    return undefined; // not loaded yet
  }
}

const SVC = 'ns1/db.ns1.svc.cluster.local';
const res = [
  workload({ name: 'a', namespace: 'ns1', ips: ['198.18.6.2'], node: 'node-a' }),
  workload({ name: 'b', namespace: 'ns1', ips: ['198.18.6.3'], node: 'node-a', services: { [SVC]: [[5432, 5432]] } }),
  workload({ name: 'z', namespace: 'kube-system', ips: ['198.18.6.9'], node: 'node-a' }),
  service({ name: 'db', namespace: 'ns1', vips: ['198.19.6.10'], ports: [[5432, 5432]] }),
];
const named = (r: JsonObject) => ({ name: addressName(r), version: 'v1', resource: r });

ktest('agent --xds-mode wds: subscribes as ztunnel over TLS, bypasses the plain service, a namespace policy turns it to PROXY', async (t) => {
  const ads = new FakeAdsServer();
  const address = await ads.start({ cert: readFileSync(join(TLS, 'server.crt')), key: readFileSync(join(TLS, 'server.key')) });
  t.teardown(() => ads.stop());
  const token = join(dir, 'istio-token');
  writeFileSync(token, 'jwt-meshbpf');
  const a = await startAgent({
    cgroup: topo!.cgroup,
    pinDir: topo!.pinDir,
    stateDir,
    podCidr: '198.18.250.0/24', // ignored for WDS: locality comes from the workloads' node
    nodeIp: '198.18.6.1',
    extra: [
      '--xds',
      address,
      '--xds-mode',
      'wds',
      '--node-name',
      'node-a',
      '--cluster-id',
      'c1',
      '--xds-root-cert',
      join(TLS, 'server.crt'),
      '--xds-server-name',
      'istiod.meshbpf.test',
      '--xds-token-file',
      token,
      '--exclude-namespace',
      'kube-system',
    ],
  });
  const initial = (url: string) => (r: RecordedRequest) => r.req.type_url === url && r.req.response_nonce === undefined;
  const first = await ads.waitFor(initial(TYPE_ADDRESS), { timeoutMs: 30_000 });
  t.is((first.req.node as JsonObject).id, 'ztunnel~198.18.6.1~' + String(((first.req.node as JsonObject).metadata as JsonObject).NAME) + '.istio-system~istio-system.svc.cluster.local');
  t.is(((first.req.node as JsonObject).metadata as JsonObject).NODE_NAME, 'node-a');
  t.is(first.metadata.authorization, 'Bearer jwt-meshbpf');
  t.is(first.metadata.clusterid, 'c1');
  await ads.waitFor(initial(TYPE_AUTHORIZATION), { timeoutMs: 30_000 });
  ads.sendDelta(TYPE_ADDRESS, res.map(named), [], 's1');
  ads.sendDelta(TYPE_AUTHORIZATION, [], [], 'p0');
  await waitFor(() => verdict(topo!.pinDir, { ip: '198.18.6.3', port: 5432 }) === 'bypass', 30_000, 'bypass verdict from WDS');

  const db = { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: 'TCP4:198.18.6.3:5432', port: 5432 };
  let before = stats(topo!.pinDir);
  let x = await transfer(topo!, db);
  t.is(x.received, x.sent);
  t.true(delta(before, stats(topo!.pinDir)).redirect_bytes >= x.bytes, 'redirected socket to socket');
  const st = (await a.get('/debug/status')).json() as AgentStatus;
  t.is(st.xds.api, 'wds');
  t.is(st.xds.types.address?.resources, 4);
  t.deepEqual(st.exclude, { namespaces: ['kube-system'], workloads: [] });
  t.is(st.nodeName, 'node-a');
  const text = cli(['status', '--pin-dir', topo!.pinDir], { env: { MESHBPF_STATE_DIR: stateDir } });
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /xds +wds delta \S+ connected; address ack s1 \(4\), authorization ack p0 \(0\)/);
  t.regex(text.stdout, /exclude +never bypassed: namespaces kube-system; workloads -/);
  const ex = JSON.parse(cli(['policy', 'explain', '198.18.6.9', '5432', '--pin-dir', topo!.pinDir, '-o', 'json'], { env: { MESHBPF_STATE_DIR: stateDir } }).stdout) as { reasons: string[] };
  t.true(
    ex.reasons.some((l) => l.startsWith('operator exclusions') && l.includes('kube-system')),
    ex.reasons.join('\n'),
  );

  // a namespace-wide policy in ns1: ztunnel must enforce it, so the flow goes back to ztunnel's path
  ads.sendDelta(TYPE_AUTHORIZATION, [{ name: 'ns1/deny-some', version: 'p1', resource: authorization({ name: 'deny-some', namespace: 'ns1', scope: 'NAMESPACE', action: 'DENY' }) }], [], 'p1');
  await waitFor(() => verdict(topo!.pinDir, { ip: '198.18.6.3', port: 5432 }) === 'proxy', 30_000, 'proxy verdict after the Authorization');
  before = stats(topo!.pinDir);
  x = await transfer(topo!, db);
  t.is(x.received, x.sent);
  t.is(delta(before, stats(topo!.pinDir)).redirect_bytes, 0, 'PROXY: the normal path');
  // and removed again: bypass is back
  ads.sendDelta(TYPE_AUTHORIZATION, [], ['ns1/deny-some'], 'p2');
  await waitFor(() => verdict(topo!.pinDir, { ip: '198.18.6.3', port: 5432 }) === 'bypass', 30_000, 'bypass after the removal');
  t.is(await stopAgent(a), 0, a.output());
});
