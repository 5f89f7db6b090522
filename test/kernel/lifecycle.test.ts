// Load twice over live connections, unload leaves nothing (read back with
// bpftool), and the errors a user can cause are one clear line.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { waitForListen } from '../../src/topo/peers.js';
import { load, unload } from '../../src/loader/load.js';
import { openMaps } from '../../src/maps/pinned.js';
import { cli, delta, kernelSuite, sha256, stats, tempDir, waitFor } from '../helpers/kernel.js';

const B4 = '198.18.2.2';

const { ktest, topo } = kernelSuite('kernel lifecycle tests', {
  pods: [
    { name: 'a', v4: '198.18.2.1/24' },
    { name: 'b', v4: `${B4}/24` },
  ],
  load: false,
  teardown: () => {
    try {
      if (topo) unload({ pinDir: `${topo.pinDir}-x` });
    } catch {
      /* not loaded */
    }
  },
});

function bpftool(args: string[]): unknown {
  return JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' }).trim() || '[]');
}

ktest('load again over live connections: maps reused, programs replaced, the stream stays intact and redirected', async (t) => {
  const first = load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup });
  t.false(first.upgraded);
  const m = openMaps(topo!.pinDir);
  m.endpoints.set('198.18.2.0/24', { local: true, mesh: true, networkId: 0, workloadId: 0 });
  m.policy.set({ ip: B4, port: 6001 }, { verdict: 'bypass', ruleId: 1 });

  const dir = tempDir();
  const out = join(dir, 'out.bin');
  try {
    const srv = topo!.spawn('b', ['socat', '-u', 'TCP4-LISTEN:6001,reuseaddr', `OPEN:${out},creat,trunc`]);
    const srvDone = new Promise((res) => srv.on('exit', res));
    await waitForListen(topo!, 'b', 6001);
    const client = topo!.spawn('a', ['socat', '-u', 'STDIN', `TCP4:${B4}:6001`], { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunk1 = randomBytes(2 << 20);
    const chunk2 = randomBytes(2 << 20);
    client.stdin!.write(chunk1);
    await waitFor(() => existsSync(out) && statSync(out).size >= chunk1.length, 10_000, 'first chunk');
    t.is(m.sockets.count(), 2, 'both sockets of the live connection are in mb_sockets');

    const second = load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup });
    t.true(second.upgraded);
    t.true(
      second.maps.every((x) => x.reused),
      'every pinned map was reused',
    );
    t.notDeepEqual(
      second.programs.map((p) => p.id),
      first.programs.map((p) => p.id),
      'new program ids',
    );
    t.is(m.sockets.count(), 2, 'live entries survived the reload');
    t.is(m.policy.get({ ip: B4, port: 6001 })?.verdict, 'bypass', 'policy entries survived');

    const before = stats(topo!.pinDir);
    client.stdin!.end(chunk2);
    await srvDone;
    const d = delta(before, stats(topo!.pinDir));
    t.is(sha256(readFileSync(out)), sha256(Buffer.concat([chunk1, chunk2])), 'stream intact across the reload');
    t.true(d.redirect_bytes >= chunk2.length, `still redirected after reload (${d.redirect_bytes} bytes)`);
  } finally {
    m.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

ktest('unload leaves no pin, link or attachment behind (bpftool)', async (t) => {
  const r = load({ pinDir: topo!.pinDir, cgroup: topo!.cgroup });
  const progIds = r.programs.map((p) => p.id);
  const cg = bpftool(['cgroup', 'show', topo!.cgroup]) as Array<{ id: number }>;
  t.true(
    cg.some((p) => progIds.includes(p.id)),
    'sockops is attached before unload',
  );

  unload({ pinDir: topo!.pinDir });
  t.false(existsSync(topo!.pinDir), 'pin directory removed');
  t.deepEqual(bpftool(['cgroup', 'show', topo!.cgroup]), [], 'nothing attached to the cgroup');
  // Links and programs are freed once the last reference drops (the kernel
  // defers the free), so poll; a leaked fd anywhere keeps them forever.
  await waitFor(
    () => {
      const links = bpftool(['link', 'show']) as Array<{ id: number; prog_id: number }>;
      return !links.some((l) => l.id === r.linkId || progIds.includes(l.prog_id));
    },
    5000,
    'the link to be freed',
  );
  await waitFor(
    () => {
      const progs = bpftool(['prog', 'show']) as Array<{ id: number }>;
      return !progs.some((p) => progIds.includes(p.id));
    },
    5000,
    'programs to be freed',
  );
  t.pass();
});

ktest('incompatible pinned map: load names the map and the difference', (t) => {
  const dir = `${topo!.pinDir}-x`;
  load({ pinDir: dir, cgroup: topo!.cgroup, maxSockets: 1024 });
  const r = cli(['load', '--pin-dir', dir, '--cgroup', topo!.cgroup]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^meshbpf: pinned map \S+\/mb_sockets is incompatible .*max_entries 1024 != 65536/);
  t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  unload({ pinDir: dir });
});

ktest('errors a user can cause are one line and a non-zero exit', (t) => {
  const cases: Array<[string[], RegExp, number?]> = [
    [['load', '--pin-dir', topo!.pinDir, '--cgroup', '/sys/fs/cgroup/unified/mbt-does-not-exist'], /cgroup .* does not exist/],
    [['load', '--pin-dir', topo!.pinDir, '--cgroup', '/tmp'], /not in a cgroup v2 hierarchy/],
    [['load', '--pin-dir', '/tmp/mbt-not-bpffs'], /not on a bpffs/],
    [['load', '--pin-dir', topo!.pinDir], /no pods cgroup .* pass --cgroup PATH/],
    [['maps', 'dump', '--pin-dir', '/sys/fs/bpf/mbt-nothing-here'], /not loaded at/],
    [['endpoints', 'add', '10.0.0.1/33', '--pin-dir', topo!.pinDir], /bad prefix length/],
    [['endpoints', 'add', '10.0.0.1/24', '--pin-dir', topo!.pinDir], /host bits set; did you mean 10\.0\.0\.0\/24/],
    [['policy', 'set', 'not-an-ip', '80', 'bypass', '--pin-dir', topo!.pinDir], /not an IP address/],
    [['policy', 'set', '10.0.0.1', '70000', 'bypass', '--pin-dir', topo!.pinDir], /not a port/],
    [['policy', 'set', '10.0.0.1', '80', 'fast', '--pin-dir', topo!.pinDir], /verdict must be bypass or proxy/],
    [['load', '--pin-dir', topo!.pinDir, '--cgroup', topo!.cgroup], /needs root/, 65534],
  ];
  // (no pods cgroup: holds on this machine, which has no kubepods cgroup)
  for (const [args, re, uid] of cases) {
    const r = cli(args, uid === undefined ? {} : { asUser: uid });
    t.is(r.code, 1, `exit code for ${args.join(' ')}`);
    t.regex(r.stderr, new RegExp(`^meshbpf: .*${re.source}`), args.join(' '));
    t.is(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
  }
  t.false(existsSync(topo!.pinDir), 'failed loads left no pin directory behind');
});
