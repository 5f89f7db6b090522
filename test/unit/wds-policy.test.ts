// WDS -> desired state (src/policy/wds.ts): a real ztunnel config dump, then
// each rule on its own.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { compile, compileChecked, explain, type CompiledState, type Locality } from '../../src/policy/index.js';
import { loadSnapshotFile, snapshotFromDocument } from '../../src/xds/file.js';
import { UNKNOWN_FIELDS } from '../../src/xds/state.js';
import { XdsParseError } from '../../src/errors.js';
import { emptySnapshot, type JsonObject, type XdsSnapshot } from '../../src/xds/types.js';
import { addressName, authorization, service, workload } from '../helpers/wds.js';

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/istio/ambient');
const W2: Locality = { nodeIps: [], podCidrs: [], network: '', nodeName: 'ambient-worker2' };

function verdicts(s: CompiledState): Record<string, string> {
  return Object.fromEntries(s.policies.map((p) => [`${p.ip}:${p.port}`, p.verdict]));
}
function entries(s: CompiledState): Record<string, string> {
  return Object.fromEntries(s.endpoints.map((e) => [e.cidr, `${e.local ? 'local' : 'remote'} ${e.mesh ? 'mesh' : 'nomesh'} net${e.networkId} ${s.workloads[e.workloadId]}`]));
}
function reasonsOf(s: CompiledState, ipPort: string): string[] {
  const [ip, port] = ipPort.split(':');
  const p = s.policies.find((x) => x.ip === ip && x.port === Number(port));
  return p ? (s.rules[p.ruleId]?.reasons ?? []) : [];
}

function snap(resources: JsonObject[]): XdsSnapshot {
  const s = emptySnapshot('wds');
  for (const r of resources) {
    if (r['@type'] === 'type.googleapis.com/istio.security.Authorization') s.authorizations?.set(`${r.namespace as string}/${r.name as string}`, { ...r, '@type': undefined } as never);
    else s.addresses?.set(addressName(r), { workload: r.workload ?? undefined, service: r.service ?? undefined } as never);
  }
  // drop the undefined keys the spread left
  for (const m of [s.addresses, s.authorizations]) for (const [k, v] of m ?? []) m?.set(k, JSON.parse(JSON.stringify(v)) as JsonObject);
  return s;
}

test('ztunnel config dump (istioctl testdata): every endpoint entry and verdict, seen from node ambient-worker2', (t) => {
  const { snapshot } = loadSnapshotFile(path.join(FIX, 'wds-resources.json'));
  t.is(snapshot.addresses?.size, 46);
  t.is(snapshot.authorizations?.size, 2);
  const s = compile(snapshot, W2);
  t.deepEqual(s.networks, ['', 'network1', 'network2', 'network3']);
  t.deepEqual(entries(s), {
    // other nodes: never local
    '10.244.0.2/32': 'remote nomesh net0 kube-system/coredns-5dd5756b68-mgjn9',
    '10.244.0.3/32': 'remote nomesh net0 kube-system/coredns-5dd5756b68-nzlpw',
    '10.244.0.4/32': 'remote nomesh net0 local-path-storage/local-path-provisioner-6f8956fb48-vvnpn',
    '10.244.0.8/32': 'remote nomesh net0 istio-system/ztunnel-n5bg2',
    '10.244.1.10/32': 'remote nomesh net0 httpbin/httpbin-65975d4c6f-jr69n',
    '10.244.1.16/32': 'remote nomesh net0 sleep/sleep-7656cf8794-qpvbm',
    '10.244.1.34/32': 'remote nomesh net2 istio-system/istiod-test-6bdfb786d-s58pj',
    '10.244.1.37/32': 'remote mesh net0 bookinfo/reviews-v1-5b5d6494f4-qwjv4',
    '10.244.1.38/32': 'remote mesh net0 bookinfo/reviews-v2-5b667bcbf8-q5pn2',
    '10.244.1.39/32': 'remote mesh net3 bookinfo/reviews-v3-5b9bd44f4-7fff4',
    '10.244.1.40/32': 'remote nomesh net0 default/httpbin-7447985f87-t8hv7',
    '10.244.1.41/32': 'remote mesh net0 default/reviews-v1-5b5d6494f4-c7z5w',
    '10.244.1.42/32': 'remote mesh net0 default/reviews-v2-5b667bcbf8-twvx6',
    '10.244.1.43/32': 'remote mesh net0 default/reviews-v3-5b9bd44f4-z9ms4',
    '10.244.1.44/32': 'remote nomesh net0 istio-system/ztunnel-xljhg',
    // this node: not captured by ztunnel (protocol TCP) => not local
    '10.244.2.8/32': 'remote nomesh net0 gateway-system/gateway-api-admission-server-85985d48ff-5jcvd',
    '10.244.2.49/32': 'remote nomesh net0 istio-system/istiod-8c7b98fc4-mwjfp',
    '10.244.2.52/32': 'remote nomesh net0 bookinfo/namespace-istio-waypoint-d94944bf6-z89g2',
    '10.244.2.59/32': 'remote nomesh net0 bookinfo/bookinfo-productpage-istio-waypoint-5cdd6745d5-rc2gg',
    '10.244.2.60/32': 'remote nomesh net0 istio-system/ztunnel-qk2pp',
    // this node but network1: never short-circuited
    '10.244.2.54/32': 'remote mesh net1 bookinfo/ratings-v1-6484c4d9bb-mdxm5',
    // this node, HBONE, this network: local
    '10.244.2.51/32': 'local mesh net0 bookinfo/details-v1-698d88b-dqrbr',
    '10.244.2.53/32': 'local mesh net0 bookinfo/productpage-v1-675fc69cf-jscn2',
    '10.244.2.55/32': 'local mesh net0 default/details-v1-698d88b-krdw7',
    '10.244.2.56/32': 'local mesh net0 default/productpage-v1-675fc69cf-kkrm2',
    '10.244.2.57/32': 'local mesh net0 default/ratings-v1-6484c4d9bb-8xc2r',
    '10.244.2.58/32': 'local mesh net0 default/sleep-7656cf8794-lxcmx',
  });
  // Every local workload is PROXY in this dump: bookinfo's have waypoints, default's are selected
  // by the namespace policy allow-nothing, and all carry native_tunnel (an older istiod set it).
  t.deepEqual(verdicts(s), {
    '10.244.2.51:9080': 'proxy',
    '10.244.2.53:9080': 'proxy',
    '10.244.2.55:9080': 'proxy',
    '10.244.2.56:9080': 'proxy',
    '10.244.2.57:9080': 'proxy',
    '10.244.2.58:80': 'proxy',
  });
  t.true(reasonsOf(s, '10.244.2.51:9080').includes('the workload has a waypoint: L7 at the waypoint => proxy'));
  t.true(reasonsOf(s, '10.244.2.53:9080').includes('the workload has a waypoint: L7 at the waypoint => proxy'));
  for (const d of ['10.244.2.55:9080', '10.244.2.56:9080', '10.244.2.57:9080', '10.244.2.58:80']) {
    t.true(reasonsOf(s, d).includes('authorization default/allow-nothing (NAMESPACE default) selects it: ztunnel enforces it => proxy'), d);
    t.false(
      reasonsOf(s, d).some((r) => r.includes('allow-waypoint')),
      'a selector policy no workload lists selects nothing',
    );
  }
  t.true(s.notes.some((n) => n.includes('ratings-v1-6484c4d9bb-mdxm5') && n.includes('on network "network1"')));

  // services pass through for the service-VIP maps
  t.is(s.wdsServices?.length, 19);
  const httpbin = s.wdsServices?.find((x) => x.name === 'default/httpbin.default.svc.cluster.local');
  t.deepEqual(httpbin, {
    name: 'default/httpbin.default.svc.cluster.local',
    namespace: 'default',
    hostname: 'httpbin.default.svc.cluster.local',
    vips: [{ network: '', ip: '10.96.26.108' }],
    ports: [{ port: 8000, targetPort: 80, appProtocol: 'UNKNOWN' }],
    waypoint: false,
    endpoints: [
      {
        workload: 'default/httpbin-7447985f87-t8hv7',
        uid: 'Kubernetes//Pod/default/httpbin-7447985f87-t8hv7',
        ips: ['10.244.1.40'],
        network: '',
        local: false,
        ports: [{ port: 8000, targetPort: 80 }],
      },
    ],
  });
  const istiod = s.wdsServices?.find((x) => x.name === 'istio-system/istiod.istio-system.svc.cluster.local');
  t.deepEqual(
    istiod?.ports.map((p) => `${p.port}->${p.targetPort}`),
    ['443->15017', '15010->15010', '15012->15012', '15014->15014'],
  );
  t.deepEqual(s.wdsServices?.find((x) => x.name === 'kube-system/kubernetes.default.svc.cluster.local')?.endpoints ?? [], []);
  const reviews = s.wdsServices?.find((x) => x.name === 'bookinfo/reviews.bookinfo.svc.cluster.local');
  t.deepEqual(
    reviews?.endpoints.map((e) => `${e.workload}@${e.network}`),
    ['bookinfo/reviews-v1-5b5d6494f4-qwjv4@', 'bookinfo/reviews-v2-5b667bcbf8-q5pn2@', 'bookinfo/reviews-v3-5b9bd44f4-7fff4@network3'],
  );
});

test('ztunnel dump as a current istiod sends it (no native_tunnel on redirected pods) and without allow-nothing: default/* bypass, waypoints still proxy', (t) => {
  const doc = JSON.parse(fs.readFileSync(path.join(FIX, 'wds-resources.json'), 'utf8')) as { resources: JsonObject[] };
  const resources = doc.resources
    .filter((r) => r.name !== 'allow-nothing')
    .map((r) => {
      const w = r.workload as JsonObject | undefined;
      if (!w) return r;
      const { native_tunnel: _n, ...rest } = w;
      return { ...r, workload: rest };
    });
  const s = compile(snapshotFromDocument({ resources }).snapshot, W2);
  t.deepEqual(verdicts(s), {
    '10.244.2.51:9080': 'proxy', // bookinfo details: waypoint
    '10.244.2.53:9080': 'proxy', // bookinfo productpage: waypoint
    '10.244.2.55:9080': 'bypass',
    '10.244.2.56:9080': 'bypass',
    '10.244.2.57:9080': 'bypass',
    '10.244.2.58:80': 'bypass',
  });
  t.deepEqual(reasonsOf(s, '10.244.2.55:9080'), [
    'WDS workload default/details-v1-698d88b-krdw7 (Kubernetes//Pod/default/details-v1-698d88b-krdw7)',
    'port 9080 (service default/details.default.svc.cluster.local port 9080)',
    'no waypoint, no authorization policy: L4 only => bypass',
  ]);
  // the kernel's rule on top: local sleep -> local details bypasses; to a pod on another network or node it does not
  t.true(explain(s, { ip: '10.244.2.55', port: 9080 }, '10.244.2.58').shortCircuit);
  t.false(explain(s, { ip: '10.244.2.55', port: 9080 }, '10.244.2.54').shortCircuit, 'from network1');
  t.false(explain(s, { ip: '10.244.2.55', port: 9080 }, '10.244.1.41').shortCircuit, 'from another node');
  t.false(explain(s, { ip: '10.244.2.55', port: 9080 }, '10.244.2.8').shortCircuit, 'from a pod ztunnel does not capture');
  t.false(explain(s, { ip: '10.244.2.51', port: 9080 }, '10.244.2.58').shortCircuit, 'to a workload with a waypoint');
});

const NODE: Locality = { nodeIps: [], podCidrs: [], network: '', nodeName: 'node-a' };
const SVC = 'ns1/svc.ns1.svc.cluster.local';
const base = () => ({ name: 'a', namespace: 'ns1', ips: ['198.18.1.1', 'fd00::1:1'], node: 'node-a', services: { [SVC]: [[80, 8080]] as [number, number][] } });
const svc = (extra: Partial<Parameters<typeof service>[0]> = {}) => service({ name: 'svc', namespace: 'ns1', vips: ['198.19.0.10', 'fd00::10'], ports: [[80, 8080, 'HTTP11']], ...extra });

test('a local dual-stack workload behind a plain service: bypass on both addresses at the target port', (t) => {
  const s = compile(snap([workload(base()), svc()]), NODE);
  t.deepEqual(verdicts(s), { '198.18.1.1:8080': 'bypass', 'fd00::1:1:8080': 'bypass' });
  t.deepEqual(entries(s), { '198.18.1.1/32': 'local mesh net0 ns1/a', 'fd00::1:1/128': 'local mesh net0 ns1/a' });
  t.deepEqual(s.wdsServices?.[0]?.vips, [
    { network: '', ip: '198.19.0.10' },
    { network: '', ip: 'fd00::10' },
  ]);
  t.deepEqual(s.wdsServices?.[0]?.ports, [{ port: 80, targetPort: 8080, appProtocol: 'HTTP11' }]);
  t.deepEqual(s.wdsServices?.[0]?.endpoints[0]?.ports, [{ port: 80, targetPort: 8080 }]);
  t.true(s.wdsServices?.[0]?.endpoints[0]?.local);
  // and as service VIPs for the connect hook: each VIP family to the backends of its family
  t.deepEqual(
    s.services?.map((e) => `${e.vip}:${e.port} ${e.verdict} ${e.backends.map((b) => `${b.ip}:${b.port}`).join(',')}`),
    ['198.19.0.10:80 bypass 198.18.1.1:8080', 'fd00::10:80 bypass fd00::1:1:8080'],
  );
});

test('WDS service VIPs: a waypoint or a backend that is not BYPASS makes the VIP PROXY; no local backend leaves the connect alone', (t) => {
  const wp = compile(snap([workload(base()), svc({ waypoint: '198.18.9.9' })]), NODE);
  t.true(wp.services?.every((e) => e.verdict === 'proxy'));
  const remote = compile(snap([workload({ ...base(), node: 'node-b' }), svc()]), NODE);
  t.deepEqual(
    remote.services?.map((e) => [e.verdict, e.backends.length]),
    [
      ['proxy', 0],
      ['proxy', 0],
    ],
  );
  const authz = compile(snap([workload(base()), svc(), authorization({ name: 'p', namespace: 'ns1', scope: 'NAMESPACE' })]), NODE);
  t.true(
    authz.services?.every((e) => e.verdict === 'proxy'),
    'the backend is PROXY (an Authorization selects it), so the VIP is too',
  );
});

test('each reason for PROXY, on its own', (t) => {
  const cases: [string, JsonObject[], RegExp][] = [
    ['workload waypoint', [workload({ ...base(), waypoint: '198.18.9.9' }), svc()], /the workload has a waypoint/],
    ['service waypoint', [workload(base()), svc({ waypoint: '198.18.9.9' })], /service ns1\/svc.* has a waypoint/],
    ['service weighted waypoints', [workload(base()), svc({ extra: { weighted_waypoints: [{ destination: { address: { network: '', address: 'xhIJCQ==' } }, weight: 1 }] } })], /has a waypoint/],
    ['GLOBAL authorization', [workload(base()), svc(), authorization({ name: 'p', namespace: 'istio-system', scope: 'GLOBAL' })], /authorization istio-system\/p \(GLOBAL\)/],
    ['NAMESPACE authorization', [workload(base()), svc(), authorization({ name: 'p', namespace: 'ns1', scope: 'NAMESPACE', action: 'DENY' })], /authorization ns1\/p \(NAMESPACE ns1\)/],
    [
      'selector authorization listed',
      [workload({ ...base(), policies: ['ns1/p'] }), svc(), authorization({ name: 'p', namespace: 'ns1', scope: 'WORKLOAD_SELECTOR' })],
      /authorization ns1\/p \(WORKLOAD_SELECTOR\) selects/,
    ],
    ['selector authorization listed but not received', [workload({ ...base(), policies: ['ns1/q'] }), svc()], /ns1\/q \(WORKLOAD_SELECTOR\), not received/],
    ['service not received', [workload(base())], /service ns1\/svc.* not received/],
    ['workload extension', [workload({ ...base(), extra: { extensions: [{ name: 'x' }] } }), svc()], /extensions x/],
    ['service extension', [workload(base()), svc({ extra: { extensions: [{ name: 'y' }] } })], /service .*extensions y/],
    ['application tunnel', [workload({ ...base(), extra: { application_tunnel: { protocol: 'PROXY' } } }), svc()], /application_tunnel/],
    ['native tunnel', [workload({ ...base(), extra: { native_tunnel: true } }), svc()], /native_tunnel/],
    ['unhealthy', [workload({ ...base(), extra: { status: 'UNHEALTHY' } }), svc()], /status UNHEALTHY/],
  ];
  for (const [name, res, why] of cases) {
    const s = compile(snap(res), NODE);
    t.deepEqual(verdicts(s), { '198.18.1.1:8080': 'proxy', 'fd00::1:1:8080': 'proxy' }, name);
    t.true(
      reasonsOf(s, '198.18.1.1:8080').some((r) => why.test(r)),
      `${name}: ${reasonsOf(s, '198.18.1.1:8080').join(' | ')}`,
    );
  }
  // a selector policy that the workload does not list selects nothing: still bypass
  const s = compile(snap([workload(base()), svc(), authorization({ name: 'p', namespace: 'ns1', scope: 'WORKLOAD_SELECTOR' })]), NODE);
  t.is(verdicts(s)['198.18.1.1:8080'], 'bypass');
  // another namespace's policy does not select it
  const s2 = compile(snap([workload(base()), svc(), authorization({ name: 'p', namespace: 'ns2', scope: 'NAMESPACE' })]), NODE);
  t.is(verdicts(s2)['198.18.1.1:8080'], 'bypass');
});

test('unknown never widens: unknown fields, an unknown scope, an unknown Address type', (t) => {
  const wl = snap([workload(base()), svc()]);
  const a = wl.addresses?.get('Kubernetes//Pod/ns1/a') as JsonObject;
  wl.addresses?.set('Kubernetes//Pod/ns1/a', { ...a, [UNKNOWN_FIELDS]: ['workload#99'] });
  let s = compile(wl, NODE);
  t.is(verdicts(s)['198.18.1.1:8080'], 'proxy');
  t.true(reasonsOf(s, '198.18.1.1:8080').some((r) => r.includes('fields unknown to our workload.proto (workload#99)')));

  const sv = snap([workload(base()), svc()]);
  const sa = sv.addresses?.get(SVC) as JsonObject;
  sv.addresses?.set(SVC, { ...sa, [UNKNOWN_FIELDS]: ['service#42'] });
  t.is(verdicts(compile(sv, NODE))['198.18.1.1:8080'], 'proxy');

  const sc = snap([workload(base()), svc()]);
  sc.authorizations?.set('ns9/future', { name: 'future', namespace: 'ns9', scope: 7 });
  s = compile(sc, NODE);
  t.is(verdicts(s)['198.18.1.1:8080'], 'proxy');
  t.true(reasonsOf(s, '198.18.1.1:8080').some((r) => r.includes('unknown scope 7, treated as GLOBAL')));
  const au = snap([workload(base()), svc()]);
  au.authorizations?.set('ns9/odd', { name: 'odd', namespace: 'ns9', scope: 'WORKLOAD_SELECTOR', [UNKNOWN_FIELDS]: ['#30'] });
  t.is(verdicts(compile(au, NODE))['198.18.1.1:8080'], 'proxy');

  const ut = snap([workload(base()), svc()]);
  ut.addresses?.set('future/thing', {});
  s = compile(ut, NODE);
  t.is(verdicts(s)['198.18.1.1:8080'], 'bypass', 'an unknown Address type adds nothing');
  t.true(s.notes.some((n) => n.includes('Address future/thing: neither workload nor service')));
  t.is(s.endpoints.length, 2);
  const te = snap([workload({ ...base(), tunnel: undefined as never, extra: { tunnel_protocol: 5 } }), svc()]);
  t.deepEqual(verdicts(compile(te, NODE)), {}, 'an unknown tunnel protocol is not ztunnel-captured: not local, no verdict');
});

test('locality: other nodes, other networks, not captured, host network, no node name, ports without a service', (t) => {
  const res = [
    workload({ ...base(), name: 'remote', ips: ['198.18.2.1'], node: 'node-b' }),
    workload({ ...base(), name: 'othernet', ips: ['198.18.2.2'], network: 'net2' }),
    workload({ ...base(), name: 'plain', ips: ['198.18.2.3'], tunnel: 'NONE' }),
    workload({ ...base(), name: 'hostnet', ips: ['198.18.0.1'], extra: { network_mode: 'HOST_NETWORK' } }),
    workload({ name: 'noservice', namespace: 'ns1', ips: ['198.18.2.4'], node: 'node-a' }),
    svc(),
  ];
  const s = compile(snap(res), NODE);
  t.deepEqual(entries(s), {
    '198.18.0.1/32': 'remote mesh net0 ns1/hostnet',
    '198.18.2.1/32': 'remote mesh net0 ns1/remote',
    '198.18.2.2/32': 'remote mesh net1 ns1/othernet',
    '198.18.2.3/32': 'remote nomesh net0 ns1/plain',
    '198.18.2.4/32': 'local mesh net0 ns1/noservice',
  });
  t.deepEqual(verdicts(s), {}, 'nothing to bypass: the only local workload has no service port');
  t.true(s.notes.some((n) => n.includes('ns1/noservice') && n.includes('no service names a port of it')));
  t.deepEqual(s.networks, ['', 'net2']);
  // without a node name nothing is local
  const none = compile(snap(res), { ...NODE, nodeName: undefined } as never);
  t.false(none.endpoints.some((e) => e.local));
  // one address claimed by a local workload and by one elsewhere (a stale pod IP): not local
  const dup = compile(snap([workload(base()), workload({ ...base(), name: 'stale', ips: ['198.18.1.1'], node: 'node-b' }), svc()]), NODE);
  t.is(entries(dup)['198.18.1.1/32'], 'remote mesh net0 ns1/a');
  t.is(entries(dup)['fd00::1:1/128'], 'local mesh net0 ns1/a');
  t.false(explain(dup, { ip: '198.18.1.1', port: 8080 }, 'fd00::1:1').shortCircuit);
  // this node on network net2: the net2 workload is the local one
  const n2 = compile(snap([workload({ ...base(), network: 'net2' }), svc()]), { ...NODE, network: 'net2' });
  t.is(verdicts(n2)['198.18.1.1:8080'], 'bypass');
});

test('target ports: the endpoint mapping wins, else the Service target_port, else no verdict', (t) => {
  const s = compile(
    snap([
      workload({ ...base(), name: 'a', ips: ['198.18.1.1'], services: { [SVC]: [[80, 9090]] } }),
      workload({ ...base(), name: 'b', ips: ['198.18.1.2'], services: { [SVC]: [[80, 0]] } }),
      workload({ ...base(), name: 'c', ips: ['198.18.1.3'], services: { [SVC]: [[81, 0]] } }),
      svc(),
    ]),
    NODE,
  );
  t.deepEqual(verdicts(s), { '198.18.1.1:9090': 'bypass', '198.18.1.2:8080': 'bypass' });
  t.true(s.notes.some((n) => n.includes('ns1/c') && n.includes('port 81: no target port')));
});

test('operator exclusions: never bypass an excluded namespace or workload, as destination or source, and say why', (t) => {
  const res = [workload(base()), workload({ ...base(), name: 'b', ips: ['198.18.1.2'], extra: { workload_name: 'b-deploy' } }), svc()];
  const byNs = compile(snap(res), { ...NODE, exclude: { namespaces: ['ns1'], workloads: [] } });
  t.deepEqual(verdicts(byNs), { '198.18.1.1:8080': 'proxy', '198.18.1.2:8080': 'proxy', 'fd00::1:1:8080': 'proxy' });
  t.false(
    byNs.endpoints.some((e) => e.local),
    'an excluded workload is no bypass source either',
  );
  t.true(reasonsOf(byNs, '198.18.1.1:8080').includes('namespace ns1 excluded by the operator (--exclude-namespace) => proxy'));
  const byWl = compile(snap(res), { ...NODE, exclude: { namespaces: [], workloads: ['ns1/b-deploy'] } });
  t.deepEqual(verdicts(byWl), { '198.18.1.1:8080': 'bypass', '198.18.1.2:8080': 'proxy', 'fd00::1:1:8080': 'bypass' });
  t.true(reasonsOf(byWl, '198.18.1.2:8080').includes('workload ns1/b-deploy excluded by the operator (--exclude-workload) => proxy'));
  const e = explain(byWl, { ip: '198.18.1.2', port: 8080 });
  t.is(e.verdict, 'proxy');
});

test('deterministic: the same resources in any order give the same state; malformed bytes in a snapshot are problems', (t) => {
  const res = [workload(base()), workload({ ...base(), name: 'b', ips: ['198.18.1.2'] }), svc(), authorization({ name: 'p', namespace: 'ns2', scope: 'NAMESPACE' })];
  t.deepEqual(compile(snap(res), NODE), compile(snap([...res].reverse()), NODE));
  const bad = snap([workload(base()), svc()]);
  const a = bad.addresses?.get('Kubernetes//Pod/ns1/a') as JsonObject;
  bad.addresses?.set('Kubernetes//Pod/ns1/a', { workload: { ...(a.workload as JsonObject), addresses: ['AQID'] } });
  const r = compileChecked(bad, NODE);
  t.true('error' in r && /workload.addresses: an IP address must be 4 or 16 bytes, got 3/.test(r.error));
});

test('WDS resource list files: proto JSON through the real protos; bad items name their place', (t) => {
  const good = { resources: [workload(base()), svc(), authorization({ name: 'p', namespace: 'ns2', scope: 'NAMESPACE' })] };
  const { snapshot } = snapshotFromDocument(good);
  t.deepEqual([...(snapshot.addresses?.keys() ?? [])], ['Kubernetes//Pod/ns1/a', SVC]);
  t.deepEqual([...(snapshot.authorizations?.keys() ?? [])], ['ns2/p']);
  t.is(verdicts(compile(snapshot, NODE))['198.18.1.1:8080'], 'bypass');
  // lowerCamelCase is proto3 JSON too
  const camel = snapshotFromDocument([{ '@type': 'type.googleapis.com/istio.workload.Address', workload: { uid: 'u1', addresses: ['xhIBAQ=='], tunnelProtocol: 'HBONE', node: 'node-a' } }]);
  t.is(((camel.snapshot.addresses?.get('u1') as JsonObject).workload as JsonObject).tunnel_protocol, 'HBONE');

  const bad = (resources: JsonObject[]) => {
    const e = t.throws(() => snapshotFromDocument({ resources }, 'f.json'), { instanceOf: XdsParseError });
    return e?.reasons.join('\n') ?? '';
  };
  t.regex(
    bad([svc(), workload({ ...base(), ips: [], extra: { addresses: ['AQIDBAU='] } })]),
    /f\.json: Address "Kubernetes\/\/Pod\/ns1\/a".*workload\.addresses\[0\]: an IP address must be 4 or 16 bytes, got 5/,
  );
  t.regex(bad([{ ...svc(), service: { ...(svc().service as JsonObject), ports: [{ service_port: 0, target_port: 1 }] } }]), /service\.ports\[0\]\.service_port: port out of range/);
  t.regex(bad([{ '@type': 'type.googleapis.com/istio.workload.Address', workload: { uid: 'x', frobnicate: true } }]), /resources\[0\]: .*unknown field frobnicate/);
  t.regex(bad([workload(base()), { '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name: 'c' }]), /resources\[1\]: .*in a WDS resource list/);
  t.regex(bad([{ '@type': 'type.googleapis.com/istio.security.Authorization', namespace: 'x' }]), /missing required field name/);
});
