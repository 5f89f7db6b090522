// Tiny, allocation-free accessors over proto3-JSON resources. The compiler is
// tolerant (a malformed field reads as absent); validate() reports the same
// problems as NACK reasons through the `Problems` sink.
import type { Json, JsonObject } from '../xds/types.js';

export function obj(v: Json | undefined): JsonObject | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
}

export function arr(v: Json | undefined): Json[] {
  return Array.isArray(v) ? v : EMPTY;
}
const EMPTY: Json[] = [];

export function str(v: Json | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** proto3-JSON numbers may be printed as strings (64-bit ints); accept both. */
export function num(v: Json | undefined): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) return Number(v);
  return undefined;
}

/** Follow a path of object keys. */
export function path(v: Json | undefined, ...keys: string[]): Json | undefined {
  let cur: Json | undefined = v;
  for (const k of keys) {
    const o = obj(cur);
    if (!o) return undefined;
    cur = o[k];
  }
  return cur;
}

/** Collects the first structural problems met while walking resources (for NACKs). */
export class Problems {
  readonly list: string[] = [];
  add(msg: string): void {
    if (this.list.length < 20) this.list.push(msg);
  }
}
