// Output: the address records and their verdict slots as the sorted,
// deterministic DesiredState (endpoints with pod CIDRs in address order,
// policies, rule ids by reason text, network and workload tables).
import type { EndpointEntry, PolicyEntry, RuleInfo, ServiceEntry, Verdict } from './types.js';
import type { AddressBook } from './addresses.js';
import type { ServiceCollector } from './services.js';
import { cmpAddr, cmpBytesAddr, type Addr, type CompileContext, type CompiledState } from './model.js';

export function buildOutput(ctx: CompileContext, book: AddressBook, services?: ServiceCollector): CompiledState {
  const foreign = new Set<string>();
  const workloadSet = new Set<string>();
  for (const a of book.list) {
    if (a.remoteNet !== undefined) foreign.add(a.remoteNet);
    if (a.workload !== undefined) workloadSet.add(a.workload);
  }
  const networks = [ctx.loc.network, ...[...foreign].sort()];
  const netId = new Map(networks.map((n, i) => [n, i] as const));
  const workloads = ['', ...[...workloadSet].sort()];
  const wlId = new Map(workloads.map((n, i) => [n, i] as const));

  // Sort addresses once; everything else sorts by (rank, port) numerically.
  const sorted = [...book.list].sort(cmpAddr);
  const cidrs = [...book.podCidrs].sort((x, y) => x.bytes.compare(y.bytes) || x.prefixLen - y.prefixLen);

  const endpoints: EndpointEntry[] = [];
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
      endpoints.push({ cidr: p.text, local: true, mesh: true, networkId: 0, workloadId: 0 });
    }
  };
  for (const a of sorted) {
    if (!a.mesh && !a.nodeIp) continue;
    flushCidrsBefore(a);
    const networkId = a.remoteNet === undefined ? 0 : (netId.get(a.remoteNet) ?? 0);
    const cidr = hostCidr(a);
    if (seenCidr.has(cidr)) continue; // a pod CIDR written as a host prefix
    endpoints.push({
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

  // Rule keys first (few distinct ones), then one policy per slot in address order: no list of all slots.
  const svcList = services?.list() ?? [];
  const keySet = new Set<string>();
  const addKey = (_p: number, _v: Verdict, key: string): void => void keySet.add(key);
  for (const a of sorted) a.eachSlot(addKey);
  for (const s of svcList) keySet.add(s.key);
  const ruleKeys = [...keySet].sort();
  const ruleId = new Map(ruleKeys.map((k, i) => [k, i] as const));
  const rules: RuleInfo[] = ruleKeys.map((k, i) => ({ id: i, reasons: k.split('\n') }));
  const policies: PolicyEntry[] = [];
  for (const a of sorted) a.eachSlot((port, verdict, key) => void policies.push({ ip: a.text, port, verdict, ruleId: ruleId.get(key) ?? 0 }));
  const svcEntries: ServiceEntry[] = svcList.map((s) => ({ ...s.entry, ruleId: ruleId.get(s.key) ?? 0 }));

  ctx.skipped.sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return {
    endpoints,
    policies,
    rules,
    networks,
    workloads,
    ...(services ? { services: svcEntries } : {}),
    skipped: ctx.skipped,
    notes: [...new Set(ctx.notes)].sort(),
  };
}
