// Desired state -> kernel maps: diff on encoded bytes (no decode of what is in
// the kernel), then apply in an order where no connection can see a verdict
// that neither the old nor the new state gives it:
//
//   1. policy entries that NARROW (BYPASS entries going away, then new PROXY
//      verdicts) and PROXY entries going away (proxy and none are both the
//      normal path; removing them first keeps the map's peak at its final size)
//   2. endpoint upserts         (adds before removes: with LPM prefixes, a new
//   3. endpoint deletes          /32 lands before the /24 it replaces goes)
//   4. policy entries that WIDEN (new or changed BYPASS verdicts)
//
// Encoding and diffing are pure (planSync); applySync does the syscalls, in
// batches where the kernel and map type allow. syncMaps is all or nothing: a
// plan that cannot fit a map's max_entries is refused before any syscall, and
// a syscall that fails half-way is rolled back to the state read before.
import type { DesiredState } from '../policy/types.js';
import { endpointKey, endpointValue, policyKey, policyValue, verdictCode, type EndpointValue, type PolicyKey, type PolicyValue } from './codecs.js';
import type { BpfMap } from './map.js';
import { mapLookup } from '../sys/libbpf.js';
import { UserError } from '../loader/errors.js';

/**
 * A sync that was not applied. `state` says what the maps hold afterwards:
 * 'unchanged' (refused before any write), 'rolled back' (a write failed; the
 * previous entries were restored) or 'mixed' (the rollback failed too).
 */
export class SyncError extends UserError {
  override name = 'SyncError';
  constructor(
    message: string,
    readonly state: 'unchanged' | 'rolled back' | 'mixed',
    readonly map?: string,
  ) {
    super(message);
  }
}

/** Encoded entries read from the kernel: key bytes (latin1 string, exact) -> value bytes. */
export type RawEntries = Map<string, string>;

/**
 * Desired entries, packed back to back exactly as the kernel wants them for a
 * batch update, plus an index from key bytes (latin1) to position. A full sync
 * passes these buffers to the kernel as they are.
 */
export class PackedEntries {
  readonly index = new Map<string, number>();
  private keyBuf: Buffer;
  private valBuf: Buffer;
  private n = 0;
  constructor(
    readonly ks: number,
    readonly vs: number,
    capacity: number,
  ) {
    this.keyBuf = Buffer.alloc(ks * Math.max(1, capacity));
    this.valBuf = Buffer.alloc(vs * Math.max(1, capacity));
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
  /** Append (or, for a key already present, let `keep(old, new)` decide). Encoders write into the given buffers at the offsets. */
  put(encodeKey: (b: Buffer, o: number) => void, encodeValue: (b: Buffer, o: number) => void, keep?: (oldVal: string, newVal: string) => boolean): void {
    if (this.n * this.ks >= this.keyBuf.length) this.grow();
    const i = this.n;
    encodeKey(this.keyBuf, i * this.ks);
    encodeValue(this.valBuf, i * this.vs);
    const key = this.keyAt(i);
    const prev = this.index.get(key);
    if (prev === undefined) {
      this.index.set(key, i);
      this.n++;
    } else if (!keep || keep(this.valueAt(prev), this.valueAt(i))) {
      this.valBuf.copy(this.valBuf, prev * this.vs, i * this.vs, (i + 1) * this.vs);
    }
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

export interface EncodedState {
  endpoints: PackedEntries;
  policy: PackedEntries;
}

export interface CurrentState {
  endpoints: RawEntries;
  policy: RawEntries;
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

/** Encode a desired state into the exact bytes the kernel maps will hold. Pure. */
export function encodeDesired(d: DesiredState): EncodedState {
  const endpoints = new PackedEntries(endpointKey.size, endpointValue.size, d.endpoints.length);
  for (const e of d.endpoints) {
    const v: EndpointValue = { local: e.local, mesh: e.mesh, networkId: e.networkId, workloadId: e.workloadId };
    endpoints.put(
      (b, o) => endpointKey.encode(b, o, e.cidr),
      (b, o) => endpointValue.encode(b, o, v),
    );
  }
  // Non-bypass verdicts first, then bypass: on a full sync each apply phase
  // (narrow, widen) is then one contiguous run handed to the kernel as is.
  const policy = new PackedEntries(policyKey.size, policyValue.size, d.policies.length);
  const ordered = [...d.policies.filter((p) => p.verdict !== 'bypass'), ...d.policies.filter((p) => p.verdict === 'bypass')];
  for (const p of ordered) {
    const k: PolicyKey = { ip: p.ip, port: p.port };
    const v: PolicyValue = { verdict: p.verdict, ruleId: p.ruleId };
    // Two entries for one ip:port: PROXY wins (never widen on a conflict).
    policy.put(
      (b, o) => policyKey.encode(b, o, k),
      (b, o) => policyValue.encode(b, o, v),
      (oldVal) => isBypass(oldVal),
    );
  }
  return { endpoints, policy };
}

/** The state a desired state leaves in the kernel, as read-back entries (for the next diff). */
export function asCurrent(e: EncodedState): CurrentState {
  const conv = (p: PackedEntries): RawEntries => {
    const m: RawEntries = new Map();
    for (const [k, i] of p.index) m.set(k, p.valueAt(i));
    return m;
  };
  return { endpoints: conv(e.endpoints), policy: conv(e.policy) };
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
  for (const [k, i] of de.index) {
    const cur = current.endpoints.get(k);
    if (cur === undefined) {
      counts.endpoints.added++;
      plan.endpointUpserts.push(i);
    } else if (cur !== de.valueAt(i)) {
      counts.endpoints.changed++;
      plan.endpointUpserts.push(i);
    } else counts.endpoints.unchanged++;
  }
  for (const k of current.endpoints.keys()) {
    if (!de.index.has(k)) {
      plan.endpointDeletes.push(k);
      counts.endpoints.removed++;
    }
  }
  const dp = desired.policy;
  for (const [k, i] of dp.index) {
    const cur = current.policy.get(k);
    const v = dp.valueAt(i);
    if (cur === v) {
      counts.policies.unchanged++;
      continue;
    }
    if (cur === undefined) counts.policies.added++;
    else counts.policies.changed++;
    // A change to a non-bypass verdict narrows; a change to bypass widens.
    (isBypass(v) ? plan.policyWiden : plan.policyNarrow).upserts.push(i);
  }
  for (const [k, cur] of current.policy) {
    if (dp.index.has(k)) continue;
    counts.policies.removed++;
    // Removing a BYPASS narrows (do it first); removing a PROXY entry only
    // turns "proxy" into "unknown", both the normal path: do it last.
    (isBypass(cur) ? plan.policyNarrow : plan.policyWiden).deletes.push(k);
  }
  return { plan, counts };
}

/** Read a map's raw entries (key/value bytes), without decoding. */
export function readRaw<K, V>(m: BpfMap<K, V>): RawEntries {
  const out: RawEntries = new Map();
  const vb = Buffer.alloc(m.valueCodec.size);
  for (const kb of m.rawKeys()) {
    if (mapLookup(m.fd, kb, vb)) out.set(kb.toString('latin1'), vb.toString('latin1'));
  }
  return out;
}

export interface SyncTargets {
  endpoints: BpfMap<string, EndpointValue>;
  policy: BpfMap<PolicyKey, PolicyValue>;
}

/** Name the map, the count and the capacity in a failed write. */
function named<K, V>(m: BpfMap<K, V>, what: string, n: number, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    throw new Error(`${m.label}: ${what} ${n} entries (capacity ${m.info.maxEntries}) failed: ${(e as Error).message}`, { cause: e });
  }
}

function applyUpserts<K, V>(m: BpfMap<K, V>, src: PackedEntries, idx: number[]): void {
  if (idx.length) named(m, 'writing', idx.length, () => upserts(m, src, idx));
}

function upserts<K, V>(m: BpfMap<K, V>, src: PackedEntries, idx: number[]): void {
  const n = idx.length;
  // A contiguous run (a full sync) is handed to the kernel as it is, no copy.
  const first = idx[0]!;
  if (idx[n - 1] === first + n - 1) {
    return m.updatePacked(src.keys.subarray(first * src.ks, (first + n) * src.ks), src.values.subarray(first * src.vs, (first + n) * src.vs), n);
  }
  const keys = Buffer.allocUnsafe(src.ks * n);
  const values = Buffer.allocUnsafe(src.vs * n);
  const sk = src.keys;
  const sv = src.values;
  for (let j = 0; j < n; j++) {
    const i = idx[j]!;
    sk.copy(keys, j * src.ks, i * src.ks, (i + 1) * src.ks);
    sv.copy(values, j * src.vs, i * src.vs, (i + 1) * src.vs);
  }
  m.updatePacked(keys, values, n);
}

function applyDeletes<K, V>(m: BpfMap<K, V>, keys: string[]): void {
  if (keys.length === 0) return;
  named(m, 'deleting', keys.length, () => void m.deleteRaw(keys.map((k) => Buffer.from(k, 'latin1'))));
}

/** Apply a plan in the safe order described at the top of this file. Returns ms spent per map. */
export function applySync(t: SyncTargets, desired: EncodedState, plan: SyncPlan): { policyMs: number; endpointsMs: number } {
  const t0 = performance.now();
  applyDeletes(t.policy, plan.policyNarrow.deletes);
  applyDeletes(t.policy, plan.policyWiden.deletes);
  applyUpserts(t.policy, desired.policy, plan.policyNarrow.upserts);
  const t1 = performance.now();
  applyUpserts(t.endpoints, desired.endpoints, plan.endpointUpserts);
  applyDeletes(t.endpoints, plan.endpointDeletes);
  const t2 = performance.now();
  applyUpserts(t.policy, desired.policy, plan.policyWiden.upserts);
  const t3 = performance.now();
  return { policyMs: t1 - t0 + (t3 - t2), endpointsMs: t2 - t1 };
}

export interface SyncResult {
  counts: SyncCounts;
  ms: { read: number; plan: number; apply: number; total: number; applyPolicy: number; applyEndpoints: number };
}

/** Raw entries packed as a desired state (to put them back). */
function packRaw(raw: RawEntries, ks: number, vs: number): PackedEntries {
  const p = new PackedEntries(ks, vs, raw.size);
  for (const [k, v] of raw) {
    p.put(
      (b, o) => void b.write(k, o, ks, 'latin1'),
      (b, o) => void b.write(v, o, vs, 'latin1'),
    );
  }
  return p;
}

/**
 * Refuse a plan that cannot fit: each map's entries at their peak during the
 * apply (endpoint adds land before the removes; policy removes go first, so its
 * peak is its final size) against the map's max_entries.
 */
export function checkCapacity(t: SyncTargets, desired: EncodedState, current: CurrentState, counts: SyncCounts): void {
  const checks = [
    { name: 'mb_endpoints', map: t.endpoints, final: desired.endpoints.size, peak: current.endpoints.size + counts.endpoints.added, flag: '--max-endpoints' },
    { name: 'mb_policy', map: t.policy, final: desired.policy.size, peak: desired.policy.size, flag: '--max-policies' },
  ];
  for (const c of checks) {
    const cap = c.map.info.maxEntries;
    if (c.final > cap) throw new SyncError(`${c.name}: the snapshot needs ${c.final} entries, the map holds ${cap} (${c.flag}); nothing was changed`, 'unchanged', c.name);
    if (c.peak > cap) {
      throw new SyncError(
        `${c.name}: the sync needs ${c.peak} entries at its peak (${counts.endpoints.added} new ones are added before ${counts.endpoints.removed} old ones are removed), the map holds ${cap} (${c.flag}); nothing was changed`,
        'unchanged',
        c.name,
      );
    }
  }
}

/**
 * One full reconcile: read what the kernel has, diff against desired, check
 * capacity, apply; on a failed write, put back what was read. `current` may be
 * passed in (the agent keeps what it last applied) to skip reading the kernel;
 * a rollback then restores that state. `encoded` is desired already encoded.
 */
export function syncMaps(t: SyncTargets, desired: DesiredState, current?: CurrentState, encoded?: EncodedState): SyncResult & { applied: EncodedState } {
  const t0 = performance.now();
  const cur = current ?? { endpoints: readRaw(t.endpoints), policy: readRaw(t.policy) };
  const t1 = performance.now();
  const enc = encoded ?? encodeDesired(desired);
  const { plan, counts } = planSync(enc, cur);
  checkCapacity(t, enc, cur, counts);
  const t2 = performance.now();
  let per: { policyMs: number; endpointsMs: number };
  try {
    per = applySync(t, enc, plan);
  } catch (e) {
    throw rollback(t, cur, e as Error);
  }
  const t3 = performance.now();
  return { counts, applied: enc, ms: { read: t1 - t0, plan: t2 - t1, apply: t3 - t2, total: t3 - t0, applyPolicy: per.policyMs, applyEndpoints: per.endpointsMs } };
}

/** Put the maps back to `prev` after a failed apply; the error to throw says whether that worked. */
function rollback(t: SyncTargets, prev: CurrentState, cause: Error): SyncError {
  const map = /mb_\w+/.exec(cause.message)?.[0];
  try {
    const target: EncodedState = {
      endpoints: packRaw(prev.endpoints, t.endpoints.keyCodec.size, t.endpoints.valueCodec.size),
      policy: packRaw(prev.policy, t.policy.keyCodec.size, t.policy.valueCodec.size),
    };
    const now = { endpoints: readRaw(t.endpoints), policy: readRaw(t.policy) };
    applySync(t, target, planSync(target, now).plan);
    return new SyncError(`sync failed and was rolled back (the maps hold the previous state): ${cause.message}`, 'rolled back', map);
  } catch (e2) {
    return new SyncError(`sync failed: ${cause.message}; the rollback failed too (${(e2 as Error).message}): the maps are mixed, the next sync repairs them`, 'mixed', map);
  }
}
