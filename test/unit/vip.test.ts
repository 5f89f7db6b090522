// Service VIPs, the pure half: which VIPs and local backends the compiler
// derives from Istio-shaped outbound listeners, and the sync order that never
// lets a connect read a slot without a backend (Kmesh #1042), checked after
// every single map write.
import test from 'ava';
import { compile } from '../../src/policy/compile.js';
import { planServices } from '../../src/maps/plan.js';
import { syncMaps } from '../../src/maps/sync.js';
import { BpfMap } from '../../src/maps/map.js';
import { backendKey, backendValue, endpointKey, endpointValue, policyKey, policyValue, serviceValue } from '../../src/maps/codecs.js';
import type { DesiredState, Locality, ServiceEntry } from '../../src/policy/types.js';
import type { JsonObject, XdsSnapshot } from '../../src/xds/types.js';
import { cla, edsCluster, hcmRdsFilter, listener, tcpListener, tcpProxyFilter } from '../helpers/resources.js';
import { FakeMap, FakeSyscalls } from '../helpers/fake-maps.js';
import { VIP_OUTCOME_STAT, vipOutcome } from '../../src/policy/explain.js';
import { STAT_NAMES } from '../../src/maps/codecs.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import type { Agent } from '../../src/agent/agent.js';

const loc: Locality = { nodeIps: ['198.18.0.1'], podCidrs: ['198.18.0.0/24', 'fd00:18::/64'], network: '' };

function snap(listeners: JsonObject[], clusters: JsonObject[], clas: JsonObject[]): XdsSnapshot {
  return {
    listeners: new Map(listeners.map((l) => [l.name as string, l])),
    clusters: new Map(clusters.map((c) => [c.name as string, c])),
    endpoints: new Map(clas.map((c) => [c.cluster_name as string, c])),
  } as unknown as XdsSnapshot;
}

const DB = 'outbound|5432||db.default.svc.cluster.local';
/** Istio's outbound TCP listener for a dual-stack ClusterIP, and its EDS cluster: one local and one remote pod per family. */
function dbSnapshot(
  eps: [string, number][] = [
    ['198.18.0.3', 5432],
    ['fd00:18::3', 5432],
    ['198.20.0.9', 5432],
  ],
): XdsSnapshot {
  const l = tcpListener('198.19.0.10_5432', '198.19.0.10', 5432, DB);
  l.traffic_direction = 'OUTBOUND';
  l.additional_addresses = [{ address: { socket_address: { address: 'fd00:96::10', port_value: 5432 } } }];
  return snap([l], [edsCluster(DB)], [cla(DB, eps)]);
}

test('compiler: an outbound TCP listener on a ClusterIP is a BYPASS service with its local backends, per family', (t) => {
  const s = compile(dbSnapshot(), loc);
  t.deepEqual(
    s.services?.map(({ vip, port, verdict, backends }) => ({ vip, port, verdict, backends })),
    [
      { vip: 'fd00:96::10', port: 5432, verdict: 'bypass', backends: [{ ip: 'fd00:18::3', port: 5432 }] },
      { vip: '198.19.0.10', port: 5432, verdict: 'bypass', backends: [{ ip: '198.18.0.3', port: 5432 }] },
    ].sort((a, b) => (a.vip.includes(':') ? 1 : 0) - (b.vip.includes(':') ? 1 : 0)),
  );
  const v4 = s.services!.find((x) => x.vip === '198.19.0.10')!;
  const rule = s.rules[v4.ruleId]!.reasons.join(' | ');
  t.regex(rule, /service VIP 198\.19\.0\.10:5432/);
  t.regex(rule, /1 local backend/);
  t.regex(rule, /plain tcp_proxy/);
  // the backend itself gets its bypass verdict from the same chain (sockops pairs it)
  t.true(s.policies.some((p) => p.ip === '198.18.0.3' && p.port === 5432 && p.verdict === 'bypass'));
  t.false(
    s.policies.some((p) => p.ip === '198.19.0.10'),
    'the VIP is not an endpoint: no mb_policy entry',
  );
});

test('compiler: no local endpoint gives a service with no backends (kube-proxy keeps it)', (t) => {
  const s = compile(dbSnapshot([['198.20.0.9', 5432]]), loc);
  const v4 = s.services?.find((x) => x.vip === '198.19.0.10');
  t.deepEqual(v4?.backends, []);
  t.is(v4?.verdict, 'bypass');
  t.regex(s.rules[v4!.ruleId]!.reasons.join(' '), /0 local backends/);
});

test('compiler: an HTTP listener on a VIP is a PROXY service; a chain that a proxy chain competes with is PROXY too', (t) => {
  const web = 'outbound|80||web.default.svc.cluster.local';
  const l = listener('198.19.0.20_80', '198.19.0.20', 80, [hcmRdsFilter(80)]);
  const s = compile(snap([l], [edsCluster(web)], [cla(web, [['198.18.0.4', 80]])]), loc);
  t.is(s.services?.find((x) => x.vip === '198.19.0.20')?.verdict, 'proxy');
});

test('compiler: a 0.0.0.0_PORT listener with one chain per VIP host prefix: one service per VIP', (t) => {
  const a = 'outbound|3306||a.default.svc.cluster.local';
  const b = 'outbound|3306||b.default.svc.cluster.local';
  const l: JsonObject = {
    name: '0.0.0.0_3306',
    address: { socket_address: { address: '0.0.0.0', port_value: 3306 } },
    filter_chains: [
      { filter_chain_match: { prefix_ranges: [{ address_prefix: '198.19.0.30', prefix_len: 32 }] }, filters: [tcpProxyFilter(a)] },
      { filter_chain_match: { prefix_ranges: [{ address_prefix: '198.19.0.31', prefix_len: 32 }] }, filters: [tcpProxyFilter(b)] },
      { filter_chain_match: { prefix_ranges: [{ address_prefix: '198.19.1.0', prefix_len: 24 }] }, filters: [tcpProxyFilter(b)] },
    ],
  };
  const s = compile(
    snap(
      [l],
      [edsCluster(a), edsCluster(b)],
      [
        cla(a, [['198.18.0.5', 3306]]),
        cla(b, [
          ['198.18.0.6', 3306],
          ['198.18.0.7', 3306],
        ]),
      ],
    ),
    loc,
  );
  t.deepEqual(
    s.services?.map((x) => [x.vip, x.port, x.backends.map((y) => y.ip)]),
    [
      ['198.19.0.30', 3306, ['198.18.0.5']],
      ['198.19.0.31', 3306, ['198.18.0.6', '198.18.0.7']],
    ],
    'a /24 is not a VIP',
  );
});

test('compiler: a listener on a pod IP (headless service) or a local address is never a VIP', (t) => {
  const h = 'outbound|5432||h.default.svc.cluster.local';
  const pod = tcpListener('198.18.0.3_5432', '198.18.0.3', 5432, h);
  const node = tcpListener('198.18.0.1_5432', '198.18.0.1', 5432, h);
  const s = compile(snap([pod, node], [edsCluster(h)], [cla(h, [['198.18.0.3', 5432]])]), loc);
  t.deepEqual(s.services, []);
  t.true(
    s.notes.some((n) => /198\.18\.0\.3 is an endpoint or local address, not a service VIP/.test(n)),
    s.notes.join('\n'),
  );
});

// ---- the plan ----

function svc(vip: string, port: number, backends: string[], verdict: 'bypass' | 'proxy' = 'bypass'): ServiceEntry {
  return { vip, port, verdict, ruleId: 0, backends: backends.map((b) => ({ ip: b, port: 8080 })) };
}

function state(services: ServiceEntry[]): DesiredState {
  const ips = [...new Set(services.flatMap((s) => s.backends.map((b) => b.ip)))];
  return {
    endpoints: ips.map((ip) => ({ cidr: ip, local: true, mesh: true, networkId: 0, workloadId: 0 })),
    policies: ips.map((ip) => ({ ip, port: 8080, verdict: 'bypass' as const, ruleId: 0 })),
    rules: [],
    networks: [''],
    workloads: [''],
    services,
  };
}

/**
 * Fake maps without batch ops (one syscall per entry), and a check run before
 * every syscall and at the end: every BYPASS service's slots below its count
 * hold a backend from the old or the new set of that VIP, never nothing.
 */
function checkedTargets(t: { fail(m: string): void }) {
  const sys = new FakeSyscalls();
  const one = { noBatch: 'EINVAL' as const };
  const fakes = {
    endpoints: new FakeMap({ keySize: endpointKey.size, valueSize: endpointValue.size, ...one }),
    policy: new FakeMap({ keySize: policyKey.size, valueSize: policyValue.size, ...one }),
    services: new FakeMap({ keySize: policyKey.size, valueSize: serviceValue.size, ...one }),
    backends: new FakeMap({ keySize: backendKey.size, valueSize: backendValue.size, ...one }),
  };
  const tg = {
    endpoints: new BpfMap(sys.add(fakes.endpoints), endpointKey, endpointValue, 'mb_endpoints', sys),
    policy: new BpfMap(sys.add(fakes.policy), policyKey, policyValue, 'mb_policy', sys),
    services: new BpfMap(sys.add(fakes.services), policyKey, serviceValue, 'mb_services', sys),
    backends: new BpfMap(sys.add(fakes.backends), backendKey, backendValue, 'mb_backends', sys),
  };
  let allowed = new Map<string, Set<string>>(); // "vip|port" -> backend ips a connect may get
  let checks = 0;
  const check = (): void => {
    checks++;
    for (const [kh, vb] of fakes.services.data) {
      const k = policyKey.decode(Buffer.from(kh, 'hex'), 0);
      const v = serviceValue.decode(vb, 0);
      if (!v.bypass) continue;
      for (let slot = 0; slot < v.count; slot++) {
        const kb = Buffer.alloc(backendKey.size);
        backendKey.encode(kb, 0, { serviceId: v.id, slot });
        const b = fakes.backends.data.get(kb.toString('hex'));
        const ok = allowed.get(`${k.ip}|${k.port}`);
        if (!b) return t.fail(`after ${checks} writes: ${k.ip}:${k.port} count ${v.count} but slot ${slot} is empty`);
        const ip = backendValue.decode(b, 0).ip;
        if (!ok?.has(ip)) return t.fail(`after ${checks} writes: ${k.ip}:${k.port} slot ${slot} holds ${ip}, neither old nor new`);
      }
    }
  };
  for (const f of Object.values(fakes)) f.before = (call) => void (call.startsWith('update') || call.startsWith('delete') ? check() : undefined);
  const names = new Map<number, string>([
    [tg.services.fd, 'services'],
    [tg.backends.fd, 'backends'],
    [tg.policy.fd, 'policy'],
    [tg.endpoints.fd, 'endpoints'],
  ]);
  return {
    tg,
    fakes,
    /** the writes since the last call, as "map:call" */
    writes(): string[] {
      const out = sys.log.filter(([, c]) => c.startsWith('update') || c.startsWith('delete')).map(([fd, c]) => `${names.get(fd)}:${c}`);
      sys.log.length = 0;
      return out;
    },
    sync(from: ServiceEntry[], to: ServiceEntry[]) {
      allowed = new Map();
      for (const s of [...from, ...to]) {
        const set = allowed.get(`${s.vip}|${s.port}`) ?? new Set<string>();
        for (const b of s.backends) set.add(b.ip);
        allowed.set(`${s.vip}|${s.port}`, set);
      }
      // Endpoints/policies of both states stay until the next sync: the VIP check is about slots.
      const r = syncMaps(tg, state(to));
      check();
      return r;
    },
  };
}

test('plan: a new service gets id 1, its backends before it, then nothing to do', (t) => {
  const { plan, counts } = planServices([svc('198.19.0.10', 80, ['198.18.0.3', '198.18.0.4'])], { services: new Map(), backends: new Map() });
  t.deepEqual(counts.services, { added: 1, changed: 0, removed: 0, unchanged: 0 });
  t.is(plan.backendUpserts.length, 2);
  t.is(plan.widen.length, 1);
  t.is(serviceValue.decode(Buffer.from(plan.widen[0]![1], 'latin1'), 0).id, 1);
  const again = planServices([svc('198.19.0.10', 80, ['198.18.0.3', '198.18.0.4'])], plan.after);
  t.deepEqual(again.counts.services, { added: 0, changed: 0, removed: 0, unchanged: 1 });
  t.deepEqual([again.plan.backendUpserts, again.plan.widen, again.plan.backendDeletes, again.plan.narrow.deletes], [[], [], [], []]);
});

test('sync: add a second backend, remove the first, drop the service: no write ever leaves an empty or foreign slot', (t) => {
  const c = checkedTargets(t);
  const vip = '198.19.0.10';
  const steps: ServiceEntry[][] = [
    [svc(vip, 80, ['198.18.0.3'])],
    [svc(vip, 80, ['198.18.0.3', '198.18.0.4'])],
    [svc(vip, 80, ['198.18.0.4'])],
    [svc(vip, 80, ['198.18.0.4', '198.18.0.5', '198.18.0.6'])],
    [svc(vip, 80, ['198.18.0.6']), svc('198.19.0.11', 80, ['198.18.0.3'])],
    [svc(vip, 80, ['198.18.0.6'], 'proxy'), svc('198.19.0.11', 80, [])],
    [],
  ];
  let prev: ServiceEntry[] = [];
  for (const s of steps) {
    c.sync(prev, s);
    prev = s;
  }
  t.is(c.fakes.services.data.size, 0);
  t.is(c.fakes.backends.data.size, 0, 'every backend deleted once its service is gone');
});

test('sync: a shrink rewrites the slot in place before the count drops, and deletes the tail last', (t) => {
  const c = checkedTargets(t);
  const vip = '198.19.0.10';
  c.sync([], [svc(vip, 80, ['198.18.0.3', '198.18.0.4'])]);
  c.writes();
  const r = c.sync([svc(vip, 80, ['198.18.0.3', '198.18.0.4'])], [svc(vip, 80, ['198.18.0.4'])]);
  t.deepEqual(r.counts.backends, { added: 0, changed: 1, removed: 1, unchanged: 0 });
  t.deepEqual(r.counts.services, { added: 0, changed: 1, removed: 0, unchanged: 0 });
  const w = c.writes().filter((x) => !x.startsWith('policy') && !x.startsWith('endpoints') && !x.endsWith('Batch'));
  t.deepEqual(w, ['backends:update', 'services:update', 'backends:delete'], 'slot 0 rewritten in place, then the count, then the tail');
});

test('sync: ids are stable and a deleted service id is not reused in the same sync', (t) => {
  const c = checkedTargets(t);
  c.sync([], [svc('198.19.0.10', 80, ['198.18.0.3']), svc('198.19.0.11', 80, ['198.18.0.4'])]);
  const ids = () => new Map([...c.tg.services.entries()].map(([k, v]) => [k.ip, v.id]));
  t.deepEqual(
    ids(),
    new Map([
      ['198.19.0.10', 1],
      ['198.19.0.11', 2],
    ]),
  );
  c.sync([svc('198.19.0.10', 80, ['198.18.0.3']), svc('198.19.0.11', 80, ['198.18.0.4'])], [svc('198.19.0.11', 80, ['198.18.0.4']), svc('198.19.0.12', 80, ['198.18.0.5'])]);
  t.deepEqual(
    ids(),
    new Map([
      ['198.19.0.11', 2],
      ['198.19.0.12', 3],
    ]),
  );
  t.deepEqual([...c.tg.backends.entries()].map(([k, v]) => [k.serviceId, k.slot, v.ip]).sort(), [
    [2, 0, '198.18.0.4'],
    [3, 0, '198.18.0.5'],
  ]);
});

// ---- explain and metrics ----

test('vipOutcome: the connect rule in the kernel order, each outcome a counter', (t) => {
  const ok = { service: { bypass: true, count: 2 }, src: { local: true, networkId: 0, captured: false }, backend: { end: { local: true, networkId: 0 }, verdict: 'bypass' as const } };
  t.is(vipOutcome(ok), 'translated');
  t.is(vipOutcome({ ...ok, service: undefined }), 'not_a_service');
  t.is(vipOutcome({ ...ok, service: { bypass: false, count: 2 } }), 'proxy');
  t.is(vipOutcome({ ...ok, service: { bypass: true, count: 0 } }), 'no_local_backend');
  t.is(vipOutcome({ ...ok, src: undefined }), 'source_unknown');
  t.is(vipOutcome({ ...ok, src: { ...ok.src, captured: true } }), 'captured', 'a sidecar pod is never translated, even with everything else in place');
  t.is(vipOutcome({ ...ok, src: { ...ok.src, local: false } }), 'network');
  t.is(vipOutcome({ ...ok, backend: { end: { local: true, networkId: 1 }, verdict: 'bypass' } }), 'network');
  t.is(vipOutcome({ ...ok, backend: { end: { local: true, networkId: 0 }, verdict: 'proxy' } }), 'proxy');
  t.is(vipOutcome({ ...ok, backend: { end: undefined, verdict: 'bypass' } }), 'network');
  for (const stat of Object.values(VIP_OUTCOME_STAT)) t.true((STAT_NAMES as readonly string[]).includes(stat), stat);
});

test('/metrics exports the VIP counters by outcome', async (t) => {
  const s = Object.fromEntries(STAT_NAMES.map((n, i) => [n, BigInt(i)])) as Record<string, bigint>;
  const agent = { stats: () => s, occupancy: () => ({}), inspect: () => ({ sockops: { attached: true }, skMsg: { attached: true } }) } as unknown as Agent;
  const text = await new AgentMetrics(agent).registry.metrics();
  t.regex(text, new RegExp(`meshbpf_vip_connects_total\\{outcome="translated"\\} ${STAT_NAMES.indexOf('vip_translated')}`));
  t.regex(text, new RegExp(`meshbpf_vip_connects_total\\{outcome="captured"\\} ${STAT_NAMES.indexOf('vip_skip_captured')}`));
  t.regex(text, new RegExp(`meshbpf_vip_peername_restored_total ${STAT_NAMES.indexOf('vip_peername_restored')}`));
});
