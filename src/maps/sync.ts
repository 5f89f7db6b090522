// Apply a sync plan (plan.ts) to the kernel maps, in the safe order described
// there: narrowing verdicts and services, backend upserts, endpoint upserts,
// endpoint deletes, widening verdicts, the other service upserts, backend
// deletes. Every syscall goes through BpfMap.
import type { DesiredState } from '../policy/types.js';
import type { BackendKey, BackendValue, EndpointValue, PolicyKey, PolicyValue, ServiceValue } from './codecs.js';
import type { BpfMap } from './map.js';
import {
  encodeDesired,
  planServices,
  planSync,
  type CurrentState,
  type EncodedState,
  type PackedEntries,
  type RawEntries,
  type ServiceCounts,
  type ServicePlan,
  type SyncCounts,
  type SyncPlan,
} from './plan.js';

/** Read a map's raw entries (key/value bytes), without decoding. */
export function readRaw<K, V>(m: BpfMap<K, V>): RawEntries {
  const out: RawEntries = new Map();
  for (const [kb, vb] of m.rawEntries()) out.set(kb.toString('latin1'), vb.toString('latin1'));
  return out;
}

export interface SyncTargets {
  endpoints: BpfMap<string, EndpointValue>;
  policy: BpfMap<PolicyKey, PolicyValue>;
  /** absent: service VIPs are not synced (callers that predate them) */
  services?: BpfMap<PolicyKey, ServiceValue>;
  backends?: BpfMap<BackendKey, BackendValue>;
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

function applyPairs<K, V>(m: BpfMap<K, V> | undefined, pairs: Array<[string, string]>): void {
  if (!m || pairs.length === 0) return;
  const ks = m.keyCodec.size;
  const vs = pairs[0]![1].length;
  const keys = Buffer.allocUnsafe(ks * pairs.length);
  const values = Buffer.allocUnsafe(vs * pairs.length);
  pairs.forEach(([k, v], i) => {
    keys.write(k, i * ks, 'latin1');
    values.write(v, i * vs, 'latin1');
  });
  m.updatePacked(keys, values, pairs.length);
}

/** Apply a plan in the safe order described at the top of plan.ts. Returns ms spent per map. */
export function applySync(t: SyncTargets, desired: EncodedState, plan: SyncPlan, svc?: ServicePlan): { policyMs: number; endpointsMs: number; servicesMs: number } {
  const t0 = performance.now();
  applyUpserts(t.policy, desired.policy, plan.policyNarrow.upserts);
  applyDeletes(t.policy, plan.policyNarrow.deletes);
  const t1 = performance.now();
  if (svc && t.services && t.backends) {
    applyPairs(t.services, svc.narrow.upserts);
    if (svc.narrow.deletes.length) applyDeletes(t.services, svc.narrow.deletes);
    applyPairs(t.backends, svc.backendUpserts);
  }
  const t2 = performance.now();
  applyUpserts(t.endpoints, desired.endpoints, plan.endpointUpserts);
  applyDeletes(t.endpoints, plan.endpointDeletes);
  const t3 = performance.now();
  applyUpserts(t.policy, desired.policy, plan.policyWiden.upserts);
  applyDeletes(t.policy, plan.policyWiden.deletes);
  const t4 = performance.now();
  if (svc && t.services && t.backends) {
    applyPairs(t.services, svc.widen);
    applyDeletes(t.backends, svc.backendDeletes);
  }
  const t5 = performance.now();
  return { policyMs: t1 - t0 + (t4 - t3), endpointsMs: t3 - t2, servicesMs: t2 - t1 + (t5 - t4) };
}

export interface SyncResult {
  counts: SyncCounts & Partial<ServiceCounts>;
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
  const svcCur = t.services && t.backends ? cur.services ?? { services: readRaw(t.services), backends: readRaw(t.backends) } : undefined;
  const t1 = performance.now();
  const enc = encodeDesired(desired);
  const { plan, counts } = planSync(enc, cur);
  const svc = svcCur ? planServices(desired.services ?? [], svcCur) : undefined;
  if (svc) enc.services = svc.plan.after;
  const t2 = performance.now();
  const per = applySync(t, enc, plan, svc?.plan);
  const t3 = performance.now();
  return { counts: { ...counts, ...(svc ? svc.counts : {}) }, applied: enc, ms: { read: t1 - t0, plan: t2 - t1, apply: t3 - t2, total: t3 - t0, applyPolicy: per.policyMs, applyEndpoints: per.endpointsMs } };
}
