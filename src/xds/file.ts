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
import { canonical } from './state.js';
import { isObject } from './validate.js';
import { kindOfType, resourcesOf, validateSet, WDS_KIND_NAMES } from './kinds.js';
import { isWdsDocument, wdsSnapshotFromDocument } from './wds-file.js';
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


export interface ParseResult {
  snapshot: XdsSnapshot;
  /** top-level entries of types that are not part of the snapshot (routes, secrets, bootstrap, ...) */
  ignored: string[];
}

interface Collected {
  cds: { res: JsonObject; index: number; key?: string }[];
  eds: { res: JsonObject; index: number; key?: string }[];
  lds: { res: JsonObject; index: number; key?: string }[];
  versions: XdsSnapshot['versions'];
  ignored: string[];
  errors: string[];
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
      arr(cfg.dynamic_active_clusters).forEach((e, j) =>
        push(c, 'cds', isObject(e) ? e.cluster : e, `${where}.dynamic_active_clusters[${j}].cluster`),
      );
    } else if (t === ADMIN + 'EndpointsConfigDump') {
      arr(cfg.static_endpoint_configs).forEach((e, j) =>
        push(c, 'eds', isObject(e) ? e.endpoint_config : e, `${where}.static_endpoint_configs[${j}].endpoint_config`),
      );
      arr(cfg.dynamic_endpoint_configs).forEach((e, j) => {
        if (isObject(e) && typeof e.version_info === 'string' && c.versions.eds === undefined) c.versions.eds = e.version_info;
        push(c, 'eds', isObject(e) ? e.endpoint_config : e, `${where}.dynamic_endpoint_configs[${j}].endpoint_config`);
      });
    } else if (t === ADMIN + 'ListenersConfigDump') {
      if (typeof cfg.version_info === 'string') c.versions.lds = cfg.version_info;
      arr(cfg.static_listeners).forEach((e, j) =>
        push(c, 'lds', isObject(e) ? e.listener : e, `${where}.static_listeners[${j}].listener`, true),
      );
      arr(cfg.dynamic_listeners).forEach((e, j) => {
        // only what is serving: warming and draining states are not the current config
        const active = isObject(e) ? e.active_state : undefined;
        if (isObject(active)) push(c, 'lds', active.listener, `${where}.dynamic_listeners[${j}].active_state.listener`);
      });
    } else {
      c.ignored.push(t || `${where} (no @type)`);
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
    if (!kind || kind === 'address' || kind === 'authorization') {
      c.ignored.push(t);
      return;
    }
    push(c, kind, r, where);
  });
}

/** Parse text (JSON or YAML) into a document. */
export function parseText(text: string, source = '<input>'): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    // not JSON: YAML (a superset, but slower, so second)
  }
  try {
    return parseYaml(text) as Json;
  } catch (e) {
    throw new XdsParseError([`${source}: neither JSON nor YAML: ${(e as Error).message}`]);
  }
}

/**
 * Turn a config_dump or resource list into a snapshot. Throws XdsParseError
 * listing every invalid resource (each reason names its resource).
 */
export function snapshotFromDocument(doc: Json, source = '<input>'): ParseResult {
  if (isWdsDocument(doc)) return wdsSnapshotFromDocument(doc, source);
  const c: Collected = { cds: [], eds: [], lds: [], versions: {}, ignored: [], errors: [] };
  if (Array.isArray(doc)) collectList(c, doc);
  else if (isObject(doc) && Array.isArray(doc.configs)) collectDump(c, doc.configs);
  else if (isObject(doc) && Array.isArray(doc.resources)) collectList(c, doc.resources);
  else if (isObject(doc) && typeof doc['@type'] === 'string') collectList(c, [doc]);
  else throw new XdsParseError([`${source}: not a config_dump ({configs: [...]}) nor a resource list ({resources: [...]} or a list)`]);

  const snap = emptySnapshot();
  const errors = [...c.errors];
  for (const kind of ['cds', 'eds', 'lds'] as const) {
    const named = c[kind].filter((x) => x.key === undefined);
    const v = validateSet(kind, named);
    errors.push(...v.errors);
    const target = resourcesOf(snap, kind);
    for (const [k, r] of v.ok) target.set(k, r);
    // static listeners without a name: validate everything but the name, key by address
    for (const x of c[kind].filter((y) => y.key !== undefined)) {
      const key = x.key as string;
      const withName = validateSet(kind, [{ res: { ...x.res, name: key }, index: x.index }]);
      if (withName.errors.length) errors.push(...withName.errors);
      else if (target.has(key)) errors.push(`listener ${JSON.stringify(key)}: duplicate resource name`);
      else target.set(key, x.res);
    }
  }
  if (errors.length) throw new XdsParseError(errors.map((e) => `${source}: ${e}`));
  snap.versions = c.versions;
  return { snapshot: canonical(snap), ignored: [...new Set(c.ignored)] };
}

/** Read and parse one file. */
export function loadSnapshotFile(file: string): ParseResult {
  const text = fs.readFileSync(file, 'utf8');
  return snapshotFromDocument(parseText(text, file), file);
}

export interface XdsFileSourceOptions {
  path: string;
  /** watch the file for changes; default true */
  watch?: boolean;
  /** quiet period after the last change before re-reading; default 100 ms */
  debounceMs?: number;
  validate?: SnapshotValidator;
  logger?: Logger;
}

/**
 * Watches a config_dump / resource-list file. Watches the directory (editors
 * and `kubectl cp` replace files by rename, which a file watch would miss),
 * debounces, re-reads, and keeps the last good snapshot when the new content
 * is invalid (status().lastError and a 'state' {kind:'error'} say why).
 */
export class XdsFileSource extends EventEmitter<XdsSourceEvents> implements XdsSource {
  private readonly opts: XdsFileSourceOptions;
  private readonly log: Logger;
  private current: XdsSnapshot = emptySnapshot();
  private watcher: fs.FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** sha256 of the last accepted file (not the text: a 100k-endpoint dump is ~10 MB) */
  private lastDigest: string | undefined;
  private closed = false;
  private st: XdsStatus;

  constructor(opts: XdsFileSourceOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger ?? child('xds');
    this.st = {
      state: 'idle',
      mode: 'file',
      server: path.resolve(opts.path),
      reconnects: 0,
      types: { cds: emptyTypeStatus(), eds: emptyTypeStatus(), lds: emptyTypeStatus() },
    };
  }

  snapshot(): XdsSnapshot {
    return this.current;
  }

  status(): XdsStatus {
    const t = this.st.types;
    const types: XdsStatus['types'] = { cds: { ...t.cds }, eds: { ...t.eds }, lds: { ...t.lds } };
    if (t.address) types.address = { ...t.address };
    if (t.authorization) types.authorization = { ...t.authorization };
    return { ...this.st, types };
  }

  /** Initial load (errors are reported, not thrown: the source keeps watching), then watch. */
  start(): void {
    if (this.closed || this.st.state !== 'idle') return;
    this.st.state = 'connected';
    this.reload();
    if (this.opts.watch ?? true) {
      const file = path.resolve(this.opts.path);
      const base = path.basename(file);
      this.watcher = fs.watch(path.dirname(file), (_ev, name) => {
        if (name !== null && name !== base) return;
        this.schedule();
      });
      this.watcher.on('error', (e) => this.fail(`watch: ${e.message}`));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    this.st.state = 'closed';
    this.emit('state', { kind: 'closed' } satisfies XdsStateEvent);
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reload();
    }, this.opts.debounceMs ?? 100);
  }

  private fail(error: string): void {
    this.st.lastError = error;
    for (const k of ['cds', 'eds', 'lds'] as const) {
      this.st.types[k].nacks++;
      this.st.types[k].lastNackError = error;
      this.st.types[k].lastNackAt = new Date();
    }
    this.log.warn({ path: this.opts.path, error }, 'xds file: rejected; keeping last good snapshot');
    this.emit('state', { kind: 'error', path: this.opts.path, error } satisfies XdsStateEvent);
  }

  /** Re-read now. Returns true when a new snapshot was accepted (or the content is unchanged). */
  reload(): boolean {
    if (this.closed) return false;
    let text: string;
    try {
      text = fs.readFileSync(this.opts.path, 'utf8');
    } catch (e) {
      this.fail(`cannot read ${this.opts.path}: ${(e as Error).message}`);
      return false;
    }
    const digest = createHash('sha256').update(text).digest('hex');
    if (digest === this.lastDigest) return true;
    let result: ParseResult;
    try {
      result = snapshotFromDocument(parseText(text, this.opts.path), this.opts.path);
    } catch (e) {
      this.fail(e instanceof XdsParseError ? e.message : `${this.opts.path}: ${(e as Error).message}`);
      return false;
    }
    const veto = this.opts.validate?.(result.snapshot);
    if (veto !== undefined) {
      this.fail(`${this.opts.path}: rejected by validator: ${veto}`);
      return false;
    }
    this.lastDigest = digest;
    this.current = result.snapshot;
    delete this.st.lastError;
    const now = new Date();
    for (const k of ['cds', 'eds', 'lds'] as const) {
      const t = this.st.types[k];
      t.acks++;
      t.lastAckAt = now;
      const v = result.snapshot.versions[k];
      if (v !== undefined) t.lastAckVersion = v;
      t.resources = resourcesOf(result.snapshot, k).size;
    }
    if (isWdsSnapshot(result.snapshot)) {
      this.st.api = 'wds';
      for (const k of WDS_KIND_NAMES) {
        const t = (this.st.types[k] ??= emptyTypeStatus());
        t.acks++;
        t.lastAckAt = now;
        t.resources = resourcesOf(result.snapshot, k).size;
      }
    }
    if (result.ignored.length) this.log.debug({ ignored: result.ignored }, 'xds file: entries not used');
    this.emit('state', { kind: 'loaded', path: this.opts.path } satisfies XdsStateEvent);
    this.emit('snapshot', result.snapshot);
    return true;
  }
}
