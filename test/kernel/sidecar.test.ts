// An Istio sidecar node on the real kernel: pods with istio-iptables' own nat
// rules and a real L7 proxy as the sidecar (HAProxy for IPv4, the IPv6 stand-in
// in test/peers), HTTP apps, POSTs to the server pod's IP:port. Every response
// must carry both sidecars' headers (the proxies stayed in the path), the body's
// hash must match at both ends, and redirect_bytes must show that all three
// legs went socket to socket. Pods without a sidecar are never paired as if they
// had one; losing meshbpf (map full, unloaded mid-request) keeps every request
// on its normal path through both sidecars.
import { join } from 'node:path';
import test from 'ava';
import { load, unload } from '../../src/loader/load.js';
import { openMaps } from '../../src/maps/pinned.js';
import { applySidecar, sidecarSettings } from '../../src/maps/sidecar.js';
import { makeSidecarPod, type SidecarPod } from '../../src/topo/istio.js';
import { waitForListen } from '../../src/topo/peers.js';
import { cli, delta, kernelSuite, stats, tempDir, waitFor } from '../helpers/kernel.js';
import { rmSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { service, startAgent, stopAgent, waitReady, writeSnapshot, killAllAgents } from '../helpers/agent.js';

const IP = {
  a: { v4: '198.18.20.1', v6: 'fd00:20::1' },
  b: { v4: '198.18.20.2', v6: 'fd00:20::2' },
  c: { v4: '198.18.20.3', v6: 'fd00:20::3' },
};
const MiB = 1 << 20;
const root = process.cwd();
const app = join(root, 'dist', 'src', 'topo', 'httpapp.js');
const dir = tempDir();
const sidecars: SidecarPod[] = [];
const apps: ChildProcess[] = [];

const { ktest, topo } = kernelSuite('sidecar node tests', {
  kind: 'bridge',
  pods: (['a', 'b', 'c'] as const).map((p) => ({ name: p, v4: `${IP[p].v4}/24`, v6: `${IP[p].v6}/64` })),
  teardown: () => {
    for (const s of sidecars) void s.stop();
    for (const c of apps) c.kill('SIGKILL');
    killAllAgents();
    rmSync(dir, { recursive: true, force: true });
  },
});

/** The node's maps as the agent would fill them: pods local, 8080 HTTP (PROXY), a and b captured. */
function fillMaps(): void {
  const m = openMaps(topo!.pinDir);
  try {
    for (const c of ['198.18.20.0/24', 'fd00:20::/64']) m.endpoints.set(c, { local: true, mesh: true, networkId: 0, workloadId: 0 });
    for (const p of ['b', 'c'] as const) for (const ip of [IP[p].v4, IP[p].v6]) m.policy.set({ ip, port: 8080 }, { verdict: 'proxy', ruleId: 1 });
    applySidecar(m, sidecarSettings([IP.a.v4, IP.a.v6, IP.b.v4, IP.b.v6]));
  } finally {
    m.close();
  }
}

async function restartSidecars(): Promise<void> {
  for (const s of sidecars.splice(0)) await s.stop();
  for (const p of ['a', 'b']) for (const f of [4, 6] as const) sidecars.push(await makeSidecarPod(topo!, p, f, dir, root));
}

test.before(async () => {
  if (!topo) return;
  await restartSidecars();
  for (const [p, port] of [
    ['b', 8080],
    ['c', 8080],
    ['b', 9090],
  ] as const) {
    apps.push(topo.spawn(p, [process.execPath, app, 'serve', String(port)]));
    await waitForListen(topo, p, port);
  }
  fillMaps();
});

interface Result {
  sent: string;
  sha256: string;
  bytes: number;
  out: string | null;
  in: string | null;
  status: number;
}

async function post(from: string, url: string, size: number, count = 1): Promise<Result[]> {
  const { stdout } = await topo!.run(from, [process.execPath, app, 'post', url, String(size), String(count)], { timeoutMs: 120_000 });
  return JSON.parse(stdout) as Result[];
}

const url = (pod: 'b' | 'c', family: 4 | 6) => (family === 4 ? `http://${IP[pod].v4}:8080/` : `http://[${IP[pod].v6}]:8080/`);

for (const family of [4, 6] as const) {
  const sizes = [1, 16, 64];
  for (const mib of sizes) {
    ktest(`IPv${family}: a ${mib} MiB POST from sidecar pod a to sidecar pod b goes through both sidecars, all three legs socket to socket`, async (t) => {
      const before = stats(topo!.pinDir);
      const [r] = await post('a', url('b', family), mib * MiB);
      const d = delta(before, stats(topo!.pinDir));
      t.is(r?.status, 200);
      t.is(r?.bytes, mib * MiB);
      t.is(r?.sha256, r?.sent, 'body hash equal at both ends');
      t.is(r?.out, 'a', 'sidecar a handled the request');
      t.is(r?.in, 'b', 'sidecar b handled the request');
      t.true(d.redirect_bytes >= 3 * mib * MiB, `redirect_bytes grew by ${d.redirect_bytes}, want >= ${3 * mib * MiB} (three legs)`);
      t.true(d.leg_outbound >= 2 && d.leg_mesh >= 2 && d.leg_inbound >= 2, `legs paired: ${JSON.stringify({ out: d.leg_outbound, mesh: d.leg_mesh, in: d.leg_inbound })}`);
      t.is(d.skip_sidecar_unmatched + d.skip_sidecar_ambiguous, 0);
    });
  }

  ktest(`IPv${family}: a keep-alive series of 200 small requests, each through both sidecars, bytes intact`, async (t) => {
    const before = stats(topo!.pinDir);
    const rs = await post('a', url('b', family), 1024, 200);
    const d = delta(before, stats(topo!.pinDir));
    t.is(rs.length, 200);
    t.true(
      rs.every((r) => r.status === 200 && r.sha256 === r.sent && r.out === 'a' && r.in === 'b'),
      'every response proves both sidecars and an intact body',
    );
    t.true(d.redirect_bytes >= 3 * 200 * 1024, `redirect_bytes grew by ${d.redirect_bytes}`);
    t.true(d.redirect_msgs >= 3 * 200, `redirect_msgs grew by ${d.redirect_msgs}`);
  });

  ktest(`IPv${family}: a pod without a sidecar as client: only the server's legs pair, the request still reaches sidecar b`, async (t) => {
    const before = stats(topo!.pinDir);
    const [r] = await post('c', url('b', family), 4 * MiB);
    const d = delta(before, stats(topo!.pinDir));
    t.is(r?.sha256, r?.sent);
    t.is(r?.out, null, 'c has no sidecar');
    t.is(r?.in, 'b');
    t.is(d.leg_outbound, 0, 'nothing paired as if c had a sidecar');
    t.true(d.leg_mesh >= 2 && d.leg_inbound >= 2, JSON.stringify(d));
    t.true(d.redirect_bytes >= 2 * 4 * MiB);
  });

  ktest(`IPv${family}: a pod without a sidecar as server: sidecar a's legs pair, the L7 verdict of c:8080 is not bypassed for anyone else`, async (t) => {
    const before = stats(topo!.pinDir);
    const [r] = await post('a', url('c', family), 4 * MiB);
    const d = delta(before, stats(topo!.pinDir));
    t.is(r?.sha256, r?.sent);
    t.is(r?.out, 'a');
    t.is(r?.in, null, 'c has no sidecar');
    t.is(d.leg_inbound, 0);
    t.true(d.leg_outbound >= 2 && d.leg_mesh >= 2, JSON.stringify(d));
    t.true(d.redirect_bytes >= 2 * 4 * MiB);
  });
}

ktest('two live clients share one address:port: the claim is poisoned, nothing pairs by guess, both requests intact through both sidecars', async (t) => {
  const before = stats(topo!.pinDir);
  const { stdout } = await topo!.run('a', ['/usr/bin/python3', join(root, 'test', 'peers', 'same-port-clients.py'), IP.a.v4, '40001', IP.b.v4, '8080,9090', String(2 * MiB)], { timeoutMs: 60_000 });
  const d = delta(before, stats(topo!.pinDir));
  const rs = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { port: number; sent: string; status: string; response: { sha256: string; out: string; in: string } });
  t.is(rs.length, 2);
  for (const r of rs) {
    t.is(r.status, '200', `port ${r.port}`);
    t.is(r.response.sha256, r.sent, `port ${r.port}: body intact`);
    t.is(r.response.out, 'a');
    t.is(r.response.in, 'b');
  }
  t.true(d.skip_sidecar_ambiguous >= 1, `skip_sidecar_ambiguous grew by ${d.skip_sidecar_ambiguous}: ${JSON.stringify(d)}`);
});

ktest('policy explain names the leg and the server socket each owner would be paired with; maps dump decodes the sidecar maps', (t) => {
  const r = cli(['policy', 'explain', IP.b.v4, '8080', '--from', IP.a.v4, '--pin-dir', topo!.pinDir, '-o', 'json']);
  t.is(r.code, 0, r.stderr);
  const e = JSON.parse(r.stdout) as { verdict: string; sidecar: Array<{ owner: string; leg: string; expects: string }> };
  t.is(e.verdict, 'proxy', 'the direct rule still says PROXY for 8080');
  t.deepEqual(
    e.sidecar.map((x) => [x.owner, x.leg, x.expects]),
    [
      ['app', 'outbound', '127.0.0.1:15001'],
      ['proxy', 'mesh', `${IP.b.v4}:15006`],
    ],
  );
  const c = cli(['policy', 'explain', IP.b.v4, '8080', '--from', IP.c.v4, '--pin-dir', topo!.pinDir, '-o', 'json']);
  const ec = JSON.parse(c.stdout) as { sidecar: Array<{ leg: string }> };
  t.deepEqual(
    ec.sidecar.map((x) => x.leg),
    ['mesh', 'mesh'],
    'a plain pod to a captured pod: the mesh leg, whoever connects',
  );
  const d = cli(['maps', 'dump', 'mb_sidecar', '--pin-dir', topo!.pinDir, '-o', 'json']);
  t.deepEqual((JSON.parse(d.stdout) as { mb_sidecar: Array<{ key: string }> }).mb_sidecar.map((x) => x.key).sort(), [`${IP.a.v4}/32`, `${IP.b.v4}/32`, `${IP.a.v6}/128`, `${IP.b.v6}/128`].sort());
  const cfg = cli(['maps', 'dump', 'mb_config', '--pin-dir', topo!.pinDir, '-o', 'json']);
  t.like((JSON.parse(cfg.stdout) as { mb_config: Array<{ value: object }> }).mb_config[0]?.value, {
    enabled: true,
    outboundPort: 15001,
    inboundPort: 15006,
    proxyUid: 1337,
    passthroughV4: '127.0.0.6',
    passthroughV6: '::6',
  });
});

ktest('without meshbpf state: pairing off (no captured pods) leaves every request on iptables and both sidecars, nothing paired', async (t) => {
  const m = openMaps(topo!.pinDir);
  try {
    applySidecar(m, undefined);
  } finally {
    m.close();
  }
  try {
    const before = stats(topo!.pinDir);
    const [r] = await post('a', url('b', 4), 4 * MiB);
    const d = delta(before, stats(topo!.pinDir));
    t.is(r?.sha256, r?.sent);
    t.is(r?.out, 'a');
    t.is(r?.in, 'b');
    t.is(d.leg_outbound + d.leg_mesh + d.leg_inbound, 0);
    t.is(d.redirect_bytes, 0, 'the 8080 PROXY verdict keeps the direct rule off too');
  } finally {
    fillMaps();
  }
});

ktest('mb_sockets full: legs that do not fit keep the stack, every request still crosses both sidecars intact', async (t) => {
  unload({ pinDir: topo!.pinDir });
  load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup, maxSockets: 2 });
  fillMaps();
  try {
    const before = stats(topo!.pinDir);
    const rs = await post('a', url('b', 4), 256 * 1024, 20);
    const d = delta(before, stats(topo!.pinDir));
    t.true(rs.every((r) => r.status === 200 && r.sha256 === r.sent && r.out === 'a' && r.in === 'b'));
    t.true(d.sockets_map_full > 0, `sockets_map_full grew by ${d.sockets_map_full}`);
  } finally {
    unload({ pinDir: topo!.pinDir });
    load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup });
    fillMaps();
  }
});

ktest('the agent (--sidecar-cidr) SIGKILLed mid-request: the pairing stays in the kernel, the POST completes through both sidecars, bytes intact', async (t) => {
  const file = join(dir, 'xds.json');
  writeSnapshot(file, service('b', IP.b.v4, 8080, '198.19.20.2', { http: true }));
  await restartSidecars(); // fresh upstream connections: none left unpaired by the map-full test
  const a = await startAgent({
    cgroup: topo!.cgroup,
    pinDir: topo!.pinDir,
    xdsFile: file,
    stateDir: join(dir, 'state'),
    podCidr: '198.18.20.0/24',
    nodeIp: '198.18.20.254',
    extra: ['--pod-cidr', 'fd00:20::/64', ...[IP.a.v4, IP.b.v4, IP.a.v6, IP.b.v6].flatMap((c) => ['--sidecar-cidr', c])],
  });
  try {
    await waitReady(a);
    const before = stats(topo!.pinDir);
    let settled = false;
    const pending = post('a', url('b', 4), 64 * MiB).finally(() => (settled = true));
    await waitFor(() => stats(topo!.pinDir).redirect_bytes - before.redirect_bytes > 8n * BigInt(MiB), 60_000, 'the POST to be under way through the bypass');
    t.is(await stopAgent(a, 'SIGKILL'), 'SIGKILL');
    t.false(settled, 'the agent died while the request was in flight');
    const [r] = await pending;
    const d = delta(before, stats(topo!.pinDir));
    t.is(r?.sha256, r?.sent, 'body hash equal at both ends');
    t.is(r?.out, 'a');
    t.is(r?.in, 'b');
    t.true(d.redirect_bytes >= 3 * 64 * MiB, `redirect_bytes grew by ${d.redirect_bytes}: the legs stayed paired without the agent`);
  } finally {
    await stopAgent(a, 'SIGKILL');
    fillMaps();
  }
});

ktest('meshbpf unloaded mid-request: the 64 MiB POST completes through both sidecars, bytes intact; later requests take iptables alone', async (t) => {
  const before = stats(topo!.pinDir);
  let settled = false;
  const pending = post('a', url('b', 4), 64 * MiB).finally(() => (settled = true));
  await waitFor(() => stats(topo!.pinDir).redirect_bytes - before.redirect_bytes > 8n * BigInt(MiB), 60_000, 'the POST to be under way through the bypass');
  unload({ pinDir: topo!.pinDir });
  t.false(settled, 'meshbpf was unloaded while the request was in flight');
  try {
    const [r] = await pending;
    t.is(r?.sha256, r?.sent, 'body hash equal at both ends');
    t.is(r?.out, 'a');
    t.is(r?.in, 'b');
    const [r2] = await post('a', url('b', 4), MiB);
    t.true(r2?.sha256 === r2?.sent && r2?.out === 'a' && r2?.in === 'b', 'without meshbpf: both sidecars, intact');
  } finally {
    load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup });
    fillMaps();
  }
});
