// File source: an Envoy admin config_dump (JSON or YAML, as Envoy's
// /config_dump or `istioctl proxy-config all -o json` prints it) or a plain
// list of resources, turned into the same XdsSnapshot the ADS client yields,
// and watched for changes. An invalid new file keeps the last good snapshot.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { XdsParseError } from '../errors.js';
import { child } from '../log.js';
import { clip, Reasons } from './reasons.js';
import { canonical, copyStatus } from './state.js';
import { isObject } from './validate.js';
import { kindOfType, resourcesOf, validateSet, WDS_KIND_NAMES } from './kinds.js';
import { isWdsDocument, wdsSnapshotFromDocument } from './wds-file.js';
import { parseJsonFd } from './json-stream.js';
import { collectGarbage, LARGE_FILE } from '../gc.js';
import {
  emptySnapshot,
  emptyTypeStatus,
  isWdsSnapshot,
  type EnvoyKind,
  type Json,
  type JsonObject,
  type SnapshotValidator,
  type XdsSnapshot,
  type XdsSource,
  type XdsSourceEvents,
  type XdsStateEvent,
  type XdsStatus,
} from './types.js';

const ADMIN = 'type.googleapis.com/envoy.admin.v3.';
const V2_TYPES = new Set(['Cluster', 'ClusterLoadAssignment', 'Listener'].map((n) => `type.googleapis.com/envoy.api.v2.${n}`));

/** Default size limit of a snapshot file (a 100k-endpoint config_dump is about 10 MiB). */
export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;

export interface ParseResult {
  snapshot: XdsSnapshot;
  /** top-level entries of types that are not part of the snapshot (routes, secrets, bootstrap, ...) */
  ignored: string[];
  /** how many entries those are */
  ignoredCount: number;
}

interface Collected {
  cds: { res: JsonObject; index: number; key?: string }[];
  eds: { res: JsonObject; index: number; key?: string }[];
  lds: { res: JsonObject; index: number; key?: string }[];
  versions: XdsSnapshot['versions'];
  ignored: string[];
  /** how many entries were ignored (ignored holds their distinct types) */
  ignoredCount: number;
  errors: Reasons;
}

function ignore(c: Collected, what: string): void {
  if (c.ignored.length < 100 && !c.ignored.includes(what)) c.ignored.push(what);
  c.ignoredCount++;
}

function strip(r: JsonObject): JsonObject {
  // Inside a dump a resource is an Any ("@type" + fields); in the snapshot it is the message itself.
  const { '@type': _t, ...body } = r;
  return body;
}

/** A static listener may have no name (Envoy makes one up); key it by address the way Istio names listeners. */
function syntheticListenerKey(l: JsonObject, index: number): string | undefined {
  if (typeof l.name === 'string' && l.name) return undefined;
  const a = l.address;
  const sa = isObject(a) ? a.socket_address : undefined;
  if (isObject(sa) && typeof sa.address === 'string') return `${sa.address}_${String(sa.port_value ?? 0)}`;
  return `static_listener_${index}`;
}

function push(c: Collected, kind: EnvoyKind, r: Json | undefined, where: string, allowUnnamed = false): void {
  if (!isObject(r)) {
    c.errors.push(`${where}: not an object`);
    return;
  }
  const t = r['@type'];
  if (t !== undefined && kindOfType(t) !== kind) {
    c.errors.push(`${where}: unexpected @type ${JSON.stringify(t)}`);
    return;
  }
  const res = strip(r);
  const index = c[kind].length;
  const item: { res: JsonObject; index: number; key?: string } = { res, index };
  if (allowUnnamed && kind === 'lds') {
    const k = syntheticListenerKey(res, index);
    if (k !== undefined) item.key = k;
  }
  c[kind].push(item);
}

function arr(v: Json | undefined): Json[] {
  return Array.isArray(v) ? v : [];
}

function collectDump(c: Collected, configs: Json[]): void {
  configs.forEach((cfg, i) => {
    if (!isObject(cfg)) return;
    const t = typeof cfg['@type'] === 'string' ? cfg['@type'] : '';
    const where = `configs[${i}]`;
    if (t === ADMIN + 'ClustersConfigDump') {
      if (typeof cfg.version_info === 'string') c.versions.cds = cfg.version_info;
      arr(cfg.static_clusters).forEach((e, j) => push(c, 'cds', isObject(e) ? e.cluster : e, `${where}.static_clusters[${j}].cluster`));
      arr(cfg.dynamic_active_clusters).forEach((e, j) => push(c, 'cds', isObject(e) ? e.cluster : e, `${where}.dynamic_active_clusters[${j}].cluster`));
    } else if (t === ADMIN + 'EndpointsConfigDump') {
      arr(cfg.static_endpoint_configs).forEach((e, j) => push(c, 'eds', isObject(e) ? e.endpoint_config : e, `${where}.static_endpoint_configs[${j}].endpoint_config`));
      arr(cfg.dynamic_endpoint_configs).forEach((e, j) => {
        if (isObject(e) && typeof e.version_info === 'string' && c.versions.eds === undefined) c.versions.eds = e.version_info;
        push(c, 'eds', isObject(e) ? e.endpoint_config : e, `${where}.dynamic_endpoint_configs[${j}].endpoint_config`);
      });
    } else if (t === ADMIN + 'ListenersConfigDump') {
      if (typeof cfg.version_info === 'string') c.versions.lds = cfg.version_info;
      arr(cfg.static_listeners).forEach((e, j) => push(c, 'lds', isObject(e) ? e.listener : e, `${where}.static_listeners[${j}].listener`, true));
      arr(cfg.dynamic_listeners).forEach((e, j) => {
        // only what is serving: warming and draining states are not the current config
        const active = isObject(e) ? e.active_state : undefined;
        if (isObject(active)) push(c, 'lds', active.listener, `${where}.dynamic_listeners[${j}].active_state.listener`);
      });
    } else {
      ignore(c, t || `${where} (no @type)`);
    }
  });
}

function collectList(c: Collected, items: Json[]): void {
  items.forEach((r, i) => {
    const where = `resources[${i}]`;
    if (!isObject(r)) {
      c.errors.push(`${where}: not an object`);
      return;
    }
    const t = r['@type'];
    if (typeof t !== 'string') {
      c.errors.push(`${where}: no "@type"; cannot tell what it is`);
      return;
    }
    const kind = kindOfType(t);
    if (!kind && V2_TYPES.has(t)) {
      // meant as a cluster/endpoint/listener: dropping it silently would drop its verdicts
      c.errors.push(`${where}: ${t} is xDS v2, which Envoy no longer serves; use the v3 type`);
      return;
    }
    if (!kind || kind === 'address' || kind === 'authorization') {
      ignore(c, t);
      return;
    }
    push(c, kind, r, where);
  });
}

/** Parse text (JSON or YAML) into a document. */
export function parseText(text: string, source = '<input>'): Json {
  let jsonError: Error | undefined;
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    // not JSON: YAML (a superset, but slower, so second)
    jsonError = e as Error;
  }
  try {
    // no process warnings for odd input (they would print the file's bytes to stderr)
    return parseYaml(text, { logLevel: 'error' }) as Json;
  } catch (e) {
    // A file that looks like JSON gets the JSON parser's error, not YAML's five lines.
    if (/^\s*[{[]/.test(text)) throw new XdsParseError([`${source}: invalid JSON: ${jsonMessage(jsonError, text)}`]);
    const first = ((e as Error).message.split('\n')[0] ?? '').trim();
    throw new XdsParseError([`${source}: neither JSON nor YAML: ${first}`]);
  }
}

/** JSON.parse's message with the line and column of its position. */
function jsonMessage(e: Error | undefined, text: string): string {
  const msg = (e?.message ?? 'invalid').split('\n')[0] ?? '';
  const pos = /at position (\d+)/.exec(msg);
  if (!pos) return msg;
  const before = text.slice(0, Number(pos[1]));
  const line = before.split('\n').length;
  const col = Number(pos[1]) - before.lastIndexOf('\n');
  return `${msg} (line ${line}, column ${col})`;
}

/**
 * Turn a config_dump or resource list into a snapshot. Throws XdsParseError
 * listing every invalid resource (each reason names its resource).
 */
export function snapshotFromDocument(doc: Json, source = '<input>'): ParseResult {
  if (isWdsDocument(doc)) return wdsSnapshotFromDocument(doc, source);
  const c: Collected = { cds: [], eds: [], lds: [], versions: {}, ignored: [], ignoredCount: 0, errors: new Reasons() };
  if (Array.isArray(doc)) collectList(c, doc);
  else if (isObject(doc) && Array.isArray(doc.configs)) collectDump(c, doc.configs);
  else if (isObject(doc) && Array.isArray(doc.resources)) collectList(c, doc.resources);
  else if (isObject(doc) && typeof doc['@type'] === 'string') collectList(c, [doc]);
  else throw new XdsParseError([`${source}: not a config_dump ({configs: [...]}) nor a resource list ({resources: [...]} or a list)`]);

  const snap = emptySnapshot();
  const errors = c.errors;
  for (const kind of ['cds', 'eds', 'lds'] as const) {
    const named = c[kind].filter((x) => x.key === undefined);
    const v = validateSet(kind, named);
    errors.addAll(v.errors);
    const target = resourcesOf(snap, kind);
    for (const [k, r] of v.ok) target.set(k, r);
    // static listeners without a name: validate everything but the name, key by address
    for (const x of c[kind].filter((y) => y.key !== undefined)) {
      const key = x.key as string;
      const withName = validateSet(kind, [{ res: { ...x.res, name: key }, index: x.index }]);
      if (withName.errors.length) errors.addAll(withName.errors);
      else if (target.has(key)) errors.push(`listener ${JSON.stringify(key)}: duplicate resource name`);
      else target.set(key, x.res);
    }
  }
  if (errors.total)
    throw new XdsParseError(
      errors.first.map((e) => `${source}: ${e}`),
      errors.total,
    );
  // Nothing usable (only unknown or foreign types, an empty list) would remove
  // every entry from the kernel. That must be said on purpose, not by accident.
  const usable = snap.clusters.size + snap.endpoints.size + snap.listeners.size;
  if (usable === 0 && !(isObject(doc) && doc.allow_empty === true)) {
    const types = [...new Set(c.ignored)];
    const what = c.ignoredCount ? `${c.ignoredCount} resources ignored (${types.slice(0, 3).join(', ')}${types.length > 3 ? `, and ${types.length - 3} more types` : ''})` : 'the list is empty';
    throw new XdsParseError([`${source}: no cluster, endpoint or listener to apply: ${what}; to remove every entry on purpose, write {"resources": [], "allow_empty": true}`]);
  }
  snap.versions = c.versions;
  return { snapshot: canonical(snap), ignored: [...new Set(c.ignored)], ignoredCount: c.ignoredCount };
}

function mib(n: number | bigint): string {
  const x = Number(n) / (1024 * 1024);
  return `${x >= 10 ? Math.round(x) : x.toFixed(1)} MiB`;
}

function kindOfFile(st: fs.Stats | fs.BigIntStats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** The one line that says why a path is not a snapshot file we read (undefined when it is a regular file within the limit). */
export function checkSnapshotPath(file: string, maxBytes = DEFAULT_MAX_FILE_BYTES): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return `${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`;
  }
  if (!st.isFile()) return `${file}: ${kindOfFile(st)}, not a regular file`;
  if (st.size > maxBytes) return sizeError(file, st.size, maxBytes);
  return undefined;
}

function sizeError(file: string, size: number | bigint, maxBytes: number): string {
  return `${file}: ${mib(size)} is over the ${mib(maxBytes)} size limit for snapshot files (--xds-file-max-mb)`;
}

/**
 * Open a snapshot file: only a regular file (a FIFO would block, /dev/zero never
 * ends), at most maxBytes. Opened non-blocking and checked on the open fd, so a
 * file swapped between the check and the read cannot get past it. The caller
 * closes the fd; throws XdsParseError naming the file.
 */
function openSnapshot(file: string, maxBytes: number): { fd: number; stat: fs.BigIntStats; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new XdsParseError([`${file}: ${code === 'ENOENT' ? 'no such file' : `cannot open: ${(e as Error).message}`}`]);
  }
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    if (!st.isFile()) throw new XdsParseError([`${file}: ${kindOfFile(st)}, not a regular file`]);
    if (st.size > BigInt(maxBytes)) throw new XdsParseError([sizeError(file, st.size, maxBytes)]);
    return { fd, stat: st, size: Number(st.size) };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** The whole text of an open snapshot file (from offset 0), BOM removed. */
function readText(fd: number, size: number, file: string): string {
  // One byte more than the size: a file that grew while being read is noticed.
  const buf = Buffer.allocUnsafe(size + 1);
  let n = 0;
  for (;;) {
    const r = fs.readSync(fd, buf, n, buf.length - n, n);
    if (r === 0) break;
    n += r;
    if (n === buf.length) break;
  }
  if (n > size) throw new XdsParseError([`${file}: changed while it was read`]);
  const text = buf.toString('utf8', 0, n);
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Read a snapshot file's text (see openSnapshot for what is refused). Returns the text and the fd's stat. */
export function readSnapshotText(file: string, maxBytes = DEFAULT_MAX_FILE_BYTES): { text: string; stat: fs.BigIntStats } {
  const { fd, stat, size } = openSnapshot(file, maxBytes);
  try {
    return { text: readText(fd, size, file), stat };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The parsed document of an open snapshot file: JSON read in windows
 * (json-stream.ts: neither the whole bytes nor the whole text held), else, for
 * YAML or anything that reader leaves alone, parseText of the whole text.
 */
function parseOpen(fd: number, size: number, file: string): Json {
  const r = parseJsonFd(fd, { maxBytes: size });
  if ('grew' in r) throw new XdsParseError([`${file}: changed while it was read`]);
  if ('value' in r) return r.value;
  return parseText(readText(fd, size, file), file);
}

/** Read and parse one file. */
export function loadSnapshotFile(file: string, maxBytes = DEFAULT_MAX_FILE_BYTES): ParseResult {
  const { fd, size } = openSnapshot(file, maxBytes);
  try {
    return snapshotOfOpen(fd, size, file);
  } finally {
    fs.closeSync(fd);
  }
}

/** An open file's snapshot (parse, then resources by kind). */
function snapshotOfOpen(fd: number, size: number, file: string): ParseResult {
  const r = snapshotFromDocument(parseOpen(fd, size, file), file);
  // The read windows, member texts and the document's own containers are garbage
  // now; V8 would collect them only after the compiler had grown the heap on top
  // (a large sync's peak RSS, bench/report/MEMORY.md).
  if (size > LARGE_FILE) collectGarbage();
  return r;
}

/** sha256 of an open file's bytes (from offset 0), read in chunks; undefined when it grew past size while read. */
function digestFd(fd: number, size: number): string | undefined {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(size + 1, 1024 * 1024));
  let n = 0;
  for (;;) {
    const r = fs.readSync(fd, buf, 0, buf.length, n);
    if (r === 0) break;
    n += r;
    if (n > size) return undefined;
    h.update(buf.subarray(0, r));
  }
  return h.digest('hex');
}

/** What identifies one version of a file at a path (after symlinks): an in-place write or a swap changes it. */
function signature(file: string): string {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch (e) {
    return `error:${(e as NodeJS.ErrnoException).code ?? 'unknown'}`;
  }
}

/** ms since the file was last written or renamed (ctime moves on rename), or undefined when it cannot be stat'ed. */
function ageMs(file: string): number | undefined {
  try {
    const st = fs.statSync(file, { bigint: true });
    const last = st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs;
    return Date.now() - Number(last / 1_000_000n);
  } catch {
    return undefined;
  }
}

export interface XdsFileSourceOptions {
  path: string;
  /** watch the file for changes; default true */
  watch?: boolean;
  /** coalesce change events for this long before looking at the file; default 100 ms */
  debounceMs?: number;
  /**
   * a changed file is read only once it has not been written for this long
   * (a writer that pauses half-way must not have half a file applied); default 1000 ms
   */
  settleMs?: number;
  /** how often to stat the path, for what the watch misses (a watched directory removed and recreated); default 1000 ms; 0 = never */
  pollMs?: number;
  /** size limit; default DEFAULT_MAX_FILE_BYTES */
  maxBytes?: number;
  validate?: SnapshotValidator;
  logger?: Logger;
}

/**
 * Watches a config_dump / resource-list file and keeps the last good snapshot
 * when new content is invalid (status().lastError and a 'state' {kind:'error'}
 * say why). Files as Kubernetes and editors write them:
 * - the directories of the path and of its symlink target are watched, not the
 *   file (rename-on-save, `kubectl cp`, the kubelet's `..data` symlink swap
 *   replace the file, which a file watch would miss); any event there is
 *   checked against the file's identity (dev, inode, size, mtime, ctime);
 * - a stat every pollMs catches what no watch sees (a watched directory removed
 *   and recreated) and re-watches;
 * - a changed file is read only once it has been quiet for settleMs, and
 *   applied only when it parses whole (the first load at start is immediate).
 */
export class XdsFileSource extends EventEmitter<XdsSourceEvents> implements XdsSource {
  private readonly opts: XdsFileSourceOptions;
  private readonly log: Logger;
  private readonly file: string;
  private current: XdsSnapshot = emptySnapshot();
  private watchers = new Map<string, { ino: bigint; w: fs.FSWatcher }>();
  private timer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  /** sha256 of the last accepted file (not the text: a 100k-endpoint dump is ~10 MB) */
  private lastDigest: string | undefined;
  /** identity of the file as last looked at (accepted or not): unchanged means nothing to do */
  private seen: string | undefined;
  /** a changed file waiting to be quiet: its identity and when it was first seen */
  private pending: { sig: string; since: number } | undefined;
  private closed = false;
  private started = false;
  private st: XdsStatus;

  constructor(opts: XdsFileSourceOptions) {
    super();
    this.opts = opts;
    this.file = path.resolve(opts.path);
    this.log = opts.logger ?? child('xds');
    this.st = {
      state: 'idle',
      mode: 'file',
      server: this.file,
      reconnects: 0,
      types: { cds: emptyTypeStatus(), eds: emptyTypeStatus(), lds: emptyTypeStatus() },
    };
  }

  snapshot(): XdsSnapshot {
    return this.current;
  }

  status(): XdsStatus {
    return copyStatus(this.st);
  }

  /**
   * Initial load (errors are reported, not thrown: the source keeps watching),
   * then watch. The state is 'connected' only once a file was accepted.
   */
  start(): void {
    if (this.closed || this.started) return;
    this.started = true;
    this.st.state = 'connecting';
    this.reload();
    if (this.opts.watch ?? true) {
      this.rewatch();
      const poll = this.opts.pollMs ?? 1000;
      if (poll > 0) {
        this.pollTimer = setInterval(() => {
          this.rewatch();
          if (signature(this.file) !== this.seen) this.schedule();
        }, poll);
        this.pollTimer.unref();
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.timer = undefined;
    for (const { w } of this.watchers.values()) w.close();
    this.watchers.clear();
    this.st.state = 'closed';
    this.emit('state', { kind: 'closed' } satisfies XdsStateEvent);
  }

  /** Watch the directory of the path and of its symlink target; re-watch a directory that was replaced. */
  private rewatch(): void {
    if (this.closed) return;
    const dirs = new Set([path.dirname(this.file)]);
    try {
      dirs.add(path.dirname(fs.realpathSync(this.file)));
    } catch {
      /* target missing: the path's own directory is enough to see it come back */
    }
    for (const [d, x] of this.watchers) {
      let ino: bigint | undefined;
      try {
        ino = fs.statSync(d, { bigint: true }).ino;
      } catch {
        ino = undefined;
      }
      if (!dirs.has(d) || ino !== x.ino) {
        x.w.close();
        this.watchers.delete(d);
        if (ino !== undefined && dirs.has(d)) this.schedule(); // recreated: look at the file again
      }
    }
    for (const d of dirs) {
      if (this.watchers.has(d)) continue;
      try {
        const ino = fs.statSync(d, { bigint: true }).ino;
        const w = fs.watch(d, () => this.schedule());
        w.on('error', () => {
          // e.g. the directory went away: the poll re-watches when it is back
          w.close();
          if (this.watchers.get(d)?.w === w) this.watchers.delete(d);
        });
        this.watchers.set(d, { ino, w });
      } catch {
        /* directory missing now: the poll tries again */
      }
    }
  }

  /** Look at the file soon. Events coalesce into one look (a busy directory cannot starve it). */
  private schedule(delayMs = this.opts.debounceMs ?? 100): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.check();
    }, delayMs);
  }

  /** A change: wait until the file has been quiet for settleMs, then reload. */
  private check(): void {
    if (this.closed) return;
    const sig = signature(this.file);
    if (sig === this.seen) return;
    const settle = this.opts.settleMs ?? 1000;
    const now = Date.now();
    if (this.pending?.sig !== sig) this.pending = { sig, since: now };
    // Quiet for: since the last write by its mtime; by our own watch when the
    // mtime is in the future (clock skew, `touch -d`), so the wait stays bounded.
    const age = ageMs(this.file);
    const quiet = age !== undefined && age >= 0 ? age : now - this.pending.since;
    if (quiet < settle) return this.schedule(Math.max(10, settle - quiet + 5));
    this.reload();
  }

  private fail(errorIn: string): void {
    const error = clip(errorIn);
    this.st.lastError = error;
    for (const k of ['cds', 'eds', 'lds'] as const) {
      this.st.types[k].nacks++;
      this.st.types[k].lastNackError = error;
      this.st.types[k].lastNackAt = new Date();
    }
    this.log.warn({ error }, 'xds file: rejected; keeping last good snapshot');
    this.emit('state', { kind: 'error', path: this.opts.path, error } satisfies XdsStateEvent);
  }

  private accepted(): void {
    delete this.st.lastError;
    if (this.st.state === 'connecting') {
      this.st.state = 'connected';
      this.st.connectedSince = new Date();
    }
  }

  /** Re-read now. Returns true when a new snapshot was accepted (or the content is unchanged). */
  reload(): boolean {
    if (this.closed) return false;
    const sig = signature(this.file);
    let opened: { fd: number; stat: fs.BigIntStats; size: number };
    try {
      opened = openSnapshot(this.opts.path, this.opts.maxBytes ?? DEFAULT_MAX_FILE_BYTES);
    } catch (e) {
      this.seen = sig;
      this.fail(e instanceof XdsParseError ? e.message : `${this.opts.path}: ${(e as Error).message}`);
      return false;
    }
    let result: ParseResult;
    let digest: string;
    try {
      const st = opened.stat;
      // written between the stat and the read: look again once it is quiet
      if (`${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` !== sig) {
        this.schedule();
        return false;
      }
      this.seen = sig;
      // A digest of the bytes first (read in chunks): unchanged content is not parsed again.
      const d = digestFd(opened.fd, opened.size);
      if (d === undefined) {
        this.fail(new XdsParseError([`${this.opts.path}: changed while it was read`]).message);
        return false;
      }
      digest = d;
      if (digest === this.lastDigest) {
        // the good content is back: no new snapshot, but no stale error either
        if (this.st.lastError !== undefined) this.emit('state', { kind: 'loaded', path: this.opts.path } satisfies XdsStateEvent);
        this.accepted();
        return true;
      }
      try {
        result = snapshotOfOpen(opened.fd, opened.size, this.opts.path);
      } catch (e) {
        this.fail(e instanceof XdsParseError ? e.message : `${this.opts.path}: ${(e as Error).message}`);
        return false;
      }
    } finally {
      fs.closeSync(opened.fd);
    }
    const veto = this.opts.validate?.(result.snapshot);
    if (veto !== undefined) {
      this.fail(`${this.opts.path}: rejected by validator: ${veto}`);
      return false;
    }
    this.lastDigest = digest;
    this.current = result.snapshot;
    this.accepted();
    const now = new Date();
    for (const k of ['cds', 'eds', 'lds'] as const) {
      const t = this.st.types[k];
      t.acks++;
      t.lastAckAt = now;
      const v = result.snapshot.versions[k];
      if (v !== undefined) t.lastAckVersion = v;
      t.resources = resourcesOf(result.snapshot, k).size;
    }
    if (result.ignoredCount)
      this.log.info({ ignored: result.ignoredCount, types: result.ignored.slice(0, 5) }, `xds file: ${result.ignoredCount} entries ignored (not clusters, endpoints or listeners)`);
    if (isWdsSnapshot(result.snapshot)) {
      this.st.api = 'wds';
      for (const k of WDS_KIND_NAMES) {
        const t = (this.st.types[k] ??= emptyTypeStatus());
        t.acks++;
        t.lastAckAt = now;
        t.resources = resourcesOf(result.snapshot, k).size;
      }
    }
    this.emit('state', { kind: 'loaded', path: this.opts.path } satisfies XdsStateEvent);
    this.emit('snapshot', result.snapshot);
    return true;
  }
}
