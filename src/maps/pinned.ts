// The meshbpf maps as typed handles, opened from a pin directory. The CLI opens
// them read-only for dump/status/explain (the kernel then refuses writes).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { objGet } from '../sys/libbpf.js';
import { BpfMap, PerCpuCounters } from './map.js';
import { NotLoadedError } from '../errors.js';
import {
  backendKey,
  backendValue,
  netnsValue,
  serviceValue,
  type BackendKey,
  type BackendValue,
  type NetnsValue,
  type ServiceValue,
  legValue,
  sidecarConfig,
  u32Host,
  type LegValue,
  type SidecarConfig,
  endpointKey,
  endpointValue,
  policyKey,
  policyValue,
  sockKey,
  STAT_NAMES,
  u64Host,
  streamKey,
  streamValue,
  type StreamKey,
  type StreamValue,
  type Codec,
  type EndpointValue,
  type PolicyKey,
  type PolicyValue,
  type SockKey,
  type Stats,
} from './codecs.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/meshbpf';

/** The maps users read and the sync writes. */
export const MAP_NAMES = [
  'mb_sockets',
  'mb_endpoints',
  'mb_policy',
  'mb_stats',
  'mb_config',
  'mb_sidecar',
  'mb_legs',
  'mb_services',
  'mb_backends',
  'mb_netns',
  'mb_inpod',
  'mb_inpod_ns',
  'mb_streams',
] as const;
export type MapName = (typeof MAP_NAMES)[number];
/** Every map meshbpf pins: MAP_NAMES plus internal ones (socket storage) and
 * the splice guard's (bpf/include/splice.h). */
export const PINNED_MAPS = [...MAP_NAMES, 'mb_sk_state', 'mb_sk_vip', 'mb_no_bypass', 'mb_sk_splice', 'mb_listeners', 'mb_turns'] as const;

export const PROG_NAMES = ['mb_sockops', 'mb_sk_msg', 'mb_connect4', 'mb_connect6', 'mb_getpeername4', 'mb_getpeername6', 'mb_getsockname4', 'mb_getsockname6', 'mb_inpod_lookup'] as const;
/** Programs a degraded build leaves out (kernels without getpeername/getsockname hooks: no VIP resolution, no in-pod port answer). */
export const VIP_PROGS: readonly string[] = ['mb_getpeername4', 'mb_getpeername6', 'mb_getsockname4', 'mb_getsockname6'];
/** The sk_lookup program `meshbpf inpod attach` links to an enrolled pod's namespace (bpf/inpod.c). */
export const INPOD_PROG = 'mb_inpod_lookup';

/**
 * Programs attached to the cgroup through pinned bpf_links, in attach order:
 * getpeername before connect (no translated socket may exist before its VIP
 * can be answered), the connect hooks (owner marks) before sockops, so no
 * socket reaches sockops unmarked while sidecar pairing is on; unload detaches
 * in reverse.
 */
export const CGROUP_LINKS = [
  { prog: 'mb_getpeername4', link: 'mb_getpeername4_cgroup' },
  { prog: 'mb_getpeername6', link: 'mb_getpeername6_cgroup' },
  { prog: 'mb_getsockname4', link: 'mb_getsockname4_cgroup' },
  { prog: 'mb_getsockname6', link: 'mb_getsockname6_cgroup' },
  { prog: 'mb_connect4', link: 'mb_connect4_cgroup' },
  { prog: 'mb_connect6', link: 'mb_connect6_cgroup' },
  { prog: 'mb_sockops', link: 'mb_sockops_cgroup' },
] as const;

/** Tracing links of the splice guard (optional: the kernel may refuse them),
 * pinned as links/<program name>. detect: bpf/splice.c; refuse: bpf/splice_refuse.c. */
export const SPLICE_GUARD_LINKS = {
  detect: ['mb_splice_seen'],
  refuse: ['mb_splice_in', 'mb_splice_out', 'mb_sendfile_in', 'mb_sendfile_out', 'mb_splice_refuse'],
} as const;

export function pinPaths(pinDir: string) {
  return {
    root: pinDir,
    maps: join(pinDir, 'maps'),
    progs: join(pinDir, 'progs'),
    links: join(pinDir, 'links'),
    map: (name: string) => join(pinDir, 'maps', name),
    prog: (name: string) => join(pinDir, 'progs', name),
    sockopsLink: join(pinDir, 'links', 'mb_sockops_cgroup'),
    link: (name: string) => join(pinDir, 'links', name),
  };
}

export interface MeshMaps {
  sockets: BpfMap<SockKey, bigint>;
  endpoints: BpfMap<string, EndpointValue>;
  policy: BpfMap<PolicyKey, PolicyValue>;
  stats: PerCpuCounters;
  /** sidecar pairing settings (one entry, key 0) */
  config: BpfMap<number, SidecarConfig>;
  /** local addresses / CIDRs whose pods have Istio's sidecar capture */
  sidecar: BpfMap<string, number>;
  /** live client claims of captured legs, keyed by the client's address */
  legs: BpfMap<PolicyKey, LegValue>;
  /** service VIP:port -> id, local backend count, verdict */
  services: BpfMap<PolicyKey, ServiceValue>;
  /** {service id, slot} -> local endpoint ip:targetPort */
  backends: BpfMap<BackendKey, BackendValue>;
  /** netns cookie -> pod addresses seen there (learned by sockops) */
  netns: BpfMap<bigint, NetnsValue>;
  /** addresses of pods enrolled for in-pod capture skipping -> their netns cookie (`meshbpf inpod attach`) */
  inpod: BpfMap<string, bigint>;
  /** netns cookies of the enrolled pods (sockops records their listeners) */
  inpodNs: BpfMap<bigint, number>;
  /** learned one-way streams of small writes: client address + destination -> when (sk_msg writes, sockops reads) */
  streams: BpfMap<StreamKey, StreamValue>;
  close(): void;
}

export function openMaps(pinDir: string, opts: { readOnly?: boolean } = {}): MeshMaps {
  const p = pinPaths(pinDir);
  for (const name of MAP_NAMES) {
    if (!existsSync(p.map(name))) {
      throw new NotLoadedError(`meshbpf is not loaded at ${pinDir} (no ${p.map(name)}); run \`meshbpf load --pin-dir ${pinDir}\` first`);
    }
  }
  const ro = opts.readOnly ?? false;
  const opened: Array<{ close(): void }> = [];
  try {
    const open = <K, V>(name: MapName, key: Codec<K>, value: Codec<V>): BpfMap<K, V> => {
      const m = new BpfMap(objGet(p.map(name), ro), key, value, name);
      opened.push(m);
      return m;
    };
    const sockets = open('mb_sockets', sockKey, u64Host);
    const endpoints = open('mb_endpoints', endpointKey, endpointValue);
    const policy = open('mb_policy', policyKey, policyValue);
    const stats = new PerCpuCounters(objGet(p.map('mb_stats'), ro), 'mb_stats');
    opened.push(stats);
    const config = open('mb_config', u32Host, sidecarConfig);
    const sidecar = open('mb_sidecar', endpointKey, u32Host);
    const legs = open('mb_legs', policyKey, legValue);
    const services = open('mb_services', policyKey, serviceValue);
    const backends = open('mb_backends', backendKey, backendValue);
    const netns = open('mb_netns', u64Host, netnsValue);
    const inpod = open('mb_inpod', endpointKey, u64Host);
    const inpodNs = open('mb_inpod_ns', u64Host, u32Host);
    const streams = open('mb_streams', streamKey, streamValue);
    return { sockets, endpoints, policy, stats, config, sidecar, legs, services, backends, netns, inpod, inpodNs, streams, close: () => opened.forEach((m) => m.close()) };
  } catch (e) {
    opened.forEach((m) => m.close());
    throw e;
  }
}

export function readStats(c: PerCpuCounters): Stats {
  const vals = c.all(STAT_NAMES.length);
  return Object.fromEntries(STAT_NAMES.map((n, i) => [n, vals[i] ?? 0n])) as Stats;
}
