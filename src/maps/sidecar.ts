// Sidecar pairing settings: which local pods have Istio's sidecar capture
// (mb_sidecar) and Istio's conventions (mb_config). Not xDS state: node-level
// settings from the agent's or sync's flags, written whole on every apply.
import { BPF_ANY } from '../sys/libbpf.js';
import type { SidecarConfig } from './codecs.js';
import type { MeshMaps } from './pinned.js';
import { formatCidr, parseCidr, parseIp } from '../net/ip.js';

/** Istio's defaults (istio-iptables, the injector's proxy uid/gid, pilot's passthrough source). */
export const ISTIO_SIDECAR_DEFAULTS: Omit<SidecarConfig, 'enabled'> = {
  proxyUid: 1337,
  proxyGid: 1337,
  outboundPort: 15001,
  inboundPort: 15006,
  passthroughV4: '127.0.0.6',
  passthroughV6: '::6',
  inboundExclude: [15008, 15090, 15021, 15020],
  outboundExclude: [],
};

export const SIDECAR_NEEDS_COOKIE = 'sidecar pairing needs bpf_get_netns_cookie in sockops (Linux 5.15+), which this kernel lacks: run without --sidecar-cidr';

export interface SidecarSettings {
  /** pod IPs or CIDRs (both families) whose pods have the sidecar's capture rules */
  cidrs: string[];
  config: Omit<SidecarConfig, 'enabled'>;
}

/** Validate and canonicalise; throws RangeError with one line naming the bad value. */
export function sidecarSettings(cidrs: string[], over: Partial<Omit<SidecarConfig, 'enabled'>> = {}): SidecarSettings {
  const config = { ...ISTIO_SIDECAR_DEFAULTS, ...over };
  const port = (p: number, what: string) => {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RangeError(`${what}: ${p} is not a TCP port`);
  };
  port(config.outboundPort, 'sidecar outbound port');
  port(config.inboundPort, 'sidecar inbound port');
  for (const p of [...config.inboundExclude, ...config.outboundExclude]) port(p, 'sidecar excluded port');
  for (const [id, what] of [
    [config.proxyUid, 'proxy uid'],
    [config.proxyGid, 'proxy gid'],
  ] as const) {
    if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) throw new RangeError(`sidecar ${what}: ${id} is not a uid/gid`);
  }
  if (parseIp(config.passthroughV4).family !== 4) throw new RangeError(`sidecar passthrough v4: ${config.passthroughV4} is not IPv4`);
  if (parseIp(config.passthroughV6).family !== 6) throw new RangeError(`sidecar passthrough v6: ${config.passthroughV6} is not IPv6`);
  if (config.inboundExclude.length > 8 || config.outboundExclude.length > 8) throw new RangeError('at most 8 excluded ports per direction');
  return { cidrs: [...new Set(cidrs.map((c) => formatCidr(parseCidr(c))))].sort(), config };
}

/**
 * Write the settings, or turn pairing off (undefined). Safe order: enabling
 * fills mb_sidecar before the config switches pairing on; disabling switches it
 * off before emptying mb_sidecar. A pod missing from mb_sidecar only loses its
 * legs' pairing (its sockets never mirror), it never pairs wrongly.
 */
export function applySidecar(maps: MeshMaps, s: SidecarSettings | undefined): { captured: number; added: number; removed: number } {
  const want = new Set(s?.cidrs ?? []);
  const have = new Set<string>();
  for (const [k] of maps.sidecar.entries()) have.add(k);
  let added = 0;
  let removed = 0;
  if (s) {
    for (const c of want) if (!have.has(c)) (maps.sidecar.set(c, 1, BPF_ANY), added++);
    maps.config.set(0, { enabled: want.size > 0, ...s.config });
  } else {
    const cur = maps.config.get(0);
    if (cur?.enabled) maps.config.set(0, { ...cur, enabled: false });
  }
  for (const c of have) if (!want.has(c)) (maps.sidecar.delete(c), removed++);
  return { captured: want.size, added, removed };
}
