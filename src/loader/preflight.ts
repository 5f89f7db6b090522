// Machine checks before touching the kernel: privileges, bpffs, cgroup v2.
// Each failure is a UserError with one line that says what is missing.
import { existsSync, mkdirSync, readdirSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { UserError } from '../errors.js';

const BPF_FS_MAGIC = 0xcafe4a11;
const CGROUP2_SUPER_MAGIC = 0x63677270;

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;

export function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/**
 * What meshbpf is tested with: CAP_SYS_ADMIN (bpf(2) on kernels without
 * CAP_BPF, mounting bpffs) and CAP_NET_ADMIN (sockops/sk_msg, cgroup attach).
 * CAP_BPF alone is not enough for that, so it is not offered as a way out.
 */
export function checkPrivileges(caps: bigint = effectiveCaps()): void {
  const has = (c: number) => (caps & (1n << BigInt(c))) !== 0n;
  const missing = [has(CAP_SYS_ADMIN) ? '' : 'CAP_SYS_ADMIN', has(CAP_NET_ADMIN) ? '' : 'CAP_NET_ADMIN'].filter(Boolean);
  if (missing.length) {
    throw new UserError(`meshbpf needs root (it lacks ${missing.join(' and ')}) to load BPF programs; run it with sudo`);
  }
}

function fsType(path: string): number | undefined {
  try {
    return Number(statfsSync(path).type);
  } catch {
    return undefined;
  }
}

/** Make sure `pinDir` can live on a bpffs; mount /sys/fs/bpf if it is not mounted. */
export function ensureBpffs(pinDir: string): void {
  let base = resolve(pinDir);
  while (!existsSync(base)) base = dirname(base);
  if (fsType(base) === BPF_FS_MAGIC) return;
  if (base === '/sys/fs/bpf' || base === '/sys/fs' || base === '/sys') {
    try {
      mkdirSync('/sys/fs/bpf', { recursive: true });
      execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'], { stdio: 'pipe' });
    } catch (e) {
      throw new UserError(`bpffs is not mounted at /sys/fs/bpf and mounting it failed: ${(e as Error).message.split('\n')[0]}`);
    }
    if (fsType('/sys/fs/bpf') === BPF_FS_MAGIC) return;
  }
  throw new UserError(`pin directory ${pinDir} is not on a bpffs (mount -t bpf bpf /sys/fs/bpf, or choose --pin-dir under it)`);
}

export interface Mount {
  mountPoint: string;
  fsType: string;
  root: string;
}

export function mounts(): Mount[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [pre, post] = line.split(' - ');
      const f = (pre ?? '').split(' ');
      return { root: f[3] ?? '', mountPoint: (f[4] ?? '').replace(/\\040/g, ' '), fsType: (post ?? '').split(' ')[0] ?? '' };
    });
}

/** The cgroup v2 mount point (e.g. /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). */
export function cgroup2Mount(): string {
  const m = mounts().find((x) => x.fsType === 'cgroup2');
  if (!m) throw new UserError('no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified); meshbpf attaches to a cgroup v2');
  return m.mountPoint;
}

export function isCgroup2(path: string): boolean {
  return fsType(path) === CGROUP2_SUPER_MAGIC;
}

export interface CgroupChoice {
  path: string;
  id: bigint; // cgroup id = inode number on cgroup v2
  isRoot: boolean;
}

/**
 * The cgroup to attach to. Explicit --cgroup wins (even the root, since it was
 * named). Otherwise the pods' cgroup (kubepods) under the v2 mount; never the
 * root cgroup by default.
 */
export function chooseCgroup(explicit: string | undefined): CgroupChoice {
  const mount = cgroup2Mount();
  let path: string;
  if (explicit) {
    path = resolve(explicit);
    if (!existsSync(path)) throw new UserError(`cgroup ${path} does not exist`);
    if (!isCgroup2(path)) throw new UserError(`${path} is not in a cgroup v2 hierarchy (the v2 mount here is ${mount})`);
  } else {
    const candidates = ['kubepods.slice', 'kubepods'].map((c) => resolve(mount, c));
    const found = candidates.find((c) => existsSync(c) && isCgroup2(c));
    if (!found) {
      throw new UserError(`no pods cgroup (kubepods.slice or kubepods) under ${mount}; pass --cgroup PATH (the root cgroup is used only when named explicitly)`);
    }
    path = found;
  }
  return { path, id: BigInt(statSync(path).ino), isRoot: resolve(path) === resolve(mount) };
}

const knownCgroups = new Map<bigint, string>();

/**
 * cgroupPathById, remembered: a path found before is confirmed with one stat
 * (the id is its inode), so status, /healthz and every /metrics scrape do not
 * walk the cgroup tree again. The tree is walked when the cgroup moved or went.
 */
export function cachedCgroupPathById(id: bigint, walk: (id: bigint) => string | undefined = cgroupPathById): string | undefined {
  const known = knownCgroups.get(id);
  if (known !== undefined) {
    try {
      if (BigInt(statSync(known).ino) === id) return known;
    } catch {
      // gone: walk again below
    }
    knownCgroups.delete(id);
  }
  const found = walk(id);
  if (found !== undefined) knownCgroups.set(id, found);
  return found;
}

/** Find a cgroup's path from its id (inode) under the v2 mount; undefined if gone. */
export function cgroupPathById(id: bigint, maxDepth = 6): string | undefined {
  let mount: string;
  try {
    mount = cgroup2Mount();
  } catch {
    return undefined;
  }
  const walk = (dir: string, depth: number): string | undefined => {
    try {
      if (BigInt(statSync(dir).ino) === id) return dir;
    } catch {
      return undefined;
    }
    if (depth >= maxDepth) return undefined;
    let ents: string[] = [];
    try {
      ents = readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return undefined;
    }
    for (const e of ents) {
      const r = walk(resolve(dir, e), depth + 1);
      if (r) return r;
    }
    return undefined;
  };
  return walk(mount, 0);
}
