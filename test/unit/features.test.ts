// What the load requires of the kernel, and how a helper probe's verifier log is read.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KERNEL_FLOOR, requireFeatures, type Features } from '../../src/loader/features.js';
import { helperInLog } from '../../src/sys/libbpf.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { UserError } from '../../src/errors.js';

const all: Features = { sockops: true, skMsg: true, sockhash: true, lpmTrie: true, skStorage: true, netnsCookie: true, vip: true };

test('everything present: the full build; no netns cookie: the degraded build', (t) => {
  t.deepEqual(requireFeatures(all), []);
  t.deepEqual(requireFeatures({ ...all, netnsCookie: false }), ['MB_NO_NETNS_COOKIE', 'MB_NO_VIP']);
});

test('no getpeername hooks: the build without VIP resolution, the rest unchanged', (t) => {
  t.deepEqual(requireFeatures({ ...all, vip: false }), ['MB_NO_VIP']);
});

test('no socket storage from sk_msg stops the load, naming it', (t) => {
  const e = t.throws(() => requireFeatures({ ...all, skStorage: false }), { instanceOf: UserError });
  t.regex(e!.message, /lacks socket storage \(SK_STORAGE\) from sk_msg/);
});

test('the kernel floor in the error is the one the README states', (t) => {
  const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
  t.is(/The floor is \*\*(\d+\.\d+)\*\*/.exec(readme)?.[1], KERNEL_FLOOR);
  const e = t.throws(() => requireFeatures({ ...all, sockhash: false }));
  t.true(e!.message.includes(`Linux ${KERNEL_FLOOR} or newer`));
});

test('helper probe: refused for its arguments means present; unknown or not for this type means absent', (t) => {
  t.true(helperInLog('0: (85) call bpf_sk_storage_get#107\nR1 type=ctx expected=map_ptr\n'));
  t.false(helperInLog('0: (85) call bpf_skb_load_bytes#26\nprogram of this type cannot use helper bpf_skb_load_bytes#26\n'));
  t.false(helperInLog('0: (85) call unknown#260\ninvalid func unknown#260\n'));
  t.false(helperInLog('unknown func bpf_sk_storage_get#107\n'));
  t.false(helperInLog(''), 'no log (EPERM, ...) is absent: fail safe');
});
