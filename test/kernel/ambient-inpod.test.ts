// Istio ambient, in-pod capture skipped for bypassed flows only. Each pod's
// namespace carries istio-cni's rules (IPv4 and IPv6, as the goldens), its
// `ip rule fwmark 0x111/0xfff lookup 100` + local route, and a ztunnel
// stand-in on 15001/15006 that logs every connection it takes. With both pods
// enrolled (`meshbpf inpod attach`): a flow the WDS verdicts bypass goes
// socket to socket and never reaches a stand-in (pod IP, service VIP, IPv4,
// IPv6), the server app sees the port its client asked for; a flow to a
// workload with a waypoint, or selected by an Authorization, reaches both
// stand-ins; one pod not enrolled, or meshbpf unloaded: everything reaches the
// stand-ins again. Bytes are hashed at both ends in every case.
import test from 'ava';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PROJECT_ROOT } from '../../src/paths.js';
import { openMaps } from '../../src/maps/pinned.js';
import { waitForListen } from '../../src/topo/peers.js';
import { cli, delta, kernelSuite, sha256, stats, tempDir, transfer, waitFor } from '../helpers/kernel.js';
import { authorization, service, workload } from '../helpers/wds.js';
import { startAgent, stopAgent } from '../helpers/agent.js';

const dir = tempDir();
const env = { MESHBPF_STATE_DIR: join(dir, 'state') };
const RULES4 = join(PROJECT_ROOT, 'test', 'peers', 'istio-cni-inpod.rules');
const RULES6 = join(PROJECT_ROOT, 'test', 'peers', 'istio-cni-inpod-v6.rules');
const STANDIN = join(PROJECT_ROOT, 'test', 'peers', 'ztunnel-standin.py');
const A = '198.18.8.2';
const B = '198.18.8.3';
const A6 = 'fd00:8::2';
const B6 = 'fd00:8::3';
const VIP = '198.19.8.10';

const { ktest, topo } = kernelSuite('kernel ambient in-pod tests', {
  kind: 'bridge',
  pods: [
    { name: 'a', v4: `${A}/24`, v6: `${A6}/64` },
    { name: 'b', v4: `${B}/24`, v6: `${B6}/64` },
  ],
  teardown: () => rmSync(dir, { recursive: true, force: true }),
});

const logOf = (pod: string) => join(dir, `standin-${pod}.log`);
const lines = (pod: string): string[] => readFileSync(logOf(pod), 'utf8').split('\n').filter(Boolean);
const clearLogs = () => ['a', 'b'].forEach((p) => writeFileSync(logOf(p), ''));
const nsPath = (pod: string) => `/var/run/netns/${topo!.pod(pod).netns}`;

const standins: ChildProcess[] = [];

/** istio-cni's in-pod setup in one pod: both families' rules, the mark rule and its local route, then the stand-in. */
async function inpodPod(pod: string): Promise<void> {
  writeFileSync(logOf(pod), '');
  const setup = [
    `iptables-restore < ${RULES4}`,
    `ip6tables-restore < ${RULES6}`,
    'ip rule add fwmark 0x111/0xfff pref 32764 lookup 100',
    'ip route add local 0.0.0.0/0 dev lo table 100',
    'ip -6 rule add fwmark 0x111/0xfff pref 32764 lookup 100',
    'ip -6 route add local ::/0 dev lo table 100',
  ].join(' && ');
  await topo!.run(pod, ['sh', '-c', setup], { cgroup: false });
  const p = topo!.spawn(pod, ['python3', STANDIN, logOf(pod)]);
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes('ready'), 10_000, `ztunnel stand-in in ${pod}`);
  standins.push(p);
}

function sync(resources: unknown[]): void {
  const f = join(dir, 'wds.json');
  writeFileSync(f, JSON.stringify({ resources }));
  const r = cli(['sync', '--xds-file', f, '--pin-dir', topo!.pinDir, '--node-name', 'node-a', '--node-ip', '198.18.8.1'], { env });
  if (r.code !== 0) throw new Error(`sync: ${r.stderr}`);
}

const base = (opts: { waypoint?: boolean; policy?: boolean } = {}) => [
  workload({ name: 'a', namespace: 'ns1', ips: [A, A6], node: 'node-a' }),
  workload({
    name: 'b',
    namespace: 'ns1',
    ips: [B, B6],
    node: 'node-a',
    services: { 'ns1/db.ns1.svc.cluster.local': [[5432, 5432]] },
    ...(opts.waypoint ? { waypoint: '198.18.8.50' } : {}),
  }),
  service({ name: 'db', namespace: 'ns1', vips: [VIP], ports: [[5432, 5432]] }),
  ...(opts.policy ? [authorization({ name: 'only-some', namespace: 'ns1', scope: 'NAMESPACE', action: 'ALLOW' })] : []),
];

/** A server in b that reports getsockname's port, then stores what it reads; a client in a sends 4 MiB. */
async function flow(connectIp: string, v6 = false): Promise<{ sent: string; received: string; sockname: number }> {
  const data = randomBytes(4 << 20);
  const out = join(dir, 'flow.out');
  const port = 5432;
  const code =
    `import socket,sys\nf=socket.AF_INET6 if ${v6 ? 'True' : 'False'} else socket.AF_INET\ns=socket.socket(f)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n` +
    `s.bind(('::' if f==socket.AF_INET6 else '0.0.0.0',${port}))\ns.listen(1)\nprint('ready',flush=True)\nc,_=s.accept()\nprint('sockname',c.getsockname()[1],flush=True)\n` +
    `o=open(${JSON.stringify(out)},'wb')\nwhile True:\n  b=c.recv(1<<16)\n  if not b: break\n  o.write(b)\no.close()\n`;
  const srv = topo!.spawn('b', ['python3', '-c', code]);
  let srvOut = '';
  srv.stdout!.on('data', (d: Buffer) => (srvOut += d.toString()));
  const srvDone = new Promise<number | null>((res) => srv.on('exit', (c) => res(c)));
  await waitForListen(topo!, 'b', port);
  const input = join(dir, 'flow.in');
  writeFileSync(input, data);
  // The client writes once the server has accepted: a write that beats the server
  // socket into mb_sockets takes the stack for good (correct, not accelerated).
  const fam = v6 ? 'socket.AF_INET6' : 'socket.AF_INET';
  const send = `import socket,time\nc=socket.socket(${fam})\nc.connect((${JSON.stringify(connectIp)},${port}))\ntime.sleep(0.2)\nc.sendall(open(${JSON.stringify(input)},'rb').read())\nc.close()\n`;
  const c = topo!.spawn('a', ['python3', '-c', send]);
  const cDone = new Promise<number | null>((res) => c.on('exit', (x) => res(x)));
  if ((await cDone) !== 0) throw new Error('client failed');
  if ((await srvDone) !== 0) throw new Error(`server failed: ${srvOut}`);
  const m = /sockname (\d+)/.exec(srvOut);
  return { sent: sha256(data), received: sha256(readFileSync(out)), sockname: Number(m?.[1] ?? -1) };
}

test.before(async () => {
  if (!topo) return;
  await inpodPod('a');
  await inpodPod('b');
});
test.after.always(() => {
  for (const p of standins) p.kill();
});

ktest('enrolled pods, bypass verdict: IPv4, IPv6 and the service VIP go socket to socket, no stand-in sees them, the app sees its own port', async (t) => {
  sync(base());
  const r = cli(['inpod', 'attach', nsPath('a'), nsPath('b'), '--pin-dir', topo!.pinDir], { env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`enrolled ${nsPath('b')} \\(netns cookie \\d+\\): addresses ${B.replace(/\./g, '\\.')}/32, ${B6}/128`));
  const list = JSON.parse(cli(['inpod', 'list', '--pin-dir', topo!.pinDir, '-o', 'json'], { env }).stdout) as Array<{ netns: string; link: string }>;
  t.deepEqual(list.map((x) => x.netns).sort(), [nsPath('a'), nsPath('b')].sort());
  for (const x of list) t.true(existsSync(x.link), `pinned sk_lookup link ${x.link}`);
  // the server starts listening after its pod was enrolled (as at pod start)

  for (const [what, ip, v6] of [
    ['IPv4 pod address', B, false],
    ['IPv6 pod address', B6, true],
    ['service VIP', VIP, false],
  ] as const) {
    clearLogs();
    const before = stats(topo!.pinDir);
    const x = await flow(ip, v6);
    const d = delta(before, stats(topo!.pinDir));
    t.is(x.received, x.sent, `${what}: bytes intact`);
    t.deepEqual(lines('a'), [], `${what}: the client pod's capture skipped`);
    t.deepEqual(lines('b'), [], `${what}: the server pod's capture skipped ${JSON.stringify(d)}`);
    t.is(x.sockname, 5432, `${what}: getsockname answers the port the client asked for`);
    t.is(d.inpod_marked, 1, `${what}: ${JSON.stringify(d)}`);
    t.is(d.inpod_steered, 1, what);
    t.is(d.leg_inpod, 2, what);
    t.true(d.redirect_bytes >= 4 << 20, `${what}: redirect_bytes ${d.redirect_bytes} ${JSON.stringify(d)}`);
    t.true(d.inpod_sockname_restored >= 1, what);
    if (ip === VIP) t.is(d.vip_translated, 1, 'VIP resolved at connect');
  }

  const dump = cli(['maps', 'dump', 'mb_inpod', '--pin-dir', topo!.pinDir], { env });
  t.is(dump.code, 0, dump.stderr);
  t.regex(dump.stdout, new RegExp(`${B.replace(/\./g, '\\.')}/32`));
});

ktest('enrolled pods, proxy verdict (waypoint, Authorization): both stand-ins take the flow, bytes intact', async (t) => {
  for (const opts of [{ waypoint: true }, { policy: true }]) {
    sync(base(opts));
    const m = openMaps(topo!.pinDir, { readOnly: true });
    try {
      t.is(m.policy.get({ ip: B, port: 5432 })?.verdict, 'proxy', JSON.stringify(opts));
    } finally {
      m.close();
    }
    clearLogs();
    const before = stats(topo!.pinDir);
    const x = await transfer(topo!, { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: `TCP4:${B}:5432`, port: 5432, bytes: 1 << 20 });
    const d = delta(before, stats(topo!.pinDir));
    t.is(x.received, x.sent);
    t.deepEqual(lines('a'), [`15001 ${B}:5432`], `${JSON.stringify(opts)}: outbound captured`);
    t.deepEqual(lines('b'), [`15006 ${B}:5432`], `${JSON.stringify(opts)}: inbound captured`);
    t.is(d.inpod_marked, 0);
    t.is(d.inpod_steered, 0);
  }
});

ktest('agent --inpod-netns-dir: the pod namespaces that appear there are enrolled, the ones that go are removed', async (t) => {
  sync(base());
  t.is(cli(['inpod', 'detach', '--all', '--pin-dir', topo!.pinDir], { env }).code, 0);
  const nsdir = join(dir, 'netns');
  mkdirSync(nsdir, { recursive: true });
  symlinkSync(nsPath('a'), join(nsdir, 'cni-a'));
  writeFileSync(join(nsdir, 'cni-bogus'), ''); // not a namespace: logged, retried, never enrolled
  writeFileSync(join(nsdir, 'other'), ''); // not matching the prefix: ignored
  const enrolled = () => (JSON.parse(cli(['inpod', 'list', '-o', 'json', '--pin-dir', topo!.pinDir], { env }).stdout) as Array<{ netns: string }>).map((x) => x.netns).sort();
  const agent = await startAgent({
    cgroup: topo!.cgroup,
    pinDir: topo!.pinDir,
    xdsFile: join(dir, 'wds.json'),
    stateDir: env.MESHBPF_STATE_DIR,
    podCidr: '198.18.250.0/24',
    nodeIp: '198.18.8.1',
    extra: ['--node-name', 'node-a', '--inpod-netns-dir', nsdir, '--inpod-netns-prefix', 'cni-'],
  });
  try {
    await waitFor(() => enrolled().length === 1, 15_000, 'pod a enrolled by the agent');
    symlinkSync(nsPath('b'), join(nsdir, 'cni-b')); // a new pod
    await waitFor(() => enrolled().length === 2, 15_000, 'pod b enrolled once its namespace appeared');
    t.deepEqual(enrolled(), [join(nsdir, 'cni-a'), join(nsdir, 'cni-b')]);
    clearLogs();
    const before = stats(topo!.pinDir);
    const x = await flow(B);
    t.is(x.received, x.sent);
    t.deepEqual([...lines('a'), ...lines('b')], [], 'enrolled by the agent: both captures skipped');
    t.is(delta(before, stats(topo!.pinDir)).inpod_steered, 1);

    unlinkSync(join(nsdir, 'cni-b')); // the pod is gone
    await waitFor(() => enrolled().length === 1, 15_000, 'pod b removed once its namespace went');
    clearLogs();
    const y = await transfer(topo!, { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: `TCP4:${B}:5432`, port: 5432, bytes: 1 << 20 });
    t.is(y.received, y.sent);
    t.deepEqual(lines('a'), [`15001 ${B}:5432`], 'b no longer enrolled: captured');
    t.deepEqual(lines('b'), [`15006 ${B}:5432`]);
    t.regex(agent.output(), /cni-bogus/, 'the namespace it could not enroll is named in the log');
  } finally {
    t.is(await stopAgent(agent), 0, agent.output());
  }
  t.is(cli(['inpod', 'detach', '--all', '--pin-dir', topo!.pinDir], { env }).code, 0);
  t.is(cli(['inpod', 'attach', nsPath('a'), nsPath('b'), '--pin-dir', topo!.pinDir], { env }).code, 0); // as the next test expects
});

ktest('one pod not enrolled, then meshbpf unloaded: every flow reaches the stand-ins again', async (t) => {
  sync(base());
  const db = { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: `TCP4:${B}:5432`, port: 5432, bytes: 1 << 20 };
  let r = cli(['inpod', 'detach', nsPath('b'), '--pin-dir', topo!.pinDir], { env });
  t.is(r.code, 0, r.stderr);
  clearLogs();
  let x = await transfer(topo!, db);
  t.is(x.received, x.sent);
  t.deepEqual(lines('a'), [`15001 ${B}:5432`], 'server pod not enrolled: the client is not exempted');
  t.deepEqual(lines('b'), [`15006 ${B}:5432`]);
  t.is(readdirSync(join(topo!.pinDir, 'links')).filter((l) => l.startsWith('mb_inpod_')).length, 1, "b's sk_lookup link removed, a's kept");

  r = cli(['inpod', 'attach', nsPath('b'), '--pin-dir', topo!.pinDir], { env });
  t.is(r.code, 0, r.stderr);
  clearLogs();
  x = await transfer(topo!, db);
  t.is(x.received, x.sent);
  t.deepEqual([...lines('a'), ...lines('b')], [], 'enrolled again: skipped');

  r = cli(['unload', '--pin-dir', topo!.pinDir], { env });
  t.is(r.code, 0, r.stderr);
  t.false(existsSync(topo!.pinDir), 'unload removed every pin, the sk_lookup links too');
  t.deepEqual(JSON.parse(cli(['inpod', 'list', '-o', 'json', '--pin-dir', topo!.pinDir], { env }).stdout), []);
  clearLogs();
  const y = await transfer(topo!, { ...db, reverse: true }); // the reverse transfer reads no counters: nothing is loaded
  t.is(y.received, y.sent);
  t.deepEqual(lines('a'), [`15001 ${B}:5432`], 'unloaded: captured as before');
  t.deepEqual(lines('b'), [`15006 ${B}:5432`]);
});
