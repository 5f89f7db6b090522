// The privilege check asks for what meshbpf is run and tested with, and names what is missing.
import test from 'ava';
import { checkPrivileges } from '../../src/loader/preflight.js';
import { UserError } from '../../src/errors.js';

const cap = (...n: number[]) => n.reduce((a, c) => a | (1n << BigInt(c)), 0n);
const [NET_ADMIN, SYS_ADMIN, BPF, PERFMON] = [12, 21, 39, 38];

test('root (CAP_SYS_ADMIN + CAP_NET_ADMIN) passes', (t) => {
  t.notThrows(() => checkPrivileges(cap(NET_ADMIN, SYS_ADMIN)));
});

test('CAP_BPF without CAP_SYS_ADMIN is refused, naming CAP_SYS_ADMIN', (t) => {
  const e = t.throws(() => checkPrivileges(cap(BPF, PERFMON, NET_ADMIN)), { instanceOf: UserError });
  t.is(e!.message, 'meshbpf needs root (it lacks CAP_SYS_ADMIN) to load BPF programs; run it with sudo');
});

test('no capabilities: both are named', (t) => {
  const e = t.throws(() => checkPrivileges(0n), { instanceOf: UserError });
  t.regex(e!.message, /lacks CAP_SYS_ADMIN and CAP_NET_ADMIN/);
});
