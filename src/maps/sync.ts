// Desired state -> kernel maps: diff on encoded bytes (no decode of what is in
// the kernel), then apply in an order where no connection can see a verdict
// that neither the old nor the new state gives it:
//
//   1. policy entries that NARROW (new PROXY verdicts; BYPASS entries going away)
//   2. endpoint upserts         (adds before removes: with LPM prefixes, a new
//   3. endpoint deletes          /32 lands before the /24 it replaces goes)
//   4. policy entries that WIDEN (new or changed BYPASS verdicts) and the rest
//
// Encoding and diffing are pure (planSync); applySync does the syscalls, in
// batches where the kernel and map type allow.
import type { DesiredState } from '../policy/types.js';
import { endpointKey, endpointValue, policyKey, policyValue, verdictCode, type EndpointValue, type PolicyKey, type PolicyValue } from './codecs.js';
import type { BpfMap } from './map.js';
import { mapLookup } from '../sys/libbpf.js';

/** Encoded entries: key bytes (latin1 string, exact) -> value bytes. */
export type RawEntries = Map<string, string>;

export interface EncodedState {
  endpoints: RawEntries;
  policy: RawEntries;
}

export interface SyncPlan {
  policyNarrow: Array<[string, string | null]>; // null value = delete
  endpointUpserts: Array<[string, string]>;
  endpointDeletes: string[];
  policyWiden: Array<[string, string | null]>;
}

export interface SyncCounts {
  endpoints: { added: number; changed: number; removed: number; unchanged: number };
  policies: { added: number; changed: number; removed: number; unchanged: number };
}

const BYPASS = verdictCode('bypass');

function enc<T>(codec: { size: number; encode(b: Buffer, o: number, v: T): void }, v: T): string {
  const b = Buffer.allocUnsafe(codec.size);
  codec.encode(b, 0, v);
  return b.toString('latin1');
}

/** Encode a desired state into the exact bytes the kernel maps will hold. Pure. */
export function encodeDesired(d: DesiredState): EncodedState {
  const endpoints: RawEntries = new Map();
  for (const e of d.endpoints) {
    const v: EndpointValue = { local: e.local, mesh: e.mesh, networkId: e.networkId, workloadId: e.workloadId };
    endpoints.set(enc(endpointKey, e.cidr), enc(endpointValue, v));
  }
  const policy: RawEntries = new Map();
  for (const p of d.policies) {
    const k: PolicyKey = { ip: p.ip, port: p.port };
    const v: PolicyValue = { verdict: p.verdict, ruleId: p.ruleId };
    const key = enc(policyKey, k);
    const prev = policy.get(key);
    // Two entries for one ip:port: PROXY wins (never widen on a conflict).
    if (prev !== undefined && Buffer.from(prev, 'latin1').readUInt32LE(0) !== BYPASS) continue;
    policy.set(key, enc(policyValue, v));
  }
  return { endpoints, policy };
}

function isBypass(value: string | undefined): boolean {
  return value !== undefined && Buffer.from(value, 'latin1').readUInt32LE(0) === BYPASS;
}

/** Diff desired against current (both encoded). Pure. */
export function planSync(desired: EncodedState, current: EncodedState): { plan: SyncPlan; counts: SyncCounts } {
  const plan: SyncPlan = { policyNarrow: [], endpointUpserts: [], endpointDeletes: [], policyWiden: [] };
  const counts: SyncCounts = {
    endpoints: { added: 0, changed: 0, removed: 0, unchanged: 0 },
    policies: { added: 0, changed: 0, removed: 0, unchanged: 0 },
  };
  for (const [k, v] of desired.endpoints) {
    const cur = current.endpoints.get(k);
    if (cur === v) counts.endpoints.unchanged++;
    else {
      plan.endpointUpserts.push([k, v]);
      if (cur === undefined) counts.endpoints.added++;
      else counts.endpoints.changed++;
    }
  }
  for (const k of current.endpoints.keys()) {
    if (!desired.endpoints.has(k)) {
      plan.endpointDeletes.push(k);
      counts.endpoints.removed++;
    }
  }
  for (const [k, v] of desired.policy) {
    const cur = current.policy.get(k);
    if (cur === v) {
      counts.policies.unchanged++;
      continue;
    }
    if (cur === undefined) counts.policies.added++;
    else counts.policies.changed++;
    // A change to a non-bypass verdict narrows; a change to bypass widens.
    (isBypass(v) ? plan.policyWiden : plan.policyNarrow).push([k, v]);
  }
  for (const [k, cur] of current.policy) {
    if (desired.policy.has(k)) continue;
    counts.policies.removed++;
    // Removing a BYPASS narrows (do it first); removing a PROXY entry only
    // turns "proxy" into "unknown", both the normal path: do it last.
    (isBypass(cur) ? plan.policyNarrow : plan.policyWiden).push([k, null]);
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

function applyUpserts<K, V>(m: BpfMap<K, V>, entries: Array<[string, string]>): void {
  if (entries.length === 0) return;
  const ks = m.keyCodec.size;
  const vs = m.valueCodec.size;
  const keys = Buffer.allocUnsafe(ks * entries.length);
  const values = Buffer.allocUnsafe(vs * entries.length);
  entries.forEach(([k, v], i) => {
    keys.write(k, i * ks, ks, 'latin1');
    values.write(v, i * vs, vs, 'latin1');
  });
  m.updatePacked(keys, values, entries.length);
}

function applyDeletes<K, V>(m: BpfMap<K, V>, keys: string[]): void {
  if (keys.length === 0) return;
  m.deleteRaw(keys.map((k) => Buffer.from(k, 'latin1')));
}

function applyMixed<K, V>(m: BpfMap<K, V>, ops: Array<[string, string | null]>): void {
  applyUpserts(m, ops.filter((o): o is [string, string] => o[1] !== null));
  applyDeletes(
    m,
    ops.filter((o) => o[1] === null).map((o) => o[0]),
  );
}

/** Apply a plan in the safe order described at the top of this file. */
export function applySync(t: SyncTargets, plan: SyncPlan): void {
  applyMixed(t.policy, plan.policyNarrow);
  applyUpserts(t.endpoints, plan.endpointUpserts);
  applyDeletes(t.endpoints, plan.endpointDeletes);
  applyMixed(t.policy, plan.policyWiden);
}

export interface SyncResult {
  counts: SyncCounts;
  ms: { read: number; plan: number; apply: number; total: number };
}

/**
 * One full reconcile: read what the kernel has, diff against desired, apply.
 * `current` may be passed in (the agent keeps what it last applied) to skip
 * reading the kernel.
 */
export function syncMaps(t: SyncTargets, desired: DesiredState, current?: EncodedState): SyncResult & { applied: EncodedState } {
  const t0 = performance.now();
  const cur = current ?? { endpoints: readRaw(t.endpoints), policy: readRaw(t.policy) };
  const t1 = performance.now();
  const enc = encodeDesired(desired);
  const { plan, counts } = planSync(enc, cur);
  const t2 = performance.now();
  applySync(t, plan);
  const t3 = performance.now();
  return { counts, applied: enc, ms: { read: t1 - t0, plan: t2 - t1, apply: t3 - t2, total: t3 - t0 } };
}
