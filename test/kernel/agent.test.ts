// `meshbpf agent` as a real process (issue 4): it follows an xDS file into the
// kernel maps, reports metrics, health and drift, survives SIGKILL without
// breaking a live accelerated connection, degrades gracefully when the sockets
// map is full, and leaves (or with --unload-on-exit removes) the programs on SIGTERM.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Topology } from '../../src/topo/topology.js';
import { waitForListen } from '../../src/topo/peers.js';
import { unload } from '../../src/loader/load.js';
import { openMaps } from '../../src/maps/pinned.js';
import type { PolicyKey } from '../../src/maps/codecs.js';
import type { StatusReport } from '../../src/cli/agent.js';
import type { AgentStatus } from '../../src/agent/agent.js';
import { FakeAdsServer } from '../helpers/ads-server.js';
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type JsonObject } from '../../src/xds/types.js';
import { cli, delta, kernelUnavailable, sha256, stats, tempDir, transfer, waitFor } from '../helpers/kernel.js';
import { exampleResources, killAllAgents, metric, service, startAgent, stopAgent, waitReady, writeSnapshot, type AgentProcess } from '../helpers/agent.js';

const why = kernelUnavailable();
const ktest = why ? test.skip : test.serial;
if (why) console.log(`SKIPPING kernel agent tests: ${why}`);

const run = randomBytes(2).toString('hex');
const dir = why ? '' : tempDir();
const stateDir = join(dir, 'state');
const NET = '198.18.5';
const A4 = `${NET}.2`;
const B4 = `${NET}.3`; // every service's endpoint lives in pod b
const topos: Topology[] = [];

/**
 * One node per test: its own cgroup, pods and pin dir (mbt-<run><n>), so map
 * sizes and attachments of one test never meet another's.
 */
function node(n: string): Topology {
  const t = new Topology({ id: `${run}${n}` });
  topos.push(t);
  mkdirSync(join(dir, 'xds'), { recursive: true });
  return t.build('veth', [
    { name: 'a', v4: `${A4}/24` },
    { name: 'b', v4: `${B4}/24` },
  ]);
}

test.after.always(() => {
  killAllAgents();
  for (const t of topos) {
    try {
      unload({ pinDir: t.pinDir });
    } catch {
      /* not loaded */
    }
    t.destroy();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function agentOpts(topo: Topology, xdsFile: string, extra: string[] = []) {
  return { cgroup: topo.cgroup, pinDir: topo.pinDir, xdsFile, stateDir, podCidr: `${NET}.0/24`, nodeIp: `${NET}.1`, extra };
}

function verdict(pin: string, k: PolicyKey): string | undefined {
  const m = openMaps(pin, { readOnly: true });
  try {
    return m.policy.get(k)?.verdict;
  } finally {
    m.close();
  }
}

function socketsCount(pin: string): number {
  const m = openMaps(pin, { readOnly: true });
  try {
    return m.sockets.count();
  } finally {
    m.close();
  }
}

function status(pin: string): StatusReport {
  const r = cli(['status', '--pin-dir', pin, '-o', 'json'], { env: { MESHBPF_STATE_DIR: stateDir } });
  if (r.code !== 0 && r.code !== 3) throw new Error(`meshbpf status failed (${r.code}): ${r.stderr}`); // 3: not loaded
  return JSON.parse(r.stdout) as StatusReport;
}

interface Drift {
  drift: { inSync: boolean; endpoints: { missingOrDifferent: number; extra: number }; policies: { missingOrDifferent: number; extra: number } };
}

async function drift(a: AgentProcess): Promise<Drift['drift']> {
  const r = await a.get('/debug/state');
  if (r.status !== 200) throw new Error(`/debug/state ${r.status}: ${r.text}`);
  return (r.json() as Drift).drift;
}

function tcp(port: number) {
  return { server: 'b', client: 'a', listen: `TCP4-LISTEN:${port},reuseaddr`, connect: `TCP4:${B4}:${port}`, port };
}

/** A long-lived connection a -> b:port fed from the test through socat's STDIN. */
async function openStream(topo: Topology, port: number, out: string) {
  const srv = topo.spawn('b', ['socat', '-u', `TCP4-LISTEN:${port},reuseaddr`, `OPEN:${out},creat,trunc`]);
  const srvDone = new Promise<number | null>((res) => srv.on('exit', (code) => res(code)));
  await waitForListen(topo, 'b', port);
  // send only once sockops has seen both ends (as transfer() does): the first
  // message must not race the server side's insertion
  const est = stats(topo.pinDir).sockops_established;
  const client = topo.spawn('a', ['socat', '-u', 'STDIN', `TCP4:${B4}:${port}`], { stdio: ['pipe', 'ignore', 'pipe'] });
  const clientDone = new Promise<number | null>((res) => client.on('exit', (code) => res(code)));
  client.stdin!.on('error', () => undefined); // a dead socat fails the test through the hash, not an EPIPE crash
  await waitFor(() => stats(topo.pinDir).sockops_established - est >= 2n, 10_000, 'both ends of the stream to be established');
  let sent = 0;
  return {
    async write(chunk: Buffer, what: string): Promise<void> {
      client.stdin!.write(chunk);
      sent += chunk.length;
      await waitFor(() => existsSync(out) && statSync(out).size >= sent, 20_000, what);
    },
    async end(): Promise<{ client: number | null; server: number | null }> {
      client.stdin!.end();
      return { client: await clientDone, server: await srvDone };
    },
  };
}

ktest('agent follows the xDS file into the maps; metrics, health, status and drift tell the truth', async (t) => {
  const topo = node('1');
  const pin = topo.pinDir;
  const file = join(dir, 'xds', 'file.json');
  const base = exampleResources(NET); // db:5432 tcp_proxy -> BYPASS, web:8080 HCM -> PROXY
  writeSnapshot(file, base);
  const a = await startAgent(agentOpts(topo, file));
  await waitReady(a);
  t.is(verdict(pin, { ip: B4, port: 5432 }), 'bypass', 'db (tcp_proxy) is BYPASS');
  t.is(verdict(pin, { ip: B4, port: 8080 }), 'proxy', 'web (HCM) is PROXY');

  const st = status(pin);
  t.true(st.agent.running, 'status: agent running');
  t.is(st.agent.pid, a.pid);
  t.true(st.agent.status?.synced, 'status: agent synced');
  t.false(st.agent.status?.load?.upgraded, 'first agent loaded fresh programs');
  t.true(st.attachment.sockops.attached && st.attachment.skMsg.attached, 'status: both programs attached');

  // real traffic through the BYPASS port shows up in /metrics
  const x = await transfer(topo, tcp(5432));
  t.is(x.received, x.sent, 'bytes intact through the bypass');
  const metrics = (await a.get('/metrics')).text;
  const redirected = metric(metrics, 'meshbpf_redirected_bytes_total');
  t.truthy(redirected, 'meshbpf_redirected_bytes_total present and non-zero');
  t.true((redirected ?? 0) >= x.bytes, `redirected bytes ${redirected} >= ${x.bytes}`);
  t.is(metric(metrics, 'meshbpf_programs_attached'), 1);

  // add: a new tcp_proxy service -> a new BYPASS entry
  const cache = (http: boolean) => service('cache', B4, 6379, '10.96.0.20', { http });
  writeSnapshot(file, [...base, ...cache(false)]);
  await waitFor(() => verdict(pin, { ip: B4, port: 6379 }) === 'bypass', 10_000, 'cache:6379 BYPASS to appear');
  // change: the same service becomes HTTP -> verdict flips to PROXY
  writeSnapshot(file, [...base, ...cache(true)]);
  await waitFor(() => verdict(pin, { ip: B4, port: 6379 }) === 'proxy', 10_000, 'cache:6379 to flip to PROXY');
  // remove: the listener goes -> the entry goes
  writeSnapshot(file, [...base, ...service('cache', B4, 6379, '10.96.0.20', { listener: false })]);
  await waitFor(() => verdict(pin, { ip: B4, port: 6379 }) === undefined, 10_000, 'cache:6379 entry to go');
  t.is(verdict(pin, { ip: B4, port: 5432 }), 'bypass', 'db untouched by the cache changes');

  // drift: in sync, then a hand-deleted entry is visible and NOT repaired without a snapshot
  t.true((await drift(a)).inSync, 'in sync after the syncs');
  const m = openMaps(pin);
  try {
    t.true(m.policy.delete({ ip: B4, port: 5432 }), 'deleted db policy by hand');
  } finally {
    m.close();
  }
  const d1 = await drift(a);
  t.false(d1.inSync, 'drift visible');
  t.is(d1.policies.missingOrDifferent, 1, 'one policy missing');
  // documented: the agent reconciles on the next snapshot, not on its own
  await new Promise((r) => setTimeout(r, 1500));
  t.is(verdict(pin, { ip: B4, port: 5432 }), undefined, 'no snapshot, no rewrite');
  t.false((await drift(a)).inSync, 'still drifted without a snapshot');
  // a rewritten file (same resources) is a new snapshot: the agent repairs the drift
  writeSnapshot(file, base, 'rewritten');
  await waitFor(() => verdict(pin, { ip: B4, port: 5432 }) === 'bypass', 10_000, 'db BYPASS restored by the next snapshot');
  t.true((await drift(a)).inSync, 'in sync again');

  // health: 200 while attached; 503 with a reason once the sockops link is detached behind its back
  const h1 = await a.get('/healthz');
  t.is(h1.status, 200, h1.text);
  const linkId = status(pin).attachment.sockops.linkId;
  t.truthy(linkId, 'status names the sockops link id');
  execFileSync('bpftool', ['link', 'detach', 'id', String(linkId)]);
  const h2 = await a.get('/healthz');
  t.is(h2.status, 503, h2.text);
  const body = h2.json() as { healthy: boolean; problems: string[] };
  t.false(body.healthy);
  t.true(
    body.problems.some((p) => /sockops|detached/.test(p)),
    `problem names sockops: ${body.problems.join('; ')}`,
  );
  t.is(metric((await a.get('/metrics')).text, 'meshbpf_programs_attached'), 0);

  t.is(await stopAgent(a), 0, a.output());
  unload({ pinDir: pin });
});

ktest('SIGKILL mid-stream: the bypassed connection keeps flowing, a new agent adopts the pins, bytes intact', async (t) => {
  const topo = node('2');
  const pin = topo.pinDir;
  const file = join(dir, 'xds', 'kill.json');
  writeSnapshot(file, exampleResources(NET));
  const out = join(dir, 'kill.out');
  let a = await startAgent(agentOpts(topo, file));
  await waitReady(a);

  const s = await openStream(topo, 5432, out);
  const chunks = [randomBytes(2 << 20), randomBytes(2 << 20), randomBytes(2 << 20)] as const;
  await s.write(chunks[0], 'chunk 1');
  t.is(socketsCount(pin), 2, 'both ends of the stream in mb_sockets');

  t.is(await stopAgent(a, 'SIGKILL'), 'SIGKILL');
  const midBefore = stats(pin);
  await s.write(chunks[1], 'chunk 2 (no agent running)');
  t.true(delta(midBefore, stats(pin)).redirect_bytes >= chunks[1].length, 'redirected while no agent runs');

  a = await startAgent(agentOpts(topo, file));
  await waitReady(a);
  const st = (await a.get('/debug/status')).json() as AgentStatus;
  t.true(st.load?.upgraded, 'the new agent adopted the pinned programs and maps');
  t.is(socketsCount(pin), 2, 'the connection is still in mb_sockets after the restart');

  const before = stats(pin);
  await s.write(chunks[2], 'chunk 3');
  const codes = await s.end();
  t.deepEqual(codes, { client: 0, server: 0 }, 'socat ends exited cleanly');
  const d = delta(before, stats(pin));
  t.is(sha256(readFileSync(out)), sha256(Buffer.concat(chunks)), 'received hash == hash(chunk1+chunk2+chunk3)');
  t.true(d.redirect_bytes >= chunks[2].length, `still redirected after the restart (${d.redirect_bytes} bytes)`);
  t.is(d.peer_missing_bytes, 0, 'no message fell back to the stack');

  t.is(await stopAgent(a), 0, a.output());
  unload({ pinDir: pin });
});

ktest('--max-sockets 2: the third connection takes the normal stack, every byte arrives, map_full is counted', async (t) => {
  const topo = node('3');
  const pin = topo.pinDir;
  const file = join(dir, 'xds', 'tiny.json');
  writeSnapshot(file, [...exampleResources(NET), ...service('c1', B4, 7101, '10.96.0.31'), ...service('c2', B4, 7102, '10.96.0.32')]);
  const a = await startAgent(agentOpts(topo, file, ['--max-sockets', '2']));
  await waitReady(a);
  const sockets = status(pin).maps.find((m) => m.name === 'mb_sockets');
  t.is(sockets?.capacity, 2, 'mb_sockets was created with 2 slots');
  for (const p of [5432, 7101, 7102]) t.is(verdict(pin, { ip: B4, port: p }), 'bypass', `port ${p} is BYPASS`);

  const out = join(dir, 'tiny.out');
  const before = stats(pin);
  const s = await openStream(topo, 5432, out);
  const chunk1 = randomBytes(1 << 20);
  await s.write(chunk1, 'first connection, chunk 1');
  t.is(socketsCount(pin), 2, 'the first connection fills the map');
  // two more connections while the first is open: no room for them
  const [x2, x3] = await Promise.all([transfer(topo, { ...tcp(7101), bytes: 2 << 20 }), transfer(topo, { ...tcp(7102), bytes: 2 << 20 })]);
  const chunk2 = randomBytes(1 << 20);
  await s.write(chunk2, 'first connection, chunk 2');
  const codes = await s.end();
  const d = delta(before, stats(pin));

  t.deepEqual(codes, { client: 0, server: 0 }, 'first connection ended cleanly');
  t.is(sha256(readFileSync(out)), sha256(Buffer.concat([chunk1, chunk2])), 'first connection intact');
  t.is(x2.received, x2.sent, 'second connection intact');
  t.is(x3.received, x3.sent, 'third connection intact');
  t.true(d.sockets_map_full >= 1, `sockets_map_full rose by ${d.sockets_map_full}`);
  t.is(d.sockets_inserted, 2, 'only the first connection was inserted');
  t.true(d.redirect_bytes >= chunk1.length + chunk2.length, 'the first connection was redirected');
  t.true(d.redirect_bytes < chunk1.length + chunk2.length + x2.bytes, 'the others were not');
  const mf = metric((await a.get('/metrics')).text, 'meshbpf_sockets_map_full_total');
  t.true((mf ?? 0) >= 1, `/metrics meshbpf_sockets_map_full_total = ${mf}`);
  // the agent looks at the counter every few seconds and says so once
  await waitFor(() => a.output().includes('mb_sockets is full'), 20_000, 'the map-full warning in the agent log');

  t.is(await stopAgent(a), 0, a.output());
  unload({ pinDir: pin });
});

ktest('SIGTERM exits 0 and leaves programs attached and pins in place; --unload-on-exit removes them', async (t) => {
  const topo = node('4');
  const pin = topo.pinDir;
  const file = join(dir, 'xds', 'term.json');
  writeSnapshot(file, exampleResources(NET));
  const a = await startAgent(agentOpts(topo, file));
  await waitReady(a);
  t.is(await stopAgent(a, 'SIGTERM'), 0, a.output());

  const st = status(pin);
  t.true(st.loaded, 'pins in place');
  t.true(st.attachment.sockops.attached, 'sockops still attached');
  t.true(st.attachment.skMsg.attached, 'sk_msg still attached');
  t.false(st.agent.running, 'status: agent not running');
  t.is(verdict(pin, { ip: B4, port: 5432 }), 'bypass', 'maps keep their entries');
  const progIds = st.programs.map((p) => p.id);
  // and the datapath keeps working without an agent
  const before = stats(pin);
  const x = await transfer(topo, tcp(5432));
  t.is(x.received, x.sent);
  t.true(delta(before, stats(pin)).redirect_bytes >= x.bytes, 'still redirected with no agent');

  const b = await startAgent(agentOpts(topo, file, ['--unload-on-exit']));
  await waitReady(b);
  t.is(await stopAgent(b, 'SIGTERM'), 0, b.output());
  t.false(existsSync(pin), 'pin dir removed by --unload-on-exit');
  const after = status(pin);
  t.false(after.loaded);
  const cg = JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', topo.cgroup], { encoding: 'utf8' }).trim() || '[]') as Array<{ id: number }>;
  t.false(
    cg.some((p) => progIds.includes(p.id)),
    'our sockops is no longer attached to the cgroup',
  );
});

ktest('agent over ADS (gRPC): maps follow the control plane, a bad update is NACKed, an outage changes nothing', async (t) => {
  const topo = node('g');
  const ads = new FakeAdsServer();
  const address = await ads.start();
  t.teardown(() => ads.stop());
  const a = await startAgent({ cgroup: topo.cgroup, pinDir: topo.pinDir, stateDir, podCidr: `${NET}.0/24`, nodeIp: `${NET}.1`, extra: ['--xds', address] });
  const res = exampleResources(NET);
  const ofType = (url: string) => res.filter((r) => r['@type'] === url) as JsonObject[];
  const wants = (url: string) => (r: { req: JsonObject }) => r.req['type_url'] === url;

  // SotW: CDS (wildcard) -> EDS for the clusters' service names -> LDS
  const first = await ads.waitFor(wants(TYPE_CLUSTER), { timeoutMs: 20_000 });
  const md = ((first.req['node'] as JsonObject)['metadata'] as JsonObject)['INSTANCE_IPS'];
  t.is(md, `${NET}.1`, 'node metadata lists the node IPs');
  ads.sendSotw(TYPE_CLUSTER, ofType(TYPE_CLUSTER), 'c1');
  await ads.waitFor(wants(TYPE_ENDPOINT), { timeoutMs: 20_000 });
  ads.sendSotw(TYPE_ENDPOINT, ofType(TYPE_ENDPOINT), 'e1');
  await ads.waitFor(wants(TYPE_LISTENER), { timeoutMs: 20_000 });
  ads.sendSotw(TYPE_LISTENER, ofType(TYPE_LISTENER), 'l1');
  await waitFor(() => verdict(topo.pinDir, { ip: B4, port: 5432 }) === 'bypass' && verdict(topo.pinDir, { ip: B4, port: 8080 }) === 'proxy', 20_000, 'verdicts from ADS');

  const x = await transfer(topo, tcp(5432));
  t.is(x.received, x.sent);
  t.true(metric((await a.get('/metrics')).text, 'meshbpf_redirected_bytes_total')! >= x.bytes, 'redirected through the bypass');

  // A listener with port 0: NACKed with the reason; the maps keep the last good state.
  const bad = ofType(TYPE_LISTENER).map((l) => JSON.parse(JSON.stringify(l).replace('"port_value":8080', '"port_value":0')) as JsonObject);
  const from = ads.requests.length;
  const nonce = ads.sendSotw(TYPE_LISTENER, bad, 'l2');
  const nack = await ads.waitFor((r) => wants(TYPE_LISTENER)(r) && r.req['response_nonce'] === nonce, { from, timeoutMs: 20_000 });
  t.truthy(nack.req['error_detail'], 'NACK carries error_detail');
  t.is(nack.req['version_info'], 'l1', 'NACK names the last good version');
  t.is(verdict(topo.pinDir, { ip: B4, port: 8080 }), 'proxy', 'maps unchanged by the rejected update');

  // Control plane goes away: the agent reconnects with backoff; the kernel keeps the last good state.
  await ads.stop();
  const y = await transfer(topo, tcp(5432));
  t.is(y.received, y.sent);
  t.is(verdict(topo.pinDir, { ip: B4, port: 5432 }), 'bypass', 'outage: verdicts kept');
  let connected: number | undefined = 1;
  for (let i = 0; i < 100 && connected !== 0; i++) {
    connected = metric((await a.get('/metrics')).text, 'meshbpf_xds_connected');
    if (connected !== 0) await new Promise((r) => setTimeout(r, 100));
  }
  t.is(connected, 0, 'metrics say the control plane is down');
  t.is(await stopAgent(a), 0, a.output());
});
