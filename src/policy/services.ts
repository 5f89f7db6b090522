// Services: the VIP:port an outbound listener names, its verdict and its LOCAL
// backends, for connect-time resolution (bpf/connect.c). Istio writes one
// outbound listener per TCP service VIP:port ("10.96.0.10_5432", address =
// the ClusterIP, additional_addresses = its other family) and, where several
// services share a port, one 0.0.0.0_PORT listener whose chains match on the
// VIP with a host prefix_range. The backends are the EDS targets of the
// chain's clusters that are local to this node and on this node's network.
//
// Fail safe: an address that is itself an endpoint, a node IP or inside a
// local pod CIDR is not a VIP (headless services name pod IPs: rewriting one
// pod's address to another pod would re-route). PROXY beats BYPASS for one
// VIP:port; BYPASS backends of competing chains are merged.
import type { Verdict, ServiceEntry } from './types.js';
import type { AddressBook } from './addresses.js';
import type { EndpointIndex } from './endpoints.js';
import { cmpAddr, type Addr, type Member } from './model.js';

interface Draft {
  vip: Addr;
  port: number;
  verdict: Verdict;
  backends: Map<string, { addr: Addr; port: number }>;
  reasons: string[];
  key: string;
}

/** A service entry before rule ids: the reason key names its rule (output.ts). */
export interface ServiceDraft {
  entry: Omit<ServiceEntry, 'ruleId'>;
  key: string;
}

export class ServiceCollector {
  private readonly drafts = new Map<string, Draft>();
  readonly notes: string[] = [];

  constructor(
    private readonly book: AddressBook,
    private readonly index: EndpointIndex,
  ) {}

  /** An address text as a VIP record, or undefined (with a note) when it cannot be one. */
  vip(text: string, where: string): Addr | undefined {
    const a = this.book.addr(text);
    if (!a || a.special) return undefined;
    if (a.mesh || a.inLocalRange || a.nodeIp) {
      this.notes.push(`${where}: ${a.text} is an endpoint or local address, not a service VIP: not resolved at connect`);
      return undefined;
    }
    return a;
  }

  /** A chain's verdict for the VIPs it serves. */
  member(lhead: string, m: Member, vips: Addr[], port: number, verdict: Verdict, why: string): void {
    const clusters = [...m.tcpClusters, ...m.httpClusters];
    for (const vip of vips) {
      const found: { addr: Addr; port: number }[] = [];
      const via: string[] = [];
      for (const c of clusters) {
        const r = this.index.resolve(c);
        let n = 0;
        for (const t of r.targets) {
          const a = t.addr;
          if (!a.inLocalRange || a.remoteNet !== undefined || a.special || a.family !== vip.family || t.port <= 0) continue;
          found.push(t);
          n++;
        }
        via.push(`${r.note}: ${n} local backend${n === 1 ? '' : 's'}`);
      }
      const reasons = [lhead, `chain ${m.name} ${m.match}`, `service VIP ${vip.family === 6 ? `[${vip.text}]` : vip.text}:${port}`, ...via, why];
      const key = reasons.join('\n');
      const id = `${vip.text}|${port}`;
      const cur = this.drafts.get(id);
      if (!cur || (cur.verdict === 'bypass' && verdict === 'proxy')) {
        this.drafts.set(id, { vip, port, verdict, backends: new Map(found.map((b) => [`${b.addr.text}|${b.port}`, b])), reasons, key });
      } else if (cur.verdict === verdict) {
        // Competing chains with one verdict: every backend either would send to.
        for (const b of found) cur.backends.set(`${b.addr.text}|${b.port}`, b);
        if (key < cur.key) {
          cur.reasons = reasons;
          cur.key = key;
        }
      }
    }
  }

  /** Sorted entries and their reason keys (rule ids are assigned by output.ts). */
  list(): ServiceDraft[] {
    const out = [...this.drafts.values()].map((d) => {
      const backends = [...d.backends.values()].sort((x, y) => cmpAddr(x.addr, y.addr) || x.port - y.port).map((b) => ({ ip: b.addr.text, port: b.port }));
      return { entry: { vip: d.vip.text, port: d.port, verdict: d.verdict, backends }, key: d.key, vip: d.vip };
    });
    out.sort((x, y) => cmpAddr(x.vip, y.vip) || x.entry.port - y.entry.port);
    return out.map(({ entry, key }) => ({ entry, key }));
  }
}
