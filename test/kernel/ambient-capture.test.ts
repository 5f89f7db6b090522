// Istio ambient's in-pod capture (istio-cni's rules in each pod's namespace,
// a ztunnel stand-in on 15001/15006) with meshbpf loaded and WDS verdicts
// applied: capture is unchanged, every flow still reaches the stand-in, bytes
// intact (never fail open). And the kernel fact that decides how capture can be
// skipped later: a client socket marked 0x539 (ztunnel's exemption mark) skips
// the outbound capture of its own pod, but the mark does not cross the veth, so
// the server pod's inbound capture still takes the connection.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { PROJECT_ROOT } from '../../src/paths.js';
import { openMaps } from '../../src/maps/pinned.js';
import { randomBytes } from 'node:crypto';
import { waitForListen } from '../../src/topo/peers.js';
import { cli, kernelSuite, sha256, tempDir, transfer, waitFor } from '../helpers/kernel.js';
import { service, workload } from '../helpers/wds.js';

const dir = tempDir();
const env = { MESHBPF_STATE_DIR: join(dir, 'state') };
const RULES = join(PROJECT_ROOT, 'test', 'peers', 'istio-cni-inpod.rules');
const STANDIN = join(PROJECT_ROOT, 'test', 'peers', 'ztunnel-standin.py');
const A = '198.18.7.2';
const B = '198.18.7.3';

const { ktest, topo } = kernelSuite('kernel ambient capture tests', {
  kind: 'bridge',
  pods: [
    { name: 'a', v4: `${A}/24` },
    { name: 'b', v4: `${B}/24` },
  ],
  teardown: () => rmSync(dir, { recursive: true, force: true }),
});

const logOf = (pod: string) => join(dir, `standin-${pod}.log`);
const lines = (pod: string): string[] => readFileSync(logOf(pod), 'utf8').split('\n').filter(Boolean);

async function standIn(pod: string): Promise<ChildProcess> {
  writeFileSync(logOf(pod), '');
  await topo!.run(pod, ['sh', '-c', `iptables-restore < ${RULES}`], { cgroup: false });
  const p = topo!.spawn(pod, ['python3', STANDIN, logOf(pod)]);
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes('ready'), 10_000, `ztunnel stand-in in ${pod}`);
  return p;
}

/** a -> b:port from a socket marked 0x539 before connect() (socat sets socket options only after it). */
async function markedTransfer(ip: string, port: number): Promise<{ sent: string; received: string }> {
  const data = randomBytes(1 << 20);
  const out = join(dir, 'marked.out');
  const srv = topo!.spawn('b', ['socat', '-u', `TCP4-LISTEN:${port},reuseaddr`, `OPEN:${out},creat,trunc`]);
  const srvDone = new Promise<number | null>((res) => srv.on('exit', (c) => res(c)));
  await waitForListen(topo!, 'b', port);
  const code = `import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,36,0x539)\ns.connect((${JSON.stringify(ip)},${port}))\ns.sendall(sys.stdin.buffer.read())\ns.shutdown(socket.SHUT_WR)\ntry:\n  s.recv(1)\nexcept OSError:\n  pass\n`;
  const c = topo!.spawn('a', ['python3', '-c', code], { stdio: ['pipe', 'ignore', 'pipe'] });
  const cDone = new Promise<number | null>((res) => c.on('exit', (x) => res(x)));
  c.stdin!.end(data);
  let err = '';
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const cc = await cDone;
  if (cc !== 0) throw new Error(`marked client exited with ${cc}: ${err}`);
  if ((await srvDone) !== 0) throw new Error('server failed');
  return { sent: sha256(data), received: sha256(readFileSync(out)) };
}

ktest('in-pod capture with meshbpf loaded: the bypass verdict changes nothing, every flow reaches the stand-in, bytes intact', async (t) => {
  const wds = join(dir, 'wds.json');
  writeFileSync(
    wds,
    JSON.stringify({
      resources: [
        workload({ name: 'a', namespace: 'ns1', ips: [A], node: 'node-a' }),
        workload({ name: 'b', namespace: 'ns1', ips: [B], node: 'node-a', services: { 'ns1/db.ns1.svc.cluster.local': [[5432, 5432]] } }),
        service({ name: 'db', namespace: 'ns1', vips: ['198.19.7.10'], ports: [[5432, 5432]] }),
      ],
    }),
  );
  const r = cli(['sync', '--xds-file', wds, '--pin-dir', topo!.pinDir, '--node-name', 'node-a', '--node-ip', '198.18.7.1'], { env });
  t.is(r.code, 0, r.stderr);
  const m = openMaps(topo!.pinDir, { readOnly: true });
  try {
    t.is(m.policy.get({ ip: B, port: 5432 })?.verdict, 'bypass');
  } finally {
    m.close();
  }
  const sa = await standIn('a');
  const sb = await standIn('b');
  t.teardown(() => {
    sa.kill();
    sb.kill();
  });

  const db = { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: `TCP4:${B}:5432`, port: 5432, bytes: 1 << 20 };
  const x = await transfer(topo!, db);
  t.is(x.received, x.sent);
  t.deepEqual(lines('a'), [`15001 ${B}:5432`], 'outbound captured in the client pod');
  t.deepEqual(lines('b'), [`15006 ${B}:5432`], 'inbound captured in the server pod');

  // What a connect-time exemption would do: the client's socket carries ztunnel's mark.
  writeFileSync(logOf('a'), '');
  writeFileSync(logOf('b'), '');
  const y = await markedTransfer(B, 5432);
  t.is(y.received, y.sent);
  t.deepEqual(lines('a'), [], 'marked: the client pod does not capture it');
  t.deepEqual(lines('b'), [`15006 ${B}:5432`], 'but the mark is gone after the veth: the server pod still captures it');
});
