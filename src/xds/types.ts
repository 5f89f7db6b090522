// The contract between src/xds and its consumers (policy compiler, agent).
// Keep the snapshot shape exactly as it is: src/policy is written against it.

export const TYPE_CLUSTER = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
export const TYPE_ENDPOINT = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
export const TYPE_LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
/** Istio WDS (ambient): a Workload or a Service, keyed by the transport's name (workload uid, "namespace/hostname") */
export const TYPE_ADDRESS = 'type.googleapis.com/istio.workload.Address';
/** Istio WDS: an authorization policy, keyed "namespace/name" */
export const TYPE_AUTHORIZATION = 'type.googleapis.com/istio.security.Authorization';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/**
 * Resources in proto3-JSON shape with snake_case field names (as Envoy's
 * config_dump prints them); every known Any expanded as {"@type", ...fields},
 * unknown ones kept as {"@type", "value": "<base64>"}. Treat as immutable.
 */
export interface XdsSnapshot {
  clusters: Map<string, JsonObject>; // by cluster name
  endpoints: Map<string, JsonObject>; // ClusterLoadAssignment by cluster_name
  listeners: Map<string, JsonObject>; // by listener name
  /** WDS only (absent for Envoy sources): istio.workload.Address by resource name */
  addresses?: Map<string, JsonObject>;
  /** WDS only: istio.security.Authorization by "namespace/name" */
  authorizations?: Map<string, JsonObject>;
  versions: { cds?: string; eds?: string; lds?: string; address?: string; authorization?: string };
}

/** The Envoy kinds (a sidecar's view) */
export type EnvoyKind = 'cds' | 'eds' | 'lds';
/** The WDS kinds (ztunnel's view of every workload) */
export type WdsKind = 'address' | 'authorization';
export type XdsKind = EnvoyKind | WdsKind;

/** Which API a source speaks: Envoy CDS/EDS/LDS, or Istio's WDS. */
export type XdsApi = 'envoy' | 'wds';

/** True when the snapshot came from a WDS source. */
export function isWdsSnapshot(s: XdsSnapshot): boolean {
  return s.addresses !== undefined || s.authorizations !== undefined;
}

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';

/** Events on 'state'. */
export type XdsStateEvent =
  | { kind: 'connecting'; attempt: number }
  | { kind: 'connected' }
  | { kind: 'disconnected'; error?: string; retryInMs?: number }
  | { kind: 'ack'; type: XdsKind; version: string; nonce: string }
  | { kind: 'nack'; type: XdsKind; version: string; nonce: string; error: string }
  | { kind: 'closed' }
  /** file source: a (re)load succeeded */
  | { kind: 'loaded'; path: string }
  /** file source: a (re)load failed; the last good snapshot is kept */
  | { kind: 'error'; path?: string; error: string };

export interface TypeStatus {
  /** version of the last accepted (ACKed) response */
  lastAckVersion?: string;
  lastAckNonce?: string;
  lastAckAt?: Date;
  /** version of the last rejected (NACKed) response, and why */
  lastNackVersion?: string;
  lastNackNonce?: string;
  lastNackError?: string;
  lastNackAt?: Date;
  acks: number;
  nacks: number;
  /** resources currently held */
  resources: number;
}

export interface XdsStatus {
  state: ConnectionState;
  mode: 'sotw' | 'delta' | 'file';
  server?: string;
  /** number of streams opened after the first */
  reconnects: number;
  lastError?: string;
  connectedSince?: Date;
  /** which API the source speaks; absent = 'envoy' */
  api?: XdsApi;
  /** the Envoy kinds are always present; the WDS kinds when the source speaks WDS */
  types: Record<EnvoyKind, TypeStatus> & Partial<Record<WdsKind, TypeStatus>>;
}

/** Optional consumer veto: return a reason to NACK the update, undefined to accept. */
export type SnapshotValidator = (snapshot: XdsSnapshot) => string | undefined;

/** What the agent needs from any source (ADS client or file). */
/** The events of an xDS source, for EventEmitter<XdsSourceEvents>. */
export type XdsSourceEvents = { snapshot: [XdsSnapshot]; state: [XdsStateEvent] };

export interface XdsSource {
  on(event: 'snapshot', fn: (s: XdsSnapshot) => void): this;
  on(event: 'state', fn: (e: XdsStateEvent) => void): this;
  off(event: 'snapshot', fn: (s: XdsSnapshot) => void): this;
  off(event: 'state', fn: (e: XdsStateEvent) => void): this;
  /** the last good snapshot (empty before the first accepted update) */
  snapshot(): XdsSnapshot;
  status(): XdsStatus;
  start(): Promise<void> | void;
  close(): Promise<void> | void;
}

export function emptySnapshot(api: XdsApi = 'envoy'): XdsSnapshot {
  const s: XdsSnapshot = { clusters: new Map(), endpoints: new Map(), listeners: new Map(), versions: {} };
  if (api === 'wds') {
    s.addresses = new Map();
    s.authorizations = new Map();
  }
  return s;
}

export function emptyTypeStatus(): TypeStatus {
  return { acks: 0, nacks: 0, resources: 0 };
}
