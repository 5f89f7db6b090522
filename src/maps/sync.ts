// Apply a sync plan (plan.ts) to the kernel maps, in the safe order described
// there: narrowing verdicts, endpoint upserts, endpoint deletes, widening
// verdicts. Every syscall goes through BpfMap.
import type { DesiredState } from '../policy/types.js';
import type { EndpointValue, PolicyKey, PolicyValue } from './codecs.js';
import type { BpfMap } from './map.js';
import { encodeDesired, planSync, type CurrentState, type EncodedState, type PackedEntries, type RawEntries, type SyncCounts, type SyncPlan } from './plan.js';

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

function applyUpserts<K, V>(m: BpfMap<K, V>, src: PackedEntries, idx: number[]): void {
  const n = idx.length;
  if (n === 0) return;
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
  m.deleteRaw(keys.map((k) => Buffer.from(k, 'latin1')));
}

/** Apply a plan in the safe order described at the top of plan.ts. Returns ms spent per map. */
export function applySync(t: SyncTargets, desired: EncodedState, plan: SyncPlan): { policyMs: number; endpointsMs: number } {
  const t0 = performance.now();
  applyUpserts(t.policy, desired.policy, plan.policyNarrow.upserts);
  applyDeletes(t.policy, plan.policyNarrow.deletes);
  const t1 = performance.now();
  applyUpserts(t.endpoints, desired.endpoints, plan.endpointUpserts);
  applyDeletes(t.endpoints, plan.endpointDeletes);
  const t2 = performance.now();
  applyUpserts(t.policy, desired.policy, plan.policyWiden.upserts);
  applyDeletes(t.policy, plan.policyWiden.deletes);
  const t3 = performance.now();
  return { policyMs: t1 - t0 + (t3 - t2), endpointsMs: t2 - t1 };
}

export interface SyncResult {
  counts: SyncCounts;
  ms: { read: number; plan: number; apply: number; total: number; applyPolicy: number; applyEndpoints: number };
}

/**
 * One full reconcile: read what the kernel has, diff against desired, apply.
 * `current` may be passed in (the agent keeps what it last applied) to skip
 * reading the kernel.
 */
export function syncMaps(t: SyncTargets, desired: DesiredState, current?: CurrentState): SyncResult & { applied: EncodedState } {
  const t0 = performance.now();
  const cur = current ?? { endpoints: readRaw(t.endpoints), policy: readRaw(t.policy) };
  const t1 = performance.now();
  const enc = encodeDesired(desired);
  const { plan, counts } = planSync(enc, cur);
  const t2 = performance.now();
  const per = applySync(t, enc, plan);
  const t3 = performance.now();
  return { counts, applied: enc, ms: { read: t1 - t0, plan: t2 - t1, apply: t3 - t2, total: t3 - t0, applyPolicy: per.policyMs, applyEndpoints: per.endpointsMs } };
}
