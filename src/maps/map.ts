// Typed wrapper over one kernel map: a fd plus a key and a value codec.
// Miss convention: get() -> undefined, delete() -> boolean; exceptions only for
// real errors (BpfError with errno/code/call). The syscalls come through
// MapSyscalls (sys/syscalls.ts), which unit tests replace with a fake.
import { BPF_ANY, MAP_TYPE_NAMES } from '../sys/libbpf.js';
import { kernelMaps, type MapInfo, type MapSyscalls } from '../sys/syscalls.js';
import { BatchError, MapShapeError } from '../errors.js';
import type { Codec } from './codecs.js';

/** Batch size: large enough to amortise the syscall, small enough for the kernel's copy. */
const BATCH = 4096;

export class BpfMap<K, V> {
  readonly info: MapInfo;
  private closed = false;
  /** null = not probed yet; false after a kernel/map type said no to batch ops */
  private batchOk: boolean | null = null;

  constructor(
    readonly fd: number,
    readonly keyCodec: Codec<K>,
    readonly valueCodec: Codec<V>,
    readonly label: string,
    private readonly sys: MapSyscalls = kernelMaps,
  ) {
    this.info = sys.info(fd);
    if (this.info.keySize !== keyCodec.size || this.info.valueSize !== valueCodec.size) {
      throw new MapShapeError(
        `${label}: kernel map has key ${this.info.keySize} B / value ${this.info.valueSize} B, meshbpf expects ${keyCodec.size} / ${valueCodec.size} (a different meshbpf version pinned it?)`,
      );
    }
  }

  get typeName(): string {
    return MAP_TYPE_NAMES[this.info.type] ?? `type ${this.info.type}`;
  }

  get(k: K): V | undefined {
    const kb = Buffer.alloc(this.keyCodec.size);
    this.keyCodec.encode(kb, 0, k);
    const vb = Buffer.alloc(this.valueCodec.size);
    return this.sys.lookup(this.fd, kb, vb) ? this.valueCodec.decode(vb, 0) : undefined;
  }

  set(k: K, v: V, flags = BPF_ANY): void {
    const kb = Buffer.alloc(this.keyCodec.size);
    this.keyCodec.encode(kb, 0, k);
    const vb = Buffer.alloc(this.valueCodec.size);
    this.valueCodec.encode(vb, 0, v);
    this.sys.update(this.fd, kb, vb, flags);
  }

  delete(k: K): boolean {
    const kb = Buffer.alloc(this.keyCodec.size);
    this.keyCodec.encode(kb, 0, k);
    return this.sys.delete(this.fd, kb);
  }

  /** Raw keys, in kernel iteration order. */
  *rawKeys(): Generator<Buffer> {
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keyCodec.size);
      if (!this.sys.nextKey(this.fd, prev, next)) return;
      yield next;
      prev = next;
    }
  }

  *keys(): Generator<K> {
    for (const kb of this.rawKeys()) yield this.keyCodec.decode(kb, 0);
  }

  /** Raw value for raw key bytes, or undefined on a miss. */
  lookupRaw(kb: Buffer): Buffer | undefined {
    const vb = Buffer.alloc(this.valueCodec.size);
    return this.sys.lookup(this.fd, kb, vb) ? vb : undefined;
  }

  /** Raw entries (fresh buffers); an entry deleted between next_key and lookup is skipped. */
  *rawEntries(): Generator<[Buffer, Buffer]> {
    for (const kb of this.rawKeys()) {
      const vb = this.lookupRaw(kb);
      if (vb) yield [kb, vb];
    }
  }

  /** Entries; an entry deleted between next_key and lookup is skipped. */
  *entries(): Generator<[K, V]> {
    for (const [kb, vb] of this.rawEntries()) yield [this.keyCodec.decode(kb, 0), this.valueCodec.decode(vb, 0)];
  }

  count(): number {
    let n = 0;
    for (const _ of this.rawKeys()) n++;
    return n;
  }

  /** Update many entries: BPF_MAP_UPDATE_BATCH where the kernel and map type have it, else one syscall each. */
  updateMany(entries: ReadonlyArray<readonly [K, V]>): void {
    const ks = this.keyCodec.size;
    const vs = this.valueCodec.size;
    for (let start = 0; start < entries.length; start += BATCH) {
      const chunk = entries.slice(start, start + BATCH);
      const keys = Buffer.alloc(ks * chunk.length);
      const values = Buffer.alloc(vs * chunk.length);
      chunk.forEach(([k, v], i) => {
        this.keyCodec.encode(keys, i * ks, k);
        this.valueCodec.encode(values, i * vs, v);
      });
      this.updatePacked(keys, values, chunk.length);
    }
  }

  /** Update `n` pre-encoded keys/values (packed back to back). */
  updatePacked(keys: Buffer, values: Buffer, n: number): void {
    const ks = this.keyCodec.size;
    const vs = this.valueCodec.size;
    let done = 0;
    if (this.batchOk !== false) {
      try {
        while (done < n) {
          const m = Math.min(BATCH, n - done);
          this.sys.updateBatch(this.fd, keys.subarray(done * ks, (done + m) * ks), values.subarray(done * vs, (done + m) * vs), m);
          done += m;
        }
        this.batchOk = true;
        return;
      } catch (e) {
        if (!(e instanceof BatchError) || !isNoBatch(e) || this.batchOk === true) throw e;
        this.batchOk = false; // this map type (e.g. LPM trie) or kernel has no batch op
      }
    }
    for (let i = done; i < n; i++) this.sys.update(this.fd, keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs), BPF_ANY);
  }

  /** Delete many keys; missing keys are not an error. Returns how many existed. */
  deleteMany(keysIn: ReadonlyArray<K>): number {
    return this.deleteRaw(
      keysIn.map((k) => {
        const b = Buffer.alloc(this.keyCodec.size);
        this.keyCodec.encode(b, 0, k);
        return b;
      }),
    );
  }

  /** Delete encoded keys; batched where possible. Returns how many existed. */
  deleteRaw(keysIn: ReadonlyArray<Buffer>): number {
    const ks = this.keyCodec.size;
    let existed = 0;
    for (let start = 0; start < keysIn.length; start += BATCH) {
      const chunk = keysIn.slice(start, start + BATCH);
      const keys = Buffer.concat(chunk as Buffer[], ks * chunk.length);
      let from = 0;
      if (this.batchOk !== false) {
        try {
          existed += this.sys.deleteBatch(this.fd, keys, chunk.length);
          this.batchOk = true;
          continue;
        } catch (e) {
          if (!(e instanceof BatchError)) throw e;
          // The batch stops at the first failing key (ENOENT for a key already
          // gone); finish one by one from there.
          from = e.applied;
          existed += from;
          if (isNoBatch(e) && this.batchOk !== true) this.batchOk = false;
          else if (e.code !== 'ENOENT') throw e;
        }
      }
      for (let i = from; i < chunk.length; i++) if (this.sys.delete(this.fd, keys.subarray(i * ks, (i + 1) * ks))) existed++;
    }
    return existed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sys.close(this.fd);
  }
}

/** What the kernel answers for a map type (LPM trie) or kernel (< 5.6) without batch ops. */
function isNoBatch(e: BatchError): boolean {
  return e.code === 'EINVAL' || e.code === 'EOPNOTSUPP' || e.code === 'ENOTSUPP';
}

/** PERCPU_ARRAY of u64 counters: values are summed over possible CPUs. */
export class PerCpuCounters {
  readonly info: MapInfo;
  private readonly cpus: number;
  private closed = false;

  constructor(
    readonly fd: number,
    readonly label: string,
    private readonly sys: MapSyscalls = kernelMaps,
  ) {
    this.info = sys.info(fd);
    if (this.info.keySize !== 4 || this.info.valueSize !== 8) {
      throw new MapShapeError(`${label}: expected u32 -> u64 per-CPU array, kernel has key ${this.info.keySize} B / value ${this.info.valueSize} B`);
    }
    this.cpus = sys.possibleCpus();
  }

  /** Sum of one slot over every CPU. */
  get(index: number): bigint {
    const kb = Buffer.alloc(4);
    kb.writeUInt32LE(index, 0);
    const vb = Buffer.alloc(8 * this.cpus); // per-CPU values are 8-byte aligned
    if (!this.sys.lookup(this.fd, kb, vb)) return 0n;
    let sum = 0n;
    for (let c = 0; c < this.cpus; c++) sum += vb.readBigUInt64LE(c * 8);
    return sum;
  }

  all(n: number): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < n; i++) out.push(this.get(i));
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sys.close(this.fd);
  }
}
