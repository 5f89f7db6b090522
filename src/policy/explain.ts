// explain(): why a destination gets the verdict it gets, from a DesiredState
// alone (pure). The kernel's decision (bpf/sockops.c: both ends LOCAL, same
// network, and a BYPASS verdict for the server side's ip:port) is written once,
// in sockopsBlockers(), which `meshbpf policy explain` (cli/explain.ts) uses too.
import { cidrContains, formatIp, parseIp, parsePort, type Ip } from '../net/ip.js';
import type { DesiredState, EndpointEntry, PolicyEntry } from './types.js';
import type { CompiledState } from './compile.js';
import type { StatName } from '../maps/codecs.js';

export interface EndpointMatch {
  ip: string;
  /** longest-prefix entry that contains the address (what the kernel's LPM lookup returns) */
  entry?: EndpointEntry;
  network?: string;
  workload?: string;
}

export interface Explanation {
  verdict: 'bypass' | 'proxy' | 'none';
  reasons: string[];
  dst: EndpointMatch & { port: number };
  policy?: PolicyEntry;
  from?: EndpointMatch;
  /** only with `from`: would the kernel short-circuit a connection from -> dst */
  shortCircuit?: boolean;
}

interface Index {
  policies: Map<string, PolicyEntry>;
  hosts: Map<string, EndpointEntry>;
  prefixes: { bytes: Buffer; prefixLen: number; e: EndpointEntry }[];
}

const cache = new WeakMap<DesiredState, Index>();

function index(state: DesiredState): Index {
  let ix = cache.get(state);
  if (ix) return ix;
  const policies = new Map<string, PolicyEntry>();
  for (const p of state.policies) policies.set(`${p.ip}|${p.port}`, p);
  const hosts = new Map<string, EndpointEntry>();
  const prefixes: Index['prefixes'] = [];
  for (const e of state.endpoints) {
    const slash = e.cidr.indexOf('/');
    const ip = parseIp(e.cidr.slice(0, slash));
    const len = Number(e.cidr.slice(slash + 1));
    const prefixLen = ip.family === 4 ? len + 96 : len;
    if (prefixLen === 128) hosts.set(formatIp(ip.bytes), e);
    else prefixes.push({ bytes: ip.bytes, prefixLen, e });
  }
  prefixes.sort((a, b) => b.prefixLen - a.prefixLen);
  ix = { policies, hosts, prefixes };
  cache.set(state, ix);
  return ix;
}

/** One end of a connection as the kernel's mb_endpoints lookup sees it. */
export interface EndFacts {
  local: boolean;
  networkId: number;
}

/** What keeps a connection off the bypass; none set: sockops short-circuits it. */
export interface Blockers {
  /** no verdict (or 'none') for the server's ip:port: unknown stays on the normal path */
  noVerdict: boolean;
  proxy: boolean;
  dstNotLocal: boolean;
  srcNotLocal: boolean;
  otherNetwork: boolean;
}

/**
 * The sockops rule in TypeScript, the one copy: a connection src -> dst with
 * this verdict is short-circuited only when both ends are local, on one
 * network, and the verdict is bypass. An end without an endpoint entry is
 * undefined (not local).
 */
export function sockopsBlockers(verdict: 'bypass' | 'proxy' | 'none' | undefined, dst: EndFacts | undefined, src: EndFacts | undefined): Blockers {
  return {
    noVerdict: verdict === undefined || verdict === 'none',
    proxy: verdict === 'proxy',
    dstNotLocal: !dst?.local,
    srcNotLocal: !src?.local,
    otherNetwork: src !== undefined && dst !== undefined && src.networkId !== dst.networkId,
  };
}

function lookup(state: DesiredState, ip: Ip): EndpointMatch {
  const ix = index(state);
  const text = formatIp(ip.bytes);
  const entry = ix.hosts.get(text) ?? ix.prefixes.find((p) => cidrContains(p, ip.bytes))?.e;
  const m: EndpointMatch = { ip: text };
  if (entry) {
    m.entry = entry;
    const net = state.networks[entry.networkId];
    if (net !== undefined) m.network = net;
    const wl = state.workloads[entry.workloadId];
    if (wl) m.workload = wl;
  }
  return m;
}

function describe(role: string, m: EndpointMatch): string {
  const e = m.entry;
  if (!e) return `${role} ${m.ip}: no endpoint entry (not a known mesh/local address)`;
  const bits = [e.local ? 'local' : 'not local', e.mesh ? 'mesh' : 'not mesh', `network ${e.networkId}${m.network ? ` (${m.network})` : ''}`];
  if (m.workload) bits.push(`workload ${m.workload}`);
  return `${role} ${m.ip}: endpoint ${e.cidr} ${bits.join(', ')}`;
}

/**
 * Explain the verdict for a destination (the server side of a connection) and,
 * with `from`, whether a connection from that client address would be
 * short-circuited. Throws AddressError for an invalid ip or port.
 */
export function explain(state: DesiredState & Partial<Pick<CompiledState, 'skipped'>>, dst: { ip: string; port: number | string }, from?: string): Explanation {
  const dip = parseIp(dst.ip);
  const port = parsePort(dst.port);
  const d = lookup(state, dip);
  const reasons: string[] = [describe('destination', d)];
  const policy = index(state).policies.get(`${d.ip}|${port}`);
  let verdict: Explanation['verdict'] = 'none';
  if (policy) {
    verdict = policy.verdict;
    const rule = state.rules[policy.ruleId];
    reasons.push(`policy ${d.ip}:${port} => ${policy.verdict} (rule ${policy.ruleId})`);
    if (rule) reasons.push(...rule.reasons);
  } else {
    reasons.push(`no policy for ${d.ip}:${port}: normal path`);
    if (d.entry && d.entry.networkId !== 0) reasons.push('destination is on another network: never short-circuited, so no verdict is kept');
    const sk = state.skipped?.filter((s) => s.address === `${d.ip}:${port}` || s.address.startsWith(`${d.ip}:`) || s.address === d.ip) ?? [];
    for (const s of sk.slice(0, 5)) reasons.push(`skipped endpoint ${s.address} in ${s.cluster}: ${s.reason}`);
  }
  const out: Explanation = { verdict, reasons, dst: { ...d, port } };
  if (policy) out.policy = policy;
  if (from !== undefined) {
    const f = lookup(state, parseIp(from));
    out.from = f;
    reasons.push(describe('source', f));
    const b = sockopsBlockers(verdict, d.entry, f.entry);
    const why: string[] = [];
    if (b.srcNotLocal) why.push('source is not a local address');
    if (b.dstNotLocal) why.push('destination is not a local address');
    if (b.otherNetwork) why.push('ends are on different networks');
    if (b.proxy) why.push('verdict is proxy');
    else if (b.noVerdict) why.push('no bypass verdict');
    out.shortCircuit = why.length === 0;
    reasons.push(out.shortCircuit ? 'short-circuit: both ends local on one network and the destination is bypass' : `normal path: ${why.join('; ')}`);
  }
  return out;
}

// ---- service VIPs: the connect-time rule of bpf/connect.c (mb_vip_pick) ----

/** What the connect hook knows when a socket connects to a VIP:port. */
export interface VipFacts {
  /** the mb_services entry, undefined when VIP:port is not a service */
  service: { bypass: boolean; count: number } | undefined;
  /** the client pod: undefined when its netns has no learned address (the kernel's view), or no --from given */
  src: (EndFacts & { captured: boolean }) | undefined;
  /** the backend the random slot picked: its mb_endpoints entry and mb_policy verdict */
  backend: { end: EndFacts | undefined; verdict: 'bypass' | 'proxy' | 'none' | undefined } | undefined;
}

/** Why a connect is (or is not) resolved, in the kernel's order; each maps to an mb_stats counter. */
export type VipOutcome = 'not_a_service' | 'proxy' | 'no_local_backend' | 'source_unknown' | 'captured' | 'network' | 'translated';

export const VIP_OUTCOME_STAT: Record<Exclude<VipOutcome, 'not_a_service'>, StatName> = {
  proxy: 'vip_skip_proxy',
  no_local_backend: 'vip_no_local_backend',
  source_unknown: 'vip_skip_source_unknown',
  captured: 'vip_skip_captured',
  network: 'vip_skip_network',
  translated: 'vip_translated',
};

/** The connect rule in TypeScript, the one copy (bpf/connect.c checks in this order). */
export function vipOutcome(f: VipFacts): VipOutcome {
  if (!f.service) return 'not_a_service';
  if (!f.service.bypass) return 'proxy';
  if (f.service.count === 0) return 'no_local_backend';
  if (!f.src) return 'source_unknown';
  if (f.src.captured) return 'captured';
  if (!f.src.local) return 'network';
  if (!f.backend) return 'no_local_backend';
  const b = f.backend.end;
  if (!b?.local || b.networkId !== f.src.networkId) return 'network';
  if (f.backend.verdict !== 'bypass') return 'proxy';
  return 'translated';
}
