// The shape of bench/report/report.json (schema 1).
import type { Family, TopoKind } from './args.js';
import type { Ratio, Summary } from './stats.js';

export interface ThroughputRow {
  topology: TopoKind;
  family: Family;
  size: number; // bytes per write (iperf3 -l)
  stack: Summary; // bits/s at the receiver
  bypass: Summary;
  ratio: Ratio; // bypass / stack
  /** the minimal sockops+sk_msg redirect (bench/tools/minimal_redirect.c), same iperf3 run in its own cgroup */
  minimal?: Summary;
  ratioMinimal?: Ratio; // bypass / minimal
  /** an AF_UNIX stream socketpair (mbrr unix): the same-node limit for a byte stream */
  unix?: Summary;
  ratioUnix?: Ratio; // bypass / unix
  /** --variants: the minimal program's SK_PASS variants (sockets with a psock, data on the stack) */
  pass?: Summary;
  passApply?: Summary;
  /** sockets meshbpf moved from the redirect to the stack in bypass mode (stream_switched), summed over the runs */
  switchedToStack?: number;
  /** bypass runs whose sockets a learned stream (mb_streams) kept on the stack: no psock, exactly the stack */
  learnedRuns?: number;
  /** the other (paired) bypass runs of a row with learned runs: their median ÷ the stack median (the probe's cost) */
  probeRatio?: number;
  /** CPU-seconds per GB moved */
  cpuSecPerGB: { peersStack?: Summary; peersBypass?: Summary; nodeStack?: Summary; nodeBypass?: Summary };
}

export interface LatencyRow {
  topology: TopoKind;
  family: Family;
  tool: 'sockperf' | 'mbrr';
  size: number; // request and response size
  unit: string;
  /** minimal / ratioMinimal (bypass ÷ minimal): mbrr only, the minimal redirect's cgroup (bench/tools/minimal_redirect.c) */
  p50: { stack: Summary; bypass: Summary; ratio: Ratio; minimal?: Summary; ratioMinimal?: Ratio };
  p99: { stack: Summary; bypass: Summary; ratio: Ratio; minimal?: Summary; ratioMinimal?: Ratio };
}

export interface ConnectRow {
  topology: TopoKind;
  family: Family;
  unit: string;
  none: Summary;
  attachedIneligible: Summary;
  attachedBypass: Summary;
  ratioBypass: Ratio; // attachedBypass / none
  ratioIneligible: Ratio; // attachedIneligible / none
}

/** iperf3 through a service VIP (kube-proxy's DNAT vs meshbpf's connect-time resolution) beside the pod IP. */
export interface VipRow {
  topology: TopoKind;
  family: Family;
  size: number;
  podIp: { stack: Summary; bypass: Summary; ratio: Ratio };
  vip: { stack: Summary; bypass: Summary; ratio: Ratio };
}

export interface NetfilterInfo {
  mode: string;
  backend: string;
  services: number;
  rulesV4: number;
  rulesV6: number;
  conntrackTimeWaitSec: number;
  forwardEstablishedPackets?: { v4: number; v6: number };
  conntrackEntriesAtEnd?: number;
}

export interface Verification {
  topology: TopoKind;
  family: Family;
  metric: string;
  mode: string;
  runs: number;
  redirectedMsgs: number;
  redirectedBytes: number;
  socketsInserted: number;
}

export interface Experiment {
  name: string;
  description: string;
  rows: Array<{ metric: string; size: number; baseline: Summary; variant: Summary; ratio: Ratio; unit: string; note?: string }>;
}

export interface Report {
  schema: 1;
  generatedAt: string;
  durationSec: number;
  machine: { kernel: string; cpuModel: string; cores: number; node: string; iperf3: string; sockperf: string; libbpf: string };
  options: { quick: boolean; seconds: number; rrSeconds: number; rounds: number; sizes: number[]; rrSizes: number[]; families: Family[]; topologies: TopoKind[]; only?: string[]; variants?: boolean };
  method: Record<string, unknown>;
  netfilter?: NetfilterInfo;
  throughput: ThroughputRow[];
  latency: LatencyRow[];
  connectRate: ConnectRow[];
  /** absent in reports from before the VIP case */
  vip?: VipRow[];
  verification: Verification[];
  experiments: Experiment[];
  /** signs of other work on the machine during the run (it is shared) */
  noise: { loadAvg1mAtStart: number; loadAvg1mAtEnd: number; otherMbtNamespacesAtStart: number };
}
