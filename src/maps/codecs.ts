// Explicit codecs for every meshbpf map, mirroring bpf/include/meshbpf.h byte
// for byte. Byte order is in the names: *Net = network order on the wire,
// host-order numbers in TypeScript.
import { formatCidr, formatIp, isV4Mapped, parseCidrInto, parseIpInto } from '../net/ip.js';

export interface Codec<T> {
  readonly size: number;
  encode(buf: Buffer, off: number, v: T): void;
  decode(buf: Buffer, off: number): T;
}

// ---- sizes from the C header (a unit test keeps them in step) ----
export const MB_SOCK_KEY_SIZE = 48;
export const MB_ENDPOINT_KEY_SIZE = 20;
export const MB_ENDPOINT_VALUE_SIZE = 16;
export const MB_POLICY_KEY_SIZE = 20;
export const MB_POLICY_VALUE_SIZE = 8;
export const MB_STAT_SLOTS = 64;
export const MB_CONFIG_SIZE = 68;
export const MB_LEG_VALUE_SIZE = 120;
export const MB_CFG_PORTS = 8;
export const MB_EXCLUDE_VALUE_SIZE = 40;
export const MB_SERVICE_VALUE_SIZE = 16;
export const MB_BACKEND_KEY_SIZE = 8;
export const MB_BACKEND_VALUE_SIZE = 20;
export const MB_NETNS_VALUE_SIZE = 40;
export const MB_STREAM_KEY_SIZE = 48;
export const MB_STREAM_VALUE_SIZE = 32;

export const u32Host: Codec<number> = {
  size: 4,
  encode: (b, o, v) => void b.writeUInt32LE(v >>> 0, o),
  decode: (b, o) => b.readUInt32LE(o),
};

export const u64Host: Codec<bigint> = {
  size: 8,
  encode: (b, o, v) => void b.writeBigUInt64LE(v, o),
  decode: (b, o) => b.readBigUInt64LE(o),
};

/** 16-byte address as text (IPv4 shown dotted, stored ::ffff:a.b.c.d). */
export const ip16: Codec<string> = {
  size: 16,
  encode: (b, o, v) => void parseIpInto(v, b, o),
  decode: (b, o) => formatIp(b.subarray(o, o + 16)),
};

/** u16 port: network order in the kernel, host-order number here. */
export const portNet: Codec<number> = {
  size: 2,
  encode: (b, o, v) => void b.writeUInt16BE(v, o),
  decode: (b, o) => b.readUInt16BE(o),
};

// ---- mb_sockets ----
export interface SockKey {
  localIp: string;
  remoteIp: string;
  localPort: number;
  remotePort: number;
  netnsCookie: bigint;
}

export const sockKey: Codec<SockKey> = {
  size: MB_SOCK_KEY_SIZE,
  encode(b, o, v) {
    b.fill(0, o, o + MB_SOCK_KEY_SIZE);
    ip16.encode(b, o, v.localIp);
    ip16.encode(b, o + 16, v.remoteIp);
    portNet.encode(b, o + 32, v.localPort);
    portNet.encode(b, o + 34, v.remotePort);
    b.writeBigUInt64LE(v.netnsCookie, o + 40);
  },
  decode: (b, o) => ({
    localIp: ip16.decode(b, o),
    remoteIp: ip16.decode(b, o + 16),
    localPort: portNet.decode(b, o + 32),
    remotePort: portNet.decode(b, o + 34),
    netnsCookie: b.readBigUInt64LE(o + 40),
  }),
};

/** The key of the other end of the same connection (what sk_msg looks up). */
export function mirrorSockKey(k: SockKey): SockKey {
  return { localIp: k.remoteIp, remoteIp: k.localIp, localPort: k.remotePort, remotePort: k.localPort, netnsCookie: k.netnsCookie };
}

// ---- mb_endpoints (LPM trie) ----
/** Canonical CIDR text; "10.0.0.5" means 10.0.0.5/32. */
export const endpointKey: Codec<string> = {
  size: MB_ENDPOINT_KEY_SIZE,
  encode(b, o, v) {
    b.writeUInt32LE(parseCidrInto(v, b, o + 4), o); // LPM tries want prefixlen in host order
  },
  decode(b, o) {
    const prefixLen = b.readUInt32LE(o);
    const bytes = Buffer.from(b.subarray(o + 4, o + 20));
    return formatCidr({ ip: { bytes, family: isV4Mapped(bytes) ? 4 : 6 }, prefixLen });
  },
};

export const EP_LOCAL = 1 << 0;
export const EP_MESH = 1 << 1;

export interface EndpointValue {
  local: boolean;
  mesh: boolean;
  networkId: number;
  workloadId: number;
}

export const endpointValue: Codec<EndpointValue> = {
  size: MB_ENDPOINT_VALUE_SIZE,
  encode(b, o, v) {
    b.writeUInt32LE((v.local ? EP_LOCAL : 0) | (v.mesh ? EP_MESH : 0), o);
    b.writeUInt32LE(v.networkId >>> 0, o + 4);
    b.writeUInt32LE(v.workloadId >>> 0, o + 8);
    b.writeUInt32LE(0, o + 12);
  },
  decode(b, o) {
    const flags = b.readUInt32LE(o);
    return { local: (flags & EP_LOCAL) !== 0, mesh: (flags & EP_MESH) !== 0, networkId: b.readUInt32LE(o + 4), workloadId: b.readUInt32LE(o + 8) };
  },
};

// ---- mb_policy ----
export interface PolicyKey {
  ip: string;
  port: number;
}

export const policyKey: Codec<PolicyKey> = {
  size: MB_POLICY_KEY_SIZE,
  encode(b, o, v) {
    ip16.encode(b, o, v.ip);
    portNet.encode(b, o + 16, v.port);
    b.writeUInt16LE(0, o + 18);
  },
  decode: (b, o) => ({ ip: ip16.decode(b, o), port: portNet.decode(b, o + 16) }),
};

export const VERDICTS = ['none', 'bypass', 'proxy'] as const;
export type VerdictName = (typeof VERDICTS)[number];

export interface PolicyValue {
  verdict: VerdictName;
  ruleId: number;
}

export function verdictCode(v: VerdictName): number {
  return VERDICTS.indexOf(v);
}

export const policyValue: Codec<PolicyValue> = {
  size: MB_POLICY_VALUE_SIZE,
  encode(b, o, v) {
    b.writeUInt32LE(verdictCode(v.verdict), o);
    b.writeUInt32LE(v.ruleId >>> 0, o + 4);
  },
  decode(b, o) {
    const code = b.readUInt32LE(o);
    // An unknown code (newer kernel program) reads as 'none': the safe reading.
    return { verdict: VERDICTS[code] ?? 'none', ruleId: b.readUInt32LE(o + 4) };
  },
};

// ---- mb_stats: index -> counter name (enum mb_stat; append only) ----
export const STAT_NAMES = [
  'sockops_established',
  'sockets_inserted',
  'skip_family',
  'skip_local_unknown',
  'skip_remote_unknown',
  'skip_network',
  'skip_no_policy',
  'skip_proxy',
  'insert_failed',
  'sockets_map_full',
  'redirect_msgs',
  'redirect_bytes',
  'peer_missing_msgs',
  'peer_missing_bytes',
  'skip_loopback_no_cookie',
  'sockets_fell_back',
  'leg_outbound',
  'leg_mesh',
  'leg_inbound',
  'skip_sidecar_owner',
  'skip_sidecar_ambiguous',
  'skip_sidecar_unmatched',
  'sidecar_table_full',
  'splice_reads',
  'splice_refused',
  'skip_excluded',
  'vip_translated',
  'vip_no_local_backend',
  'vip_skip_proxy',
  'vip_skip_captured',
  'vip_skip_source_unknown',
  'vip_skip_network',
  'vip_peername_restored',
  'stream_switched',
  'stream_pass_msgs',
  'stream_pass_bytes',
  'inpod_marked',
  'inpod_steered',
  'inpod_not_steered',
  'leg_inpod',
  'inpod_sockname_restored',
  'inpod_listeners',
  'stream_learned',
  'stream_kept',
] as const;
export type StatName = (typeof STAT_NAMES)[number];
export type Stats = Record<StatName, bigint>;

// ---- sidecar pairing: mb_config, mb_sidecar, mb_legs ----
export const CFG_SIDECAR = 1 << 0;

/** Istio's capture conventions (istio-iptables / the sidecar injector's defaults). */
export interface SidecarConfig {
  enabled: boolean;
  proxyUid: number;
  proxyGid: number;
  outboundPort: number; // ISTIO_REDIRECT --to-ports
  inboundPort: number; // ISTIO_IN_REDIRECT --to-ports
  passthroughV4: string; // inbound passthrough source
  passthroughV6: string;
  inboundExclude: number[]; // ISTIO_INBOUND ... --dport P -j RETURN
  outboundExclude: number[]; // ISTIO_OUTPUT ... --dport P -j RETURN
}

function portList(b: Buffer, o: number, ports: number[], what: string): void {
  if (ports.length > MB_CFG_PORTS) throw new RangeError(`at most ${MB_CFG_PORTS} ${what} ports (got ${ports.length})`);
  for (let i = 0; i < MB_CFG_PORTS; i++) b.writeUInt16BE(ports[i] ?? 0, o + 2 * i);
}

function readPorts(b: Buffer, o: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < MB_CFG_PORTS; i++) {
    const p = b.readUInt16BE(o + 2 * i);
    if (p) out.push(p);
  }
  return out;
}

export const sidecarConfig: Codec<SidecarConfig> = {
  size: MB_CONFIG_SIZE,
  encode(b, o, v) {
    b.fill(0, o, o + MB_CONFIG_SIZE);
    b.writeUInt32LE(v.enabled ? CFG_SIDECAR : 0, o);
    b.writeUInt32LE(v.proxyUid >>> 0, o + 4);
    b.writeUInt32LE(v.proxyGid >>> 0, o + 8);
    portNet.encode(b, o + 12, v.outboundPort);
    portNet.encode(b, o + 14, v.inboundPort);
    const v4 = Buffer.alloc(16);
    parseIpInto(v.passthroughV4, v4, 0);
    v4.copy(b, o + 16, 12, 16); // the network-order u32 of ::ffff:a.b.c.d
    parseIpInto(v.passthroughV6, b, o + 20);
    portList(b, o + 36, v.inboundExclude, 'inbound exclude');
    portList(b, o + 52, v.outboundExclude, 'outbound exclude');
  },
  decode(b, o) {
    const v4 = Buffer.alloc(16);
    v4.writeUInt16BE(0xffff, 10);
    b.copy(v4, 12, o + 16, o + 20);
    return {
      enabled: (b.readUInt32LE(o) & CFG_SIDECAR) !== 0,
      proxyUid: b.readUInt32LE(o + 4),
      proxyGid: b.readUInt32LE(o + 8),
      outboundPort: portNet.decode(b, o + 12),
      inboundPort: portNet.decode(b, o + 14),
      passthroughV4: formatIp(v4),
      passthroughV6: formatIp(b.subarray(o + 20, o + 36)),
      inboundExclude: readPorts(b, o + 36),
      outboundExclude: readPorts(b, o + 52),
    };
  },
};

export const LEG_NAMES = ['none', 'outbound', 'mesh', 'inbound', 'direct', 'inpod'] as const;
export type LegName = (typeof LEG_NAMES)[number];

export interface LegValue {
  client: SockKey;
  claim: SockKey;
  cookie: bigint;
  poisoned: boolean;
  /** in-pod: bpf/inpod.c handed the SYN to the server app's own listener */
  steered: boolean;
  leg: LegName;
  /** CLOCK_MONOTONIC ns of the claim */
  tsNs: bigint;
}

export const legValue: Codec<LegValue> = {
  size: MB_LEG_VALUE_SIZE,
  encode(b, o, v) {
    sockKey.encode(b, o, v.client);
    sockKey.encode(b, o + 48, v.claim);
    b.writeBigUInt64LE(v.cookie, o + 96);
    b.writeUInt32LE((v.poisoned ? 1 : 0) | (v.steered ? 2 : 0), o + 104);
    b.writeUInt32LE(Math.max(0, LEG_NAMES.indexOf(v.leg)), o + 108);
    b.writeBigUInt64LE(v.tsNs, o + 112);
  },
  decode: (b, o) => ({
    client: sockKey.decode(b, o),
    claim: sockKey.decode(b, o + 48),
    cookie: b.readBigUInt64LE(o + 96),
    poisoned: (b.readUInt32LE(o + 104) & 1) !== 0,
    steered: (b.readUInt32LE(o + 104) & 2) !== 0,
    leg: LEG_NAMES[b.readUInt32LE(o + 108)] ?? 'none',
    tsNs: b.readBigUInt64LE(o + 112),
  }),
};
// ---- mb_no_bypass: destinations never bypassed (key: policyKey) ----
export const EXCLUDE_REASONS = { operator: 1, splice: 2 } as const;
export type ExcludeReason = keyof typeof EXCLUDE_REASONS | 'unknown';

export interface ExcludeValue {
  reason: ExcludeReason;
  /** splice: tgid of the first reader seen splicing */
  pid: number;
  /** splice reads seen on bypassed sockets of this destination */
  hits: bigint;
  /** splice: CLOCK_MONOTONIC ns of the first one */
  firstNs: bigint;
  /** splice: that reader's command name */
  comm: string;
}

export const excludeValue: Codec<ExcludeValue> = {
  size: MB_EXCLUDE_VALUE_SIZE,
  encode(b, o, v) {
    b.writeUInt32LE(v.reason === 'unknown' ? 0 : EXCLUDE_REASONS[v.reason], o);
    b.writeUInt32LE(v.pid >>> 0, o + 4);
    b.writeBigUInt64LE(v.hits, o + 8);
    b.writeBigUInt64LE(v.firstNs, o + 16);
    b.fill(0, o + 24, o + 40);
    b.write(v.comm.slice(0, 15), o + 24, 'latin1');
  },
  decode(b, o) {
    const code = b.readUInt32LE(o);
    const reason = (Object.keys(EXCLUDE_REASONS) as Array<keyof typeof EXCLUDE_REASONS>).find((k) => EXCLUDE_REASONS[k] === code) ?? 'unknown';
    const raw = b.subarray(o + 24, o + 40);
    const z = raw.indexOf(0);
    return { reason, pid: b.readUInt32LE(o + 4), hits: b.readBigUInt64LE(o + 8), firstNs: b.readBigUInt64LE(o + 16), comm: raw.toString('latin1', 0, z < 0 ? 16 : z) };
  },
};

// ---- service VIPs: mb_services, mb_backends, mb_netns ----
export const SVC_BYPASS = 1 << 0;

/** mb_services value (key: VIP:port, the policyKey layout). */
export interface ServiceValue {
  id: number;
  /** local backends in slots 0..count-1 of mb_backends */
  count: number;
  bypass: boolean;
  ruleId: number;
}

export const serviceValue: Codec<ServiceValue> = {
  size: MB_SERVICE_VALUE_SIZE,
  encode(b, o, v) {
    b.writeUInt32LE(v.id >>> 0, o);
    b.writeUInt32LE(v.count >>> 0, o + 4);
    b.writeUInt32LE(v.bypass ? SVC_BYPASS : 0, o + 8);
    b.writeUInt32LE(v.ruleId >>> 0, o + 12);
  },
  decode: (b, o) => ({ id: b.readUInt32LE(o), count: b.readUInt32LE(o + 4), bypass: (b.readUInt32LE(o + 8) & SVC_BYPASS) !== 0, ruleId: b.readUInt32LE(o + 12) }),
};

export interface BackendKey {
  serviceId: number;
  slot: number;
}

export const backendKey: Codec<BackendKey> = {
  size: MB_BACKEND_KEY_SIZE,
  encode(b, o, v) {
    b.writeUInt32LE(v.serviceId >>> 0, o);
    b.writeUInt32LE(v.slot >>> 0, o + 4);
  },
  decode: (b, o) => ({ serviceId: b.readUInt32LE(o), slot: b.readUInt32LE(o + 4) }),
};

/** A local endpoint: ip:targetPort (port host order here, network order in the kernel). */
export interface BackendValue {
  ip: string;
  port: number;
}

export const backendValue: Codec<BackendValue> = {
  size: MB_BACKEND_VALUE_SIZE,
  encode(b, o, v) {
    ip16.encode(b, o, v.ip);
    portNet.encode(b, o + 16, v.port);
    b.writeUInt16LE(0, o + 18);
  },
  decode: (b, o) => ({ ip: ip16.decode(b, o), port: portNet.decode(b, o + 16) }),
};

export const NS_PROXY = 1 << 0;

/** mb_netns value: the pod addresses sockops saw in one network namespace. */
export interface NetnsValue {
  ip4: string | null;
  ip6: string | null;
  /** a proxy uid/gid connected from it: a sidecar pod */
  proxy: boolean;
}

const ZERO16 = Buffer.alloc(16);

export const netnsValue: Codec<NetnsValue> = {
  size: MB_NETNS_VALUE_SIZE,
  encode(b, o, v) {
    b.fill(0, o, o + MB_NETNS_VALUE_SIZE);
    if (v.ip4) ip16.encode(b, o, v.ip4);
    if (v.ip6) ip16.encode(b, o + 16, v.ip6);
    b.writeUInt32LE(v.proxy ? NS_PROXY : 0, o + 32);
  },
  decode: (b, o) => ({
    ip4: b.subarray(o, o + 16).equals(ZERO16) ? null : ip16.decode(b, o),
    ip6: b.subarray(o + 16, o + 32).equals(ZERO16) ? null : ip16.decode(b, o + 16),
    proxy: (b.readUInt32LE(o + 32) & NS_PROXY) !== 0,
  }),
};

// ---- mb_streams: learned one-way streams of small writes (bpf/include/meshbpf.h) ----
/** A client address and the destination it streamed small writes to. */
export interface StreamKey {
  clientIp: string;
  serverIp: string;
  serverPort: number;
  /** loopback pairs: the namespace's cookie; 0 otherwise */
  netnsCookie: bigint;
}

export const streamKey: Codec<StreamKey> = {
  size: MB_STREAM_KEY_SIZE,
  encode(b, o, v) {
    b.fill(0, o, o + MB_STREAM_KEY_SIZE);
    ip16.encode(b, o, v.clientIp);
    ip16.encode(b, o + 16, v.serverIp);
    b.writeBigUInt64LE(v.netnsCookie, o + 32);
    portNet.encode(b, o + 40, v.serverPort);
  },
  decode: (b, o) => ({ clientIp: ip16.decode(b, o), serverIp: ip16.decode(b, o + 16), serverPort: portNet.decode(b, o + 40), netnsCookie: b.readBigUInt64LE(o + 32) }),
};

export interface StreamValue {
  /** CLOCK_MONOTONIC ns of the last switch (sockops keeps new connections on the stack for MB_STREAM_LEARN_NS after it) */
  learnedNs: bigint;
  firstNs: bigint;
  /** sockets kept out of mb_sockets because of this entry */
  kept: bigint;
  /** sockets of this pair that switched to the stack */
  switches: bigint;
}

/** bpf/include/meshbpf.h MB_STREAM_LEARN_NS */
export const STREAM_LEARN_NS = 60_000_000_000n;

export const streamValue: Codec<StreamValue> = {
  size: MB_STREAM_VALUE_SIZE,
  encode(b, o, v) {
    b.writeBigUInt64LE(v.learnedNs, o);
    b.writeBigUInt64LE(v.firstNs, o + 8);
    b.writeBigUInt64LE(v.kept, o + 16);
    b.writeBigUInt64LE(v.switches, o + 24);
  },
  decode: (b, o) => ({ learnedNs: b.readBigUInt64LE(o), firstNs: b.readBigUInt64LE(o + 8), kept: b.readBigUInt64LE(o + 16), switches: b.readBigUInt64LE(o + 24) }),
};
