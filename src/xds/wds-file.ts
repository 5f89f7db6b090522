// WDS as a file: a resource list of istio.workload.Address and
// istio.security.Authorization in proto3 JSON ({"resources": [...]} or a bare
// list; each item an Any: "@type" plus the message's fields, bytes in base64).
// Every item goes through the real protos (JSON -> wire -> JSON), so a file is
// checked exactly like a Delta response: field names, types, then the same
// validators, and it lands in the same snapshot shape.
import { ProtoJsonError, XdsParseError } from '../errors.js';
import { jsonToAny } from './json.js';
import { kindOfType, KINDS, resourcesOf, WDS_KIND_NAMES } from './kinds.js';
import { canonical, decodeAndValidate, type RawAny } from './state.js';
import { isObject } from './validate.js';
import { emptySnapshot, type Json, type WdsKind, type XdsSnapshot } from './types.js';

function items(doc: Json): Json[] | undefined {
  if (Array.isArray(doc)) return doc;
  if (isObject(doc) && Array.isArray(doc.resources)) return doc.resources;
  return undefined;
}

function isWdsType(t: Json | undefined): boolean {
  const k = kindOfType(t);
  return k !== undefined && KINDS[k].api === 'wds';
}

/** A resource list with at least one WDS item (the file source then reads it as WDS). */
export function isWdsDocument(doc: Json): boolean {
  return (items(doc) ?? []).some((r) => isObject(r) && isWdsType(r['@type']));
}

/** Parse a WDS resource list into a snapshot. Throws XdsParseError listing every bad item. */
export function wdsSnapshotFromDocument(doc: Json, source = '<input>'): { snapshot: XdsSnapshot; ignored: string[]; ignoredCount: number } {
  const list = items(doc) ?? [];
  const errors: string[] = [];
  const byKind: Record<WdsKind, { any: RawAny }[]> = { address: [], authorization: [] };
  const where: Record<WdsKind, string[]> = { address: [], authorization: [] };
  list.forEach((r, i) => {
    const w = `resources[${i}]`;
    if (!isObject(r)) return void errors.push(`${w}: not an object`);
    const t = r['@type'];
    const k = kindOfType(t);
    if (k !== 'address' && k !== 'authorization') return void errors.push(`${w}: ${JSON.stringify(t ?? null)} in a WDS resource list (only Address and Authorization)`);
    try {
      byKind[k].push({ any: jsonToAny(r) });
      where[k].push(w);
    } catch (e) {
      if (e instanceof ProtoJsonError) return void errors.push(`${w}: ${e.message}`);
      throw e;
    }
  });
  const snap = emptySnapshot('wds');
  for (const k of WDS_KIND_NAMES) {
    const v = decodeAndValidate(k, byKind[k]);
    // reasons say "Address #3": say which list entry that was
    errors.push(...v.errors.map((e) => e.replace(/#(\d+)/, (m, n: string) => `${m} (${where[k][Number(n)] ?? '?'})`)));
    const m = resourcesOf(snap, k);
    for (const [name, res] of v.ok) m.set(name, res);
  }
  if (errors.length) throw new XdsParseError(errors.map((e) => `${source}: ${e}`));
  return { snapshot: canonical(snap), ignored: [], ignoredCount: 0 };
}
