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

export interface Addr {
  idx: number;
  text: string;
  family: Family;
  /**
   * the 16 bytes as four big-endian words (no Buffer per address: 190k
   * addresses held one each); also a cheap total order for sorting
   */
  k0: number;
  k1: number;
  k2: number;
  k3: number;
  /** verdicts for this address by port (few per address: a linear list beats a global map) */
  slots: VerdictSlot[] | undefined;
  /** loopback or unspecified: per-pod, never a mesh endpoint */
  special: boolean;
  /** node IP or inside a local pod CIDR */
  inLocalRange: boolean;
  nodeIp: boolean;
  /** seen as a control-plane endpoint */
  mesh: boolean;
  /** lowest-sorting foreign network seen for this address (undefined = this node's) */
  remoteNet: string | undefined;
  workload: string | undefined;
}

export interface Target {
  addr: Addr;
  port: number;
}

/** One ip:port's verdict (the address holds its slots); key is the reasons joined by newlines (the rule). */
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
