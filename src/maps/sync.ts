// Apply a sync plan (plan.ts) to the kernel maps, in the safe order described
// there: policy removals and narrowing verdicts, narrowing services, backend
// upserts, endpoint upserts, endpoint deletes, widening verdicts, the other
// service upserts, backend deletes. Every syscall goes through BpfMap.
// syncMaps is all or nothing: a plan that cannot fit a map's max_entries is
// refused before any syscall, and a syscall that fails half-way is rolled back
// to the state read before.
import type { DesiredState } from '../policy/types.js';
import type { BackendKey, BackendValue, EndpointValue, PolicyKey, PolicyValue, ServiceValue } from './codecs.js';
import type { BpfMap } from './map.js';
import {
  encodeDesired,
  PackedEntries,
  planServices,
  planSync,
  type CurrentState,
  type EncodedState,
  type RawEntries,
  type ServiceCounts,
  type ServiceCurrent,
  type ServicePlan,
  type SyncCounts,
  type SyncPlan,
} from './plan.js';
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
  /** absent: service VIPs are not synced (callers that predate them) */
  services?: BpfMap<PolicyKey, ServiceValue>;
  backends?: BpfMap<BackendKey, BackendValue>;
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

function applyPairs<K, V>(m: BpfMap<K, V> | undefined, pairs: Array<[string, string]>): void {
  if (!m || pairs.length === 0) return;
  named(m, 'writing', pairs.length, () => writePairs(m, pairs));
}

function writePairs<K, V>(m: BpfMap<K, V>, pairs: Array<[string, string]>): void {
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
  // Removals first (BYPASS removals narrow; PROXY removals only turn "proxy"
  // into "unknown", both the normal path), so the map's peak is its final size.
  applyDeletes(t.policy, plan.policyNarrow.deletes);
  applyDeletes(t.policy, plan.policyWiden.deletes);
  applyUpserts(t.policy, desired.policy, plan.policyNarrow.upserts);
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
 * a rollback then restores that state. `encoded` is desired already encoded
 * (then only its services are read from `desired`: the compiler may have
 * encoded its entries as it built them, keeping no lists).
 */
export function syncMaps(t: SyncTargets, desired: DesiredState, current?: CurrentState): SyncResult & { applied: EncodedState };
export function syncMaps(t: SyncTargets, desired: Pick<DesiredState, 'services'>, current: CurrentState | undefined, encoded: EncodedState): SyncResult & { applied: EncodedState };
export function syncMaps(t: SyncTargets, desired: Pick<DesiredState, 'services'> & Partial<DesiredState>, current?: CurrentState, encoded?: EncodedState): SyncResult & { applied: EncodedState } {
  const t0 = performance.now();
  const cur = current ?? { endpoints: readRaw(t.endpoints), policy: readRaw(t.policy) };
  const svcCur = t.services && t.backends ? (cur.services ?? { services: readRaw(t.services), backends: readRaw(t.backends) }) : undefined;
  const t1 = performance.now();
  const enc = encoded ?? encodeDesired(desired as DesiredState);
  const { plan, counts } = planSync(enc, cur);
  checkCapacity(t, enc, cur, counts);
  const svc = svcCur ? planServices(desired.services ?? [], svcCur) : undefined;
  if (svc && t.services && t.backends) {
    for (const [m, size, flag] of [
      [t.services, svc.plan.after.services.size, 'the services map'],
      [t.backends, svc.plan.after.backends.size + svc.plan.backendDeletes.length, 'the backends map'],
    ] as const) {
      if (size > m.info.maxEntries) throw new SyncError(`${m.label}: the sync needs ${size} entries at its peak, ${flag} holds ${m.info.maxEntries}; nothing was changed`, 'unchanged', m.label);
    }
  }
  if (svc) enc.services = svc.plan.after;
  const t2 = performance.now();
  let per: { policyMs: number; endpointsMs: number };
  try {
    per = applySync(t, enc, plan, svc?.plan);
  } catch (e) {
    throw rollback(t, cur, e as Error, svcCur);
  }
  const t3 = performance.now();
  return {
    counts: { ...counts, ...(svc ? svc.counts : {}) },
    applied: enc,
    ms: { read: t1 - t0, plan: t2 - t1, apply: t3 - t2, total: t3 - t0, applyPolicy: per.policyMs, applyEndpoints: per.endpointsMs },
  };
}

/** Put one map's raw entries back as they were (removals, then writes). */
function restoreRaw<K, V>(m: BpfMap<K, V>, prev: RawEntries): void {
  const now = readRaw(m);
  applyDeletes(
    m,
    [...now.keys()].filter((k) => !prev.has(k)),
  );
  applyPairs(
    m,
    [...prev].filter(([k, v]) => now.get(k) !== v),
  );
}

/** Put the maps back to `prev` after a failed apply; the error to throw says whether that worked. */
function rollback(t: SyncTargets, prev: CurrentState, cause: Error, prevServices?: ServiceCurrent): SyncError {
  const map = /mb_\w+/.exec(cause.message)?.[0];
  try {
    const target: EncodedState = {
      endpoints: packRaw(prev.endpoints, t.endpoints.keyCodec.size, t.endpoints.valueCodec.size),
      policy: packRaw(prev.policy, t.policy.keyCodec.size, t.policy.valueCodec.size),
    };
    const now = { endpoints: readRaw(t.endpoints), policy: readRaw(t.policy) };
    applySync(t, target, planSync(target, now).plan);
    if (prevServices && t.services && t.backends) {
      restoreRaw(t.backends, prevServices.backends); // backends first: a restored count never points past them
      restoreRaw(t.services, prevServices.services);
    }
    return new SyncError(`sync failed and was rolled back (the maps hold the previous state): ${cause.message}`, 'rolled back', map);
  } catch (e2) {
    return new SyncError(`sync failed: ${cause.message}; the rollback failed too (${(e2 as Error).message}): the maps are mixed, the next sync repairs them`, 'mixed', map);
  }
}
