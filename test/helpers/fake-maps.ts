// An in-memory stand-in for the map syscalls (src/sys/syscalls.ts), with the
// kernel's conventions: ENOENT on a miss, batch ops that stop at the first
// failing element and say how many were applied, and map types without
// batch ops (EINVAL, as an LPM trie answers). For unit tests of BpfMap and
// the sync; no libbpf is loaded.
import { BatchError, BpfError } from '../../src/errors.js';
import type { MapInfo, MapSyscalls } from '../../src/sys/syscalls.js';

export interface FakeMapOptions {
  keySize: number;
  valueSize: number;
  maxEntries?: number;
  type?: number;
  /** errno name the batch ops fail with before doing anything (e.g. 'EINVAL': no batch op) */
  noBatch?: 'EINVAL' | 'EOPNOTSUPP' | 'ENOTSUPP';
}

const ERRNO = { ENOENT: 2, E2BIG: 7, EINVAL: 22, EOPNOTSUPP: 95, ENOTSUPP: 524, EPERM: 1 } as const;

export class FakeMap {
  /** key bytes (hex) -> value bytes, in insertion order (the "kernel iteration order") */
  readonly data = new Map<string, Buffer>();
  readonly calls: string[] = [];
  /** run before every syscall on this map; may throw to inject a failure */
  before?: (call: string) => void;
  constructor(readonly opts: FakeMapOptions) {}

  info(id: number): MapInfo {
    const o = this.opts;
    return { type: o.type ?? 1, id, keySize: o.keySize, valueSize: o.valueSize, maxEntries: o.maxEntries ?? 1 << 20, flags: 0, name: 'fake' };
  }
}

export class FakeSyscalls implements MapSyscalls {
  private readonly maps = new Map<number, FakeMap>();
  private nextFd = 100;
  closed: number[] = [];
  /** every call on every map, in order: [fd, call] */
  readonly log: Array<[number, string]> = [];
  cpus = 2;

  add(m: FakeMap): number {
    const fd = this.nextFd++;
    this.maps.set(fd, m);
    return fd;
  }

  private get(fd: number, call: string): FakeMap {
    const m = this.maps.get(fd);
    if (!m) throw new BpfError(call, 9 /* EBADF */);
    m.calls.push(call);
    this.log.push([fd, call]);
    m.before?.(call);
    return m;
  }

  info(fd: number): MapInfo {
    return this.get(fd, 'info').info(fd);
  }
  lookup(fd: number, key: Buffer, value: Buffer): boolean {
    const v = this.get(fd, 'lookup').data.get(key.toString('hex'));
    if (!v) return false;
    v.copy(value);
    return true;
  }
  update(fd: number, key: Buffer, value: Buffer): void {
    const m = this.get(fd, 'update');
    const k = key.toString('hex');
    if (!m.data.has(k) && m.data.size >= (m.opts.maxEntries ?? Infinity)) throw new BpfError('bpf_map_update_elem', ERRNO.E2BIG);
    m.data.set(k, Buffer.from(value));
  }
  delete(fd: number, key: Buffer): boolean {
    return this.get(fd, 'delete').data.delete(key.toString('hex'));
  }
  nextKey(fd: number, key: Buffer | null, next: Buffer): boolean {
    const m = this.get(fd, 'nextKey');
    const keys = [...m.data.keys()];
    // A key that is gone restarts from the first, as the kernel's hash maps do.
    const i = key === null ? 0 : keys.indexOf(key.toString('hex')) + 1;
    const k = keys[i];
    if (k === undefined) return false;
    Buffer.from(k, 'hex').copy(next);
    return true;
  }
  updateBatch(fd: number, keys: Buffer, values: Buffer, count: number): number {
    const m = this.get(fd, 'updateBatch');
    if (m.opts.noBatch) throw new BatchError('bpf_map_update_batch', ERRNO[m.opts.noBatch], 0);
    const { keySize: ks, valueSize: vs } = m.opts;
    for (let i = 0; i < count; i++) {
      const k = keys.toString('hex', i * ks, (i + 1) * ks);
      if (!m.data.has(k) && m.data.size >= (m.opts.maxEntries ?? Infinity)) throw new BatchError('bpf_map_update_batch', ERRNO.E2BIG, i);
      m.data.set(k, Buffer.from(values.subarray(i * vs, (i + 1) * vs)));
    }
    return count;
  }
  deleteBatch(fd: number, keys: Buffer, count: number): number {
    const m = this.get(fd, 'deleteBatch');
    if (m.opts.noBatch) throw new BatchError('bpf_map_delete_batch', ERRNO[m.opts.noBatch], 0);
    const ks = m.opts.keySize;
    for (let i = 0; i < count; i++) {
      // The kernel stops at the first missing key (ENOENT), having deleted the ones before.
      if (!m.data.delete(keys.toString('hex', i * ks, (i + 1) * ks))) throw new BatchError('bpf_map_delete_batch', ERRNO.ENOENT, i);
    }
    return count;
  }
  possibleCpus(): number {
    return this.cpus;
  }
  close(fd: number): void {
    this.closed.push(fd);
  }
}
