// The TypeScript codecs against the C header (compiled on the host), and the
// byte-order helpers of bpf/include/ctx.h over every port.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../src/paths.js';
import * as c from '../../src/maps/codecs.js';

interface Abi {
  sock_key: number;
  sock_key_local_port: number;
  sock_key_remote_port: number;
  sock_key_cookie: number;
  endpoint_key: number;
  endpoint_value: number;
  policy_key: number;
  policy_key_port: number;
  policy_value: number;
  stat_max: number;
  stat_slots: number;
  exclude_value: number;
  exclude_value_comm: number;
  exclude_operator: number;
  exclude_splice: number;
  ep_local: number;
  ep_mesh: number;
  verdict_bypass: number;
  verdict_proxy: number;
  ports_ok: boolean;
  v4_mapped: string;
  loopback_v4: number;
  loopback_v6: number;
  loopback_other: number;
  loopback_pod: number;
  service_value: number;
  backend_key: number;
  backend_value: number;
  backend_value_port: number;
  netns_value: number;
  netns_flags: number;
  svc_bypass: number;
  ns_proxy: number;
  stream_key: number;
  stream_key_cookie: number;
  stream_key_port: number;
  stream_value: number;
  stream_value_kept: number;
  stream_learn_ns: string;
}

let abi: Abi;
test.before(() => {
  const dir = mkdtempSync(join(tmpdir(), 'mbt-abi-'));
  try {
    const cc = ['clang', 'cc', 'gcc'].find((x) => {
      try {
        execFileSync('sh', ['-c', `command -v ${x}`], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    });
    if (!cc) throw new Error('no C compiler (clang, cc or gcc) to check the ABI header');
    const triple = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
    const bin = join(dir, 'abi_check');
    execFileSync(cc, ['-Wall', '-Werror', `-I/usr/include/${triple}`, `-I${join(PROJECT_ROOT, 'bpf')}`, '-o', bin, join(PROJECT_ROOT, 'test/unit/c/abi_check.c')]);
    abi = JSON.parse(execFileSync(bin, { encoding: 'utf8' })) as Abi;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('codec sizes equal the C struct sizes', (t) => {
  t.is(c.sockKey.size, abi.sock_key);
  t.is(c.endpointKey.size, abi.endpoint_key);
  t.is(c.endpointValue.size, abi.endpoint_value);
  t.is(c.policyKey.size, abi.policy_key);
  t.is(c.policyValue.size, abi.policy_value);
  t.is(c.MB_STAT_SLOTS, abi.stat_slots);
});

test('codec field offsets and constants match the header', (t) => {
  const b = Buffer.alloc(c.sockKey.size);
  c.sockKey.encode(b, 0, { localIp: '1.2.3.4', remoteIp: '5.6.7.8', localPort: 0x1234, remotePort: 0xabcd, netnsCookie: 0x0102030405060708n });
  t.is(b.readUInt16BE(abi.sock_key_local_port), 0x1234, 'local port, network order, at the C offset');
  t.is(b.readUInt16BE(abi.sock_key_remote_port), 0xabcd);
  t.is(b.readBigUInt64LE(abi.sock_key_cookie), 0x0102030405060708n);
  const pk = Buffer.alloc(c.policyKey.size);
  c.policyKey.encode(pk, 0, { ip: '10.0.0.1', port: 8080 });
  t.is(pk.readUInt16BE(abi.policy_key_port), 8080);
  t.is(c.EP_LOCAL, abi.ep_local);
  t.is(c.EP_MESH, abi.ep_mesh);
  t.is(c.verdictCode('bypass'), abi.verdict_bypass);
  t.is(c.verdictCode('proxy'), abi.verdict_proxy);
  t.is(c.STAT_NAMES.length as number, abi.stat_max, 'one counter name per enum mb_stat entry');
});

test('mb_no_bypass value: size, comm offset and reasons match the header', (t) => {
  t.is(c.excludeValue.size, abi.exclude_value);
  t.is(c.EXCLUDE_REASONS.operator as number, abi.exclude_operator);
  t.is(c.EXCLUDE_REASONS.splice as number, abi.exclude_splice);
  const b = Buffer.alloc(c.excludeValue.size);
  c.excludeValue.encode(b, 0, { reason: 'splice', pid: 42, hits: 3n, firstNs: 7n, comm: 'haproxy' });
  t.is(b.toString('latin1', abi.exclude_value_comm, abi.exclude_value_comm + 7), 'haproxy');
  t.deepEqual(c.excludeValue.decode(b, 0), { reason: 'splice', pid: 42, hits: 3n, firstNs: 7n, comm: 'haproxy' });
});

test('service VIP codecs: sizes, the port offset and the flag bits equal the header', (t) => {
  t.is(c.serviceValue.size, abi.service_value);
  t.is(c.backendKey.size, abi.backend_key);
  t.is(c.backendValue.size, abi.backend_value);
  t.is(c.netnsValue.size, abi.netns_value);
  t.is(c.SVC_BYPASS, abi.svc_bypass);
  t.is(c.NS_PROXY, abi.ns_proxy);
  const b = Buffer.alloc(c.backendValue.size);
  c.backendValue.encode(b, 0, { ip: '198.18.0.3', port: 8080 });
  t.is(b.readUInt16BE(abi.backend_value_port), 8080, 'target port, network order, at the C offset');
  const n = Buffer.alloc(c.netnsValue.size);
  c.netnsValue.encode(n, 0, { ip4: null, ip6: null, proxy: true });
  t.is(n.readUInt32LE(abi.netns_flags), c.NS_PROXY);
});

test('mb_streams codecs: sizes, offsets and the learning window equal the header', (t) => {
  t.is(c.streamKey.size, abi.stream_key);
  t.is(c.streamValue.size, abi.stream_value);
  t.is(c.STREAM_LEARN_NS, BigInt(abi.stream_learn_ns));
  const k = Buffer.alloc(c.streamKey.size);
  const key = { clientIp: '198.18.0.2', serverIp: 'fd00::3', serverPort: 5201, netnsCookie: 0x0102030405060708n };
  c.streamKey.encode(k, 0, key);
  t.is(k.readUInt16BE(abi.stream_key_port), 5201, 'destination port, network order, at the C offset');
  t.is(k.readBigUInt64LE(abi.stream_key_cookie), 0x0102030405060708n);
  t.deepEqual(c.streamKey.decode(k, 0), key);
  const v = Buffer.alloc(c.streamValue.size);
  c.streamValue.encode(v, 0, { learnedNs: 5n, firstNs: 4n, kept: 3n, switches: 2n });
  t.is(v.readBigUInt64LE(abi.stream_value_kept), 3n);
});

test('ctx.h byte-order helpers: every port survives the kernel quirks', (t) => {
  t.true(abi.ports_ok, 'mb_remote_port_net/mb_local_port_net give network order for 1..65535');
});

test('ctx.h IPv4-mapped encoding equals the TypeScript one, loopback detection', (t) => {
  const b = Buffer.alloc(16);
  c.ip16.encode(b, 0, '198.18.1.2');
  t.is(b.toString('hex'), abi.v4_mapped);
  t.is(abi.loopback_v4, 1, '127.0.0.53 is loopback');
  t.is(abi.loopback_v6, 1, '::1 is loopback');
  t.is(abi.loopback_other, 0, 'fd00::2 is not');
  t.is(abi.loopback_pod, 0, '198.18.1.2 is not');
});
