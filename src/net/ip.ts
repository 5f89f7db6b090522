// Address parsing shared by every layer. meshbpf stores every IP as 16 bytes,
// IPv4 as IPv4-mapped (::ffff:a.b.c.d), exactly as the kernel ABI does
// (bpf/include/meshbpf.h). One parser, one formatter: do not write another.
import { isIPv4, isIPv6 } from 'node:net';
import { AddressError } from '../errors.js';

export type Family = 4 | 6;

/** A parsed address: 16 bytes (v4-mapped for IPv4) plus the family it was written in. */
export interface Ip {
  readonly bytes: Buffer; // length 16
  readonly family: Family;
}

/** A parsed prefix over the 16-byte address space (IPv4 /24 => prefixLen 120). */
export interface Cidr {
  readonly ip: Ip; // network address (host bits zeroed)
  readonly prefixLen: number; // 0..128 over 16 bytes
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

function parseV4Into(s: string, out: Buffer, off: number): void {
  const parts = s.split('.');
  for (let i = 0; i < 4; i++) out[off + i] = Number(parts[i]);
}

function parseV6(s: string): Buffer {
  const out = Buffer.alloc(16);
  // Embedded IPv4 tail (::ffff:1.2.3.4)
  let tail: Buffer | undefined;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.')) {
    tail = Buffer.alloc(4);
    parseV4Into(s.slice(lastColon + 1), tail, 0);
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const r = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? h : [...h, ...new Array<string>(8 - h.length - r.length).fill('0'), ...r];
  for (let i = 0; i < 8; i++) out.writeUInt16BE(parseInt(groups[i] ?? '0', 16), i * 2);
  if (tail) tail.copy(out, 12);
  return out;
}

/**
 * Fast path for dotted-quad IPv4: writes ::ffff:a.b.c.d into out[off..off+16]
 * without allocating. Returns false if `s` is not strictly a.b.c.d (octets
 * 0..255, no leading zeros, nothing else), leaving the caller to try IPv6.
 */
function parseV4Fast(s: string, out: Buffer, off: number): boolean {
  const n = s.length;
  if (n < 7 || n > 15) return false;
  let octet = 0;
  let digits = 0;
  let part = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : 46; // virtual trailing '.'
    if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return false; // leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return false;
    } else if (c === 46) {
      if (digits === 0 || part > 3) return false;
      out[off + 12 + part++] = octet;
      octet = 0;
      digits = 0;
    } else return false;
  }
  if (part !== 4) return false;
  out.fill(0, off, off + 10);
  out[off + 10] = 0xff;
  out[off + 11] = 0xff;
  return true;
}

/**
 * Parse an address into out[off..off+16] (v4-mapped for IPv4) without
 * allocating on the IPv4 path. Returns the family. Throws AddressError.
 */
export function parseIpInto(s: string, out: Buffer, off: number): Family {
  if (parseV4Fast(s, out, off)) return 4;
  const ip = parseIp(s);
  ip.bytes.copy(out, off);
  return ip.family;
}

/**
 * Parse "ip" or "ip/len" into out[off..off+16]; returns the prefix length over
 * 16 bytes. Same rules as parseCidr (host bits must be zero).
 */
export function parseCidrInto(s: string, out: Buffer, off: number): number {
  const slash = s.indexOf('/');
  if (slash < 0) {
    parseIpInto(s, out, off);
    return 128;
  }
  const family = parseIpInto(s.slice(0, slash), out, off);
  const max = family === 4 ? 32 : 128;
  const lenText = s.slice(slash + 1);
  const len = /^\d{1,3}$/.test(lenText) ? Number(lenText) : NaN;
  if (!(len <= max)) throw new AddressError(`bad prefix length in ${JSON.stringify(s)} (0..${max})`);
  const prefixLen = family === 4 ? len + 96 : len;
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, prefixLen - i * 8));
    if ((out[off + i]! & ~((0xff << (8 - bits)) & 0xff) & 0xff) !== 0) return parseCidr(s).prefixLen; // throws with the hint
  }
  return prefixLen;
}

/** Parse an IPv4 or IPv6 address (no zone, no brackets). Throws AddressError. */
export function parseIp(s: string): Ip {
  const t = s.trim();
  // A zone (fe80::1%eth0) names an interface, not a node-wide endpoint: refuse it
  // rather than silently dropping it.
  if (t.includes('%')) throw new AddressError(`scoped IPv6 addresses (with %zone) are not supported: ${JSON.stringify(s)}`);
  if (isIPv4(t)) {
    const b = Buffer.alloc(16);
    V4_MAPPED_PREFIX.copy(b, 0);
    parseV4Into(t, b, 12);
    return { bytes: b, family: 4 };
  }
  if (isIPv6(t)) {
    const b = parseV6(t);
    // An IPv4-mapped IPv6 address is the same endpoint as the IPv4 one.
    return { bytes: b, family: isV4Mapped(b) ? 4 : 6 };
  }
  throw new AddressError(`not an IP address: ${JSON.stringify(s)}`);
}

export function tryParseIp(s: string): Ip | undefined {
  try {
    return parseIp(s);
  } catch {
    return undefined;
  }
}

export function isV4Mapped(b: Buffer): boolean {
  return b.length === 16 && b.compare(V4_MAPPED_PREFIX, 0, 12, 0, 12) === 0;
}

/** Render 16 bytes as text: dotted quad for v4-mapped, RFC 5952 for IPv6. */
export function formatIp(b: Buffer | Uint8Array): string {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (isV4Mapped(buf)) return `${buf[12]}.${buf[13]}.${buf[14]}.${buf[15]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(i * 2));
  // longest run of zero groups (length >= 2) becomes ::
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

/**
 * Parse "ip" or "ip/len". A bare IP is a host prefix (/32 or /128). The prefix
 * length is given in the address's own family and stored over 16 bytes (IPv4
 * adds 96). Host bits must be zero: "10.0.0.1/24" is refused, not silently
 * widened or narrowed.
 */
export function parseCidr(s: string): Cidr {
  const t = s.trim();
  const slash = t.indexOf('/');
  const ip = parseIp(slash < 0 ? t : t.slice(0, slash));
  const max = ip.family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const lenText = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) {
      throw new AddressError(`bad prefix length in ${JSON.stringify(s)} (0..${max})`);
    }
    len = Number(lenText);
  }
  const prefixLen = ip.family === 4 ? len + 96 : len;
  const masked = maskBytes(ip.bytes, prefixLen);
  if (!masked.equals(ip.bytes)) {
    throw new AddressError(`${s} has host bits set; did you mean ${formatCidr({ ip: { bytes: masked, family: ip.family }, prefixLen })}?`);
  }
  return { ip, prefixLen };
}

export function maskBytes(b: Buffer, prefixLen: number): Buffer {
  const out = Buffer.from(b);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, prefixLen - i * 8));
    out[i] = (out[i] ?? 0) & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

/** Canonical text: "10.1.0.0/16", "fd00::/64", "10.1.2.3/32". */
export function formatCidr(c: Cidr): string {
  const v4 = isV4Mapped(c.ip.bytes) && c.prefixLen >= 96;
  return `${formatIp(c.ip.bytes)}/${v4 ? c.prefixLen - 96 : c.prefixLen}`;
}

/**
 * Does the prefix (16 bytes + length over 16 bytes) contain the 16-byte
 * address? The one implementation (the compiler and explain use it); no
 * allocation, since the compiler calls it per endpoint. IPv4 and IPv6 never
 * mix: an IPv4 prefix covers the ::ffff: bytes.
 */
export function cidrContains(p: { readonly bytes: Buffer; readonly prefixLen: number }, addr: Buffer): boolean {
  // Compare whole bytes, then the partial byte.
  const full = p.prefixLen >> 3;
  for (let i = 0; i < full; i++) if (p.bytes[i] !== addr[i]) return false;
  const bits = p.prefixLen & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return ((p.bytes[full] ?? 0) & mask) === ((addr[full] ?? 0) & mask);
}

export function isLoopback(ip: Ip): boolean {
  const b = ip.bytes;
  if (isV4Mapped(b)) return b[12] === 127;
  return b.compare(Buffer.from('00000000000000000000000000000001', 'hex')) === 0;
}

/** Parse a TCP/UDP port given as text or number: 1..65535, integers only. */
export function parsePort(v: string | number): number {
  const n = typeof v === 'number' ? v : /^\d{1,5}$/.test(v.trim()) ? Number(v.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new AddressError(`not a port (1..65535): ${JSON.stringify(v)}`);
  return n;
}
