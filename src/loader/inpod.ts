// Enrolling pods for in-pod capture skipping (Istio ambient, bpf/inpod.c):
// attach the pinned sk_lookup program to a pod's network namespace through a
// pinned bpf_link, and record the pod's netns cookie (mb_inpod_ns: sockops
// then records its listeners) and its addresses (mb_inpod). Only flows
// between two enrolled pods are ever taken past ztunnel; everything else keeps
// istio-cni's capture.
//
// Order: attach: link first, then the netns cookie, then the addresses (a
// client is marked only once its server can be steered); detach: addresses
// first, then the cookie, then the link. The attachments are recorded in the
// state directory so `inpod detach --all` and `unload` remove exactly what was
// added, and `load` swaps the new program into every recorded link.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BpfError, UserError } from '../errors.js';
import { INPOD_PROG, openMaps, pinPaths } from '../maps/pinned.js';
import { stateDir } from '../maps/state.js';
import { AttachType, closeFd, linkCreate, linkDetach, linkUpdate, netnsCookie, objGet, objPin } from '../sys/libbpf.js';
import { child } from '../log.js';

const log = child('inpod');

export interface InpodAttachment {
  netns: string;
  /** the namespace's cookie (bpf_get_netns_cookie), as a decimal string */
  cookie: string;
  /** the pinned sk_lookup link */
  link: string;
  /** the pod's addresses, as written to mb_inpod (/32 or /128) */
  prefixes: string[];
}

interface IpAddrJson {
  ifname: string;
  flags?: string[];
  addr_info?: Array<{ family: string; local: string; scope: string }>;
}

function stateFile(pinDir: string): string {
  return join(stateDir(pinDir), 'inpod.json');
}

export function listInpod(pinDir: string): InpodAttachment[] {
  const f = stateFile(pinDir);
  if (!existsSync(f)) return [];
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as InpodAttachment[];
  } catch (e) {
    throw new UserError(`${f} is unreadable (${(e as Error).message}); remove it and the links/mb_inpod_* pins under ${pinDir}`);
  }
}

function saveInpod(pinDir: string, all: InpodAttachment[]): void {
  mkdirSync(stateDir(pinDir), { recursive: true });
  const f = stateFile(pinDir);
  writeFileSync(`${f}.tmp`, JSON.stringify(all, null, 1));
  renameSync(`${f}.tmp`, f);
}

function checkNetns(netns: string): string {
  const path = resolve(netns);
  if (!existsSync(path)) throw new UserError(`network namespace ${path} does not exist`);
  const st = statSync(path);
  const self = statSync('/proc/self/ns/net'); // the agent runs in the host's namespace (hostNetwork)
  if (st.dev === self.dev && st.ino === self.ino) throw new UserError(`${path} is meshbpf's own (the host's) network namespace: only pod namespaces are enrolled`);
  return path;
}

/** The pod's global addresses, read inside its namespace (iproute2 through nsenter). */
export function podPrefixes(netns: string): string[] {
  let out: string;
  try {
    out = execFileSync('nsenter', [`--net=${netns}`, 'ip', '-j', 'addr', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; code?: string; message: string };
    if (err.code === 'ENOENT') throw new UserError('nsenter not found: install util-linux and iproute2');
    throw new UserError(`listing the addresses in ${netns}: ${(err.stderr ?? err.message).trim().split('\n')[0]}`);
  }
  const prefixes: string[] = [];
  for (const l of JSON.parse(out) as IpAddrJson[]) {
    if (l.ifname === 'lo' || l.flags?.includes('LOOPBACK')) continue;
    for (const a of l.addr_info ?? []) {
      if (a.scope !== 'global') continue;
      if (a.family === 'inet') prefixes.push(`${a.local}/32`);
      else if (a.family === 'inet6') prefixes.push(`${a.local}/128`);
    }
  }
  return prefixes;
}

function cookieOf(netns: string): bigint {
  const ns = openSync(netns, 'r');
  const self = openSync('/proc/thread-self/ns/net', 'r');
  try {
    return netnsCookie(ns, self);
  } catch (e) {
    if (e instanceof BpfError) throw new UserError(`reading the netns cookie of ${netns}: ${e.message} (needs Linux >= 5.14)`);
    throw e;
  } finally {
    closeSync(ns);
    closeSync(self);
  }
}

/**
 * Enroll one pod namespace. Again on an enrolled one: its addresses are
 * refreshed. A failure part-way removes what this call added.
 */
export function attachInpod(pinDir: string, netnsPath: string): InpodAttachment {
  const netns = checkNetns(netnsPath);
  const p = pinPaths(pinDir);
  const progPin = p.prog(INPOD_PROG);
  if (!existsSync(progPin)) throw new UserError(`meshbpf is not loaded at ${pinDir} (no ${progPin}); run \`meshbpf load --pin-dir ${pinDir}\` first`);
  const prefixes = podPrefixes(netns);
  if (!prefixes.length) throw new UserError(`${netns} has no global address outside lo: not a pod namespace meshbpf can enroll`);
  const cookie = cookieOf(netns);
  const all = listInpod(pinDir);
  const before = all.find((a) => a.netns === netns);
  const link = p.link(`mb_inpod_${cookie}`);
  let made = false;
  if (!existsSync(link)) {
    const progFd = objGet(progPin);
    const nsFd = openSync(netns, 'r');
    try {
      const lfd = linkCreate(progFd, nsFd, AttachType.SK_LOOKUP);
      try {
        objPin(lfd, link);
        made = true;
      } finally {
        closeFd(lfd);
      }
    } finally {
      closeFd(progFd);
      closeSync(nsFd);
    }
  }
  try {
    const m = openMaps(pinDir);
    try {
      m.inpodNs.set(cookie, 1);
      for (const x of before?.prefixes ?? []) if (!prefixes.includes(x)) m.inpod.delete(x);
      for (const x of prefixes) m.inpod.set(x, cookie);
    } finally {
      m.close();
    }
  } catch (e) {
    if (made) removeLink(link);
    throw e;
  }
  const a: InpodAttachment = { netns, cookie: cookie.toString(), link, prefixes };
  saveInpod(pinDir, [...all.filter((x) => x.netns !== netns), a]);
  log.info({ netns, cookie: a.cookie, prefixes }, 'pod enrolled for in-pod capture skipping');
  return a;
}

function removeLink(path: string): void {
  if (!existsSync(path)) return;
  const fd = objGet(path);
  try {
    linkDetach(fd);
  } catch (e) {
    if (!(e instanceof BpfError)) throw e; // already defunct (its namespace is gone)
  } finally {
    closeFd(fd);
  }
  unlinkSync(path);
}

/**
 * Remove one pod from in-pod skipping: its addresses leave mb_inpod first (no
 * new client is marked for it), then its cookie, then the link. A namespace
 * that no longer exists (the pod is gone) is removed the same way.
 */
export function detachInpod(pinDir: string, netnsPath: string, opts: { mapsGone?: boolean } = {}): InpodAttachment {
  const netns = resolve(netnsPath);
  const all = listInpod(pinDir);
  const a = all.find((x) => x.netns === netns);
  if (!a) throw new UserError(`${netns} is not enrolled (see \`meshbpf inpod list --pin-dir ${pinDir}\`)`);
  if (!opts.mapsGone) {
    const m = openMaps(pinDir);
    try {
      for (const x of a.prefixes) m.inpod.delete(x);
      m.inpodNs.delete(BigInt(a.cookie));
    } finally {
      m.close();
    }
  }
  removeLink(a.link);
  saveInpod(
    pinDir,
    all.filter((x) => x.netns !== netns),
  );
  log.info({ netns }, 'pod no longer enrolled');
  return a;
}

/** Every enrolled pod, detached (unload, `inpod detach --all`). Returns the namespaces. */
export function detachAllInpod(pinDir: string, opts: { mapsGone?: boolean } = {}): string[] {
  return listInpod(pinDir).map((a) => detachInpod(pinDir, a.netns, opts).netns);
}

/** After a load: every recorded link runs the new program. */
export function refreshInpod(pinDir: string): void {
  const prog = pinPaths(pinDir).prog(INPOD_PROG);
  for (const a of listInpod(pinDir)) {
    if (!existsSync(a.link)) continue;
    const lfd = objGet(a.link);
    const pfd = objGet(prog);
    try {
      linkUpdate(lfd, pfd);
    } catch (e) {
      log.warn({ netns: a.netns, err: (e as Error).message }, 'could not update the in-pod program of this pod; detach and attach it again');
    } finally {
      closeFd(lfd);
      closeFd(pfd);
    }
  }
}
