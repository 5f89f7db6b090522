// proto3 JSON <-> protobuf, over protobufjs reflection, in the shape Envoy's
// config_dump prints: original (snake_case) field names, enums as names,
// 64-bit integers as strings, Duration/Timestamp as strings, wrappers
// unwrapped, Struct as plain JSON, every Any expanded with "@type" when its
// type is loaded and kept opaque ({"@type", "value": base64}) when it is not.
import protobuf from 'protobufjs';
import { ProtoJsonError } from '../errors.js';
import { lookupType } from './protos.js';
import type { Json, JsonObject } from './types.js';

const WRAPPERS = new Set([
  'google.protobuf.DoubleValue',
  'google.protobuf.FloatValue',
  'google.protobuf.Int64Value',
  'google.protobuf.UInt64Value',
  'google.protobuf.Int32Value',
  'google.protobuf.UInt32Value',
  'google.protobuf.BoolValue',
  'google.protobuf.StringValue',
  'google.protobuf.BytesValue',
]);

/** Types whose JSON form is not an object: inside an Any they go under "value". */
const SPECIAL = new Set([
  ...WRAPPERS,
  'google.protobuf.Duration',
  'google.protobuf.Timestamp',
  'google.protobuf.Struct',
  'google.protobuf.Value',
  'google.protobuf.ListValue',
  'google.protobuf.FieldMask',
]);

const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

function fullName(t: protobuf.Type): string {
  return t.fullName.startsWith('.') ? t.fullName.slice(1) : t.fullName;
}

type Msg = Record<string, unknown>;

function has(m: Msg, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(m, k) && m[k] !== null && m[k] !== undefined;
}

function longToString(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && 'low' in v && 'high' in v) {
    const l = v as { low: number; high: number; unsigned?: boolean };
    const u = (BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0);
    return (l.unsigned ? u : BigInt.asIntN(64, u)).toString();
  }
  return String(v);
}

function toNum(v: unknown): number {
  if (typeof v === 'number') return v;
  return Number(longToString(v));
}

function fracDigits(nanos: number): string {
  // C++ protobuf (Envoy) prints 0, 3, 6 or 9 fractional digits.
  if (nanos === 0) return '';
  if (nanos % 1_000_000 === 0) return '.' + String(nanos / 1_000_000).padStart(3, '0');
  if (nanos % 1_000 === 0) return '.' + String(nanos / 1_000).padStart(6, '0');
  return '.' + String(nanos).padStart(9, '0');
}

function durationToJson(m: Msg): string {
  const secs = BigInt(longToString(m.seconds ?? 0));
  const nanos = toNum(m.nanos ?? 0);
  const neg = secs < 0n || nanos < 0;
  const abs = (x: bigint): bigint => (x < 0n ? -x : x);
  return `${neg ? '-' : ''}${abs(secs)}${fracDigits(Math.abs(nanos))}s`;
}

function timestampToJson(m: Msg): string {
  const secs = Number(longToString(m.seconds ?? 0));
  const nanos = toNum(m.nanos ?? 0);
  const iso = new Date(secs * 1000).toISOString(); // 2020-01-01T00:00:00.000Z
  return iso.slice(0, 19) + fracDigits(nanos) + 'Z';
}

function floatToJson(v: number): Json {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  return v;
}

function bytesToBase64(v: unknown): string {
  if (typeof v === 'string') return v;
  const u = v as Uint8Array;
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('base64');
}

// protobufjs bundles google/protobuf/struct.proto with camelCase field names
// (nullValue, stringValue, ...) whatever keepCase says; accept both spellings.
function vk(m: Msg, snake: string): unknown {
  const c = camel(snake);
  if (has(m, c)) return m[c];
  if (has(m, snake)) return m[snake];
  return undefined;
}

function valueToJson(m: Msg, p: string): Json {
  let v: unknown;
  if (vk(m, 'null_value') !== undefined) return null;
  if ((v = vk(m, 'number_value')) !== undefined) return floatToJson(toNum(v));
  if ((v = vk(m, 'string_value')) !== undefined) return v as string;
  if ((v = vk(m, 'bool_value')) !== undefined) return v as boolean;
  if ((v = vk(m, 'struct_value')) !== undefined) return structToJson(v as Msg, p);
  if ((v = vk(m, 'list_value')) !== undefined) return listToJson(v as Msg, p);
  return null;
}

function structToJson(m: Msg, p: string): JsonObject {
  const out: JsonObject = {};
  const fields = (m.fields ?? {}) as Record<string, Msg>;
  for (const [k, v] of Object.entries(fields)) out[k] = valueToJson(v, `${p}.${k}`);
  return out;
}

function listToJson(m: Msg, p: string): Json[] {
  const vals = (m.values ?? []) as Msg[];
  return vals.map((v, i) => valueToJson(v, `${p}[${i}]`));
}

/** Convert an Any ({type_url, value}) to JSON. Throws ProtoJsonError if a known type does not decode. */
export function anyToJson(typeUrl: string, value: Uint8Array | undefined, p = ''): JsonObject {
  const bytes = value ?? new Uint8Array();
  const t = typeUrl ? lookupType(typeUrl) : undefined;
  if (!t) return bytes.length ? { '@type': typeUrl, value: bytesToBase64(bytes) } : { '@type': typeUrl };
  let decoded: Msg;
  try {
    decoded = t.decode(bytes) as unknown as Msg;
  } catch (e) {
    throw new ProtoJsonError(`cannot decode Any of type ${typeUrl}: ${(e as Error).message}`, p);
  }
  const inner = messageToJson(t, decoded, p);
  if (SPECIAL.has(fullName(t))) return { '@type': typeUrl, value: inner };
  return { '@type': typeUrl, ...(inner as JsonObject) };
}

function scalarToJson(field: protobuf.Field, v: unknown, p: string): Json {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) {
    const n = toNum(v);
    return rt.valuesById[n] ?? n;
  }
  if (rt instanceof protobuf.Type) return messageToJson(rt, v as Msg, p);
  switch (field.type) {
    case 'int64':
    case 'uint64':
    case 'sint64':
    case 'fixed64':
    case 'sfixed64':
      return longToString(v);
    case 'double':
    case 'float':
      return floatToJson(toNum(v));
    case 'bytes':
      return bytesToBase64(v);
    case 'bool':
      return Boolean(v);
    case 'string':
      return String(v);
    default:
      return toNum(v);
  }
}

function isDefault(field: protobuf.Field, v: unknown): boolean {
  if (v === null || v === undefined) return true;
  if (field.resolvedType instanceof protobuf.Type) return false;
  if (field.resolvedType instanceof protobuf.Enum) return toNum(v) === 0;
  switch (field.type) {
    case 'string':
      return v === '';
    case 'bool':
      return v === false;
    case 'bytes':
      return (v as Uint8Array).length === 0;
    default:
      return longToString(v) === '0';
  }
}

/** Convert a decoded protobufjs message to proto3 JSON (snake_case). */
export function messageToJson(type: protobuf.Type, m: Msg, p = ''): Json {
  const name = fullName(type);
  switch (name) {
    case 'google.protobuf.Any':
      return anyToJson((m.type_url as string) ?? '', m.value as Uint8Array | undefined, p);
    case 'google.protobuf.Duration':
      return durationToJson(m);
    case 'google.protobuf.Timestamp':
      return timestampToJson(m);
    case 'google.protobuf.Struct':
      return structToJson(m, p);
    case 'google.protobuf.Value':
      return valueToJson(m, p);
    case 'google.protobuf.ListValue':
      return listToJson(m, p);
    case 'google.protobuf.FieldMask':
      return ((m.paths ?? []) as string[]).join(',');
    case 'google.protobuf.Empty':
      return {};
  }
  if (WRAPPERS.has(name)) {
    const f = type.fields.value;
    return f ? scalarToJson(f, m.value ?? f.typeDefault, p) : null;
  }
  const out: JsonObject = {};
  for (const field of type.fieldsArray) {
    const k = field.name;
    if (!Object.prototype.hasOwnProperty.call(m, k)) continue;
    const v = m[k];
    const fp = p ? `${p}.${k}` : k;
    if (field.map) {
      const entries = Object.entries((v ?? {}) as Record<string, unknown>);
      if (!entries.length) continue;
      const o: JsonObject = {};
      for (const [mk, mv] of entries) o[mk] = scalarToJson(field, mv, `${fp}.${mk}`);
      out[k] = o;
    } else if (field.repeated) {
      const arr = (v ?? []) as unknown[];
      if (!arr.length) continue;
      out[k] = arr.map((x, i) => scalarToJson(field, x, `${fp}[${i}]`));
    } else {
      // oneof members and proto3 `optional` have presence: print even when default
      const presence = !!field.partOf || !!field.options?.proto3_optional;
      if (v === null || v === undefined) continue;
      if (!presence && isDefault(field, v)) continue;
      out[k] = scalarToJson(field, v, fp);
    }
  }
  return out;
}

/** Decode bytes of `type` straight to JSON. */
export function decodeToJson(type: protobuf.Type, bytes: Uint8Array, p = ''): JsonObject {
  let m: Msg;
  try {
    m = type.decode(bytes) as unknown as Msg;
  } catch (e) {
    throw new ProtoJsonError(`cannot decode ${fullName(type)}: ${(e as Error).message}`, p);
  }
  return messageToJson(type, m, p) as JsonObject;
}

// ---------------------------------------------------------------------------
// JSON -> message (plain object ready for Type.encode). Used to serve
// resources (tests, tools) and to re-encode config_dump resources.

function parseDuration(s: string, p: string): Msg {
  const mt = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(s);
  if (!mt) throw new ProtoJsonError(`bad duration ${JSON.stringify(s)}`, p);
  const sign = mt[1] ? -1 : 1;
  const nanos = mt[3] ? Number(mt[3].padEnd(9, '0')) : 0;
  return { seconds: (mt[1] ?? '') + (mt[2] ?? '0'), nanos: sign * nanos };
}

function parseTimestamp(s: string, p: string): Msg {
  const d = Date.parse(s);
  if (Number.isNaN(d)) throw new ProtoJsonError(`bad timestamp ${JSON.stringify(s)}`, p);
  const frac = /\.(\d{1,9})/.exec(s);
  const nanos = frac?.[1] ? Number(frac[1].padEnd(9, '0')) : 0;
  return { seconds: Math.floor(d / 1000), nanos };
}

function jsonToValue(v: Json): Msg {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(jsonToValue) } };
  return { structValue: jsonToStruct(v) };
}

function jsonToStruct(o: JsonObject): Msg {
  const fields: Record<string, Msg> = {};
  for (const [k, v] of Object.entries(o)) fields[k] = jsonToValue(v);
  return { fields };
}

/** Encode an Any from its JSON form. Unknown types need {"@type", "value": base64}. */
export function jsonToAny(j: JsonObject, p = ''): { type_url: string; value: Uint8Array } {
  const url = j['@type'];
  if (typeof url !== 'string') throw new ProtoJsonError('Any without "@type"', p);
  const t = lookupType(url);
  if (!t) {
    const v = j.value;
    if (v === undefined) return { type_url: url, value: new Uint8Array() };
    if (typeof v === 'string' && Object.keys(j).length === 2) return { type_url: url, value: Buffer.from(v, 'base64') };
    throw new ProtoJsonError(`cannot encode Any of unknown type ${url}`, p);
  }
  let body: Json;
  if (SPECIAL.has(fullName(t))) body = j.value ?? null;
  else {
    const { '@type': _drop, ...rest } = j;
    body = rest;
  }
  const msg = jsonToMessage(t, body, p);
  return { type_url: url, value: t.encode(msg as never).finish() };
}

function jsonToScalar(field: protobuf.Field, v: Json, p: string): unknown {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) {
    if (typeof v === 'number') return v;
    if (typeof v === 'string' && v in rt.values) return rt.values[v];
    throw new ProtoJsonError(`bad enum value ${JSON.stringify(v)} for ${rt.name}`, p);
  }
  if (rt instanceof protobuf.Type) return jsonToMessage(rt, v, p);
  switch (field.type) {
    case 'string':
      if (typeof v !== 'string') throw new ProtoJsonError(`expected string`, p);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw new ProtoJsonError(`expected bool`, p);
      return v;
    case 'bytes':
      if (typeof v !== 'string') throw new ProtoJsonError(`expected base64 string`, p);
      return Buffer.from(v, 'base64');
    case 'double':
    case 'float':
      if (v === 'NaN') return NaN;
      if (v === 'Infinity') return Infinity;
      if (v === '-Infinity') return -Infinity;
      return Number(v);
    default:
      if (typeof v !== 'number' && typeof v !== 'string') throw new ProtoJsonError(`expected number`, p);
      if (LONG_TYPES.has(field.type)) return String(v);
      return Number(v);
  }
}

/** JSON (snake_case or lowerCamelCase keys) -> plain message object for `type.encode`. */
export function jsonToMessage(type: protobuf.Type, j: Json, p = ''): Msg {
  const name = fullName(type);
  switch (name) {
    case 'google.protobuf.Any':
      return jsonToAny(j as JsonObject, p);
    case 'google.protobuf.Duration':
      return parseDuration(String(j), p);
    case 'google.protobuf.Timestamp':
      return parseTimestamp(String(j), p);
    case 'google.protobuf.Struct':
      return jsonToStruct(j as JsonObject);
    case 'google.protobuf.Value':
      return jsonToValue(j);
    case 'google.protobuf.ListValue':
      return { values: (j as Json[]).map(jsonToValue) };
    case 'google.protobuf.FieldMask':
      return { paths: String(j).split(',').filter(Boolean) };
  }
  if (WRAPPERS.has(name)) {
    const f = type.fields.value;
    return f ? { value: jsonToScalar(f, j, p) } : {};
  }
  if (j === null || typeof j !== 'object' || Array.isArray(j)) throw new ProtoJsonError(`expected object for ${name}`, p);
  const out: Msg = {};
  for (const [k, v] of Object.entries(j)) {
    const field = type.fields[k] ?? type.fieldsArray.find((f) => camel(f.name) === k);
    const fp = p ? `${p}.${k}` : k;
    if (!field) throw new ProtoJsonError(`unknown field ${k} in ${name}`, fp);
    if (v === null) continue;
    if (field.map) {
      const o: Record<string, unknown> = {};
      for (const [mk, mv] of Object.entries(v as JsonObject)) o[mk] = jsonToScalar(field, mv, `${fp}.${mk}`);
      out[field.name] = o;
    } else if (field.repeated) {
      if (!Array.isArray(v)) throw new ProtoJsonError('expected array', fp);
      out[field.name] = v.map((x, i) => jsonToScalar(field, x, `${fp}[${i}]`));
    } else {
      out[field.name] = jsonToScalar(field, v, fp);
    }
  }
  return out;
}

function camel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** Encode JSON of `type` to bytes. */
export function encodeJson(type: protobuf.Type, j: Json): Uint8Array {
  return type.encode(jsonToMessage(type, j) as never).finish();
}
