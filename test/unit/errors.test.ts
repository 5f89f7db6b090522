// The error model (src/errors.ts): codes by name, batch `applied` as a field,
// a one-line verifier error that keeps the whole log, one message per error.
import test from 'ava';
import { AddressError, BatchError, BpfError, MeshbpfError, NotLoadedError, UserError, VerifierError, XdsParseError, userMessage } from '../../src/errors.js';

test('BpfError carries the errno and its name; the message names both', (t) => {
  const e = new BpfError('bpf_map_update_elem', 7, 'Argument list too long');
  t.is(e.code, 'E2BIG');
  t.is(e.errno, 7);
  t.is(e.message, 'bpf_map_update_elem: Argument list too long (E2BIG)');
  t.false(e.userFacing);
  t.is(new BpfError('x', 524).code, 'ENOTSUPP', 'the kernel-internal ENOTSUPP has a name too');
});

test('BatchError says how many elements were applied before the failing one', (t) => {
  const e = new BatchError('bpf_map_delete_batch', 2, 17);
  t.true(e instanceof BpfError);
  t.is(e.applied, 17);
  t.is(e.code, 'ENOENT');
});

test('VerifierError: one line for the user, the whole log kept', (t) => {
  const log = 'func#0 @0\n0: R1=ctx() R10=fp0\n; int x = *(u32 *)(ctx + 200);\ninvalid bpf_context access off=200 size=4\nprocessed 1 insns\n';
  const e = new VerifierError('mb_sockops', 'build/bpf/sockops.o', log);
  t.false(e.message.includes('\n'));
  t.regex(e.message, /^the kernel verifier rejected mb_sockops \(build\/bpf\/sockops.o\): processed 1 insns/);
  t.is(e.log, log);
  t.true(e instanceof UserError);
});

test('every error class is a MeshbpfError; userMessage gives the line the CLI prints', (t) => {
  for (const e of [new UserError('u'), new AddressError('a'), new NotLoadedError('n'), new XdsParseError(['r1', 'r2']), new BpfError('c', 22)]) t.true(e instanceof MeshbpfError);
  t.is(userMessage(new XdsParseError(['r1', 'r2'])), 'r1; r2');
  t.is(userMessage(new BpfError('bpf_obj_get(/x)', 1, 'Operation not permitted')), 'bpf_obj_get(/x): Operation not permitted (EPERM): permission denied (run as root)');
  t.is(userMessage(Object.assign(new Error('open /sys/fs/bpf/x'), { code: 'EACCES' })), 'open /sys/fs/bpf/x (run as root)');
  t.is(userMessage(new Error('plain')), 'plain');
});
