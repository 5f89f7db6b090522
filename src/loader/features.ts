// Kernel feature detection by probing (libbpf's probes load tiny programs or
// create tiny maps), not by version number. What is missing either stops the
// load with one clear line, or selects a degraded build of the programs.
import { AttachType, Helper, MapType, probeHelper, probeMapType, probeProgType, ProgType } from '../sys/libbpf.js';
import { UserError } from '../errors.js';

export interface Features {
  sockops: boolean;
  skMsg: boolean;
  sockhash: boolean;
  lpmTrie: boolean;
  /** SK_STORAGE maps and bpf_sk_storage_get from sk_msg (mb_sk_state: the ordering guard) */
  skStorage: boolean;
  /** bpf_get_netns_cookie callable from sockops and sk_msg (5.15+) */
  netnsCookie: boolean;
  /**
   * Service VIP resolution at connect: cgroup getpeername hooks (5.8) with
   * socket storage, and bpf_get_netns_cookie in connect hooks. Without them
   * (or without netnsCookie) VIPs are left to kube-proxy.
   */
  vip: boolean;
}

/** The oldest kernel the load can work on (cgroup sockops through bpf_link); 5.15 and newer need no degraded build. */
export const KERNEL_FLOOR = '5.7';

let cached: Features | undefined;

export function probeFeatures(): Features {
  if (cached) return cached;
  cached = {
    sockops: probeProgType(ProgType.SOCK_OPS),
    skMsg: probeProgType(ProgType.SK_MSG),
    sockhash: probeMapType(MapType.SOCKHASH),
    lpmTrie: probeMapType(MapType.LPM_TRIE),
    skStorage: probeMapType(MapType.SK_STORAGE) && probeHelper(ProgType.SK_MSG, Helper.sk_storage_get, AttachType.SK_MSG_VERDICT),
    netnsCookie: probeHelper(ProgType.SOCK_OPS, Helper.get_netns_cookie) && probeHelper(ProgType.SK_MSG, Helper.get_netns_cookie, AttachType.SK_MSG_VERDICT),
    vip:
      probeHelper(ProgType.CGROUP_SOCK_ADDR, Helper.sk_storage_get, AttachType.CGROUP_INET4_GETPEERNAME) &&
      probeHelper(ProgType.CGROUP_SOCK_ADDR, Helper.get_netns_cookie, AttachType.CGROUP_INET4_CONNECT),
  };
  return cached;
}

/** Throw for what meshbpf cannot work without; return the compile defines for what it can degrade. */
export function requireFeatures(f: Features): string[] {
  const missing = [
    f.sockops ? '' : 'sockops programs',
    f.skMsg ? '' : 'sk_msg programs',
    f.sockhash ? '' : 'SOCKHASH maps',
    f.lpmTrie ? '' : 'LPM_TRIE maps',
    f.skStorage ? '' : 'socket storage (SK_STORAGE) from sk_msg',
  ].filter(Boolean);
  // The floor stated here is the README's ("Kernel requirements"); a unit test keeps them equal.
  if (missing.length) throw new UserError(`this kernel lacks ${missing.join(', ')} (meshbpf needs Linux ${KERNEL_FLOOR} or newer with BPF enabled)`);
  const defines = f.netnsCookie ? [] : ['MB_NO_NETNS_COOKIE'];
  // VIP resolution learns client pods by netns cookie in sockops, too.
  if (!f.netnsCookie || !f.vip) defines.push('MB_NO_VIP');
  return defines;
}

/** The one line a kernel without the VIP hooks gets at load. */
export const VIP_MISSING =
  'this kernel lacks cgroup getpeername hooks with socket storage or netns cookies (Linux 5.15+ has all): service VIPs are not resolved at connect, kube-proxy keeps handling them';
