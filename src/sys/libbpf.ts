// The only module that calls FFI: koffi -> libbpf.so.1 (and libc's vsnprintf to
// render libbpf's own messages). Everything above works with plain numbers
// (fds), Buffers and the BpfError below. libbpf >= 1.0 semantics: int calls
// return -errno, pointer calls return NULL and set errno.
import koffi from 'koffi';
import type { LibraryHandle } from 'koffi';
import { constants as osConstants } from 'node:os';
import { closeSync } from 'node:fs';
import { child } from '../log.js';

const log = child('libbpf');

const ERRNO_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(osConstants.errno).map(([name, n]) => [n, name]),
);

export class BpfError extends Error {
  override name = 'BpfError';
  constructor(
    readonly call: string,
    readonly errno: number,
    detail?: string,
  ) {
    super(`${call}: ${detail ?? strerror(errno)}${ERRNO_NAMES[errno] ? ` (${ERRNO_NAMES[errno]})` : ''}`);
  }
  get code(): string {
    return ERRNO_NAMES[this.errno] ?? `E${this.errno}`;
  }
}

let lib: LibraryHandle;
let libc: LibraryHandle;
try {
  lib = koffi.load('libbpf.so.1');
  libc = koffi.load('libc.so.6');
} catch (e) {
  throw new Error(`cannot load libbpf.so.1 (${(e as Error).message}); install libbpf1 (scripts/setup.sh does)`);
}

// Opaque libbpf handles.
koffi.opaque('bpf_object');
koffi.opaque('bpf_program');
koffi.opaque('bpf_map');
koffi.opaque('bpf_link');

const f = {
  libbpf_version_string: lib.func('const char *libbpf_version_string(void)'),
  libbpf_strerror: lib.func('int libbpf_strerror(int err, _Out_ char *buf, size_t size)'),
  libbpf_num_possible_cpus: lib.func('int libbpf_num_possible_cpus(void)'),
  libbpf_probe_bpf_map_type: lib.func('int libbpf_probe_bpf_map_type(int map_type, const void *opts)'),
  libbpf_probe_bpf_prog_type: lib.func('int libbpf_probe_bpf_prog_type(int prog_type, const void *opts)'),

  open_file: lib.func('bpf_object *bpf_object__open_file(const char *path, const void *opts)'),
  obj_load: lib.func('int bpf_object__load(bpf_object *obj)'),
  obj_close: lib.func('void bpf_object__close(bpf_object *obj)'),
  obj_find_prog: lib.func('bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)'),
  obj_next_prog: lib.func('bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prev)'),
  obj_next_map: lib.func('bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *prev)'),

  prog_fd: lib.func('int bpf_program__fd(bpf_program *prog)'),
  prog_name: lib.func('const char *bpf_program__name(bpf_program *prog)'),
  prog_set_log_buf: lib.func('int bpf_program__set_log_buf(bpf_program *prog, void *buf, size_t size)'),
  prog_set_log_level: lib.func('int bpf_program__set_log_level(bpf_program *prog, uint32_t level)'),
  prog_attach_cgroup: lib.func('bpf_link *bpf_program__attach_cgroup(bpf_program *prog, int cgroup_fd)'),
  prog_attach_trace: lib.func('bpf_link *bpf_program__attach_trace(bpf_program *prog)'),

  map_name: lib.func('const char *bpf_map__name(bpf_map *map)'),
  map_fd: lib.func('int bpf_map__fd(bpf_map *map)'),
  map_reuse_fd: lib.func('int bpf_map__reuse_fd(bpf_map *map, int fd)'),
  map_set_max_entries: lib.func('int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)'),
  map_max_entries: lib.func('uint32_t bpf_map__max_entries(bpf_map *map)'),
  map_type: lib.func('int bpf_map__type(bpf_map *map)'),
  map_key_size: lib.func('uint32_t bpf_map__key_size(bpf_map *map)'),
  map_value_size: lib.func('uint32_t bpf_map__value_size(bpf_map *map)'),
  map_flags: lib.func('uint32_t bpf_map__map_flags(bpf_map *map)'),

  link_fd: lib.func('int bpf_link__fd(bpf_link *link)'),
  link_pin: lib.func('int bpf_link__pin(bpf_link *link, const char *path)'),
  link_destroy: lib.func('int bpf_link__destroy(bpf_link *link)'),

  bpf_link_update: lib.func('int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)'),
  bpf_link_detach: lib.func('int bpf_link_detach(int link_fd)'),
  bpf_prog_attach: lib.func('int bpf_prog_attach(int prog_fd, int attachable_fd, int type, unsigned int flags)'),
  bpf_prog_detach2: lib.func('int bpf_prog_detach2(int prog_fd, int attachable_fd, int type)'),
  bpf_prog_query: lib.func('int bpf_prog_query(int target_fd, int type, uint32_t query_flags, _Out_ uint32_t *attach_flags, void *prog_ids, _Inout_ uint32_t *prog_cnt)'),
  bpf_obj_pin: lib.func('int bpf_obj_pin(int fd, const char *pathname)'),
  bpf_obj_get: lib.func('int bpf_obj_get(const char *pathname)'),
  bpf_obj_get_opts: lib.func('int bpf_obj_get_opts(const char *pathname, const void *opts)'),
  bpf_obj_get_info_by_fd: lib.func('int bpf_obj_get_info_by_fd(int bpf_fd, void *info, _Inout_ uint32_t *info_len)'),
  bpf_prog_get_fd_by_id: lib.func('int bpf_prog_get_fd_by_id(uint32_t id)'),
  bpf_link_get_fd_by_id: lib.func('int bpf_link_get_fd_by_id(uint32_t id)'),
  bpf_link_get_next_id: lib.func('int bpf_link_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)'),

  lookup: lib.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  update: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  delete_: lib.func('int bpf_map_delete_elem(int fd, const void *key)'),
  next_key: lib.func('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
  update_batch: lib.func('int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const void *opts)'),
  delete_batch: lib.func('int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const void *opts)'),

  bpf_prog_load: lib.func('int bpf_prog_load(int prog_type, const char *prog_name, const char *license, const void *insns, size_t insn_cnt, const void *opts)'),
  vsnprintf: libc.func('int vsnprintf(_Out_ char *buf, size_t size, const char *fmt, void *ap)'),
};

function errnoNow(): number {
  return koffi.errno();
}

/** libbpf's text for an errno (positive or negative). */
export function strerror(err: number): string {
  const buf = Buffer.alloc(256);
  f.libbpf_strerror(-Math.abs(err), buf, buf.length);
  const s = buf.toString('utf8');
  const z = s.indexOf('\0');
  return z >= 0 ? s.slice(0, z) : s;
}

/** Throw BpfError for a negative int return; return it otherwise. */
function check(call: string, ret: number): number {
  if (ret < 0) throw new BpfError(call, -ret);
  return ret;
}

function checkPtr<T>(call: string, p: T | null): T {
  if (p === null) throw new BpfError(call, errnoNow() || 22);
  return p;
}

export function libbpfVersion(): string {
  return f.libbpf_version_string() as string;
}

export function numPossibleCpus(): number {
  return check('libbpf_num_possible_cpus', f.libbpf_num_possible_cpus() as number);
}

// ---- libbpf's own messages -> pino (debug; warnings at warn) ----
const PrintFn = koffi.proto('int libbpf_print_fn(int level, const char *fmt, void *args)');
const collected: string[] = [];
let capturing = false;
const printCb = koffi.register((level: number, fmt: string, args: unknown): number => {
  const buf = Buffer.alloc(2048);
  f.vsnprintf(buf, buf.length, fmt, args);
  const z = buf.indexOf(0);
  const msg = buf.toString('utf8', 0, z < 0 ? buf.length : z).trimEnd();
  if (capturing) collected.push(msg);
  // LIBBPF_WARN = 0, INFO = 1, DEBUG = 2
  if (level === 0) log.debug({ libbpf: 'warn' }, msg);
  else log.trace({ libbpf: level === 1 ? 'info' : 'debug' }, msg);
  return 0;
}, koffi.pointer(PrintFn));
lib.func('void *libbpf_set_print(libbpf_print_fn *fn)')(printCb);

/** Run fn while collecting libbpf's warnings, to attach them to an error. */
export function withLibbpfMessages<T>(fn: () => T): { result?: T; error?: unknown; messages: string[] } {
  collected.length = 0;
  capturing = true;
  try {
    return { result: fn(), messages: [...collected] };
  } catch (error) {
    return { error, messages: [...collected] };
  } finally {
    capturing = false;
  }
}

// ---- objects, programs, maps (libbpf handles) ----
export type ObjHandle = unknown;
export type ProgHandle = unknown;
export type MapHandle = unknown;
export type LinkHandle = unknown;

export const obj = {
  open(path: string): ObjHandle {
    return checkPtr(`bpf_object__open_file(${path})`, f.open_file(path, null));
  },
  load(o: ObjHandle): void {
    check('bpf_object__load', f.obj_load(o) as number);
  },
  close(o: ObjHandle): void {
    f.obj_close(o);
  },
  programs(o: ObjHandle): ProgHandle[] {
    const out: ProgHandle[] = [];
    for (let p = f.obj_next_prog(o, null); p !== null; p = f.obj_next_prog(o, p)) out.push(p);
    return out;
  },
  maps(o: ObjHandle): MapHandle[] {
    const out: MapHandle[] = [];
    for (let m = f.obj_next_map(o, null); m !== null; m = f.obj_next_map(o, m)) out.push(m);
    return out;
  },
};

export const prog = {
  fd: (p: ProgHandle): number => f.prog_fd(p) as number,
  name: (p: ProgHandle): string => f.prog_name(p) as string,
  setLogBuf(p: ProgHandle, buf: Buffer, level: number): void {
    check('bpf_program__set_log_buf', f.prog_set_log_buf(p, buf, buf.length) as number);
    check('bpf_program__set_log_level', f.prog_set_log_level(p, level) as number);
  },
  /** bpf_link-based cgroup attach: multi-program semantics, other users unaffected. */
  attachCgroup(p: ProgHandle, cgroupFd: number): LinkHandle {
    return checkPtr('bpf_program__attach_cgroup', f.prog_attach_cgroup(p, cgroupFd));
  },
  /** fentry/fexit/fmod_ret/tp_btf: the target comes from the section name. */
  attachTrace(p: ProgHandle): LinkHandle {
    return checkPtr('bpf_program__attach_trace', f.prog_attach_trace(p));
  },
};

export interface MapDef {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export const map = {
  def(m: MapHandle): MapDef {
    return {
      name: f.map_name(m) as string,
      type: f.map_type(m) as number,
      keySize: f.map_key_size(m) as number,
      valueSize: f.map_value_size(m) as number,
      maxEntries: f.map_max_entries(m) as number,
      flags: f.map_flags(m) as number,
    };
  },
  fd: (m: MapHandle): number => f.map_fd(m) as number,
  reuseFd(m: MapHandle, fd: number): void {
    check('bpf_map__reuse_fd', f.map_reuse_fd(m, fd) as number);
  },
  setMaxEntries(m: MapHandle, n: number): void {
    check('bpf_map__set_max_entries', f.map_set_max_entries(m, n) as number);
  },
};

export const link = {
  fd: (l: LinkHandle): number => f.link_fd(l) as number,
  pin(l: LinkHandle, path: string): void {
    check(`bpf_link__pin(${path})`, f.link_pin(l, path) as number);
  },
  /**
   * Close our handle. For fd-based links libbpf's "detach" is just close(fd),
   * so the pin keeps the link attached. (bpf_link__disconnect would make
   * destroy skip that close and leak the fd, keeping the link alive forever.)
   */
  release(l: LinkHandle): void {
    f.link_destroy(l);
  },
};

// ---- fd-level calls ----
export const BPF_F_RDONLY = 1 << 3;
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

export enum AttachType {
  CGROUP_SOCK_OPS = 3,
  SK_MSG_VERDICT = 7,
}

export enum MapType {
  HASH = 1,
  ARRAY = 2,
  PERCPU_HASH = 5,
  PERCPU_ARRAY = 6,
  LPM_TRIE = 11,
  SOCKMAP = 15,
  SOCKHASH = 18,
}

export const MAP_TYPE_NAMES: Record<number, string> = {
  1: 'hash',
  2: 'array',
  5: 'percpu_hash',
  6: 'percpu_array',
  11: 'lpm_trie',
  15: 'sockmap',
  18: 'sockhash',
  24: 'sk_storage',
};

export function objGet(path: string, readOnly = false): number {
  if (!readOnly) return check(`bpf_obj_get(${path})`, f.bpf_obj_get(path) as number);
  // struct bpf_obj_get_opts { size_t sz; __u32 file_flags; __u32 path_fd (libbpf >= 1.2); }
  const opts = Buffer.alloc(16);
  opts.writeBigUInt64LE(16n, 0); // sz: sizeof in libbpf 1.1 (path_fd, later, stays 0)
  opts.writeUInt32LE(BPF_F_RDONLY, 8);
  return check(`bpf_obj_get(${path}, read-only)`, f.bpf_obj_get_opts(path, opts) as number);
}

export function objPin(fd: number, path: string): void {
  check(`bpf_obj_pin(${path})`, f.bpf_obj_pin(fd, path) as number);
}

export function closeFd(fd: number): void {
  if (fd >= 0) closeSync(fd);
}

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

function infoBuf(fd: number, size: number, what: string): Buffer {
  const buf = Buffer.alloc(size);
  const len = [size];
  check(`bpf_obj_get_info_by_fd(${what})`, f.bpf_obj_get_info_by_fd(fd, buf, len) as number);
  return buf;
}

function cstr(buf: Buffer, off: number, len: number): string {
  const s = buf.subarray(off, off + len);
  const z = s.indexOf(0);
  return s.toString('utf8', 0, z < 0 ? len : z);
}

/** struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags, name[16] */
export function mapInfo(fd: number): MapInfo {
  const b = infoBuf(fd, 88, 'map');
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    keySize: b.readUInt32LE(8),
    valueSize: b.readUInt32LE(12),
    maxEntries: b.readUInt32LE(16),
    flags: b.readUInt32LE(20),
    name: cstr(b, 24, 16),
  };
}

export interface ProgInfo {
  type: number;
  id: number;
  tag: string;
  name: string;
  loadTimeNs: bigint;
}

/** struct bpf_prog_info: type@0 id@4 tag[8]@8 ... load_time@40 ... name[16]@64 */
export function progInfo(fd: number): ProgInfo {
  const b = infoBuf(fd, 232, 'prog');
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    tag: b.subarray(8, 16).toString('hex'),
    loadTimeNs: b.readBigUInt64LE(40),
    name: cstr(b, 64, 16),
  };
}

export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
  cgroupId?: bigint;
  attachType?: number;
}

/** struct bpf_link_info: type@0 id@4 prog_id@8, union@16: cgroup { u64 cgroup_id; u32 attach_type } */
export function linkInfo(fd: number): LinkInfo {
  const b = infoBuf(fd, 64, 'link');
  const type = b.readUInt32LE(0);
  const info: LinkInfo = { type, id: b.readUInt32LE(4), progId: b.readUInt32LE(8) };
  if (type === 3 /* BPF_LINK_TYPE_CGROUP */) {
    info.cgroupId = b.readBigUInt64LE(16);
    info.attachType = b.readUInt32LE(24);
  }
  return info;
}

export function linkUpdate(linkFd: number, progFd: number): void {
  check('bpf_link_update', f.bpf_link_update(linkFd, progFd, null) as number);
}

export function linkDetach(linkFd: number): void {
  check('bpf_link_detach', f.bpf_link_detach(linkFd) as number);
}

export function progAttach(progFd: number, targetFd: number, type: AttachType, flags = 0): void {
  check('bpf_prog_attach', f.bpf_prog_attach(progFd, targetFd, type, flags) as number);
}

export function progDetach(progFd: number, targetFd: number, type: AttachType): void {
  check('bpf_prog_detach2', f.bpf_prog_detach2(progFd, targetFd, type) as number);
}

/** Program ids attached to a cgroup (or map) for one attach type. */
export function progQuery(targetFd: number, type: AttachType): number[] {
  const ids = Buffer.alloc(4 * 64);
  const flags = [0];
  const cnt = [64];
  check('bpf_prog_query', f.bpf_prog_query(targetFd, type, 0, flags, ids, cnt) as number);
  const out: number[] = [];
  for (let i = 0; i < (cnt[0] ?? 0); i++) out.push(ids.readUInt32LE(i * 4));
  return out;
}

export function progFdById(id: number): number {
  return check(`bpf_prog_get_fd_by_id(${id})`, f.bpf_prog_get_fd_by_id(id) as number);
}

/** All bpf_link ids on the system (for status and leak checks). */
export function linkIds(): number[] {
  const out: number[] = [];
  const next = [0];
  let id = 0;
  for (;;) {
    const r = f.bpf_link_get_next_id(id, next) as number;
    if (r < 0) break;
    id = next[0] ?? 0;
    out.push(id);
  }
  return out;
}

export function linkFdById(id: number): number {
  return check(`bpf_link_get_fd_by_id(${id})`, f.bpf_link_get_fd_by_id(id) as number);
}

// ---- map element calls: the miss convention lives here ----
/** Lookup: true if found (value filled), false on ENOENT; throws otherwise. */
export function mapLookup(fd: number, key: Buffer, value: Buffer): boolean {
  const r = f.lookup(fd, key, value) as number;
  if (r === 0) return true;
  if (r === -2) return false;
  throw new BpfError('bpf_map_lookup_elem', -r);
}

export function mapUpdate(fd: number, key: Buffer, value: Buffer, flags = BPF_ANY): void {
  check('bpf_map_update_elem', f.update(fd, key, value, flags) as number);
}

/** Delete: true if it was there, false on ENOENT. */
export function mapDelete(fd: number, key: Buffer): boolean {
  const r = f.delete_(fd, key) as number;
  if (r === 0) return true;
  if (r === -2) return false;
  throw new BpfError('bpf_map_delete_elem', -r);
}

/** Next key after `key` (null = first); false when there is none. */
export function mapNextKey(fd: number, key: Buffer | null, next: Buffer): boolean {
  const r = f.next_key(fd, key, next) as number;
  if (r === 0) return true;
  if (r === -2) return false;
  throw new BpfError('bpf_map_get_next_key', -r);
}

function batchOpts(elemFlags: number): Buffer {
  // struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; }
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(24n, 0);
  b.writeBigUInt64LE(BigInt(elemFlags), 8);
  return b;
}

/** Batch update `count` packed keys/values. Returns how many were applied. Throws BpfError (EINVAL/ENOTSUP when the map type has no batch op). */
export function mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, elemFlags = BPF_ANY): number {
  const cnt = [count];
  const r = f.update_batch(fd, keys, values, cnt, batchOpts(elemFlags)) as number;
  if (r < 0) {
    const e = new BpfError('bpf_map_update_batch', -r);
    (e as BpfError & { applied?: number }).applied = cnt[0] ?? 0;
    throw e;
  }
  return cnt[0] ?? count;
}

export function mapDeleteBatch(fd: number, keys: Buffer, count: number): number {
  const cnt = [count];
  const r = f.delete_batch(fd, keys, cnt, batchOpts(0)) as number;
  if (r < 0) {
    const e = new BpfError('bpf_map_delete_batch', -r);
    (e as BpfError & { applied?: number }).applied = cnt[0] ?? 0;
    throw e;
  }
  return cnt[0] ?? count;
}

// ---- feature probes (for the kernel floor: detect, do not guess by version) ----
export function probeMapType(type: MapType): boolean {
  return (f.libbpf_probe_bpf_map_type(type, null) as number) === 1;
}

export function probeProgType(progType: number): boolean {
  return (f.libbpf_probe_bpf_prog_type(progType, null) as number) === 1;
}

/**
 * Can a program of this type call this helper (one taking only the ctx, as
 * bpf_get_netns_cookie does)? Loads `call helper; r0 = 1; exit`
 * and asks the verifier. (libbpf 1.1's libbpf_probe_bpf_helper reads the
 * verifier's wording and says yes to everything on newer kernels.)
 */
export function probeHelper(progType: number, helperId: number, expectedAttachType = 0): boolean {
  const insns = Buffer.alloc(24);
  insns.writeUInt8(0x85, 0); // BPF_JMP | BPF_CALL
  insns.writeInt32LE(helperId, 4);
  insns.writeUInt8(0xb7, 8); // r0 = 1 (BPF_ALU64 | BPF_MOV | BPF_K)
  insns.writeInt32LE(1, 12);
  insns.writeUInt8(0x95, 16); // exit
  // struct bpf_prog_load_opts { size_t sz; int attempts; enum bpf_attach_type expected_attach_type; ... }
  const opts = Buffer.alloc(16);
  opts.writeBigUInt64LE(16n, 0);
  opts.writeUInt32LE(expectedAttachType, 12);
  const fd = f.bpf_prog_load(progType, 'mb_probe', 'GPL', insns, 3, opts) as number;
  if (fd >= 0) closeSync(fd);
  return fd >= 0;
}

export const ProgType = { SOCK_OPS: 13, SK_MSG: 16 } as const;
export const Helper = { get_netns_cookie: 122, msg_redirect_hash: 71, sock_hash_update: 70 } as const;
