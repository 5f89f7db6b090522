// `meshbpf policy explain`: the verdict the kernel would apply to one
// connection, computed from the live maps with the sockops rule
// (policy/explain.ts sockopsBlockers), plus the compiled reason chain when a
// sync left one.
import { formatIp, parseIp } from '../net/ip.js';
import { sockopsBlockers, VIP_OUTCOME_STAT, vipOutcome, type VipOutcome } from '../policy/explain.js';
import { openMaps, type MeshMaps } from '../maps/pinned.js';
import { STREAM_LEARN_NS, type EndpointValue } from '../maps/codecs.js';
import { hostPort } from '../maps/dump.js';
import { readExclusions, readRuleReasons } from '../maps/state.js';
import { classifyLeg, type Owner } from '../policy/legs.js';
import { describeExclusion, openExclusions } from '../maps/exclude.js';
import type { Exclusion } from '../maps/exclude.js';

/** The mb_no_bypass entry for a destination (absent map: older pins, none). */
function exclusionOf(pinDir: string, ip: string, port: number): Exclusion | undefined {
  try {
    const m = openExclusions(pinDir, { readOnly: true });
    try {
      const v = m.get({ ip, port });
      return v ? { ip, port, ...v } : undefined;
    } finally {
      m.close();
    }
  } catch {
    return undefined;
  }
}

/** The reason line for a fresh mb_streams entry of src -> dst:port, or undefined. */
function learnedStream(m: MeshMaps, src: string, dst: string, port: number): string | undefined {
  const v = m.streams.get({ clientIp: src, serverIp: dst, serverPort: port, netnsCookie: 0n });
  if (!v) return undefined;
  const age = process.hrtime.bigint() - v.learnedNs; // both CLOCK_MONOTONIC
  if (age >= STREAM_LEARN_NS) return undefined;
  const s = (ns: bigint) => (Number(ns / 1_000_000n) / 1000).toFixed(1);
  return `mb_streams ${src} -> ${hostPort(dst, port)}: last switched to the stack ${s(age)} s ago (${v.switches} switch(es), ${v.kept} socket(s) kept on the stack since); learned for another ${s(STREAM_LEARN_NS - age)} s`;
}

export interface Explanation {
  verdict: 'bypass' | 'proxy' | 'none';
  destination: { ip: string; port: number; endpoint: EndpointValue | null };
  source: { ip: string; endpoint: EndpointValue | null } | null;
  policy: { verdict: string; ruleId: number } | null;
  /** set when DST:PORT is a service VIP in mb_services */
  service?: ServiceExplanation;
  reasons: string[];
  /** with --from and sidecar pairing on: the leg for each possible owner of the client socket */
  sidecar: Array<{ owner: Owner; leg: string; expects: string | null; inPod: boolean; why: string }> | null;
}

export interface ServiceExplanation {
  id: number;
  verdict: 'bypass' | 'proxy';
  ruleId: number;
  /** every local backend; the kernel picks one uniformly at connect */
  backends: Array<{ slot: number; ip: string; port: number; outcome: VipOutcome | null }>;
  /** with --from: what a connect from that client does (the same for every backend unless they differ) */
  outcome: VipOutcome | null;
}

function describeEp(e: EndpointValue | null): string {
  if (!e) return 'not in mb_endpoints';
  return `${e.local ? 'LOCAL' : 'not local'}${e.mesh ? ', mesh' : ''}, network ${e.networkId}${e.workloadId ? `, workload ${e.workloadId}` : ''}`;
}

const OUTCOME_TEXT: Record<VipOutcome, string> = {
  not_a_service: 'not a service VIP',
  proxy: 'verdict is not bypass: the connect keeps the VIP (kube-proxy or the mesh routes it)',
  no_local_backend: 'no local backend: kube-proxy routes the VIP',
  source_unknown: 'the client pod is not known yet (no socket of its network namespace seen by sockops): kube-proxy routes the VIP',
  captured: 'the client pod has a sidecar: its sidecar must see the VIP, kube-proxy/the sidecar route it',
  network: 'client or backend not local, or on different networks: kube-proxy routes the VIP',
  translated: 'connect rewritten to this backend; getpeername still returns the VIP',
};

/** A VIP:port in mb_services: which backend a connect gets, and why (the rule of policy/explain.ts vipOutcome). */
function explainService(m: MeshMaps, pinDir: string, vip: string, port: number, src: string | undefined, sv: NonNullable<ReturnType<MeshMaps['services']['get']>>): Explanation {
  const reasons: string[] = [];
  reasons.push(`mb_services ${hostPort(vip, port)}: service ${sv.id}, ${sv.count} local backend${sv.count === 1 ? '' : 's'}, verdict ${sv.bypass ? 'bypass' : 'proxy'} (rule ${sv.ruleId})`);
  for (const r of readRuleReasons(pinDir, sv.ruleId)) reasons.push(`  rule ${sv.ruleId}: ${r}`);
  const srcEp = src === undefined ? null : (m.endpoints.get(src) ?? null);
  // The kernel takes the client from its netns; here the operator names it.
  // An address without an endpoint entry is not local (the kernel's lookup misses too).
  const srcFacts = src === undefined ? undefined : { local: srcEp?.local ?? false, networkId: srcEp?.networkId ?? 0, captured: m.sidecar.get(src) !== undefined };
  if (src !== undefined) reasons.push(`source ${src}: ${describeEp(srcEp)}${srcFacts?.captured ? ', sidecar-captured (mb_sidecar)' : ''}`);
  const backends: ServiceExplanation['backends'] = [];
  for (let slot = 0; slot < sv.count; slot++) {
    const b = m.backends.get({ serviceId: sv.id, slot });
    if (!b) {
      backends.push({ slot, ip: '-', port: 0, outcome: null });
      reasons.push(`  slot ${slot}: missing (a sync out of order?): a connect that picks it keeps the VIP`);
      continue;
    }
    const ep = m.endpoints.get(b.ip) ?? null;
    const pol = m.policy.get({ ip: b.ip, port: b.port }) ?? null;
    const outcome = src === undefined ? null : vipOutcome({ service: { bypass: sv.bypass, count: sv.count }, src: srcFacts, backend: { end: ep ?? undefined, verdict: pol?.verdict } });
    backends.push({ slot, ip: b.ip, port: b.port, outcome });
    reasons.push(`  slot ${slot}: ${hostPort(b.ip, b.port)}: ${describeEp(ep)}; mb_policy ${pol ? pol.verdict : 'none'}${outcome ? ` => ${outcome}` : ''}`);
  }
  const outcomes = new Set(backends.map((b) => b.outcome));
  const outcome =
    src === undefined
      ? null
      : sv.count === 0 || !sv.bypass || srcFacts === undefined || srcFacts.captured
        ? vipOutcome({ service: sv, src: srcFacts, backend: undefined })
        : outcomes.size === 1
          ? ([...outcomes][0] ?? null)
          : 'translated';
  let verdict: Explanation['verdict'] = sv.bypass ? 'bypass' : 'proxy';
  if (src === undefined) {
    reasons.push(
      sv.bypass && sv.count > 0
        ? `=> a connect from a known plain local pod goes to one of the ${sv.count} backend(s), chosen uniformly at random`
        : `=> ${OUTCOME_TEXT[vipOutcome({ service: sv, src: undefined, backend: undefined })]}`,
    );
  } else {
    if (outcome !== 'translated') verdict = outcome === 'proxy' ? 'proxy' : 'none';
    const picks = backends.filter((b) => b.outcome === 'translated').map((b) => hostPort(b.ip, b.port));
    reasons.push(
      outcome === 'translated'
        ? `=> translated: one of ${picks.join(', ')} (uniform), then socket to socket; getpeername returns ${hostPort(vip, port)}`
        : `=> ${OUTCOME_TEXT[outcome ?? 'not_a_service']} (counter ${outcome && outcome !== 'not_a_service' ? VIP_OUTCOME_STAT[outcome] : '-'})`,
    );
  }
  return {
    sidecar: null,
    verdict,
    destination: { ip: vip, port, endpoint: m.endpoints.get(vip) ?? null },
    source: src === undefined ? null : { ip: src, endpoint: srcEp },
    policy: null,
    service: { id: sv.id, verdict: sv.bypass ? 'bypass' : 'proxy', ruleId: sv.ruleId, backends, outcome },
    reasons,
  };
}

export function explainFromKernel(pinDir: string, dstText: string, port: number, fromText?: string): Explanation {
  const dst = formatIp(parseIp(dstText).bytes);
  const src = fromText === undefined ? undefined : formatIp(parseIp(fromText).bytes);
  const m = openMaps(pinDir, { readOnly: true });
  try {
    const sv = m.services.get({ ip: dst, port });
    if (sv) return explainService(m, pinDir, dst, port, src, sv);
    // A /128 lookup in the LPM trie returns the longest matching prefix, as in the kernel.
    const dstEp = m.endpoints.get(dst) ?? null;
    const srcEp = src === undefined ? null : (m.endpoints.get(src) ?? null);
    const pol = m.policy.get({ ip: dst, port }) ?? null;
    const reasons: string[] = [];
    reasons.push(`destination ${dst}: ${describeEp(dstEp)}`);
    if (src !== undefined) reasons.push(`source ${src}: ${describeEp(srcEp)}`);
    reasons.push(pol ? `mb_policy ${hostPort(dst, port)} = ${pol.verdict} (rule ${pol.ruleId})` : `mb_policy has no verdict for ${hostPort(dst, port)}`);
    if (pol) for (const r of readRuleReasons(pinDir, pol.ruleId)) reasons.push(`  rule ${pol.ruleId}: ${r}`);
    const ex = readExclusions(pinDir);
    if (ex) reasons.push(`operator exclusions (never bypassed, as client or server): namespaces ${ex.namespaces.join(',') || '-'}; workloads ${ex.workloads.join(',') || '-'}`);

    const b = sockopsBlockers(pol?.verdict, dstEp ?? undefined, srcEp ?? undefined);
    const excluded = exclusionOf(pinDir, dst, port);
    const learned = src === undefined ? undefined : learnedStream(m, src, dst, port);
    let verdict: Explanation['verdict'];
    if (b.noVerdict) {
      verdict = 'none';
      reasons.push('=> normal path: unknown destinations are never short-circuited');
    } else if (b.proxy) {
      verdict = 'proxy';
      reasons.push('=> proxy: the connection keeps the normal path so Envoy sees it');
    } else if (b.dstNotLocal || !dstEp) {
      verdict = 'none';
      reasons.push('=> normal path: the destination is not a local address of this node');
    } else if (src !== undefined && b.srcNotLocal) {
      verdict = 'none';
      reasons.push('=> normal path: the source is not a local mesh address of this node');
    } else if (src !== undefined && srcEp && b.otherNetwork) {
      verdict = 'none';
      reasons.push(`=> normal path: source network ${srcEp.networkId} != destination network ${dstEp.networkId}`);
    } else if (excluded) {
      // sockops checks mb_no_bypass last, right before the insert
      verdict = 'none';
      reasons.push(`mb_no_bypass ${describeExclusion(excluded)}`);
      reasons.push('=> normal path: the destination is excluded from bypass (meshbpf exclude list)');
    } else if (learned) {
      // sockops checks mb_streams first in mb_pair (bpf/include/meshbpf.h, "Learned streams")
      verdict = 'none';
      reasons.push(learned);
      reasons.push('=> normal path: this client streamed small writes to this destination, which the stack moves faster; its new connections keep the stack until the entry is older than the window');
    } else {
      verdict = 'bypass';
      reasons.push(src === undefined ? `=> bypass for clients that are local on network ${dstEp.networkId}` : '=> bypass: socket to socket, skipping the TCP/IP stack');
    }
    let sidecar: Explanation['sidecar'] = null;
    const cfg = m.config.get(0);
    if (src !== undefined && cfg?.enabled) {
      const end = (ip: string, ep: EndpointValue | null) => ({ ip, local: !!ep?.local, captured: !!ep?.local && m.sidecar.get(ip) !== undefined, networkId: ep?.networkId ?? 0 });
      sidecar = (['app', 'proxy'] as const).map((owner) => {
        const d = classifyLeg({ owner, config: cfg, src: end(src, srcEp), dst: { ...end(dst, dstEp), port } });
        return { owner, leg: d.leg, expects: 'expects' in d ? d.expects : null, inPod: 'inPod' in d ? d.inPod : false, why: d.why };
      });
      for (const x of sidecar) {
        const pair =
          x.leg === 'direct'
            ? 'the direct rule above decides'
            : x.leg === 'never'
              ? 'never paired'
              : `paired with the server socket ${x.expects}${x.inPod ? ' in the same pod' : ''} if it is exactly that one`;
        reasons.push(`sidecar: if ${x.owner === 'app' ? 'the app' : 'the proxy (uid/gid ' + cfg.proxyUid + ')'} connects: leg ${x.leg}: ${x.why}; ${pair}`);
      }
    }
    return {
      sidecar,
      verdict,
      destination: { ip: dst, port, endpoint: dstEp },
      source: src === undefined ? null : { ip: src, endpoint: srcEp },
      policy: pol,
      reasons,
    };
  } finally {
    m.close();
  }
}

export function renderExplain(e: Explanation): string {
  return [`verdict: ${e.verdict}`, ...e.reasons.map((r) => `  ${r}`)].join('\n');
}
