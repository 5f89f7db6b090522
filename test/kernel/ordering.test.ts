// Ordering: once a socket's message missed its peer and went through TCP, a
// later redirect must not overtake it. The receiver drains its psock queue
// (redirected data) before its TCP receive queue, so without the sticky
// fallback in sk_msg the second chunk below is read first and the hash breaks.
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openMaps } from '../../src/maps/pinned.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { delta, kernelSuite, sha256, stats, waitFor } from '../helpers/kernel.js';

const { ktest, topo } = kernelSuite('kernel ordering test', {
  pods: [
    { name: 'a', v4: '198.18.4.1/24' },
    { name: 'b', v4: '198.18.4.2/24' },
  ],
});

ktest('after a peer miss a socket stays on the stack: a peer that appears later cannot reorder the stream', async (t) => {
  const m = openMaps(topo!.pinDir);
  m.endpoints.set('198.18.4.0/24', { local: true, mesh: true, networkId: 0, workloadId: 0 });
  m.policy.set({ ip: '198.18.4.2', port: 7001 }, { verdict: 'bypass', ruleId: 1 });
  m.close();

  // Server outside the cgroup: sockops never sees it, so the client's first send misses.
  const script = join(PROJECT_ROOT, 'dist', 'test', 'helpers', 'paused-server.js');
  // nsenter, not `ip netns exec`: the latter remounts /sys, hiding bpffs and the pins.
  const srv = spawn('nsenter', [`--net=/run/netns/${topo!.pod('b').netns}`, process.execPath, script, topo!.pinDir, '198.18.4.2', '7001'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => srv.kill('SIGKILL'));
  const lines: string[] = [];
  createInterface({ input: srv.stdout! }).on('line', (l) => lines.push(l));
  let errText = '';
  srv.stderr!.on('data', (d) => (errText += d));
  const said = (p: string) => waitFor(() => lines.some((l) => l.startsWith(p)), 10_000, `server: ${p} (stdout ${lines.join('|')}, stderr ${errText})`);
  await said('listening');

  const before = stats(topo!.pinDir);
  const client = topo!.spawn('a', ['socat', '-u', 'STDIN', 'TCP4:198.18.4.2:7001'], { stdio: ['pipe', 'pipe', 'pipe'] });
  await said('accepted');
  const chunk1 = randomBytes(32 << 10);
  const chunk2 = randomBytes(32 << 10);
  client.stdin!.write(chunk1);
  await waitFor(() => delta(before, stats(topo!.pinDir)).peer_missing_bytes >= chunk1.length, 10_000, 'chunk 1 to miss its peer');

  srv.stdin!.write('insert\n'); // the peer socket appears in mb_sockets now
  await said('inserted');
  client.stdin!.end(chunk2);
  await new Promise((r) => client.on('exit', r));
  srv.stdin!.write('read\n');
  await said('done');

  const d = delta(before, stats(topo!.pinDir));
  const [, n, digest] = (lines.find((l) => l.startsWith('done')) ?? '').split(' ');
  t.is(Number(n), chunk1.length + chunk2.length);
  t.is(digest, sha256(Buffer.concat([chunk1, chunk2])), 'bytes arrive in order');
  t.is(d.sockets_fell_back, 1, 'the client socket was pinned to the stack at its first miss');
  t.is(d.redirect_bytes, 0, 'nothing was redirected after the miss, though the peer was present');
  t.true(d.peer_missing_bytes >= chunk1.length + chunk2.length);
});
