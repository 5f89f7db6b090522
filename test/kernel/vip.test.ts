// Service VIPs on the real kernel: a bridge node whose client pods carry
// kube-proxy's ClusterIP DNAT rules (iptables and ip6tables nat, the
// KUBE-SERVICES / KUBE-SVC / KUBE-SEP shape), maps filled by the compiler from
// an Istio-shaped outbound listener. A connect to the VIP from a plain pod goes
// straight to a local backend, socket to socket, and getpeername still says
// VIP; with no local backend, a PROXY verdict or a sidecar-captured client the
// connect is left alone and kube-proxy's DNAT carries it.
import test from 'ava';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { existsSync, rmSync } from 'node:fs';
import { load } from '../../src/loader/load.js';
import { openMaps, pinPaths } from '../../src/maps/pinned.js';
import { syncMaps } from '../../src/maps/sync.js';
import { applySidecar, sidecarSettings } from '../../src/maps/sidecar.js';
import { compile } from '../../src/policy/compile.js';
import { writeRules } from '../../src/maps/state.js';
import { waitForListen } from '../../src/topo/peers.js';
import type { JsonObject, XdsSnapshot } from '../../src/xds/types.js';
import { cla, edsCluster, hcmRdsFilter, listener, tcpProxyFilter } from '../helpers/resources.js';
import { cli, delta, kernelSuite, stats, tempDir } from '../helpers/kernel.js';

const IP = {
  a: { v4: '198.18.30.1', v6: 'fd00:30::1' },
  b: { v4: '198.18.30.2', v6: 'fd00:30::2' },
  c: { v4: '198.18.30.3', v6: 'fd00:30::3' },
  d: { v4: '198.18.30.4', v6: 'fd00:30::4' },
  e: { v4: '198.18.30.5', v6: 'fd00:30::5' },
  f: { v4: '198.18.30.6', v6: 'fd00:30::6' },
};
const VIP = { v4: '198.19.30.10', v6: 'fd00:96::30:10' };
const PORT = 80;
const TARGET = 8080;
const CLUSTER = `outbound|${PORT}||web.mbt.svc.cluster.local`;
const loc = { nodeIps: [], podCidrs: ['198.18.30.0/24', 'fd00:30::/64'], network: '' };
const peer = join(process.cwd(), 'test', 'peers', 'vip-peer.py');
const dir = tempDir();
const servers: ChildProcess[] = [];
const MiB = 1 << 20;
process.env.MESHBPF_STATE_DIR = join(dir, 'state'); // explain's reasons live here, not in /run

const { ktest, topo } = kernelSuite('service VIP tests', {
  kind: 'bridge',
  pods: (['a', 'b', 'c', 'd', 'e', 'f'] as const).map((p) => ({ name: p, v4: `${IP[p].v4}/24`, v6: `${IP[p].v6}/64` })),
  teardown: () => {
    for (const s of servers) s.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  },
});

/** What kube-proxy (iptables mode) writes for the ClusterIP, DNAT to pod b only. */
function kubeProxy(ns: string): void {
  for (const [bin, vip, ep, host] of [
    ['iptables-restore', VIP.v4, `${IP.b.v4}:${TARGET}`, '/32'],
    ['ip6tables-restore', VIP.v6, `[${IP.b.v6}]:${TARGET}`, '/128'],
  ] as const) {
    const rules = [
      '*nat',
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-SVC-MBTWEB - [0:0]',
      ':KUBE-SEP-MBTWEB-B - [0:0]',
      '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      `-A KUBE-SERVICES -d ${vip}${host} -p tcp -m comment --comment "mbt/web:http cluster IP" -m tcp --dport ${PORT} -j KUBE-SVC-MBTWEB`,
      `-A KUBE-SVC-MBTWEB -m comment --comment "mbt/web:http -> ${ep}" -j KUBE-SEP-MBTWEB-B`,
      `-A KUBE-SEP-MBTWEB-B -p tcp -m comment --comment "mbt/web:http" -m tcp -j DNAT --to-destination ${ep}`,
      'COMMIT',
      '',
    ].join('\n');
    execFileSync('ip', ['netns', 'exec', ns, bin], { input: rules });
  }
  // The ClusterIP ranges are routed to the pod's interface (DNAT picks the real hop).
  execFileSync('ip', ['-n', ns, 'route', 'add', '198.19.0.0/16', 'dev', 'eth0']);
  execFileSync('ip', ['-n', ns, '-6', 'route', 'add', 'fd00:96::/64', 'dev', 'eth0']);
}

/** Istio's outbound listener for the dual-stack ClusterIP and its EDS endpoints (ip, targetPort). */
function snapshot(eps: string[], opts: { http?: boolean } = {}): XdsSnapshot {
  const l: JsonObject = listener(`${VIP.v4}_${PORT}`, VIP.v4, PORT, opts.http ? [hcmRdsFilter(PORT)] : [tcpProxyFilter(CLUSTER)]);
  l.traffic_direction = 'OUTBOUND';
  l.additional_addresses = [{ address: { socket_address: { address: VIP.v6, port_value: PORT } } }];
  return {
    listeners: new Map([[l.name as string, l]]),
    clusters: new Map([[CLUSTER, edsCluster(CLUSTER)]]),
    endpoints: new Map([
      [
        CLUSTER,
        cla(
          CLUSTER,
          eps.map((ip) => [ip, TARGET] as [string, number]),
        ),
      ],
    ]),
  } as unknown as XdsSnapshot;
}
const both = (...pods: Array<'b' | 'c'>) => pods.flatMap((p) => [IP[p].v4, IP[p].v6]);

function sync(s: XdsSnapshot): void {
  const m = openMaps(topo!.pinDir);
  try {
    const desired = compile(s, loc);
    syncMaps(m, desired);
    writeRules(topo!.pinDir, desired.rules);
  } finally {
    m.close();
  }
}

interface Conn {
  peer: string;
  peerPort: number;
  sent: string;
  reply: { server: string; bytes: number; sha256: string } | null;
}

async function connect(from: string, host: string, bytes: number, count = 1, mapped = false): Promise<Conn[]> {
  const args = ['/usr/bin/python3', peer, 'connect', host, String(host === IP.b.v4 || host === IP.b.v6 ? TARGET : PORT), String(bytes), String(count), ...(mapped ? ['mapped'] : [])];
  const { stdout } = await topo!.run(from, args, { timeoutMs: 60_000 });
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Conn);
}

test.before(async () => {
  if (!topo) return;
  for (const p of ['b', 'c'] as const) {
    servers.push(topo.spawn(p, ['/usr/bin/python3', peer, 'serve', String(TARGET), p]));
    await waitForListen(topo, p, TARGET);
  }
  for (const p of ['a', 'd', 'e', 'f']) kubeProxy(topo.ns(p));
  sync(snapshot(both('b')));
  // The client pods' first sockets teach sockops their addresses (mb_netns):
  // until then a pod is unknown and never translated (e stays unknown).
  for (const p of ['a', 'd', 'f']) for (const ip of [IP.b.v4, IP.b.v6]) await connect(p, ip, 1);
});

for (const [name, host, mapped, want] of [
  ['IPv4', VIP.v4, false, VIP.v4],
  ['IPv6', VIP.v6, false, VIP.v6],
  ['IPv4 VIP from a dual-stack AF_INET6 socket', VIP.v4, true, `::ffff:${VIP.v4}`],
] as const) {
  ktest(`${name}: a connect to the VIP goes to the local backend socket to socket; getpeername says VIP`, async (t) => {
    const before = stats(topo!.pinDir);
    const [c] = await connect('a', host, 4 * MiB, 1, mapped);
    const d = delta(before, stats(topo!.pinDir));
    t.is(c?.peer, want, 'getpeername returns the VIP');
    t.is(c?.peerPort, PORT);
    t.is(c?.reply?.server, 'b');
    t.is(c?.reply?.bytes, 4 * MiB);
    t.is(c?.reply?.sha256, c?.sent, 'hash equal at both ends');
    t.is(d.vip_translated, 1);
    t.true(d.vip_peername_restored >= 1, JSON.stringify(d));
    t.true(d.redirect_bytes >= 4 * MiB, `redirect_bytes grew by ${d.redirect_bytes}, want >= ${4 * MiB}`);
  });
}

ktest('from a sidecar-captured pod: not rewritten (its sidecar must see the VIP), kube-proxy carries it', async (t) => {
  const m = openMaps(topo!.pinDir);
  try {
    applySidecar(m, sidecarSettings([IP.d.v4, IP.d.v6]));
  } finally {
    m.close();
  }
  try {
    const before = stats(topo!.pinDir);
    const [c] = await connect('d', VIP.v4, 2 * MiB);
    const d = delta(before, stats(topo!.pinDir));
    t.is(c?.peer, VIP.v4);
    t.is(c?.reply?.server, 'b', 'through the DNAT');
    t.is(c?.reply?.sha256, c?.sent);
    t.is(d.vip_translated, 0);
    t.is(d.vip_skip_captured, 1);
    t.is(d.redirect_bytes, 0);
    // the same VIP from a plain pod at the same moment is still resolved
    const before2 = stats(topo!.pinDir);
    await connect('a', VIP.v4, 1024);
    t.is(delta(before2, stats(topo!.pinDir)).vip_translated, 1);
  } finally {
    const m2 = openMaps(topo!.pinDir);
    try {
      applySidecar(m2, undefined);
    } finally {
      m2.close();
    }
  }
});

ktest('a pod whose netns sockops has not seen yet: its first connect is left to kube-proxy, the next one is resolved', async (t) => {
  let before = stats(topo!.pinDir);
  const [first] = await connect('e', VIP.v4, 64 * 1024);
  let d = delta(before, stats(topo!.pinDir));
  t.is(first?.reply?.server, 'b');
  t.is(first?.reply?.sha256, first?.sent);
  t.is(d.vip_skip_source_unknown, 1);
  t.is(d.vip_translated, 0);
  before = stats(topo!.pinDir);
  const [second] = await connect('e', VIP.v4, 64 * 1024);
  d = delta(before, stats(topo!.pinDir));
  t.is(second?.reply?.sha256, second?.sent);
  t.is(d.vip_translated, 1, 'the first connection taught sockops the pod address');
});

ktest('no local endpoint: not rewritten, counted, kube-proxy carries it', async (t) => {
  sync(snapshot(['198.20.30.9', 'fd00:31::9'])); // endpoints on another node only
  try {
    for (const host of [VIP.v4, VIP.v6]) {
      const before = stats(topo!.pinDir);
      const [c] = await connect('a', host, 2 * MiB);
      const d = delta(before, stats(topo!.pinDir));
      t.is(c?.peer, host);
      t.is(c?.reply?.server, 'b');
      t.is(c?.reply?.sha256, c?.sent);
      t.is(d.vip_translated, 0);
      t.is(d.vip_no_local_backend, 1);
      t.is(d.redirect_bytes, 0);
    }
  } finally {
    sync(snapshot(both('b')));
  }
});

ktest('PROXY verdict (the port is HTTP): not rewritten, counted, kube-proxy carries it', async (t) => {
  sync(snapshot(both('b'), { http: true }));
  try {
    const before = stats(topo!.pinDir);
    const [c] = await connect('a', VIP.v4, 2 * MiB);
    const d = delta(before, stats(topo!.pinDir));
    t.is(c?.reply?.server, 'b');
    t.is(c?.reply?.sha256, c?.sent);
    t.is(d.vip_translated, 0);
    t.is(d.vip_skip_proxy, 1);
    t.is(d.redirect_bytes, 0);
  } finally {
    sync(snapshot(both('b')));
  }
});

ktest('endpoints change under traffic: established bytes intact, new connects follow the maps', async (t) => {
  const CHUNK = 1 * MiB;
  const before = stats(topo!.pinDir);
  const long = topo!.spawn('a', ['/usr/bin/python3', peer, 'stream', VIP.v4, String(PORT), String(CHUNK)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = createInterface({ input: long.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => JSON.parse(((await lines.next()).value as string) ?? 'null') as Record<string, unknown>;
  const ready = await next();
  t.is(ready.peer, VIP.v4);
  const send = async () => {
    long.stdin!.write('x\n');
    t.is((await next()).sentChunk, CHUNK);
  };
  await send();

  const landed = async (): Promise<Record<string, number>> => {
    const cs = await connect('a', VIP.v4, 64 * 1024, 20);
    const out: Record<string, number> = {};
    for (const c of cs) {
      t.is(c.reply?.sha256, c.sent);
      const s = c.reply?.server ?? 'none';
      out[s] = (out[s] ?? 0) + 1;
    }
    return out;
  };
  sync(snapshot(both('b', 'c'))); // a second local endpoint
  const two = await landed();
  await send();
  sync(snapshot(both('c'))); // the first one leaves
  const onlyC = await landed();
  await send();
  long.stdin!.end();
  const fin = (await next()) as unknown as Conn;
  const d = delta(before, stats(topo!.pinDir));

  t.log(`b and c: ${JSON.stringify(two)}; c only: ${JSON.stringify(onlyC)}`);
  t.is((two.b ?? 0) + (two.c ?? 0), 20, 'every new connect landed on a backend in the maps');
  t.true((two.b ?? 0) > 0 && (two.c ?? 0) > 0, `both backends chosen (chance of a miss: 2^-19): ${JSON.stringify(two)}`);
  t.deepEqual(onlyC, { c: 20 }, 'after the first endpoint left, every new connect went to the second');
  t.is(fin.reply?.server, 'b', 'the established connection stayed on its backend');
  t.is(fin.reply?.bytes, 3 * CHUNK);
  t.is(fin.reply?.sha256, fin.sent, 'its bytes intact across both endpoint changes');
  t.is(d.vip_translated, 41);
  t.true(d.redirect_bytes >= 3 * CHUNK + 40 * 64 * 1024, `redirect_bytes grew by ${d.redirect_bytes}`);
  sync(snapshot(both('b')));
});

ktest('a netns where the proxy uid 1337 connected is a sidecar pod from then on, even with no capture list', async (t) => {
  const before = stats(topo!.pinDir);
  const asProxy = ['setpriv', '--reuid=1337', '--regid=1337', '--clear-groups', '/usr/bin/python3', peer, 'connect', VIP.v4, String(PORT), '1024', '1'];
  const { stdout } = await topo!.run('f', asProxy, { timeoutMs: 30_000 });
  const p = JSON.parse(stdout.trim()) as Conn;
  const [app] = await connect('f', VIP.v4, 64 * 1024);
  const d = delta(before, stats(topo!.pinDir));
  t.is(p.reply?.sha256, p.sent);
  t.is(app?.reply?.server, 'b');
  t.is(app?.reply?.sha256, app?.sent);
  t.is(d.vip_skip_captured, 2, 'the proxy connect and the app connect after it');
  t.is(d.vip_translated, 0);
});

ktest('maps dump decodes the service maps; policy explain names the backend and why; explain and the kernel agree', (t) => {
  const dump = cli(['maps', 'dump', '--pin-dir', topo!.pinDir, '-o', 'json']);
  t.is(dump.code, 0, dump.stderr);
  const j = JSON.parse(dump.stdout) as Record<string, Array<{ key: unknown; value: Record<string, unknown> }>>;
  const svc = j.mb_services?.find((e) => (e.key as { ip: string }).ip === VIP.v4);
  t.is(svc?.value.count, 1);
  t.is(svc?.value.verdict, 'bypass');
  t.true(
    j.mb_backends?.some((e) => e.value.ip === IP.b.v4 && e.value.port === TARGET),
    JSON.stringify(j.mb_backends),
  );
  t.true(
    j.mb_netns?.some((e) => e.value.ip4 === IP.a.v4),
    'pod a learned',
  );

  const env = { MESHBPF_STATE_DIR: join(dir, 'state') };
  const ex = cli(['policy', 'explain', VIP.v4, String(PORT), '--from', IP.a.v4, '--pin-dir', topo!.pinDir, '-o', 'json'], { env });
  t.is(ex.code, 0, ex.stderr);
  const e = JSON.parse(ex.stdout) as { verdict: string; service: { outcome: string; backends: Array<{ ip: string; port: number; outcome: string }> }; reasons: string[] };
  t.is(e.verdict, 'bypass');
  t.is(e.service.outcome, 'translated');
  t.deepEqual(
    e.service.backends.map((b) => [b.ip, b.port, b.outcome]),
    [[IP.b.v4, TARGET, 'translated']],
  );
  t.true(
    e.reasons.some((r) => r.includes('service VIP 198.19.30.10:80')),
    e.reasons.join('\n'),
  );
  t.true(
    e.reasons.some((r) => r.includes('getpeername returns')),
    e.reasons.join('\n'),
  );
  const out = cli(['policy', 'explain', VIP.v4, String(PORT), '--from', '198.20.30.9', '--pin-dir', topo!.pinDir, '-o', 'json'], { env });
  const o = JSON.parse(out.stdout) as { verdict: string; service: { outcome: string } };
  t.is(o.service.outcome, 'network', 'a client that is not a local pod is never translated');
  t.is(o.verdict, 'none');
  const text = cli(['policy', 'explain', VIP.v4, String(PORT), '--from', IP.a.v4, '--pin-dir', topo!.pinDir], { env });
  t.regex(text.stdout, /slot 0: 198\.18\.30\.2:8080: LOCAL/);
  t.log(text.stdout);
  t.log(ex.stdout);
  t.log(cli(['maps', 'dump', 'mb_services', '--pin-dir', topo!.pinDir]).stdout);
  t.log(cli(['maps', 'dump', 'mb_backends', '--pin-dir', topo!.pinDir]).stdout);
});

ktest('a kernel without the VIP hooks (degraded build): no getpeername links, VIPs left to kube-proxy, pod-IP bypass unchanged', async (t) => {
  load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup, assumeMissing: ['vip'] });
  try {
    t.false(existsSync(pinPaths(topo!.pinDir).link('mb_getpeername4_cgroup')), 'no getpeername link');
    let before = stats(topo!.pinDir);
    const [v] = await connect('a', VIP.v4, 1 * MiB);
    let d = delta(before, stats(topo!.pinDir));
    t.is(v?.peer, VIP.v4);
    t.is(v?.reply?.server, 'b', 'through the DNAT');
    t.is(v?.reply?.sha256, v?.sent);
    t.is(d.vip_translated + d.vip_skip_source_unknown + d.vip_skip_captured, 0, 'the connect hooks do no VIP work');
    t.is(d.redirect_bytes, 0);
    before = stats(topo!.pinDir);
    const [p] = await connect('a', IP.b.v4, 1 * MiB);
    d = delta(before, stats(topo!.pinDir));
    t.is(p?.reply?.sha256, p?.sent);
    t.true(d.redirect_bytes >= 1 * MiB, 'pod-IP traffic is still short-circuited');
  } finally {
    load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup });
  }
  t.true(existsSync(pinPaths(topo!.pinDir).link('mb_getpeername4_cgroup')), 'the full build attaches them again');
});
