// BpfMap and PerCpuCounters over the fake syscalls: every batch, fallback and
// iteration path, without a kernel or libbpf.
import test from 'ava';
import { BpfMap, PerCpuCounters } from '../../src/maps/map.js';
import { u64Host, type Codec } from '../../src/maps/codecs.js';
import { BatchError, MapShapeError } from '../../src/errors.js';
import { FakeMap, FakeSyscalls } from '../helpers/fake-maps.js';

const u32: Codec<number> = { size: 4, encode: (b, o, v) => void b.writeUInt32LE(v, o), decode: (b, o) => b.readUInt32LE(o) };

function setup(opts: Partial<ConstructorParameters<typeof FakeMap>[0]> = {}) {
  const sys = new FakeSyscalls();
  const fake = new FakeMap({ keySize: 4, valueSize: 8, ...opts });
  const m = new BpfMap(sys.add(fake), u32, u64Host, 'test', sys);
  return { sys, fake, m };
}

const range = (n: number, from = 0): Array<[number, bigint]> => Array.from({ length: n }, (_, i) => [from + i, BigInt((from + i) * 10)] as [number, bigint]);
const count = (calls: string[], c: string) => calls.filter((x) => x === c).length;

test('get/set/delete: a miss is undefined / false, not an error', (t) => {
  const { m } = setup();
  t.is(m.get(1), undefined);
  m.set(1, 7n);
  t.is(m.get(1), 7n);
  t.true(m.delete(1));
  t.false(m.delete(1));
});

test('a kernel map of another shape is refused with both sizes', (t) => {
  const sys = new FakeSyscalls();
  const fd = sys.add(new FakeMap({ keySize: 4, valueSize: 16 }));
  const e = t.throws(() => new BpfMap(fd, u32, u64Host, 'mb_x', sys), { instanceOf: MapShapeError });
  t.regex(e!.message, /mb_x: kernel map has key 4 B \/ value 16 B, meshbpf expects 4 \/ 8/);
});

test('iteration: keys, raw entries, entries and count walk the whole map', (t) => {
  const { m } = setup();
  m.updateMany(range(5));
  t.deepEqual([...m.keys()], [0, 1, 2, 3, 4]);
  t.deepEqual([...m.entries()], range(5));
  t.is([...m.rawEntries()].length, 5);
  t.is(m.count(), 5);
  t.deepEqual(m.lookupRaw(Buffer.from([3, 0, 0, 0]))?.readBigUInt64LE(0), 30n);
  t.is(m.lookupRaw(Buffer.from([9, 0, 0, 0])), undefined);
});

test('iteration skips an entry deleted between next_key and lookup', (t) => {
  const { m, fake } = setup();
  m.updateMany(range(3));
  let n = 0;
  fake.before = (call) => {
    // the first lookup finds its key gone (another writer deleted it)
    if (call === 'lookup' && n++ === 0) fake.data.delete(Buffer.from([0, 0, 0, 0]).toString('hex'));
  };
  t.deepEqual([...m.entries()], range(2, 1));
});

test('updateMany: one batch call per 4096 entries where the map has batch ops', (t) => {
  const { m, fake } = setup();
  m.updateMany(range(5000));
  t.is(count(fake.calls, 'updateBatch'), 2);
  t.is(count(fake.calls, 'update'), 0);
  t.is(fake.data.size, 5000);
  t.is(m.get(4999), 49990n);
});

for (const errno of ['EINVAL', 'EOPNOTSUPP', 'ENOTSUPP'] as const) {
  test(`updateMany: no batch op (${errno}) falls back to one update each, and remembers it`, (t) => {
    const { m, fake } = setup({ noBatch: errno });
    m.updateMany(range(3));
    t.is(count(fake.calls, 'updateBatch'), 1);
    t.is(count(fake.calls, 'update'), 3);
    m.updateMany(range(2, 10));
    t.is(count(fake.calls, 'updateBatch'), 1, 'not probed again');
    t.deepEqual([...m.entries()], [...range(3), ...range(2, 10)]);
  });
}

test('updateMany: a batch error that is not "no batch op" is thrown, with how many were applied', (t) => {
  const { m, fake } = setup({ maxEntries: 2 });
  const e = t.throws(() => m.updateMany(range(3)), { instanceOf: BatchError });
  t.is(e!.code, 'E2BIG');
  t.is(e!.applied, 2);
  t.is(count(fake.calls, 'update'), 0, 'no fallback for a real error');
});

test('updateMany: EINVAL after batches worked on this map is a real error, not a fallback', (t) => {
  const { m, fake } = setup();
  m.updateMany(range(2));
  fake.before = (call) => {
    if (call === 'updateBatch') throw new BatchError('bpf_map_update_batch', 22, 0);
  };
  const e = t.throws(() => m.updateMany(range(2, 5)), { instanceOf: BatchError });
  t.is(e!.code, 'EINVAL');
  t.is(count(fake.calls, 'update'), 0);
});

test('deleteMany: batched; keys already gone are counted out, not an error', (t) => {
  const { m, fake } = setup();
  m.updateMany(range(6));
  // 9 was never there: the batch stops at it (ENOENT), the rest goes one by one
  t.is(m.deleteMany([0, 2, 3, 5, 9, 1, 4]), 6);
  t.is(fake.data.size, 0);
  t.true(count(fake.calls, 'deleteBatch') >= 1);
  t.true(count(fake.calls, 'delete') >= 1, 'finished one by one after the first missing key');
});

test('deleteMany: all present is one batch call', (t) => {
  const { m, fake } = setup();
  m.updateMany(range(4));
  t.is(m.deleteMany([0, 1, 2, 3]), 4);
  t.is(count(fake.calls, 'deleteBatch'), 1);
  t.is(count(fake.calls, 'delete'), 0);
});

test('deleteMany: no batch op falls back to single deletes and remembers it', (t) => {
  const { m, fake } = setup({ noBatch: 'EINVAL' });
  for (const [k, v] of range(4)) m.set(k, v); // single updates: batch support not probed yet
  t.is(m.deleteMany([0, 1, 7]), 2);
  t.is(m.deleteMany([2, 3]), 2);
  t.is(count(fake.calls, 'deleteBatch'), 1);
  t.is(count(fake.calls, 'delete'), 5);
  t.is(fake.data.size, 0);
});

test('deleteMany: another errno from the batch is thrown', (t) => {
  const { m, fake } = setup();
  m.updateMany(range(2));
  fake.before = (call) => {
    if (call === 'deleteBatch') throw new BatchError('bpf_map_delete_batch', 1, 0);
  };
  const e = t.throws(() => m.deleteMany([0, 1]), { instanceOf: BatchError });
  t.is(e!.code, 'EPERM');
  t.is(fake.data.size, 2);
});

test('close closes the fd once', (t) => {
  const { m, sys } = setup();
  m.close();
  m.close();
  t.deepEqual(sys.closed, [100]);
});

test('per-CPU counters: the sum over every possible CPU; a missing slot reads 0', (t) => {
  const sys = new FakeSyscalls();
  sys.cpus = 3;
  const fake = new FakeMap({ keySize: 4, valueSize: 8 });
  const c = new PerCpuCounters(sys.add(fake), 'mb_stats', sys);
  const v = Buffer.alloc(24);
  [1n, 2n, 40n].forEach((n, i) => v.writeBigUInt64LE(n, i * 8));
  fake.data.set(Buffer.from([1, 0, 0, 0]).toString('hex'), v);
  t.deepEqual(c.all(3), [0n, 43n, 0n]);
  const bad = new FakeMap({ keySize: 4, valueSize: 16 });
  t.throws(() => new PerCpuCounters(sys.add(bad), 'mb_stats', sys), { instanceOf: MapShapeError });
});
