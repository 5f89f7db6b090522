// Apply a sync plan (plan.ts) to the kernel maps, in the safe order described
// there: policy removals and narrowing verdicts, endpoint upserts, endpoint
// deletes, widening verdicts. Every syscall goes through BpfMap. syncMaps is
// all or nothing: a plan that cannot fit a map's max_entries is refused before
// any syscall, and a syscall that fails half-way is rolled back to the state
// read before.
import type { DesiredState } from '../policy/types.js';
import type { EndpointValue, PolicyKey, PolicyValue } from './codecs.js';
import type { BpfMap } from './map.js';
import { encodeDesired, PackedEntries, planSync, type CurrentState, type EncodedState, type RawEntries, type SyncCounts, type SyncPlan } from './plan.js';
import { SyncError } from '../errors.js';

export { SyncError };

/** Read a map's raw entries (key/value bytes), without decoding. */
export function readRaw<K, V>(m: BpfMap<K, V>): RawEntries {
  const out: RawEntries = new Map();
  for (const [kb, vb] of m.rawEntries()) out.set(kb.toString('latin1'), vb.toString('latin1'));
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

/** Apply a plan in the safe order described at the top of plan.ts. Returns ms spent per map. */
export function applySync(t: SyncTargets, desired: EncodedState, plan: SyncPlan): { policyMs: number; endpointsMs: number } {
  const t0 = performance.now();
  // Removals first (BYPASS removals narrow; PROXY removals only turn "proxy"
  // into "unknown", both the normal path), so the map's peak is its final size.
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
