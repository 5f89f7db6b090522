// The only module that calls FFI: koffi -> libbpf.so.1 (and libc's vsnprintf to
// render libbpf's own messages). Everything above works with plain numbers
// (fds), Buffers and BpfError. libbpf >= 1.0 semantics: int calls return
// -errno, pointer calls return NULL and set errno.
//
// libbpf is bound on first use, not at import: `meshbpf --help`, the pure
// core (policy, sync planning) and the unit tests run where libbpf is absent.
import koffi from 'koffi';
import type { LibraryHandle } from 'koffi';
import { closeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { BatchError, BpfError, UserError } from '../errors.js';
import { child } from '../log.js';

const log = child('libbpf');
const { ENOENT, EINVAL } = osConstants.errno;

// Opaque libbpf handles.
koffi.opaque('bpf_object');
koffi.opaque('bpf_program');
koffi.opaque('bpf_map');
koffi.opaque('bpf_link');

function bind(lib: LibraryHandle, libc: LibraryHandle) {
  return {
    libbpf_strerror: lib.func('int libbpf_strerror(int err, _Out_ char *buf, size_t size)'),
    libbpf_num_possible_cpus: lib.func('int libbpf_num_possible_cpus(void)'),
    libbpf_probe_bpf_map_type: lib.func('int libbpf_probe_bpf_map_type(int map_type, const void *opts)'),
    libbpf_probe_bpf_prog_type: lib.func('int libbpf_probe_bpf_prog_type(int prog_type, const void *opts)'),

    open_file: lib.func('bpf_object *bpf_object__open_file(const char *path, const void *opts)'),
    obj_load: lib.func('int bpf_object__load(bpf_object *obj)'),
    obj_close: lib.func('void bpf_object__close(bpf_object *obj)'),
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

    lookup: lib.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
    update: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    delete_: lib.func('int bpf_map_delete_elem(int fd, const void *key)'),
    next_key: lib.func('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
    update_batch: lib.func('int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const void *opts)'),
    delete_batch: lib.func('int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const void *opts)'),

    bpf_prog_load: lib.func('int bpf_prog_load(int prog_type, const char *prog_name, const char *license, const void *insns, size_t insn_cnt, const void *opts)'),
    bpf_link_create: lib.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),
    vsnprintf: libc.func('int vsnprintf(_Out_ char *buf, size_t size, const char *fmt, void *ap)'),
    setns: libc.func('int setns(int fd, int nstype)'),
    socket: libc.func('int socket(int domain, int type, int protocol)'),
    getsockopt: libc.func('int getsockopt(int fd, int level, int optname, _Out_ void *optval, _Inout_ uint32_t *optlen)'),
    close: libc.func('int close(int fd)'),
  };
}

type Bound = ReturnType<typeof bind>;
let bound: Bound | undefined;

/** The libbpf functions, bound (and libbpf's print callback set) on the first call. */
function lb(): Bound {
  if (bound) return bound;
  let lib: LibraryHandle;
  let libc: LibraryHandle;
  try {
    lib = koffi.load('libbpf.so.1');
    libc = koffi.load('libc.so.6');
  } catch (e) {
    throw new UserError(`cannot load libbpf.so.1 (${(e as Error).message}); install libbpf1 (scripts/setup.sh does)`);
  }
  bound = bind(lib, libc);
  setPrint(lib);
  return bound;
}

function errnoNow(): number {
  return koffi.errno();
}

/** libbpf's text for an errno (positive or negative). */
export function strerror(err: number): string {
  const buf = Buffer.alloc(256);
  lb().libbpf_strerror(-Math.abs(err), buf, buf.length);
  const s = buf.toString('utf8');
  const z = s.indexOf('\0');
  return z >= 0 ? s.slice(0, z) : s;
}

/** Throw BpfError for a negative int return; return it otherwise. */
function check(call: string, ret: number): number {
  if (ret < 0) throw new BpfError(call, -ret, strerror(ret));
  return ret;
}

function checkPtr<T>(call: string, p: T | null): T {
  if (p === null) {
    const errno = errnoNow() || EINVAL;
    throw new BpfError(call, errno, strerror(errno));
  }
  return p;
}

export function numPossibleCpus(): number {
  return check('libbpf_num_possible_cpus', lb().libbpf_num_possible_cpus() as number);
}

// ---- libbpf's own messages -> pino (debug; warnings at warn) ----
const collected: string[] = [];
let capturing = false;
let printCb: unknown; // kept referenced: libbpf holds the pointer

function setPrint(lib: LibraryHandle): void {
  const PrintFn = koffi.proto('int libbpf_print_fn(int level, const char *fmt, void *args)');
  printCb = koffi.register((level: number, fmt: string, args: unknown): number => {
    const buf = Buffer.alloc(2048);
    lb().vsnprintf(buf, buf.length, fmt, args);
    const z = buf.indexOf(0);
    const msg = buf.toString('utf8', 0, z < 0 ? buf.length : z).trimEnd();
    if (capturing) collected.push(msg);
    // LIBBPF_WARN = 0, INFO = 1, DEBUG = 2
    if (level === 0) log.debug({ libbpf: 'warn' }, msg);
    else log.trace({ libbpf: level === 1 ? 'info' : 'debug' }, msg);
    return 0;
  }, koffi.pointer(PrintFn));
  lib.func('void *libbpf_set_print(libbpf_print_fn *fn)')(printCb);
}

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
    return checkPtr(`bpf_object__open_file(${path})`, lb().open_file(path, null));
  },
  load(o: ObjHandle): void {
    check('bpf_object__load', lb().obj_load(o) as number);
  },
  close(o: ObjHandle): void {
    lb().obj_close(o);
  },
  programs(o: ObjHandle): ProgHandle[] {
    const out: ProgHandle[] = [];
    for (let p = lb().obj_next_prog(o, null); p !== null; p = lb().obj_next_prog(o, p)) out.push(p);
    return out;
  },
  maps(o: ObjHandle): MapHandle[] {
    const out: MapHandle[] = [];
    for (let m = lb().obj_next_map(o, null); m !== null; m = lb().obj_next_map(o, m)) out.push(m);
    return out;
  },
};

export const prog = {
  fd: (p: ProgHandle): number => lb().prog_fd(p) as number,
  name: (p: ProgHandle): string => lb().prog_name(p) as string,
  setLogBuf(p: ProgHandle, buf: Buffer, level: number): void {
    check('bpf_program__set_log_buf', lb().prog_set_log_buf(p, buf, buf.length) as number);
    check('bpf_program__set_log_level', lb().prog_set_log_level(p, level) as number);
  },
  /** bpf_link-based cgroup attach: multi-program semantics, other users unaffected. */
  attachCgroup(p: ProgHandle, cgroupFd: number): LinkHandle {
    return checkPtr('bpf_program__attach_cgroup', lb().prog_attach_cgroup(p, cgroupFd));
  },
  /** fentry/fexit/fmod_ret/tp_btf: the target comes from the section name. */
  attachTrace(p: ProgHandle): LinkHandle {
    return checkPtr('bpf_program__attach_trace', lb().prog_attach_trace(p));
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
      name: lb().map_name(m) as string,
      type: lb().map_type(m) as number,
      keySize: lb().map_key_size(m) as number,
      valueSize: lb().map_value_size(m) as number,
      maxEntries: lb().map_max_entries(m) as number,
      flags: lb().map_flags(m) as number,
    };
  },
  fd: (m: MapHandle): number => lb().map_fd(m) as number,
  reuseFd(m: MapHandle, fd: number): void {
    check('bpf_map__reuse_fd', lb().map_reuse_fd(m, fd) as number);
  },
  setMaxEntries(m: MapHandle, n: number): void {
    check('bpf_map__set_max_entries', lb().map_set_max_entries(m, n) as number);
  },
};

export const link = {
  fd: (l: LinkHandle): number => lb().link_fd(l) as number,
  pin(l: LinkHandle, path: string): void {
    check(`bpf_link__pin(${path})`, lb().link_pin(l, path) as number);
  },
  /**
   * Close our handle. For fd-based links libbpf's "detach" is just close(fd),
   * so the pin keeps the link attached. (bpf_link__disconnect would make
   * destroy skip that close and leak the fd, keeping the link alive forever.)
   */
  release(l: LinkHandle): void {
    lb().link_destroy(l);
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
  CGROUP_INET4_CONNECT = 10,
  CGROUP_INET4_GETPEERNAME = 29,
  SK_LOOKUP = 36,
}

export enum MapType {
  HASH = 1,
  ARRAY = 2,
  PERCPU_HASH = 5,
  PERCPU_ARRAY = 6,
  LPM_TRIE = 11,
  SOCKMAP = 15,
  SOCKHASH = 18,
  SK_STORAGE = 24,
  LRU_HASH = 9,
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
  9: 'lru_hash',
};

export function objGet(path: string, readOnly = false): number {
  if (!readOnly) return check(`bpf_obj_get(${path})`, lb().bpf_obj_get(path) as number);
  // struct bpf_obj_get_opts { size_t sz; __u32 file_flags; __u32 path_fd (libbpf >= 1.2); }
  const opts = Buffer.alloc(16);
  opts.writeBigUInt64LE(16n, 0); // sz: sizeof in libbpf 1.1 (path_fd, later, stays 0)
  opts.writeUInt32LE(BPF_F_RDONLY, 8);
  return check(`bpf_obj_get(${path}, read-only)`, lb().bpf_obj_get_opts(path, opts) as number);
}

export function objPin(fd: number, path: string): void {
  check(`bpf_obj_pin(${path})`, lb().bpf_obj_pin(fd, path) as number);
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
  check(`bpf_obj_get_info_by_fd(${what})`, lb().bpf_obj_get_info_by_fd(fd, buf, len) as number);
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
  check('bpf_link_update', lb().bpf_link_update(linkFd, progFd, null) as number);
}

/** A bpf_link of an fd-targeted attach type (sk_lookup: target = a netns fd). Returns the link fd. */
export function linkCreate(progFd: number, targetFd: number, type: AttachType): number {
  return check('bpf_link_create', lb().bpf_link_create(progFd, targetFd, type, null) as number);
}

const CLONE_NEWNET = 0x40000000;
const SO_NETNS_COOKIE = 71;

/**
 * The netns cookie of the namespace behind `nsFd` (what bpf_get_netns_cookie
 * returns for its sockets): this thread enters it, opens a socket, asks
 * SO_NETNS_COOKIE (Linux >= 5.14) and returns to `selfFd`, all synchronously,
 * so no other JavaScript runs while the thread is elsewhere.
 */
export function netnsCookie(nsFd: number, selfFd: number): bigint {
  const c = lb();
  if ((c.setns(nsFd, CLONE_NEWNET) as number) < 0) throw new BpfError('setns(CLONE_NEWNET)', errnoNow(), strerror(errnoNow()));
  let sock = -1;
  let err: BpfError | undefined;
  let cookie = 0n;
  try {
    sock = c.socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */, 0) as number;
    if (sock < 0) err = new BpfError('socket', errnoNow(), strerror(errnoNow()));
    else {
      const buf = Buffer.alloc(8);
      const len = [8];
      if ((c.getsockopt(sock, 1 /* SOL_SOCKET */, SO_NETNS_COOKIE, buf, len) as number) < 0) err = new BpfError('getsockopt(SO_NETNS_COOKIE)', errnoNow(), strerror(errnoNow()));
      else cookie = buf.readBigUInt64LE(0);
    }
  } finally {
    if (sock >= 0) c.close(sock);
    if ((c.setns(selfFd, CLONE_NEWNET) as number) < 0) {
      // Never go on in a pod's namespace.
      process.stderr.write(`meshbpf: cannot return to its own network namespace (${strerror(errnoNow())}); exiting\n`);
      process.exit(70);
    }
  }
  if (err) throw err;
  return cookie;
}

export function linkDetach(linkFd: number): void {
  check('bpf_link_detach', lb().bpf_link_detach(linkFd) as number);
}

export function progAttach(progFd: number, targetFd: number, type: AttachType, flags = 0): void {
  check('bpf_prog_attach', lb().bpf_prog_attach(progFd, targetFd, type, flags) as number);
}

export function progDetach(progFd: number, targetFd: number, type: AttachType): void {
  check('bpf_prog_detach2', lb().bpf_prog_detach2(progFd, targetFd, type) as number);
}

/** Program ids attached to a cgroup (or map) for one attach type. */
export function progQuery(targetFd: number, type: AttachType): number[] {
  const ids = Buffer.alloc(4 * 64);
  const flags = [0];
  const cnt = [64];
  check('bpf_prog_query', lb().bpf_prog_query(targetFd, type, 0, flags, ids, cnt) as number);
  const out: number[] = [];
  for (let i = 0; i < (cnt[0] ?? 0); i++) out.push(ids.readUInt32LE(i * 4));
  return out;
}

// ---- map element calls: the miss convention lives here ----
/** Lookup: true if found (value filled), false on ENOENT; throws otherwise. */
export function mapLookup(fd: number, key: Buffer, value: Buffer): boolean {
  const r = lb().lookup(fd, key, value) as number;
  if (r === 0) return true;
  if (r === -ENOENT) return false;
  throw new BpfError('bpf_map_lookup_elem', -r, strerror(r));
}

export function mapUpdate(fd: number, key: Buffer, value: Buffer, flags = BPF_ANY): void {
  check('bpf_map_update_elem', lb().update(fd, key, value, flags) as number);
}

/** Delete: true if it was there, false on ENOENT. */
export function mapDelete(fd: number, key: Buffer): boolean {
  const r = lb().delete_(fd, key) as number;
  if (r === 0) return true;
  if (r === -ENOENT) return false;
  throw new BpfError('bpf_map_delete_elem', -r, strerror(r));
}

/** Next key after `key` (null = first); false when there is none. */
export function mapNextKey(fd: number, key: Buffer | null, next: Buffer): boolean {
  const r = lb().next_key(fd, key, next) as number;
  if (r === 0) return true;
  if (r === -ENOENT) return false;
  throw new BpfError('bpf_map_get_next_key', -r, strerror(r));
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
  const r = lb().update_batch(fd, keys, values, cnt, batchOpts(elemFlags)) as number;
  if (r < 0) {
    throw new BatchError('bpf_map_update_batch', -r, cnt[0] ?? 0, strerror(r));
  }
  return cnt[0] ?? count;
}

export function mapDeleteBatch(fd: number, keys: Buffer, count: number): number {
  const cnt = [count];
  const r = lb().delete_batch(fd, keys, cnt, batchOpts(0)) as number;
  if (r < 0) {
    throw new BatchError('bpf_map_delete_batch', -r, cnt[0] ?? 0, strerror(r));
  }
  return cnt[0] ?? count;
}

// ---- feature probes (for the kernel floor: detect, do not guess by version) ----
export function probeMapType(type: MapType): boolean {
  return (lb().libbpf_probe_bpf_map_type(type, null) as number) === 1;
}

export function probeProgType(progType: number): boolean {
  return (lb().libbpf_probe_bpf_prog_type(progType, null) as number) === 1;
}

/**
 * Can a program of this type call this helper? Loads `call helper; r0 = 1;
 * exit` and reads the verifier's answer. A helper that takes only the ctx
 * (bpf_get_netns_cookie) loads; one that wants other arguments
 * (bpf_sk_storage_get) is refused for its arguments, which still means the
 * helper exists for this type. Absent is "invalid func" (unknown id), "unknown
 * func" (older kernels) or "cannot use helper" (newer kernels; libbpf 1.1's
 * libbpf_probe_bpf_helper misses this wording and says yes). No log at all
 * (e.g. EPERM) reads as absent.
 */
export function probeHelper(progType: number, helperId: number, expectedAttachType = 0): boolean {
  const insns = Buffer.alloc(24);
  insns.writeUInt8(0x85, 0); // BPF_JMP | BPF_CALL
  insns.writeInt32LE(helperId, 4);
  insns.writeUInt8(0xb7, 8); // r0 = 1 (BPF_ALU64 | BPF_MOV | BPF_K)
  insns.writeInt32LE(1, 12);
  insns.writeUInt8(0x95, 16); // exit
  const LOG = 4096;
  const logBuf = koffi.alloc('char', LOG); // a stable pointer: libbpf keeps it in the opts struct
  try {
    // struct bpf_prog_load_opts (libbpf 1.0): sz@0 attempts@8 expected_attach_type@12 ...
    // log_level@88 log_size@92 log_buf@96, sizeof 104
    const opts = Buffer.alloc(104);
    opts.writeBigUInt64LE(104n, 0);
    opts.writeUInt32LE(expectedAttachType, 12);
    opts.writeUInt32LE(1, 88);
    opts.writeUInt32LE(LOG, 92);
    opts.writeBigUInt64LE(BigInt(koffi.address(logBuf)), 96);
    const fd = lb().bpf_prog_load(progType, 'mb_probe', 'GPL', insns, 3, opts) as number;
    if (fd >= 0) {
      closeSync(fd);
      return true;
    }
    const text =
      Buffer.from(koffi.decode(logBuf, 'uint8_t', LOG) as number[])
        .toString('utf8')
        .split('\0')[0] ?? '';
    return helperInLog(text);
  } finally {
    koffi.free(logBuf);
  }
}

/** The verifier log of a refused helper probe: does it say the helper exists for the program type? */
export function helperInLog(log: string): boolean {
  return log.trim() !== '' && !/invalid func |unknown func |cannot use helper /.test(log);
}

export const ProgType = { SOCK_OPS: 13, SK_MSG: 16, CGROUP_SOCK_ADDR: 18 } as const;
export const Helper = { get_netns_cookie: 122, msg_redirect_hash: 71, sock_hash_update: 70, sk_storage_get: 107 } as const;
