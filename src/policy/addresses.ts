// Addresses and locality: one record per address (whatever its spelling),
// marked local when it is a node IP or inside a local pod CIDR.
import { cidrContains, formatIp, parseCidr, parseIp, parseIpInto, type Family } from '../net/ip.js';
import type { Locality } from './types.js';
import type { Addr } from './model.js';

function isSpecial(b: Buffer): boolean {
  // 0.0.0.0, 127.0.0.0/8 (v4-mapped), ::, ::1
  if (b.readUInt32BE(0) !== 0 || b.readUInt32BE(4) !== 0) return false;
  const w2 = b.readUInt32BE(8);
  const w3 = b.readUInt32BE(12);
  if (w2 === 0xffff) return w3 === 0 || b[12] === 127;
  return w2 === 0 && (w3 === 0 || w3 === 1);
}

const SCRATCH = Buffer.alloc(16);

export interface PodCidr {
  bytes: Buffer;
  prefixLen: number;
  family: Family;
  text: string;
}

export class AddressBook {
  private readonly addrs = new Map<string, Addr | null>();
  readonly list: Addr[] = [];
  readonly podCidrs: PodCidr[] = [];
  private readonly nodeIps = new Set<string>();

  /** Locality is our own configuration: a bad entry is a bug to surface, so it is parsed strictly (throws). */
  constructor(private readonly loc: Locality) {
    for (const c of loc.podCidrs) {
      const p = parseCidr(c);
      const family: Family = p.ip.family;
      const len = family === 4 ? p.prefixLen - 96 : p.prefixLen;
      this.podCidrs.push({ bytes: p.ip.bytes, prefixLen: p.prefixLen, family, text: `${formatIp(p.ip.bytes)}/${len}` });
    }
    for (const n of loc.nodeIps) this.nodeIps.add(formatIp(parseIp(n).bytes));
    for (const n of this.nodeIps) this.addr(n);
  }

  /** The record for an address text; undefined when it is not an IP. */
  addr(text: string): Addr | undefined {
    const hit = this.addrs.get(text);
    if (hit !== undefined) return hit ?? undefined;
    // Parsed into one scratch buffer: no Buffer per address (the record keeps four words).
    const bytes = SCRATCH;
    let family: Family;
    try {
      family = parseIpInto(text, bytes, 0);
    } catch {
      this.addrs.set(text, null);
      return undefined;
    }
    // A dotted quad that passed the parser is already canonical (no leading zeros).
    const canon = family === 4 && !text.includes(':') ? text.trim() : formatIp(bytes);
    // Different spellings of one address share one record.
    let a = canon === text ? undefined : (this.addrs.get(canon) ?? undefined);
    if (!a) {
      let inLocal = this.nodeIps.has(canon);
      if (!inLocal)
        for (const p of this.podCidrs)
          if (cidrContains(p, bytes)) {
            inLocal = true;
            break;
          }
      a = {
        idx: this.list.length,
        text: canon,
        family,
        k0: bytes.readUInt32BE(0),
        k1: bytes.readUInt32BE(4),
        k2: bytes.readUInt32BE(8),
        k3: bytes.readUInt32BE(12),
        slots: undefined,
        special: isSpecial(bytes),
        inLocalRange: inLocal,
        nodeIp: this.nodeIps.has(canon),
        mesh: false,
        remoteNet: undefined,
        workload: undefined,
      };
      this.list.push(a);
      this.addrs.set(canon, a);
    }
    if (text !== canon) this.addrs.set(text, a);
    return a;
  }

  /** Record the network an address was seen on. */
  network(a: Addr, net: string | undefined): void {
    if (net === undefined || net === '' || net === this.loc.network) return;
    // Conflicting networks for one address: the foreign one wins (never local-eligible);
    // between two foreign networks the lowest name, so the result is order-independent.
    if (a.remoteNet === undefined || net < a.remoteNet) a.remoteNet = net;
  }
}
