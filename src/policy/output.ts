// Output: the address records and their verdict slots as the sorted,
// deterministic DesiredState (endpoints with pod CIDRs in address order,
// policies, rule ids by reason text, network and workload tables).
import type { EntrySink, RuleInfo, ServiceEntry, Verdict } from './types.js';
import type { AddressBook } from './addresses.js';
import type { ServiceDraft } from './services.js';
import { cmpBytesAddr, type Addr, type CompileContext, type CompiledSummary } from './model.js';

/** The output, with its endpoint and policy entries handed to `sink` in order (compile.ts keeps them in lists or encodes them). */
export function buildOutput(ctx: CompileContext, book: AddressBook, sink: EntrySink, services?: ServiceDraft[]): CompiledSummary {
  // Sorted once; everything else sorts by (rank, port) numerically. Taken from the
  // book: this array is the records' last holder (see the entries loop below).
  const sorted: (Addr | undefined)[] = book.takeSorted();
  const foreign = new Set<string>();
  const workloadSet = new Set<string>();
  let hosts = 0;
  for (const a of sorted) {
    if (a!.mesh || a!.nodeIp) hosts++;
    if (a!.remoteNet !== undefined) foreign.add(a!.remoteNet);
    if (a!.workload !== undefined) workloadSet.add(a!.workload);
  }
  const networks = [ctx.loc.network, ...[...foreign].sort()];
  const netId = new Map(networks.map((n, i) => [n, i] as const));
  const workloads = ['', ...[...workloadSet].sort()];
  const wlId = new Map(workloads.map((n, i) => [n, i] as const));

  // Rule keys first (few distinct ones): rule ids are their sorted positions.
  const svcList = services ?? [];
  const keySet = new Set<string>();
  let slots = 0;
  const addKey = (_p: number, _v: Verdict, key: string): void => {
    slots++;
    keySet.add(key);
  };
  for (const a of sorted) a!.eachSlot(addKey);
  for (const s of svcList) keySet.add(s.key);
  const ruleKeys = [...keySet].sort();
  const ruleId = new Map(ruleKeys.map((k, i) => [k, i] as const));
  const rules: RuleInfo[] = ruleKeys.map((k, i) => ({ id: i, reasons: k.split('\n') }));

  const cidrs = [...book.podCidrs].sort((x, y) => x.bytes.compare(y.bytes) || x.prefixLen - y.prefixLen);
  sink.expect?.(hosts + cidrs.length, slots);
  const seenCidr = new Set<string>();
  const hostCidr = (a: Addr): string => `${a.text}/${a.family === 4 ? 32 : 128}`;
  let ci = 0;
  const flushCidrsBefore = (b: Addr | undefined): void => {
    // Pod CIDRs go just before the first host address they do not precede.
    for (; ci < cidrs.length; ci++) {
      const p = cidrs[ci]!;
      if (b && cmpBytesAddr(p.bytes, b) > 0) return;
      if (seenCidr.has(p.text)) continue;
      seenCidr.add(p.text);
      sink.endpoint({ cidr: p.text, local: true, mesh: true, networkId: 0, workloadId: 0 });
    }
  };
  // One pass in address order: an address's policies (one per verdict slot), then its endpoint.
  for (let i = 0; i < sorted.length; i++) {
    const a = sorted[i]!;
    // The entries keep the address text, not the record: the record is let go now,
    // so a collection during the rest of the output finds it garbage (one record per
    // endpoint address, about 23 MiB for a 50 MiB snapshot).
    sorted[i] = undefined;
    a.eachSlot((port, verdict, key) => sink.policy({ ip: a.text, port, verdict, ruleId: ruleId.get(key) ?? 0 }));
    if (!a.mesh && !a.nodeIp) continue;
    flushCidrsBefore(a);
    const networkId = a.remoteNet === undefined ? 0 : (netId.get(a.remoteNet) ?? 0);
    const cidr = hostCidr(a);
    if (seenCidr.has(cidr)) continue; // a pod CIDR written as a host prefix
    sink.endpoint({
      cidr,
      // Another network is never local-eligible, whatever its address looks like.
      local: a.inLocalRange && networkId === 0,
      // Node IPs are local but are not mesh workloads unless the control plane says so.
      mesh: a.mesh,
      networkId,
      workloadId: a.workload === undefined ? 0 : (wlId.get(a.workload) ?? 0),
    });
  }
  flushCidrsBefore(undefined);
  const svcEntries: ServiceEntry[] = svcList.map((s) => ({ ...s.entry, ruleId: ruleId.get(s.key) ?? 0 }));

  ctx.skipped.sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return {
    rules,
    networks,
    workloads,
    ...(services ? { services: svcEntries } : {}),
    skipped: ctx.skipped,
    notes: [...new Set(ctx.notes)].sort(),
  };
}
