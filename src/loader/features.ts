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
  /** bpf_get_netns_cookie callable from sockops and sk_msg (5.15+) */
  netnsCookie: boolean;
}

let cached: Features | undefined;

export function probeFeatures(): Features {
  if (cached) return cached;
  cached = {
    sockops: probeProgType(ProgType.SOCK_OPS),
    skMsg: probeProgType(ProgType.SK_MSG),
    sockhash: probeMapType(MapType.SOCKHASH),
    lpmTrie: probeMapType(MapType.LPM_TRIE),
    netnsCookie: probeHelper(ProgType.SOCK_OPS, Helper.get_netns_cookie) && probeHelper(ProgType.SK_MSG, Helper.get_netns_cookie, AttachType.SK_MSG_VERDICT),
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
  ].filter(Boolean);
  if (missing.length) throw new UserError(`this kernel lacks ${missing.join(', ')} (meshbpf needs Linux 5.7 or newer with BPF enabled)`);
  return f.netnsCookie ? [] : ['MB_NO_NETNS_COOKIE'];
}
