// Pure state transitions shared by SotW, Delta and the file source: decode a
// response's resources, validate them, and compute the next snapshot. Nothing
// here mutates its inputs, so "keep the last good state" is just "do not
// assign the candidate".
import { ProtoJsonError } from '../errors.js';
import { anyToJson } from './json.js';
import { lookupType } from './protos.js';
import { unknownFields } from './unknown.js';
import { edsNames } from './validate.js';
import { KINDS, label, resourcesOf, validateSet } from './kinds.js';
import type { JsonObject, XdsKind, XdsSnapshot, XdsStatus } from './types.js';

/** Key of the list of unknown wire fields on a decoded WDS resource (not a proto field). */
export const UNKNOWN_FIELDS = '@unknown_fields';

const TYPE_RESOURCE_WRAPPER = 'type.googleapis.com/envoy.service.discovery.v3.Resource';

export interface RawAny {
  type_url?: string;
  value?: Uint8Array;
}

export interface DecodedItem {
  res: JsonObject;
  index: number;
  /** name claimed by the transport (Delta Resource.name); must match the resource's own */
  name?: string;
}

/** Decode one Any carrying a resource of `kind`. Returns the JSON or a reason. */
export function decodeResourceAny(kind: XdsKind, any: RawAny, index: number): JsonObject | string {
  const url = any.type_url ?? '';
  const expect = KINDS[kind].typeUrl;
  if (url === TYPE_RESOURCE_WRAPPER) return `${label(kind, undefined, index)}: wrapped Resource not supported in SotW`;
  if (url !== expect) return `${label(kind, undefined, index)}: type ${url || '(none)'} in a ${expect} response`;
  try {
    const j = anyToJson(url, any.value, '');
    const { '@type': _t, ...body } = j;
    if (KINDS[kind].api === 'wds') {
      // fields newer than our protos: kept as paths, so the compiler can refuse to bypass
      const t = lookupType(url);
      const unknown = t ? unknownFields(t, any.value ?? new Uint8Array()) : [];
      if (unknown.length) body[UNKNOWN_FIELDS] = unknown;
    }
    return body;
  } catch (e) {
    if (e instanceof ProtoJsonError) return `${label(kind, shallowName(kind, any), index)}: unparseable: ${e.message}`;
    throw e;
  }
}

// When a nested Any does not decode, the outer message usually still does
// (protobufjs leaves Any bytes alone): read its name so the reason names it.
function shallowName(kind: XdsKind, any: RawAny): JsonObject | undefined {
  try {
    const { typeUrl, nameField } = KINDS[kind];
    if (nameField === undefined) return undefined;
    const t = lookupType(typeUrl);
    const m = t?.decode(any.value ?? new Uint8Array()) as unknown as Record<string, unknown> | undefined;
    const n = m?.[nameField];
    if (typeof n === 'string' && n) return { [nameField]: n };
  } catch {
    // fall through: the outer message itself is unparseable
  }
  return undefined;
}

/**
 * Decode and validate a list of Anys. Nested Anys that fail to decode make the
 * resource invalid (reason names the resource and the path); unknown nested
 * types stay opaque. Returns keyed resources or all reasons.
 */
export function decodeAndValidate(kind: XdsKind, items: { any: RawAny; name?: string }[]): { ok: Map<string, JsonObject>; errors: string[] } {
  const decoded: DecodedItem[] = [];
  const errors: string[] = [];
  items.forEach(({ any, name }, index) => {
    let r: JsonObject | string;
    try {
      r = decodeResourceAny(kind, any, index);
    } catch (e) {
      r = `${label(kind, undefined, index)}: ${(e as Error).message}`;
    }
    if (typeof r === 'string') {
      // name the resource if the transport told us its name
      errors.push(name ? r.replace(/#\d+ \(no name\)/, JSON.stringify(name)) : r);
      return;
    }
    const d: DecodedItem = { res: r, index };
    if (name !== undefined) d.name = name;
    decoded.push(d);
  });
  const v = validateSet(kind, decoded);
  return { ok: v.ok, errors: [...errors, ...v.errors] };
}

function sorted<V>(m: Map<string, V>): Map<string, V> {
  return new Map([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Maps in key order, so two snapshots of the same resources are deep-equal whatever order they arrived in. */
export function canonical(s: XdsSnapshot): XdsSnapshot {
  const c: XdsSnapshot = { clusters: sorted(s.clusters), endpoints: sorted(s.endpoints), listeners: sorted(s.listeners), versions: s.versions };
  if (s.addresses) c.addresses = sorted(s.addresses);
  if (s.authorizations) c.authorizations = sorted(s.authorizations);
  return c;
}

function copy(s: XdsSnapshot): XdsSnapshot {
  const c: XdsSnapshot = {
    clusters: new Map(s.clusters),
    endpoints: new Map(s.endpoints),
    listeners: new Map(s.listeners),
    versions: { ...s.versions },
  };
  if (s.addresses) c.addresses = new Map(s.addresses);
  if (s.authorizations) c.authorizations = new Map(s.authorizations);
  return c;
}

/** Endpoints whose EDS name is no longer referenced by any EDS cluster are dropped. */
function prune(s: XdsSnapshot): void {
  const names = edsNames(s.clusters.values());
  for (const k of [...s.endpoints.keys()]) if (!names.has(k)) s.endpoints.delete(k);
}

function setVersion(s: XdsSnapshot, kind: XdsKind, version: string | undefined): void {
  if (version === undefined) return;
  s.versions[kind] = version;
}

/**
 * State of the world: CDS and LDS responses are full sets (absent => deleted;
 * a removed EDS cluster takes its endpoints along). EDS responses may carry a
 * subset: present entries replace, absent ones stay while still subscribed.
 */
export function applySotw(prev: XdsSnapshot, kind: XdsKind, resources: Map<string, JsonObject>, version: string, subscribedEds?: Set<string>): XdsSnapshot {
  const s = copy(prev);
  const d = KINDS[kind];
  if (d.byName) {
    const wanted = subscribedEds ?? edsNames(s.clusters.values());
    for (const [k, v] of resources) if (wanted.has(k)) s.endpoints.set(k, v);
  } else {
    const m = resourcesOf(s, kind);
    m.clear();
    for (const [k, v] of resources) m.set(k, v);
  }
  if (d.prunesEndpoints) prune(s);
  setVersion(s, kind, version);
  return canonical(s);
}

/** Delta: upserts and removals; a removed (or changed-away) EDS cluster takes its endpoints along. */
export function applyDelta(prev: XdsSnapshot, kind: XdsKind, upserts: Map<string, JsonObject>, removals: string[], version: string | undefined): XdsSnapshot {
  const s = copy(prev);
  const m = resourcesOf(s, kind);
  for (const r of removals) m.delete(r);
  for (const [k, v] of upserts) m.set(k, v);
  if (KINDS[kind].prunesEndpoints) prune(s);
  setVersion(s, kind, version);
  return canonical(s);
}

/** Structural equality of two snapshots' resources (versions ignored). */
export function sameResources(a: XdsSnapshot, b: XdsSnapshot): boolean {
  for (const k of ['clusters', 'endpoints', 'listeners', 'addresses', 'authorizations'] as const) {
    const x = a[k] ?? new Map<string, JsonObject>();
    const y = b[k] ?? new Map<string, JsonObject>();
    if (x.size !== y.size) return false;
    for (const [n, v] of x) {
      const w = y.get(n);
      if (w === undefined) return false;
      if (w !== v && JSON.stringify(w) !== JSON.stringify(v)) return false;
    }
  }
  return true;
}

/** A copy of a source's status for readers (every per-type entry copied, so later updates do not show through). */
export function copyStatus(st: XdsStatus): XdsStatus {
  const t = st.types;
  const types: XdsStatus['types'] = { cds: { ...t.cds }, eds: { ...t.eds }, lds: { ...t.lds } };
  if (t.address) types.address = { ...t.address };
  if (t.authorization) types.authorization = { ...t.authorization };
  return { ...st, types };
}
