// The data path on the real kernel: bytes through the bypass between two network
// namespaces (IPv4, IPv6, IPv4-mapped), hashed at both ends, counters read back;
// flows the maps do not allow keep the stack; loopback is never cross-paired.
import { load } from '../../src/loader/load.js';
import { openMaps } from '../../src/maps/pinned.js';
import type { StatName } from '../../src/maps/codecs.js';
import { delta, kernelSuite, stats, transfer, type TransferSpec } from '../helpers/kernel.js';

const A4 = '198.18.1.1';
const B4 = '198.18.1.2';
const A6 = 'fd00:0:0:1::1';
const B6 = 'fd00:0:0:1::2';

const { ktest, topo } = kernelSuite('kernel data path tests', {
  pods: [
    { name: 'a', v4: `${A4}/24`, v6: `${A6}/64` },
    { name: 'b', v4: `${B4}/24`, v6: `${B6}/64` },
  ],
});

/** Start each test from empty endpoint/policy maps. */
function resetMaps(): void {
  const m = openMaps(topo!.pinDir);
  try {
    m.endpoints.deleteMany([...m.endpoints.keys()]);
    m.policy.deleteMany([...m.policy.keys()]);
  } finally {
    m.close();
  }
}

function setup(f: (m: ReturnType<typeof openMaps>) => void): void {
  resetMaps();
  const m = openMaps(topo!.pinDir);
  try {
    f(m);
  } finally {
    m.close();
  }
}

const local = { local: true, mesh: true, networkId: 0, workloadId: 0 };

const v4: Omit<TransferSpec, 'reverse'> = { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5001,reuseaddr', connect: `TCP4:${B4}:5001`, port: 5001 };
const v6: Omit<TransferSpec, 'reverse'> = { server: 'b', client: 'a', listen: 'TCP6-LISTEN:5002,reuseaddr,ipv6only=1', connect: `TCP6:[${B6}]:5002`, port: 5002 };

for (const [name, spec, cidrs, dst] of [
  ['IPv4', v4, ['198.18.1.0/24'], B4],
  ['IPv6', v6, ['fd00:0:0:1::/64'], B6],
] as const) {
  for (const reverse of [false, true]) {
    ktest(`${name}: bytes ${reverse ? 'server->client' : 'client->server'} go socket to socket, intact`, async (t) => {
      setup((m) => {
        for (const c of cidrs) m.endpoints.set(c, local);
        m.policy.set({ ip: dst, port: spec.port }, { verdict: 'bypass', ruleId: 7 });
      });
      const before = stats(topo!.pinDir);
      const r = await transfer(topo!, { ...spec, reverse });
      const d = delta(before, stats(topo!.pinDir));
      t.is(r.received, r.sent, 'hash at the receiver equals hash at the sender');
      t.is(d.sockets_inserted, 2, 'both ends of the connection entered mb_sockets');
      t.true(d.redirect_bytes >= r.bytes, `redirected ${d.redirect_bytes} bytes, sent ${r.bytes}`);
      t.true(d.redirect_msgs > 0);
      t.is(d.peer_missing_bytes, 0, 'no message missed its peer');
    });
  }
}

ktest('IPv4-mapped IPv6: dual-stack AF_INET6 sockets (and an AF_INET client) share one key space', async (t) => {
  setup((m) => {
    m.endpoints.set('198.18.1.0/24', local);
    m.policy.set({ ip: B4, port: 5003 }, { verdict: 'bypass', ruleId: 1 });
  });
  // Both ends AF_INET6, talking IPv4 through ::ffff:198.18.1.2.
  const mapped: TransferSpec = { server: 'b', client: 'a', listen: 'TCP6-LISTEN:5003,reuseaddr,ipv6only=0', connect: `TCP6:[::ffff:${B4}]:5003`, port: 5003 };
  let before = stats(topo!.pinDir);
  let r = await transfer(topo!, mapped);
  let d = delta(before, stats(topo!.pinDir));
  t.is(r.received, r.sent);
  t.is(d.sockets_inserted, 2);
  t.true(d.redirect_bytes >= r.bytes, `AF_INET6 both ends: redirected ${d.redirect_bytes}`);
  // AF_INET client against the dual-stack AF_INET6 server: the keys must still mirror.
  before = stats(topo!.pinDir);
  r = await transfer(topo!, { ...mapped, connect: `TCP4:${B4}:5003` });
  d = delta(before, stats(topo!.pinDir));
  t.is(r.received, r.sent);
  t.is(d.sockets_inserted, 2);
  t.true(d.redirect_bytes >= r.bytes, `AF_INET client, AF_INET6 server: redirected ${d.redirect_bytes}`);
});

// Each end judges itself: the client sees the server as 'remote', the server
// sees the client as 'remote', so one missing endpoint counts once per side.
const negatives: Array<{ name: string; expect: Partial<Record<StatName, number>>; arrange: (m: ReturnType<typeof openMaps>) => void }> = [
  {
    name: 'server endpoint not local',
    expect: { skip_remote_unknown: 1, skip_local_unknown: 1 },
    arrange: (m) => {
      m.endpoints.set(`${A4}/32`, local);
      m.endpoints.set(`${B4}/32`, { ...local, local: false });
      m.policy.set({ ip: B4, port: 5001 }, { verdict: 'bypass', ruleId: 1 });
    },
  },
  {
    name: 'client unknown to mb_endpoints',
    expect: { skip_local_unknown: 1, skip_remote_unknown: 1 },
    arrange: (m) => {
      m.endpoints.set(`${B4}/32`, local);
      m.policy.set({ ip: B4, port: 5001 }, { verdict: 'bypass', ruleId: 1 });
    },
  },
  {
    name: 'endpoints on different networks',
    expect: { skip_network: 2 },
    arrange: (m) => {
      m.endpoints.set(`${A4}/32`, local);
      m.endpoints.set(`${B4}/32`, { ...local, networkId: 3 });
      m.policy.set({ ip: B4, port: 5001 }, { verdict: 'bypass', ruleId: 1 });
    },
  },
  {
    name: 'port with verdict PROXY',
    expect: { skip_proxy: 2 },
    arrange: (m) => {
      m.endpoints.set('198.18.1.0/24', local);
      m.policy.set({ ip: B4, port: 5001 }, { verdict: 'proxy', ruleId: 1 });
    },
  },
  {
    name: 'port with no verdict',
    expect: { skip_no_policy: 2 },
    arrange: (m) => {
      m.endpoints.set('198.18.1.0/24', local);
      m.policy.set({ ip: B4, port: 5999 }, { verdict: 'bypass', ruleId: 1 }); // another port
    },
  },
];

for (const n of negatives) {
  ktest(`not eligible (${n.name}): normal stack, zero bytes redirected, data intact`, async (t) => {
    setup(n.arrange);
    const before = stats(topo!.pinDir);
    const r = await transfer(topo!, v4);
    const d = delta(before, stats(topo!.pinDir));
    t.is(r.received, r.sent);
    t.is(d.redirect_bytes, 0, 'no byte was redirected');
    t.is(d.sockets_inserted, 0);
    for (const [k, v] of Object.entries(n.expect)) t.is(d[k as StatName], v, `counter ${k}`);
    t.is(d.sockops_established, 2);
  });
}

ktest('loopback: two namespaces with identical 127.0.0.1 connections are never cross-paired', async (t) => {
  setup((m) => {
    m.endpoints.set('127.0.0.0/8', local);
    m.policy.set({ ip: '127.0.0.1', port: 5010 }, { verdict: 'bypass', ruleId: 1 });
  });
  // Same server port AND same client port in both namespaces: identical 4-tuples.
  const spec = (pod: string): TransferSpec => ({
    server: pod,
    client: pod,
    listen: 'TCP4-LISTEN:5010,reuseaddr,bind=127.0.0.1',
    connect: 'TCP4:127.0.0.1:5010,bind=127.0.0.1:40010,reuseaddr',
    port: 5010,
    bytes: 8 << 20,
  });
  const before = stats(topo!.pinDir);
  const [ra, rb] = await Promise.all([transfer(topo!, spec('a')), transfer(topo!, spec('b'))]);
  const d = delta(before, stats(topo!.pinDir));
  t.is(ra.received, ra.sent, 'namespace a got its own bytes');
  t.is(rb.received, rb.sent, 'namespace b got its own bytes');
  t.not(ra.sent, rb.sent);
  t.is(d.insert_failed, 0, 'netns cookie keeps the identical tuples apart (no key collision)');
  t.is(d.sockets_inserted, 4);
  t.true(d.redirect_bytes >= ra.bytes + rb.bytes, `redirected ${d.redirect_bytes}`);
});

ktest('degraded build without bpf_get_netns_cookie: loopback is never accelerated, other flows still are', async (t) => {
  // Load the variant a < 5.15 kernel gets, over the same pins (an in-place upgrade).
  load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup, assumeMissing: ['netnsCookie'] });
  try {
    setup((m) => {
      m.endpoints.set('127.0.0.0/8', local);
      m.endpoints.set('198.18.1.0/24', local);
      m.policy.set({ ip: '127.0.0.1', port: 5011 }, { verdict: 'bypass', ruleId: 1 });
      m.policy.set({ ip: B4, port: 5001 }, { verdict: 'bypass', ruleId: 1 });
    });
    let before = stats(topo!.pinDir);
    const lo = await transfer(topo!, { server: 'a', client: 'a', listen: 'TCP4-LISTEN:5011,reuseaddr,bind=127.0.0.1', connect: 'TCP4:127.0.0.1:5011', port: 5011 });
    let d = delta(before, stats(topo!.pinDir));
    t.is(lo.received, lo.sent);
    t.is(d.skip_loopback_no_cookie, 2, 'both loopback ends refused');
    t.is(d.redirect_bytes, 0);
    before = stats(topo!.pinDir);
    const r = await transfer(topo!, v4);
    d = delta(before, stats(topo!.pinDir));
    t.is(r.received, r.sent);
    t.true(d.redirect_bytes >= r.bytes, 'pod-to-pod still redirected');
  } finally {
    load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup }); // back to the full build
  }
});
