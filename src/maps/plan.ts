// The sync plan: desired state vs kernel maps, diffed on encoded bytes (no
// decode of what is in the kernel), applied in an order where no connection can see a verdict
// that neither the old nor the new state gives it:
//
//   1. policy entries that NARROW (BYPASS entries going away, then new PROXY
//      verdicts) and PROXY entries going away (proxy and none are both the
//      normal path; removing them first keeps the map's peak at its final size)
//   2. endpoint upserts         (adds before removes: with LPM prefixes, a new
//   3. endpoint deletes          /32 lands before the /24 it replaces goes)
//   4. policy entries that WIDEN (new or changed BYPASS verdicts)
//
// This file is the pure half: encoding and diffing, no syscalls (sync.ts
// applies the plan, in batches where the kernel and map type allow).
import type { DesiredState, EndpointEntry, EntrySink, PolicyEntry, ServiceEntry } from '../policy/types.js';
import { backendKey, backendValue, serviceValue, type ServiceValue, endpointKey, endpointValue, policyKey, policyValue, verdictCode } from './codecs.js';

/** Encoded entries read from the kernel: key bytes (latin1 string, exact) -> value bytes. */
export type RawEntries = Map<string, string>;

/**
 * Desired entries, packed back to back exactly as the kernel wants them for a
 * batch update, plus a hash index over the key bytes (an Int32Array, not a
 * string per key: 190k keys held 30 MiB as strings). A full sync passes these
 * buffers to the kernel as they are.
 */
export class PackedEntries {
  private keyBuf: Buffer;
  private valBuf: Buffer;
  private n = 0;
  /** open addressing: position + 1 of the entry whose key hashes there, 0 = free; size a power of two, at most half full */
  private table: Int32Array;
  constructor(
    readonly ks: number,
    readonly vs: number,
    capacity: number,
  ) {
    this.keyBuf = Buffer.alloc(ks * Math.max(1, capacity));
    this.valBuf = Buffer.alloc(vs * Math.max(1, capacity));
    this.table = new Int32Array(tableSize(capacity));
  }
  get size(): number {
    return this.n;
  }
  get keys(): Buffer {
    return this.keyBuf.subarray(0, this.n * this.ks);
  }
  get values(): Buffer {
    return this.valBuf.subarray(0, this.n * this.vs);
  }
  keyAt(i: number): string {
    return this.keyBuf.toString('latin1', i * this.ks, (i + 1) * this.ks);
  }
  valueAt(i: number): string {
    return this.valBuf.toString('latin1', i * this.vs, (i + 1) * this.vs);
  }
  /** Is entry i's value these bytes (latin1)? Compares without making a string. */
  valueIs(i: number, v: string): boolean {
    const vs = this.vs;
    if (v.length !== vs) return false;
    const b = this.valBuf;
    const o = i * vs;
    for (let j = 0; j < vs; j++) if (b[o + j] !== v.charCodeAt(j)) return false;
    return true;
  }
  /** Position of the entry whose key is these bytes (latin1), or -1. */
  find(key: string): number {
    const ks = this.ks;
    if (key.length !== ks) return -1;
    let h = 0x811c9dc5;
    for (let j = 0; j < ks; j++) h = Math.imul(h ^ key.charCodeAt(j), 0x01000193);
    const mask = this.table.length - 1;
    const b = this.keyBuf;
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      const e = this.table[slot]!;
      if (e === 0) return -1;
      const o = (e - 1) * ks;
      let j = 0;
      while (j < ks && b[o + j] === key.charCodeAt(j)) j++;
      if (j === ks) return e - 1;
    }
  }
  has(key: string): boolean {
    return this.find(key) >= 0;
  }
  /**
   * Append (or, for a key already present, let `keep(old, new)` decide). Encoders
   * write into the given buffers at the offsets. Same as begin(), writing, commit().
   */
  put(encodeKey: (b: Buffer, o: number) => void, encodeValue: (b: Buffer, o: number) => void, keep?: (oldVal: string, newVal: string) => boolean): void {
    const i = this.begin();
    encodeKey(this.keyBuf, i * this.ks);
    encodeValue(this.valBuf, i * this.vs);
    this.commit(keep);
  }
  /** The position the next entry is written at (room made): write its key at keyBuffer[i*ks], its value at valueBuffer[i*vs], then commit(). */
  begin(): number {
    if (this.n * this.ks >= this.keyBuf.length) this.grow();
    return this.n;
  }
  get keyBuffer(): Buffer {
    return this.keyBuf;
  }
  get valueBuffer(): Buffer {
    return this.valBuf;
  }
  /** Take the entry written at begin()'s position; for a key already present, let `keep(old, new)` decide (default: the new value). */
  commit(keep?: (oldVal: string, newVal: string) => boolean): void {
    const i = this.n;
    const ks = this.ks;
    const b = this.keyBuf;
    const o = i * ks;
    let h = 0x811c9dc5;
    for (let j = 0; j < ks; j++) h = Math.imul(h ^ b[o + j]!, 0x01000193);
    const mask = this.table.length - 1;
    let slot = h & mask;
    for (; ; slot = (slot + 1) & mask) {
      const e = this.table[slot]!;
      if (e === 0) break;
      const p = (e - 1) * ks;
      if (b.compare(b, o, o + ks, p, p + ks) === 0) {
        const prev = e - 1;
        if (!keep || keep(this.valueAt(prev), this.valueAt(i))) this.valBuf.copy(this.valBuf, prev * this.vs, i * this.vs, (i + 1) * this.vs);
        return;
      }
    }
    this.table[slot] = i + 1;
    this.n++;
    if (this.n * 2 > this.table.length) this.rehash();
  }
  /** Add packed entries (same sizes) in their order, each as commit(keep) takes it. */
  append(from: { keys: Buffer; values: Buffer; size: number }, keep?: (oldVal: string, newVal: string) => boolean): void {
    const { ks, vs } = this;
    for (let j = 0; j < from.size; j++) {
      const i = this.begin();
      from.keys.copy(this.keyBuf, i * ks, j * ks, (j + 1) * ks);
      from.values.copy(this.valBuf, i * vs, j * vs, (j + 1) * vs);
      this.commit(keep);
    }
  }
  private rehash(): void {
    const t = new Int32Array(this.table.length * 2);
    const mask = t.length - 1;
    const ks = this.ks;
    const b = this.keyBuf;
    for (let i = 0; i < this.n; i++) {
      const o = i * ks;
      let h = 0x811c9dc5;
      for (let j = 0; j < ks; j++) h = Math.imul(h ^ b[o + j]!, 0x01000193);
      let slot = h & mask;
      while (t[slot] !== 0) slot = (slot + 1) & mask;
      t[slot] = i + 1;
    }
    this.table = t;
  }
  private grow(): void {
    const k = Buffer.alloc(this.keyBuf.length * 2);
    const v = Buffer.alloc(this.valBuf.length * 2);
    this.keyBuf.copy(k);
    this.valBuf.copy(v);
    this.keyBuf = k;
    this.valBuf = v;
  }
}

/** A power of two at least twice the capacity (so the table starts at most half full). */
function tableSize(capacity: number): number {
  let n = 16;
  while (n < capacity * 2) n *= 2;
  return n;
}

export interface EncodedState {
  endpoints: PackedEntries;
  policy: PackedEntries;
  /** services and backends as applied (ids depend on the kernel's state: set by syncMaps) */
  services?: ServiceCurrent;
}

export interface CurrentState {
  endpoints: RawEntries;
  policy: RawEntries;
  services?: ServiceCurrent;
}

/** Upserts are positions in the desired PackedEntries; deletes are key bytes. */
export interface SyncPlan {
  policyNarrow: { upserts: number[]; deletes: string[] };
  endpointUpserts: number[];
  endpointDeletes: string[];
  policyWiden: { upserts: number[]; deletes: string[] };
}

export interface SyncCounts {
  endpoints: { added: number; changed: number; removed: number; unchanged: number };
  policies: { added: number; changed: number; removed: number; unchanged: number };
}

const BYPASS = verdictCode('bypass');

/** How many entries an encoder was given (before duplicate keys merge), by kind and verdict. */
export interface EntryCounts {
  endpoints: number;
  policies: number;
  bypass: number;
  proxy: number;
}

/**
 * Entries packed back to back as they come, with no key index and duplicates
 * kept: what DesiredEncoder gathers while the compiler runs (an index then
 * would be held beside the compiler's working state: a large sync's peak).
 */
class EntryLog {
  keys: Buffer;
  values: Buffer;
  size = 0;
  constructor(
    readonly ks: number,
    readonly vs: number,
  ) {
    this.keys = Buffer.alloc(ks * 1024);
    this.values = Buffer.alloc(vs * 1024);
  }
  /** Room for `capacity` entries in all (room not written to is never touched: zero-filled on demand). */
  reserve(capacity: number): void {
    if (capacity * this.ks <= this.keys.length) return;
    const k = Buffer.alloc(capacity * this.ks);
    const v = Buffer.alloc(capacity * this.vs);
    this.keys.copy(k, 0, 0, this.size * this.ks);
    this.values.copy(v, 0, 0, this.size * this.vs);
    this.keys = k;
    this.values = v;
  }
  /** The position the next entry is written at (room made); counted once written. */
  next(): number {
    if ((this.size + 1) * this.ks > this.keys.length) this.reserve(this.size * 2 + 1);
    return this.size++;
  }
}

/**
 * Encodes entries as they come (the compiler's EntrySink) into the exact bytes
 * the kernel maps will hold: a large sync never keeps an object per entry (the
 * compiled lists were 40 MiB for a 50 MiB snapshot). done() indexes them and
 * merges duplicate keys exactly as encodeDesired() does (it runs through this).
 */
export class DesiredEncoder implements EntrySink {
  readonly entries: EntryCounts = { endpoints: 0, policies: 0, bypass: 0, proxy: 0 };
  private readonly eps = new EntryLog(endpointKey.size, endpointValue.size);
  private readonly other = new EntryLog(policyKey.size, policyValue.size);
  private readonly bypass = new EntryLog(policyKey.size, policyValue.size);
  expect(endpoints: number, policies: number): void {
    this.eps.reserve(endpoints);
    // either verdict may be all of them
    this.other.reserve(policies);
    this.bypass.reserve(policies);
  }
  endpoint(e: EndpointEntry): void {
    this.entries.endpoints++;
    const l = this.eps;
    const i = l.next();
    endpointKey.encode(l.keys, i * l.ks, e.cidr);
    endpointValue.encode(l.values, i * l.vs, e);
  }
  policy(e: PolicyEntry): void {
    this.entries.policies++;
    if (e.verdict === 'bypass') this.entries.bypass++;
    else if (e.verdict === 'proxy') this.entries.proxy++;
    const l = e.verdict === 'bypass' ? this.bypass : this.other;
    const i = l.next();
    policyKey.encode(l.keys, i * l.ks, e);
    policyValue.encode(l.values, i * l.vs, e);
  }
  /** The encoded state; the encoder is not to be used after. */
  done(): EncodedState {
    const endpoints = new PackedEntries(endpointKey.size, endpointValue.size, this.eps.size);
    endpoints.append(this.eps); // one key twice: the later value
    // Non-bypass verdicts first, then bypass: on a full sync each apply phase
    // (narrow, widen) is then one contiguous run handed to the kernel as is.
    // Two entries for one ip:port: PROXY wins (never widen on a conflict).
    const policy = new PackedEntries(policyKey.size, policyValue.size, this.other.size + this.bypass.size);
    policy.append(this.other, keepProxy);
    policy.append(this.bypass, keepProxy);
    return { endpoints, policy };
  }
}

/** Encode a desired state into the exact bytes the kernel maps will hold. Pure. */
export function encodeDesired(d: DesiredState): EncodedState {
  const enc = new DesiredEncoder();
  enc.expect(d.endpoints.length, d.policies.length);
  for (const e of d.endpoints) enc.endpoint(e);
  for (const p of d.policies) enc.policy(p);
  return enc.done();
}

const keepProxy = (oldVal: string): boolean => isBypass(oldVal);

/** The state a desired state leaves in the kernel, as read-back entries (for the next diff). */
export function asCurrent(e: EncodedState): CurrentState {
  const conv = (p: PackedEntries): RawEntries => {
    const m: RawEntries = new Map();
    for (let i = 0; i < p.size; i++) m.set(p.keyAt(i), p.valueAt(i));
    return m;
  };
  return { endpoints: conv(e.endpoints), policy: conv(e.policy), ...(e.services ? { services: { services: new Map(e.services.services), backends: new Map(e.services.backends) } } : {}) };
}

function isBypass(value: string | undefined): boolean {
  // verdict is the first u32 (little-endian) of the value; BYPASS = 1
  return value !== undefined && value.charCodeAt(0) === BYPASS && value.charCodeAt(1) === 0 && value.charCodeAt(2) === 0 && value.charCodeAt(3) === 0;
}

/** Diff desired against current. Pure. */
export function planSync(desired: EncodedState, current: CurrentState): { plan: SyncPlan; counts: SyncCounts } {
  const plan: SyncPlan = { policyNarrow: { upserts: [], deletes: [] }, endpointUpserts: [], endpointDeletes: [], policyWiden: { upserts: [], deletes: [] } };
  const counts: SyncCounts = {
    endpoints: { added: 0, changed: 0, removed: 0, unchanged: 0 },
    policies: { added: 0, changed: 0, removed: 0, unchanged: 0 },
  };
  const de = desired.endpoints;
  // Positions in order; a key string only when there is something to look it up in (not on a first sync).
  const curE = current.endpoints;
  for (let i = 0; i < de.size; i++) {
    const cur = curE.size ? curE.get(de.keyAt(i)) : undefined;
    if (cur === undefined) {
      counts.endpoints.added++;
      plan.endpointUpserts.push(i);
    } else if (!de.valueIs(i, cur)) {
      counts.endpoints.changed++;
      plan.endpointUpserts.push(i);
    } else counts.endpoints.unchanged++;
  }
  for (const k of curE.keys()) {
    if (!de.has(k)) {
      plan.endpointDeletes.push(k);
      counts.endpoints.removed++;
    }
  }
  const dp = desired.policy;
  const curP = current.policy;
  for (let i = 0; i < dp.size; i++) {
    const cur = curP.size ? curP.get(dp.keyAt(i)) : undefined;
    if (cur !== undefined && dp.valueIs(i, cur)) {
      counts.policies.unchanged++;
      continue;
    }
    if (cur === undefined) counts.policies.added++;
    else counts.policies.changed++;
    // A change to a non-bypass verdict narrows; a change to bypass widens.
    (dp.valueBuffer[i * dp.vs] === BYPASS && isBypass(dp.valueAt(i)) ? plan.policyWiden : plan.policyNarrow).upserts.push(i);
  }
  for (const [k, cur] of curP) {
    if (dp.has(k)) continue;
    counts.policies.removed++;
    // Removing a BYPASS narrows (do it first); removing a PROXY entry only
    // turns "proxy" into "unknown", both the normal path: do it last.
    (isBypass(cur) ? plan.policyNarrow : plan.policyWiden).deletes.push(k);
  }
  return { plan, counts };
}

// ---- service VIPs: mb_services + mb_backends ----
//
// A connect reads a service's {id, count}, picks slot = random % count, then
// reads mb_backends[{id, slot}]. Every slot below the count a connect can read
// must hold a backend at every instant (Kmesh #1042: a count written before
// its backend sends connects to a backend that is not there). So, around the
// endpoint/policy phases above:
//
//   S1 (with policy narrow)  services deleted, or losing BYPASS
//   S2 (before endpoints)    backend upserts: new slots above the live count
//                            (invisible until S3), changed slots in place
//                            (a connect reads the old or the new backend)
//   S3 (after policy widen)  the other service upserts: new services, count
//                            changes (growth after S2 wrote the slots; a
//                            shrink before S4 deletes them), gaining BYPASS
//   S4 (last)                backend deletes: slots at or above the new count
//
// Service ids are stable: an existing VIP:port keeps its id; a new one takes
// the lowest id that neither the kernel (services or stray backends) nor this
// plan uses, so a deleted service's backends are never mistaken for a new one's.
export interface ServiceCurrent {
  services: RawEntries;
  backends: RawEntries;
}

export interface ServicePlan {
  /** S1..S4: key bytes -> value bytes (upserts) or key bytes (deletes) */
  narrow: { upserts: Array<[string, string]>; deletes: string[] };
  backendUpserts: Array<[string, string]>;
  widen: Array<[string, string]>;
  backendDeletes: string[];
  /** what the maps hold once applied (for the next diff) */
  after: ServiceCurrent;
}

export interface ServiceCounts {
  services: { added: number; changed: number; removed: number; unchanged: number };
  backends: { added: number; changed: number; removed: number; unchanged: number };
}

function enc<T>(c: { size: number; encode(b: Buffer, o: number, v: T): void }, v: T): string {
  const b = Buffer.alloc(c.size);
  c.encode(b, 0, v);
  return b.toString('latin1');
}

function decodeService(v: string): ServiceValue {
  return serviceValue.decode(Buffer.from(v, 'latin1'), 0);
}

/** Diff desired services against the kernel's. Pure. Two entries for one VIP:port: PROXY wins, else the first. */
export function planServices(desired: readonly ServiceEntry[], current: ServiceCurrent): { plan: ServicePlan; counts: ServiceCounts } {
  const counts: ServiceCounts = {
    services: { added: 0, changed: 0, removed: 0, unchanged: 0 },
    backends: { added: 0, changed: 0, removed: 0, unchanged: 0 },
  };
  const plan: ServicePlan = { narrow: { upserts: [], deletes: [] }, backendUpserts: [], widen: [], backendDeletes: [], after: { services: new Map(), backends: new Map() } };

  const used = new Set<number>();
  const curId = new Map<string, ServiceValue>();
  for (const [k, v] of current.services) {
    const d = decodeService(v);
    curId.set(k, d);
    used.add(d.id);
  }
  for (const k of current.backends.keys()) used.add(backendKey.decode(Buffer.from(k, 'latin1'), 0).serviceId);

  const want = new Map<string, ServiceEntry>();
  for (const s of desired) {
    const k = enc(policyKey, { ip: s.vip, port: s.port });
    const prev = want.get(k);
    if (!prev || (prev.verdict === 'bypass' && s.verdict === 'proxy')) want.set(k, s);
  }

  let next = 1; // id 0 is never used: a zeroed value never names a real service
  const allocate = (): number => {
    while (used.has(next)) next++;
    used.add(next);
    return next;
  };
  // Allocation in key order, so identical input gives identical ids.
  const keys = [...want.keys()].sort();
  const wantBackends = new Map<string, string>();
  for (const k of keys) {
    const s = want.get(k)!;
    const cur = curId.get(k);
    const id = cur?.id ?? allocate();
    const bypass = s.verdict === 'bypass';
    s.backends.forEach((b, slot) => wantBackends.set(enc(backendKey, { serviceId: id, slot }), enc(backendValue, b)));
    const v = enc(serviceValue, { id, count: s.backends.length, bypass, ruleId: s.ruleId });
    plan.after.services.set(k, v);
    const curV = current.services.get(k);
    if (curV === v) {
      counts.services.unchanged++;
      continue;
    }
    if (curV === undefined) counts.services.added++;
    else counts.services.changed++;
    // Losing BYPASS narrows: before anything else. The rest waits for its backends.
    if (cur?.bypass && !bypass) plan.narrow.upserts.push([k, v]);
    else plan.widen.push([k, v]);
  }
  for (const k of current.services.keys()) {
    if (want.has(k)) continue;
    counts.services.removed++;
    plan.narrow.deletes.push(k);
  }
  for (const [k, v] of wantBackends) {
    plan.after.backends.set(k, v);
    const cur = current.backends.get(k);
    if (cur === v) {
      counts.backends.unchanged++;
      continue;
    }
    if (cur === undefined) counts.backends.added++;
    else counts.backends.changed++;
    plan.backendUpserts.push([k, v]);
  }
  for (const k of current.backends.keys()) {
    if (wantBackends.has(k)) continue;
    counts.backends.removed++;
    plan.backendDeletes.push(k);
  }
  return { plan, counts };
}
