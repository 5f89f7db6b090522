// The compiler's working records, shared by its stages (addresses, endpoints,
// chains, emit, output; compile.ts runs them in that order).
import type { Family } from '../net/ip.js';
import type { XdsSnapshot } from '../xds/types.js';
import type { DesiredState, Locality, Verdict } from './types.js';
import type { Problems } from './json.js';
import type { FilterInfo } from './filters.js';

/** An endpoint address that got no entry, and why (for explain and dumps). */
export interface SkippedEndpoint {
  cluster: string;
  /** best-effort text: "ip:port", internal endpoint id, pipe path */
  address: string;
  reason: string;
}

/** DesiredState plus what explain() wants to know about things without entries. */
export interface CompiledState extends DesiredState {
  skipped: SkippedEndpoint[];
  /** decisions that produced no entry (unresolved clusters, catch-all chains, ...) */
  notes: string[];
}

/** CompiledState without its endpoint and policy lists: the entries went to an EntrySink as they were built. */
export type CompiledSummary = Omit<CompiledState, 'endpoints' | 'policies'>;

/** What every stage reads (the input) and appends to (problems for NACKs, skipped endpoints, notes). */
export interface CompileContext {
  readonly snap: XdsSnapshot;
  readonly loc: Locality;
  readonly problems: Problems;
  readonly skipped: SkippedEndpoint[];
  readonly notes: string[];
}

// Istio catch-all clusters: traffic to whatever the original destination was.
export const PASSTHROUGH = /^(PassthroughCluster|InboundPassthroughCluster.*)$/;
export const BLACKHOLE = 'BlackHoleCluster';

const SPECIAL = 1;
const IN_LOCAL = 2;
const NODE_IP = 4;
const MESH = 8;

/**
 * One address (whatever its spelling). Held once per endpoint address (190k
 * of them for a 50 MiB snapshot), so it is kept small: the 16 bytes as four
 * words (no Buffer each), the booleans as bits, the first verdict slot inline
 * (most addresses serve one port), further ones in `more`.
 */
export class Addr {
  private flags: number;
  /** the first verdict slot: port (-1 = none), verdict, reason key */
  slotPort = -1;
  slotVerdict: Verdict = 'proxy';
  slotKey = '';
  /** slots for further ports (few per address: a linear list beats a global map) */
  more: VerdictSlot[] | undefined = undefined;
  /** lowest-sorting foreign network seen for this address (undefined = this node's) */
  remoteNet: string | undefined = undefined;
  workload: string | undefined = undefined;
  constructor(
    readonly text: string,
    /** the 16 bytes as four big-endian words; also a cheap total order for sorting */
    readonly k0: number,
    readonly k1: number,
    readonly k2: number,
    readonly k3: number,
    special: boolean,
    inLocalRange: boolean,
    nodeIp: boolean,
  ) {
    this.flags = (special ? SPECIAL : 0) | (inLocalRange ? IN_LOCAL : 0) | (nodeIp ? NODE_IP : 0);
  }
  /** 4 for IPv4 (stored v4-mapped), else 6 */
  get family(): Family {
    return this.k0 === 0 && this.k1 === 0 && this.k2 === 0xffff ? 4 : 6;
  }
  /** loopback or unspecified: per-pod, never a mesh endpoint */
  get special(): boolean {
    return (this.flags & SPECIAL) !== 0;
  }
  /** node IP or inside a local pod CIDR */
  get inLocalRange(): boolean {
    return (this.flags & IN_LOCAL) !== 0;
  }
  get nodeIp(): boolean {
    return (this.flags & NODE_IP) !== 0;
  }
  /** seen as a control-plane endpoint */
  get mesh(): boolean {
    return (this.flags & MESH) !== 0;
  }
  set mesh(v: boolean) {
    this.flags = v ? this.flags | MESH : this.flags & ~MESH;
  }
  /** Set the verdict for a port: PROXY wins over BYPASS; between equal verdicts the smallest reason key (order-independent). */
  offer(port: number, verdict: Verdict, key: string): void {
    if (this.slotPort < 0) {
      this.slotPort = port;
      this.slotVerdict = verdict;
      this.slotKey = key;
      return;
    }
    if (this.slotPort === port) {
      if (this.slotVerdict === verdict ? key < this.slotKey : verdict === 'proxy') {
        this.slotVerdict = verdict;
        this.slotKey = key;
      }
      return;
    }
    const list = this.more;
    let cur: VerdictSlot | undefined;
    if (list) for (const x of list) if (x.port === port) cur = x;
    if (!cur) {
      if (list) list.push({ port, verdict, key });
      else this.more = [{ port, verdict, key }];
      return;
    }
    if (cur.verdict === verdict ? key < cur.key : verdict === 'proxy') {
      cur.verdict = verdict;
      cur.key = key;
    }
  }
  /** Every verdict slot, by port (allocates only for an address with several). */
  eachSlot(fn: (port: number, verdict: Verdict, key: string) => void): void {
    if (this.slotPort < 0) return;
    if (!this.more) return fn(this.slotPort, this.slotVerdict, this.slotKey);
    const all = [{ port: this.slotPort, verdict: this.slotVerdict, key: this.slotKey }, ...this.more].sort((x, y) => x.port - y.port);
    for (const x of all) fn(x.port, x.verdict, x.key);
  }
}

export interface Target {
  addr: Addr;
  port: number;
}

/** One ip:port's verdict beyond an address's first (Addr.more); key is the reasons joined by newlines (the rule). */
export interface VerdictSlot {
  port: number;
  verdict: Verdict;
  key: string;
}

export interface Ranges {
  list: { bytes: Buffer; prefixLen: number }[];
  text: string; // '' = any
}

/** One filter chain, classified. */
export interface Member {
  name: string;
  match: string;
  dport: number | undefined;
  ranges: Ranges;
  /** reason when the chain selects on protocol (sniffing / TLS detection) */
  sniff: string | undefined;
  /** chain has criteria beyond port and destination IP (a connection may fall through) */
  partial: boolean;
  filters: FilterInfo[];
  proxy: string | undefined;
  tcpClusters: string[];
  httpClusters: string[];
  rds: boolean;
  harmless: string[];
}

/** A cluster name resolved to the endpoints behind it. */
export interface Resolved {
  targets: Target[];
  note: string;
  kind: 'eds' | 'passthrough' | 'blackhole' | 'origdst' | 'other' | 'unknown';
}

export function cmpAddr(x: Addr, y: Addr): number {
  return x.k0 - y.k0 || x.k1 - y.k1 || x.k2 - y.k2 || x.k3 - y.k3;
}

/** The address's 16 bytes (allocates: for the few places that want a Buffer). */
export function addrBytes(a: Addr): Buffer {
  const b = Buffer.allocUnsafe(16);
  b.writeUInt32BE(a.k0, 0);
  b.writeUInt32BE(a.k1, 4);
  b.writeUInt32BE(a.k2, 8);
  b.writeUInt32BE(a.k3, 12);
  return b;
}

/** Compare 16 bytes (at off) with an address, as Buffer.compare would. */
export function cmpBytesAddr(b: Buffer, a: Addr, off = 0): number {
  return b.readUInt32BE(off) - a.k0 || b.readUInt32BE(off + 4) - a.k1 || b.readUInt32BE(off + 8) - a.k2 || b.readUInt32BE(off + 12) - a.k3;
}

/** Does the prefix (16 bytes + length over 16 bytes, as cidrContains takes it) contain the address? No allocation. */
export function prefixContainsAddr(p: { readonly bytes: Buffer; readonly prefixLen: number }, a: Addr): boolean {
  for (let i = 0; i < 4; i++) {
    const bits = Math.max(0, Math.min(32, p.prefixLen - i * 32));
    if (bits === 0) return true;
    const mask = bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    if ((p.bytes.readUInt32BE(i * 4) & mask) >>> 0 !== ((i === 0 ? a.k0 : i === 1 ? a.k1 : i === 2 ? a.k2 : a.k3) & mask) >>> 0) return false;
  }
  return true;
}
