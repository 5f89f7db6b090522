// Load, pin and attach meshbpf; unload exactly what it pinned.
//
// Layout under the pin directory:   maps/mb_*   progs/mb_*   links/mb_sockops_cgroup
// (+ links/mb_splice_* etc.: the splice guard's tracing links, where the kernel allows them)
// Loading over an existing pin directory reuses every compatible pinned map (so
// live connections keep their sockhash entries), swaps the programs in place
// (bpf_link_update for sockops, prog attach replaces sk_msg on the map) and
// errors, naming the map, when a pinned map has another shape.
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import {
  AttachType,
  closeFd,
  link as linkApi,
  linkDetach,
  linkInfo,
  linkUpdate,
  map as mapApi,
  mapInfo,
  MAP_TYPE_NAMES,
  obj as objApi,
  objGet,
  objPin,
  prog as progApi,
  progAttach,
  progDetach,
  progInfo,
  withLibbpfMessages,
  type LinkHandle,
  type MapDef,
  type ObjHandle,
  type ProgHandle,
} from '../sys/libbpf.js';
import { CGROUP_LINKS, DEFAULT_PIN_DIR, MAP_NAMES, PINNED_MAPS, pinPaths, PROG_NAMES, SPLICE_GUARD_LINKS, VIP_PROGS } from '../maps/pinned.js';
import { compileAll } from './compile.js';
import { probeFeatures, requireFeatures, VIP_MISSING } from './features.js';
import { checkPrivileges, chooseCgroup, ensureBpffs, type CgroupChoice } from './preflight.js';
import { BpfError, UserError, VerifierError } from '../errors.js';
import { CleanupStack } from '../cleanup.js';
import { detachAllInpod, refreshInpod } from './inpod.js';
import { child } from '../log.js';

const log = child('loader');

export interface MapSizes {
  maxSockets?: number;
  maxEndpoints?: number;
  maxPolicies?: number;
}

export interface LoadOptions extends MapSizes {
  pinDir?: string;
  /** explicit cgroup path (may be the root cgroup); default: the pods' cgroup */
  cgroup?: string;
  /** recompile even if objects are fresh */
  forceCompile?: boolean;
  /** build as if these features were missing (tests of the degraded builds) */
  assumeMissing?: Array<'netnsCookie' | 'vip'>;
}

export interface LoadResult {
  pinDir: string;
  cgroup: CgroupChoice;
  programs: Array<{ name: string; id: number; tag: string }>;
  maps: Array<{ name: string; id: number; reused: boolean; maxEntries: number }>;
  linkId: number;
  /** true when programs replaced an earlier load in place */
  upgraded: boolean;
  spliceGuard: SpliceGuardState;
}

/** What the splice guard can do on this kernel (see bpf/splice.c, bpf/splice_refuse.c). */
export interface SpliceGuardState {
  /** splice/sendfile reads of bypassed sockets are counted and their destination excluded */
  detect: boolean;
  /** such reads are refused with EINVAL before anything is read (nothing lost) */
  refuse: boolean;
  /** why a part is missing, one line each */
  notes: string[];
}

export const DEFAULT_SIZES = { maxSockets: 65536, maxEndpoints: 131072, maxPolicies: 65536 };

function wantedMaxEntries(name: string, o: MapSizes): number | undefined {
  if (name === 'mb_sockets') return o.maxSockets;
  if (name === 'mb_endpoints') return o.maxEndpoints;
  if (name === 'mb_policy') return o.maxPolicies;
  return undefined;
}

function describeMismatch(want: MapDef, have: ReturnType<typeof mapInfo>): string | undefined {
  const diffs: string[] = [];
  if (want.type !== have.type) diffs.push(`type ${MAP_TYPE_NAMES[have.type] ?? have.type} != ${MAP_TYPE_NAMES[want.type] ?? want.type}`);
  if (want.keySize !== have.keySize) diffs.push(`key_size ${have.keySize} != ${want.keySize}`);
  if (want.valueSize !== have.valueSize) diffs.push(`value_size ${have.valueSize} != ${want.valueSize}`);
  if (want.maxEntries !== have.maxEntries) diffs.push(`max_entries ${have.maxEntries} != ${want.maxEntries}`);
  if (want.flags !== have.flags) diffs.push(`map_flags ${have.flags} != ${want.flags}`);
  return diffs.length ? diffs.join(', ') : undefined;
}

export function load(opts: LoadOptions = {}): LoadResult {
  const pinDir = opts.pinDir ?? DEFAULT_PIN_DIR;
  const sizes = { ...DEFAULT_SIZES, ...stripUndefined(opts) };
  checkPrivileges();
  ensureBpffs(pinDir);
  const cgroup = chooseCgroup(opts.cgroup);
  if (cgroup.isRoot) log.warn({ cgroup: cgroup.path }, 'attaching to the ROOT cgroup, as requested: every socket on the host is considered');
  const features = { ...probeFeatures() };
  for (const f of opts.assumeMissing ?? []) features[f] = false;
  const defines = requireFeatures(features);
  if (defines.includes('MB_NO_NETNS_COOKIE')) {
    log.warn('this kernel has no bpf_get_netns_cookie for sockops/sk_msg (Linux < 5.15): loopback connections will not be accelerated');
  }
  const vip = !defines.includes('MB_NO_VIP');
  if (!vip) log.warn(VIP_MISSING);
  // The degraded build has no getpeername programs: no links or pins for them.
  const progNames = PROG_NAMES.filter((n) => vip || !VIP_PROGS.includes(n));
  const cgroupLinks = CGROUP_LINKS.filter((l) => vip || !VIP_PROGS.includes(l.prog));
  const objects = compileAll({ defines, ...(opts.forceCompile ? { force: true } : {}) });

  const p = pinPaths(pinDir);
  const upgraded = existsSync(p.sockopsLink);
  const undo = new CleanupStack(); // rolls back what this call created if a later step fails
  const toClose: ObjHandle[] = [];
  const sharedMapFds = new Map<string, number>(); // one kernel map per name across objects
  const reused = new Set<string>();
  const ownFds: number[] = [];
  try {
    for (const d of [p.root, p.maps, p.progs, p.links]) {
      if (!existsSync(d)) {
        mkdirSync(d);
        undo.add(() => rmdirSync(d));
      }
    }

    const loaded: Array<{ obj: ObjHandle; progs: Map<string, { fd: number; handle: ProgHandle }> }> = [];
    const loadObject = (path: string): void => {
      const o = objApi.open(path);
      toClose.push(o);
      for (const m of objApi.maps(o)) {
        let def = mapApi.def(m);
        if (!PINNED_MAPS.includes(def.name as (typeof PINNED_MAPS)[number])) continue; // .rodata etc.
        const want = wantedMaxEntries(def.name, sizes);
        if (want !== undefined && want !== def.maxEntries) {
          mapApi.setMaxEntries(m, want);
          def = mapApi.def(m);
        }
        const shared = sharedMapFds.get(def.name);
        if (shared !== undefined) {
          mapApi.reuseFd(m, shared);
          continue;
        }
        const pinPath = p.map(def.name);
        if (existsSync(pinPath)) {
          const fd = objGet(pinPath);
          ownFds.push(fd);
          const mismatch = describeMismatch(def, mapInfo(fd));
          if (mismatch) {
            throw new UserError(
              `pinned map ${pinPath} is incompatible with this meshbpf (${mismatch}); ` +
                `unload first (meshbpf unload --pin-dir ${pinDir}: accelerated connections fall back to the stack) or use another --pin-dir`,
            );
          }
          mapApi.reuseFd(m, fd);
          reused.add(def.name);
        }
      }
      const logBufs = new Map<string, Buffer>();
      for (const pr of objApi.programs(o)) {
        const buf = Buffer.alloc(1 << 20);
        progApi.setLogBuf(pr, buf, 0); // libbpf retries at level 1 into this buffer on failure
        logBufs.set(progApi.name(pr), buf);
      }
      const r = withLibbpfMessages(() => objApi.load(o));
      if (r.error) throw verifierError(path, r.error, logBufs, r.messages);
      // Maps created by this load: remember their fds for the next object, pin them.
      for (const m of objApi.maps(o)) {
        const def = mapApi.def(m);
        if (!PINNED_MAPS.includes(def.name as (typeof PINNED_MAPS)[number]) || sharedMapFds.has(def.name)) continue;
        sharedMapFds.set(def.name, mapApi.fd(m));
        if (!reused.has(def.name)) {
          objPin(mapApi.fd(m), p.map(def.name));
          const pinned = p.map(def.name);
          undo.add(() => unlinkSync(pinned));
        }
      }
      const progs = new Map<string, { fd: number; handle: ProgHandle }>();
      for (const pr of objApi.programs(o)) progs.set(progApi.name(pr), { fd: progApi.fd(pr), handle: pr });
      loaded.push({ obj: o, progs });
    };
    const required = objects.slice(0, 4); // sockops, sk_msg, connect, inpod
    const guardObjs = objects.slice(4); // the splice guard's tracing objects
    for (const path of required) loadObject(path);

    const findProg = (name: string): { fd: number; handle: ProgHandle } => {
      for (const l of loaded) {
        const pr = l.progs.get(name);
        if (pr !== undefined) return pr;
      }
      throw new Error(`program ${name} not found in the compiled objects`);
    };
    const progFd = (name: string): number => findProg(name).fd;
    const skmsgFd = progFd('mb_sk_msg');
    const socketsFd = sharedMapFds.get('mb_sockets');
    if (socketsFd === undefined) throw new Error('mb_sockets missing from the compiled objects');

    // sk_msg on the sockhash. A second attach replaces the previous program;
    // sockets already in the map keep the program they were inserted with.
    progAttach(skmsgFd, socketsFd, AttachType.SK_MSG_VERDICT);
    if (!upgraded) undo.add(() => progDetach(skmsgFd, socketsFd, AttachType.SK_MSG_VERDICT));

    // The cgroup programs through pinned bpf_links (multi-program: other
    // cgroup BPF users keep working); existing links are updated atomically.
    // Connect hooks first: sockops must never see a socket they missed.
    let linkId = 0;
    for (const l of cgroupLinks) linkId = attachCgroupLink(p.link(l.link), findProg(l.prog), cgroup, undo);
    if (!vip) {
      // A degraded reload over a full load: the old getpeername links would
      // answer for sockets no longer translated; remove them (after connect is swapped).
      for (const l of CGROUP_LINKS) if (VIP_PROGS.includes(l.prog)) detachPinnedLink(p.link(l.link));
    }

    // The splice guard: optional, it needs tracing programs the kernel may refuse.
    const spliceGuard = loadSpliceGuard(guardObjs, loadObject, loaded, p, undo);

    // Program pins (for status and unload); replace earlier ones.
    for (const name of PROG_NAMES) {
      const path = p.prog(name);
      if (existsSync(path)) unlinkSync(path);
      if (progNames.includes(name)) objPin(progFd(name), path);
    }

    // Enrolled pods' sk_lookup links still run the old program: swap in the new one.
    refreshInpod(pinDir);

    const programs = progNames.map((name) => {
      const i = progInfo(progFd(name));
      return { name, id: i.id, tag: i.tag };
    });
    const maps = MAP_NAMES.map((name) => {
      const fd = sharedMapFds.get(name);
      const i = fd === undefined ? undefined : mapInfo(fd);
      return { name, id: i?.id ?? 0, reused: reused.has(name), maxEntries: i?.maxEntries ?? 0 };
    });
    undo.forget();
    log.info({ pinDir, cgroup: cgroup.path, upgraded, reused: [...reused], spliceGuard }, 'meshbpf loaded');
    return { pinDir, cgroup, programs, maps, linkId, upgraded, spliceGuard };
  } catch (e) {
    undo.run();
    throw e;
  } finally {
    for (const fd of ownFds) closeFd(fd);
    for (const o of toClose) objApi.close(o);
  }
}

function attachCgroupLink(linkPin: string, prog: { fd: number; handle: ProgHandle }, cgroup: CgroupChoice, undo: CleanupStack): number {
  if (existsSync(linkPin)) {
    const lfd = objGet(linkPin);
    try {
      const info = linkInfo(lfd);
      if (info.cgroupId === cgroup.id) {
        linkUpdate(lfd, prog.fd);
        return info.id;
      }
      // Attached elsewhere (or its cgroup is gone): detach it, attach anew below.
      log.warn({ cgroup: cgroup.path, link: linkPin }, 'link pointed at another cgroup; moving it');
      try {
        linkDetach(lfd);
      } catch (e) {
        if (!(e instanceof BpfError)) throw e;
      }
      unlinkSync(linkPin);
    } finally {
      closeFd(lfd);
    }
  }
  const cgFd = openSync(cgroup.path, 'r');
  try {
    const l = progApi.attachCgroup(prog.handle, cgFd);
    try {
      linkApi.pin(l, linkPin);
      undo.add(() => {
        const fd = objGet(linkPin);
        try {
          linkDetach(fd);
        } finally {
          closeFd(fd);
          unlinkSync(linkPin);
        }
      });
      return linkInfo(linkApi.fd(l)).id;
    } finally {
      linkApi.release(l);
    }
  } finally {
    closeSync(cgFd);
  }
}

type Loaded = Array<{ obj: ObjHandle; progs: Map<string, { fd: number; handle: ProgHandle }> }>;

/**
 * Load and attach the splice guard objects, each on its own: a kernel that
 * refuses one (no BTF, tracing locked down, no trampolines) keeps the rest.
 * Links are pinned under links/ so the guard outlives the loading process; on
 * an upgrade the new links are attached before the old pins are replaced.
 */
function loadSpliceGuard(paths: string[], loadObject: (path: string) => void, loaded: Loaded, p: ReturnType<typeof pinPaths>, undo: CleanupStack): SpliceGuardState {
  const state: SpliceGuardState = { detect: false, refuse: false, notes: [] };
  const parts: Array<{ part: 'detect' | 'refuse'; path: string | undefined }> = [
    { part: 'detect', path: paths[0] },
    { part: 'refuse', path: paths[1] },
  ];
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    state.notes.push('no kernel BTF (/sys/kernel/btf/vmlinux)');
  } else {
    for (const { part, path } of parts) {
      if (!path) continue;
      const before = loaded.length;
      const made: LinkHandle[] = [];
      try {
        loadObject(path);
        const progs = loaded[before]?.progs;
        for (const name of SPLICE_GUARD_LINKS[part]) {
          const pr = progs?.get(name);
          if (!pr) throw new Error(`program ${name} missing from ${path}`);
          made.push(progApi.attachTrace(pr.handle));
        }
        for (const [i, name] of SPLICE_GUARD_LINKS[part].entries()) {
          const pin = p.link(name);
          if (existsSync(pin)) unlinkSync(pin); // the old link detaches with its last reference
          linkApi.pin(made[i] as LinkHandle, pin);
          undo.add(() => unlinkSync(pin));
        }
        state[part] = true;
      } catch (e) {
        const first = ((e as Error).message.split('\n')[0] ?? '').replace(/ \(libbpf:.*$/, '');
        state.notes.push(`${part === 'detect' ? 'detection' : 'refusal'}: ${first.slice(0, 200)}`);
      } finally {
        for (const l of made) linkApi.release(l);
      }
    }
  }
  if (!state.detect && !state.refuse) {
    log.warn(
      { notes: state.notes },
      'splice guard unavailable on this kernel: a server that reads a bypassed connection with splice(2) gets EOF and loses the redirected bytes; exclude such destinations with `meshbpf exclude add IP PORT`',
    );
  } else if (!state.refuse) {
    log.warn(
      { notes: state.notes },
      'splice(2) reads of bypassed sockets are detected but cannot be refused on this kernel: the first connection of a splicing server loses its redirected bytes, later ones stay on the stack; exclude such destinations up front with `meshbpf exclude add IP PORT`',
    );
  }
  return state;
}

/** Detach and unpin one pinned link; false when there was none. */
function detachPinnedLink(path: string): boolean {
  if (!existsSync(path)) return false;
  const fd = objGet(path);
  try {
    linkDetach(fd); // detach now, even if another process holds the link
  } catch (e) {
    if (!(e instanceof BpfError) || e.code !== 'ENOLINK' /* already defunct */) throw e;
  } finally {
    closeFd(fd);
  }
  unlinkSync(path);
  return true;
}

function verifierError(path: string, err: unknown, bufs: Map<string, Buffer>, messages: string[]): Error {
  for (const [name, buf] of bufs) {
    const z = buf.indexOf(0);
    const text = buf.toString('utf8', 0, z < 0 ? buf.length : z).trim();
    if (text) {
      log.debug({ program: name, object: path, verifierLog: text }, 'verifier log');
      return new VerifierError(name, path, text);
    }
  }
  const why = messages
    .filter((m) => /error|fail|invalid|unknown|not supported/i.test(m))
    .slice(-4)
    .join('; ');
  return new UserError(`loading ${path} failed: ${(err as Error).message}${why ? ` (${why})` : ''}`);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export interface UnloadResult {
  pinDir: string;
  removed: string[];
  left: string[];
}

/** Detach and remove exactly what meshbpf pinned under pinDir; nothing else. */
export function unload(opts: { pinDir?: string } = {}): UnloadResult {
  const pinDir = opts.pinDir ?? DEFAULT_PIN_DIR;
  checkPrivileges();
  const p = pinPaths(pinDir);
  if (!existsSync(p.root)) throw new UserError(`nothing to unload: ${pinDir} does not exist`);
  const removed: string[] = [];

  // Enrolled pods first: their addresses leave mb_inpod (no client is marked
  // any more), then their sk_lookup links go.
  for (const ns of detachAllInpod(pinDir, { mapsGone: !existsSync(p.map('mb_inpod')) })) removed.push(`sk_lookup link of ${ns}`);

  // sockops first, then the connect hooks, then getpeername (the reverse of the attach order).
  for (const l of [...CGROUP_LINKS].reverse()) {
    const path = p.link(l.link);
    if (detachPinnedLink(path)) removed.push(path);
  }

  if (existsSync(p.prog('mb_sk_msg')) && existsSync(p.map('mb_sockets'))) {
    const pfd = objGet(p.prog('mb_sk_msg'));
    const mfd = objGet(p.map('mb_sockets'));
    try {
      progDetach(pfd, mfd, AttachType.SK_MSG_VERDICT);
    } catch (e) {
      if (!(e instanceof BpfError) || (e.code !== 'ENOENT' && e.code !== 'EINVAL')) throw e;
    } finally {
      closeFd(pfd);
      closeFd(mfd);
    }
  }

  // Tracing links of the splice guard: unpinning detaches them (nothing else holds them).
  const guardLinks = [...SPLICE_GUARD_LINKS.detect, ...SPLICE_GUARD_LINKS.refuse].map(p.link);
  for (const path of [...guardLinks, ...PROG_NAMES.map(p.prog), ...PINNED_MAPS.map(p.map)]) {
    if (existsSync(path)) {
      unlinkSync(path);
      removed.push(path);
    }
  }
  const left: string[] = [];
  for (const d of [p.links, p.progs, p.maps, p.root]) {
    if (!existsSync(d)) continue;
    const rest = readdirSync(d);
    if (rest.length === 0) {
      rmdirSync(d);
      removed.push(d);
    } else if (d !== p.root) {
      left.push(...rest.map((x) => `${d}/${x}`)); // not ours: leave it
    }
  }
  if (left.length) log.warn({ left }, 'left files meshbpf did not create');
  log.info({ pinDir, removed: removed.length }, 'meshbpf unloaded');
  return { pinDir, removed, left };
}
