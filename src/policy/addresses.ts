// Addresses and locality: one record per address (whatever its spelling),
// marked local when it is a node IP or inside a local pod CIDR.
import { cidrContains, formatIp, parseCidr, parseIp, parseIpInto, type Family } from '../net/ip.js';
import type { Locality } from './types.js';
import { Addr, cmpAddr } from './model.js';

function isSpecial(b: Buffer): boolean {
  // 0.0.0.0, 127.0.0.0/8 (v4-mapped), ::, ::1
  if (b.readUInt32BE(0) !== 0 || b.readUInt32BE(4) !== 0) return false;
  const w2 = b.readUInt32BE(8);
  const w3 = b.readUInt32BE(12);
  if (w2 === 0xffff) return w3 === 0 || b[12] === 127;
  return w2 === 0 && (w3 === 0 || w3 === 1);
}

const SCRATCH = Buffer.alloc(16);

function hashWords(k0: number, k1: number, k2: number, k3: number): number {
  let h = Math.imul(k0 ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ k1 ^ (h >>> 15), 0xc2b2ae35);
  h = Math.imul(h ^ k2 ^ (h >>> 13), 0x85ebca6b);
  h = Math.imul(h ^ k3 ^ (h >>> 16), 0xc2b2ae35);
  return (h ^ (h >>> 15)) >>> 0;
}

export interface PodCidr {
  bytes: Buffer;
  prefixLen: number;
  family: Family;
  text: string;
}

export class AddressBook {
  /** list index + 1 by a hash of the four words (open addressing, at most half full): no string key per address */
  private table = new Int32Array(1024);
  /** texts that are not IPs (hostnames, named ports): asked again, not parsed again */
  private readonly notIp = new Set<string>();
  private list: Addr[] = [];
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

  /** How many records (distinct addresses) the book holds. */
  get size(): number {
    return this.list.length;
  }

  /** The record for an address text; undefined when it is not an IP. Different spellings of one address share one record. */
  addr(text: string): Addr | undefined {
    if (this.notIp.has(text)) return undefined;
    // Parsed into one scratch buffer (no allocation for a dotted quad), then found by its words.
    const bytes = SCRATCH;
    let family: Family;
    try {
      family = parseIpInto(text, bytes, 0);
    } catch {
      this.notIp.add(text);
      return undefined;
    }
    const k0 = bytes.readUInt32BE(0);
    const k1 = bytes.readUInt32BE(4);
    const k2 = bytes.readUInt32BE(8);
    const k3 = bytes.readUInt32BE(12);
    const mask = this.table.length - 1;
    let slot = hashWords(k0, k1, k2, k3) & mask;
    for (; ; slot = (slot + 1) & mask) {
      const e = this.table[slot]!;
      if (e === 0) break;
      const a = this.list[e - 1]!;
      if (a.k3 === k3 && a.k2 === k2 && a.k1 === k1 && a.k0 === k0) return a;
    }
    // A dotted quad that passed the parser is already canonical (no leading zeros).
    const canon = family === 4 && !text.includes(':') ? text.trim() : formatIp(bytes);
    let inLocal = this.nodeIps.has(canon);
    if (!inLocal)
      for (const p of this.podCidrs)
        if (cidrContains(p, bytes)) {
          inLocal = true;
          break;
        }
    const a = new Addr(canon, k0, k1, k2, k3, isSpecial(bytes), inLocal, this.nodeIps.has(canon));
    this.list.push(a);
    this.table[slot] = this.list.length;
    if (this.list.length * 2 > this.table.length) this.rehash();
    return a;
  }

  private rehash(): void {
    const t = new Int32Array(this.table.length * 2);
    const mask = t.length - 1;
    this.list.forEach((a, i) => {
      let slot = hashWords(a.k0, a.k1, a.k2, a.k3) & mask;
      while (t[slot] !== 0) slot = (slot + 1) & mask;
      t[slot] = i + 1;
    });
    this.table = t;
  }

  /**
   * Every record, in address order, handed over: the book forgets them (the output
   * is the last stage; it lets each record go once its entries are built).
   */
  takeSorted(): Addr[] {
    const l = this.list.sort(cmpAddr);
    this.list = [];
    this.table = new Int32Array(1024);
    return l;
  }

  /** Record the network an address was seen on. */
  network(a: Addr, net: string | undefined): void {
    if (net === undefined || net === '' || net === this.loc.network) return;
    // Conflicting networks for one address: the foreign one wins (never local-eligible);
    // between two foreign networks the lowest name, so the result is order-independent.
    if (a.remoteNet === undefined || net < a.remoteNet) a.remoteNet = net;
  }
}
