// One agent per pin directory (issue 10): the lock names its owner's pid and
// is keyed by the full pin path, like the state directory.
import test from 'ava';
import { acquireLock, AgentLockedError, lockOwner } from '../../src/agent/lock.js';
import { stateDir } from '../../src/maps/state.js';

test('a second lock on one pin dir fails naming the owner; released, it can be taken again', async (t) => {
  const pin = `/sys/fs/bpf/mbt-lock-${process.pid}/meshbpf`;
  t.is(await lockOwner(pin), undefined);
  const l = await acquireLock(pin);
  t.is(await lockOwner(pin), process.pid);
  const e = await t.throwsAsync(acquireLock(pin), { instanceOf: AgentLockedError });
  t.is(e?.message, `another meshbpf agent (pid ${process.pid}) owns ${pin}; stop it first`);
  // same last element, other directory: another lock
  const other = await acquireLock(`/sys/fs/bpf/mbt-lock-${process.pid}-b/meshbpf`);
  await other.release();
  await l.release();
  t.is(await lockOwner(pin), undefined);
  await (await acquireLock(pin)).release();
});

test('the state directory is keyed by the full pin path, not its last element', (t) => {
  t.not(stateDir('/sys/fs/bpf/a/meshbpf'), stateDir('/sys/fs/bpf/b/meshbpf'));
  t.is(stateDir('/sys/fs/bpf/a/meshbpf'), stateDir('/sys/fs/bpf/a/../a/meshbpf/'));
  t.regex(stateDir('/sys/fs/bpf/a/meshbpf'), /\/meshbpf-[0-9a-f]{12}$/);
});
