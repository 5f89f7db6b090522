// Streams of small writes (bpf/sk_msg.c): a socket that sends a long run of
// small writes while its peer sends nothing moves from the redirect to the
// stack for good. Every byte must arrive intact and in order, whatever the
// write sizes and wherever the switch happens, request/response must keep the
// redirect, and the counters must add up to the bytes sent. Real sockets,
// write sizes chosen by test/tools/sizedsend.c, hashes at both ends.
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openMaps } from '../../src/maps/pinned.js';
import { dumpMap } from '../../src/maps/dump.js';
import { explainFromKernel } from '../../src/cli/explain.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { waitForListen } from '../../src/topo/peers.js';
import { delta, kernelSuite, sha256, stats, tempDir, waitFor } from '../helpers/kernel.js';

const A4 = '198.18.14.1';
const B4 = '198.18.14.2';
const A6 = 'fd00:0:0:14::1';
const B6 = 'fd00:0:0:14::2';
const dir = tempDir();
const tool = join(dir, 'sizedsend');
const { ktest, topo } = kernelSuite('kernel stream-switch tests', {
  pods: [
    { name: 'a', v4: `${A4}/24`, v6: `${A6}/64` },
    { name: 'b', v4: `${B4}/24`, v6: `${B6}/64` },
  ],
  teardown: () => rmSync(dir, { recursive: true, force: true }),
});

let port = 7400;
let built = false;
function setup(): void {
  if (!built) {
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', tool, join(PROJECT_ROOT, 'test', 'tools', 'sizedsend.c')]);
    built = true;
    const m = openMaps(topo!.pinDir);
    try {
      m.endpoints.set('198.18.14.0/24', { local: true, mesh: true, networkId: 0, workloadId: 0 });
      m.endpoints.set('fd00:0:0:14::/64', { local: true, mesh: true, networkId: 0, workloadId: 0 });
    } finally {
      m.close();
    }
  }
}

interface Run {
  sent: string;
  received: string;
  bytes: number;
  writes: number;
  mismatches: number;
  d: ReturnType<typeof delta>;
}

/**
 * sizedsend in pod a -> socat in pod b (BYPASS verdict for b:port). Stream
 * plans: socat writes what it receives to a file. rrN: socat echoes every
 * request back (through tee, which also writes the file).
 */
async function send(family: 'v4' | 'v6', bytes: number, plan: string, fixedPort?: number): Promise<Run> {
  setup();
  const p = fixedPort ?? port++;
  const server = family === 'v4' ? B4 : B6;
  const m = openMaps(topo!.pinDir);
  try {
    m.policy.set({ ip: server, port: p }, { verdict: 'bypass', ruleId: 1 });
  } finally {
    m.close();
  }
  const data = randomBytes(bytes);
  const input = join(dir, `in-${p}.bin`);
  const output = join(dir, `out-${p}.bin`);
  writeFileSync(input, data);
  const listen = family === 'v4' ? `TCP4-LISTEN:${p},reuseaddr` : `TCP6-LISTEN:${p},reuseaddr,ipv6only=1`;
  const srv = topo!.spawn('b', plan.startsWith('rr') ? ['socat', listen, `SYSTEM:tee ${output}`] : ['socat', '-u', listen, `OPEN:${output},creat,trunc`]);
  const srvDone = new Promise<number | null>((res) => srv.on('exit', (code) => res(code)));
  let srvErr = '';
  srv.stderr?.on('data', (x) => (srvErr += x));
  await waitForListen(topo!, 'b', p);
  const before = stats(topo!.pinDir);
  const client = topo!.spawn('a', [tool, server, String(p), input, plan], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  client.stdout!.on('data', (x) => (out += x));
  client.stderr!.on('data', (x) => (err += x));
  const clientDone = new Promise<number | null>((res) => client.on('exit', (code) => res(code)));
  await waitFor(() => stats(topo!.pinDir).sockops_established - before.sockops_established >= 2n, 10_000, 'both ends established');
  client.stdin!.end('go\n');
  const cc = await clientDone;
  if (cc !== 0) throw new Error(`sizedsend exited with ${cc}: ${err}`);
  const sc = await srvDone;
  if (sc !== 0) throw new Error(`socat exited with ${sc}: ${srvErr}`);
  const d = delta(before, stats(topo!.pinDir));
  const j = JSON.parse(out) as { bytes: number; writes: number; mismatches?: number };
  const received = existsSync(output) ? sha256(readFileSync(output)) : 'missing';
  rmSync(input, { force: true });
  rmSync(output, { force: true });
  return { sent: sha256(data), received, bytes: j.bytes, writes: j.writes, mismatches: j.mismatches ?? 0, d };
}

/** Every byte either side sent went through exactly one of: the redirect, a peer miss, the stack after a switch. */
function accounted(r: Run): number {
  return r.d.redirect_bytes + r.d.peer_missing_bytes + r.d.stream_pass_bytes;
}

for (const family of ['v4', 'v6'] as const) {
  for (const [size, bytes, switches] of [
    [1, 64 << 10, true],
    [64, 4 << 20, true],
    [1000, 4 << 20, false],
    [65536, 32 << 20, false],
  ] as const) {
    ktest(`${family}: a stream of ${size}-byte writes arrives intact; ${switches ? 'it moves to the stack' : 'it keeps the redirect'} and the counters add up`, async (t) => {
      const r = await send(family, bytes, String(size));
      t.is(r.received, r.sent, 'sha256 at the receiver equals sha256 at the sender');
      t.is(r.bytes, bytes);
      t.is(r.d.sockets_inserted, 2, 'both ends were paired');
      t.is(accounted(r), bytes, `redirect ${r.d.redirect_bytes} + missed ${r.d.peer_missing_bytes} + stream ${r.d.stream_pass_bytes} = bytes sent`);
      t.is(r.d.peer_missing_bytes, 0, 'no peer miss');
      if (switches) {
        t.is(r.d.stream_switched, 1, 'the writer moved to the stack once');
        t.true(r.d.stream_pass_bytes > bytes / 2, `most bytes took the stack after the switch (${r.d.stream_pass_bytes} of ${bytes})`);
        t.true(r.d.redirect_bytes > 0, 'the first writes were redirected');
      } else {
        t.is(r.d.stream_switched, 0, 'no switch for writes of this size');
        t.is(r.d.redirect_bytes, bytes, 'every byte redirected');
      }
    });
  }
}

ktest('a stream that changes from small to large writes and back, switching mid-way, arrives intact', async (t) => {
  const bytes = 24 << 20;
  const r = await send('v4', bytes, '65536x64,64x4000,65536x128,64x4000,65536');
  t.is(r.received, r.sent, 'sha256 at both ends');
  t.is(r.bytes, bytes);
  t.is(r.d.stream_switched, 1, 'switched once, in the first run of small writes');
  t.true(r.d.redirect_bytes >= 64 * 65536, 'the first large writes were redirected');
  t.true(r.d.stream_pass_bytes > 0);
  t.is(accounted(r), bytes, 'redirected + passed = bytes sent');
});

ktest('IPv6: small -> large -> small with the switch in the middle of a redirected stream, intact', async (t) => {
  const bytes = 8 << 20;
  const r = await send('v6', bytes, '64x2000,65536x32,1x5000,65536');
  t.is(r.received, r.sent);
  t.is(r.d.stream_switched, 1);
  t.is(accounted(r), bytes);
});

for (const size of [1, 64, 1000]) {
  ktest(`request/response with ${size}-byte messages keeps the redirect; both directions intact and counted`, async (t) => {
    const bytes = size * 2000;
    const r = await send('v4', bytes, `rr${size}`);
    t.is(r.received, r.sent, 'the echo server received every request byte in order');
    t.is(r.mismatches, 0, 'every echo equals its request');
    t.is(r.d.stream_switched, 0, 'an exchange never looks like a stream');
    t.is(r.d.stream_pass_bytes, 0);
    t.is(r.d.peer_missing_bytes, 0);
    t.is(r.d.redirect_bytes, 2 * bytes, 'requests and echoes: every byte redirected');
  });
}

ktest('a learned stream: the next connections of that client to that destination keep the stack, intact; after the window the pair is probed again', async (t) => {
  const p = port++;
  const key = { clientIp: A4, serverIp: B4, serverPort: p, netnsCookie: 0n };
  const first = await send('v4', 64 << 10, '1', p);
  t.is(first.received, first.sent, 'sha256 at both ends (the probe: paired, then switched)');
  t.is(first.d.sockets_inserted, 2);
  t.is(first.d.stream_switched, 1);
  t.is(first.d.stream_learned, 1, 'the switch recorded the pair');
  const m = openMaps(topo!.pinDir);
  let entry;
  try {
    entry = m.streams.get(key);
  } finally {
    m.close();
  }
  t.truthy(entry, 'mb_streams holds client a -> b:port');
  t.is(entry?.switches, 1n);

  // The same client to the same destination, small writes again: not paired at all.
  const again = await send('v4', 64 << 10, '1', p);
  t.is(again.received, again.sent, 'sha256 at both ends');
  t.is(again.d.sockets_inserted, 0, 'neither end entered mb_sockets');
  t.is(again.d.stream_kept, 2, 'both ends kept on the stack by the learned entry');
  t.is(accounted(again), 0, 'sk_msg never ran: nothing redirected, nothing switched');
  t.is(again.d.stream_switched, 0);
  const ex = explainFromKernel(topo!.pinDir, B4, p, A4);
  t.is(ex.verdict, 'none', 'policy explain says the learned pair keeps the normal path');
  t.true(
    ex.reasons.some((r) => r.startsWith(`mb_streams ${A4} -> ${B4}:${p}`)),
    ex.reasons.join('\n'),
  );
  t.is(explainFromKernel(topo!.pinDir, B4, p).verdict, 'bypass', 'other clients of the destination still bypass');
  const md = openMaps(topo!.pinDir, { readOnly: true });
  try {
    const row = dumpMap(md, 'mb_streams').find((e) => (e.key as { serverPort: number }).serverPort === p);
    t.like(row?.value as object, { keepsStack: true, switches: 1, kept: 2 }, 'maps dump shows the entry');
  } finally {
    md.close();
  }

  // Any connection of that pair is kept while the entry is fresh (the price of learning), large writes too.
  const large = await send('v4', 4 << 20, '1000', p);
  t.is(large.received, large.sent);
  t.is(large.d.sockets_inserted, 0);
  t.is(large.d.stream_kept, 2);

  // An entry older than the window (aged by hand): the next connection is paired again and decides anew.
  // The timestamp is CLOCK_MONOTONIC: a freshly booted VM guest must first be a window old.
  const window = 61_000_000_000n;
  await waitFor(() => process.hrtime.bigint() > window + 1_000_000_000n, 70_000, 'the monotonic clock past one learning window');
  const m2 = openMaps(topo!.pinDir);
  try {
    const v = m2.streams.get(key)!;
    t.is(v.kept, 4n, 'the entry counts the sockets it kept');
    m2.streams.set(key, { ...v, learnedNs: process.hrtime.bigint() - window });
  } finally {
    m2.close();
  }
  const probe = await send('v4', 4 << 20, '1000', p);
  t.is(probe.received, probe.sent, 'sha256 at both ends');
  t.is(probe.d.sockets_inserted, 2, 'paired again after the window');
  t.is(probe.d.stream_kept, 0);
  t.is(probe.d.stream_switched, 0, '1000-byte writes are not a stream');
  t.is(probe.d.redirect_bytes, 4 << 20, 'every byte redirected');
});

ktest("IPv6: a learned stream is keyed by the family's own addresses; the IPv4 pair is not affected", async (t) => {
  const p = port++;
  const first = await send('v6', 64 << 10, '64', p);
  t.is(first.received, first.sent);
  t.is(first.d.stream_switched, 1);
  t.is(first.d.stream_learned, 1);
  const m = openMaps(topo!.pinDir);
  try {
    t.truthy(m.streams.get({ clientIp: A6, serverIp: B6, serverPort: p, netnsCookie: 0n }), 'mb_streams holds a6 -> [b6]:port');
  } finally {
    m.close();
  }
  const again = await send('v6', 64 << 10, '64', p);
  t.is(again.received, again.sent);
  t.is(again.d.sockets_inserted, 0);
  t.is(again.d.stream_kept, 2);
  const v4 = await send('v4', 4 << 20, '1000', p);
  t.is(v4.received, v4.sent);
  t.is(v4.d.sockets_inserted, 2, 'the IPv4 pair to the same port is paired');
  t.is(v4.d.redirect_bytes, 4 << 20);
});
