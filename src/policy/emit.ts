// Emit: a chain's verdict becomes verdict slots on the endpoints behind it
// (its clusters' EDS targets, and for inbound per-port chains the local
// endpoints on that port). One slot per ip:port: PROXY beats BYPASS, and
// between equal verdicts the smallest reason key, so arrival order never matters.
import type { Verdict } from './types.js';
import type { EndpointIndex } from './endpoints.js';
import { cmpBytesAddr, prefixContainsAddr, type CompileContext, type Member, type Ranges, type Target } from './model.js';

export interface EmitScope {
  /** an inbound listener's chain: the port it serves (when known) and which local addresses it matches */
  inbound?: { port: number | undefined; ranges: Ranges; lip: Buffer | undefined };
  /** the port an HCM with RDS routes for (Istio's outbound|PORT|* convention) */
  rdsPort?: number;
}

export class Emitter {
  constructor(
    private readonly ctx: CompileContext,
    private readonly index: EndpointIndex,
  ) {}

  member(lhead: string, m: Member, verdict: Verdict, why: string, scope: EmitScope): void {
    const { notes } = this.ctx;
    const inbound = scope.inbound;
    const chainHead = `chain ${m.name} ${m.match}`;
    let emitted = false;
    const viaClusters = (names: string[], filterDesc: string): void => {
      for (const c of names) {
        const r = this.index.resolve(c);
        if (r.targets.length === 0) {
          notes.push(`${lhead}, ${chainHead}: ${r.note}: no entry`);
          continue;
        }
        this.targets(r.targets, verdict, [lhead, chainHead, `${filterDesc} -> ${r.note}`, why]);
        emitted = true;
      }
    };
    viaClusters(m.tcpClusters, 'tcp_proxy');
    viaClusters(m.httpClusters, 'HTTP route');
    if (m.rds && !inbound && verdict === 'proxy' && scope.rdsPort !== undefined) {
      // Routes come from RDS (not in the snapshot). Istio convention: the outbound HTTP listener
      // for port P routes to outbound|P|*|* clusters. PROXY evidence only, never BYPASS.
      viaClusters(this.index.outboundClustersByPort().get(scope.rdsPort) ?? [], `HCM via RDS (Istio convention: outbound|${scope.rdsPort}|*)`);
    }
    const inboundPort = inbound?.port;
    if (inboundPort !== undefined && inbound) {
      // A port-specific inbound chain serves the local endpoints listening on that port. For BYPASS
      // a mesh service must stand behind it: not only catch-all passthrough clusters.
      const onlyCatchAll = m.tcpClusters.length > 0 && m.tcpClusters.every((c) => this.index.resolve(c).kind === 'passthrough');
      if (verdict === 'proxy' || !onlyCatchAll) {
        const locals = (this.index.localEndpointsByPort().get(inboundPort) ?? []).filter(
          (a) => (inbound.ranges.list.length === 0 || inbound.ranges.list.some((p) => prefixContainsAddr(p, a))) && (!inbound.lip || cmpBytesAddr(inbound.lip, a) === 0),
        );
        if (locals.length) {
          this.targets(
            locals.map((a) => ({ addr: a, port: inboundPort })),
            verdict,
            [lhead, chainHead, `local endpoints serving port ${inboundPort}`, why],
          );
          emitted = true;
        }
      } else {
        notes.push(`${lhead}, ${chainHead}: only catch-all passthrough clusters: no bypass entry`);
      }
    }
    if (!emitted && m.tcpClusters.length === 0 && m.httpClusters.length === 0) notes.push(`${lhead}, ${chainHead}: ${why}: no endpoints resolved, no entry`);
  }

  private targets(targets: Target[], verdict: Verdict, reasons: string[]): void {
    const key = reasons.join('\n'); // the rule: output.ts splits it back into reasons
    for (const t of targets) {
      // A foreign-network address can never short-circuit: no verdict for it.
      if (t.addr.remoteNet !== undefined) continue;
      t.addr.offer(t.port, verdict, key);
    }
  }
}
