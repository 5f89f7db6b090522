// Sidecar legs: which captured leg a connection is, and which server socket
// its client will expect. The same decision bpf/sockops.c (mb_client_leg)
// makes in the kernel, kept here as a pure function for `policy explain` and
// its unit tests; the kernel tests prove the C on real sockets.
import type { SidecarConfig } from '../maps/codecs.js';
import { formatIp, parseIp } from '../net/ip.js';

export type Owner = 'app' | 'proxy' | 'unknown';

export interface LegFacts {
  src: { ip: string; local: boolean; captured: boolean; networkId: number };
  dst: { ip: string; port: number; local: boolean; captured: boolean; networkId: number };
  owner: Owner;
  config: SidecarConfig;
}

export interface LegDecision {
  leg: 'outbound' | 'mesh' | 'inbound' | 'direct';
  /** the server socket the client expects, as "ip:port" (in the pod's netns when inPod) */
  expects: string | null;
  inPod: boolean;
  why: string;
}

function isLoopback(ip: string): boolean {
  const b = parseIp(ip).bytes;
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return b[12] === 127;
  return formatIp(b) === '::1';
}

function family(ip: string): 4 | 6 {
  return parseIp(ip).family;
}

const hp = (ip: string, port: number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** Mirror of mb_client_leg: 'direct' means "not a captured leg: the direct rule (verdict BYPASS) decides". */
export function classifyLeg(f: LegFacts): LegDecision | { leg: 'never'; why: string } {
  const c = f.config;
  if (!c.enabled) return { leg: 'direct', expects: null, inPod: false, why: 'sidecar pairing is off' };
  const src = formatIp(parseIp(f.src.ip).bytes);
  const dst = formatIp(parseIp(f.dst.ip).bytes);
  const pass = family(src) === 4 ? c.passthroughV4 : c.passthroughV6;
  const toSelf = src === dst;
  if (src === pass) {
    if (!f.dst.captured || f.owner !== 'proxy') return { leg: 'direct', expects: null, inPod: false, why: `from the inbound passthrough source ${pass}, but not the proxy to a captured pod` };
    return { leg: 'inbound', expects: hp(dst, f.dst.port), inPod: true, why: `ISTIO_OUTPUT -s ${pass} -o lo -j RETURN: the sidecar reaches its own app inside the pod` };
  }
  if (f.src.captured) {
    if (f.owner === 'unknown') return { leg: 'never', why: 'the source pod is captured but the socket owner is unknown (connected before meshbpf): never guessed' };
    if (f.owner === 'app') {
      if (toSelf || isLoopback(dst)) return { leg: 'direct', expects: null, inPod: false, why: 'to the pod itself or loopback: not captured (-o lo ! --uid-owner / -d 127.0.0.1 -j RETURN)' };
      if (c.outboundExclude.includes(f.dst.port)) return { leg: 'direct', expects: null, inPod: false, why: `port ${f.dst.port} is excluded from outbound capture` };
      const lo = family(src) === 4 ? '127.0.0.1' : '::1';
      return { leg: 'outbound', expects: hp(lo, c.outboundPort), inPod: true, why: `ISTIO_REDIRECT: REDIRECT --to-ports ${c.outboundPort} (the app's own sidecar)` };
    }
    if (toSelf) return { leg: 'direct', expects: null, inPod: false, why: 'the proxy to its own pod: not a leg' };
  }
  if (!f.src.local || !f.dst.local) return { leg: 'direct', expects: null, inPod: false, why: 'an end is not local to this node' };
  if (f.src.networkId !== f.dst.networkId) return { leg: 'direct', expects: null, inPod: false, why: 'the ends are on different networks' };
  if (toSelf) return { leg: 'direct', expects: null, inPod: false, why: 'to itself' };
  if (f.dst.captured) {
    if (c.inboundExclude.includes(f.dst.port)) return { leg: 'direct', expects: null, inPod: false, why: `port ${f.dst.port} is excluded from inbound capture` };
    return { leg: 'mesh', expects: hp(dst, c.inboundPort), inPod: false, why: `ISTIO_IN_REDIRECT in the destination pod: REDIRECT --to-ports ${c.inboundPort}` };
  }
  if (f.src.captured && f.owner === 'proxy') return { leg: 'mesh', expects: hp(dst, f.dst.port), inPod: false, why: "the sidecar's upstream connection to a local pod without a sidecar" };
  return { leg: 'direct', expects: null, inPod: false, why: 'neither end is captured' };
}
