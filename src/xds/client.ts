// ADS client: one gRPC stream carries CDS, EDS and LDS, state of the world
// (StreamAggregatedResources) or incremental (DeltaAggregatedResources).
//
// Protocol rules we keep:
// - node on the first request of every stream, nonces echoed per type;
// - ACK = version_info of the accepted response; NACK = last accepted version
//   plus error_detail {code 3 INVALID_ARGUMENT, message}; a NACKed response
//   changes nothing consumers see;
// - CDS wildcard first; EDS for the EDS clusters' service names; then LDS;
// - on a dropped stream: jittered exponential backoff, the last good snapshot
//   stays, and the new stream re-subscribes (SotW: last versions; Delta:
//   initial_resource_versions).
// - api 'wds' (Istio ambient, as ztunnel subscribes: istio/ztunnel src/xds/client.rs):
//   Delta only, wildcard Address then Authorization, node on each initial
//   request, `clusterid` header, 200 MiB receive limit.
import { EventEmitter } from 'node:events';
import { clip, summarize } from './reasons.js';
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type protobuf from 'protobufjs';
import { child } from '../log.js';
import { encodeJson } from './json.js';
import { buildNode, buildZtunnelNode, type NodeOptions, type ZtunnelNodeOptions } from './node.js';
import { mustType } from './protos.js';
import { applyDelta, applySotw, copyStatus, decodeAndValidate, sameResources, type RawAny } from './state.js';
import { edsNames } from './validate.js';
import { KINDS, kindOfType, kindsOf, resourcesOf } from './kinds.js';
import {
  emptySnapshot,
  emptyTypeStatus,
  type ConnectionState,
  type TypeStatus,
  type XdsApi,
  type Json,
  type JsonObject,
  type SnapshotValidator,
  type XdsKind,
  type XdsSnapshot,
  type XdsSource,
  type XdsSourceEvents,
  type XdsStateEvent,
  type XdsStatus,
} from './types.js';

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const SOTW_METHOD = `/${ADS_SERVICE}/StreamAggregatedResources`;
export const DELTA_METHOD = `/${ADS_SERVICE}/DeltaAggregatedResources`;
const INVALID_ARGUMENT = 3;
/** ztunnel's max_decoding_message_size: a WDS response carries every workload of the mesh */
export const WDS_MAX_RECEIVE_BYTES = 200 * 1024 * 1024;

export interface BackoffOptions {
  /** first retry delay; default 500 ms */
  initialMs?: number;
  /** cap; default 30 s */
  maxMs?: number;
  /** growth per failed attempt; default 2 */
  multiplier?: number;
  /** fraction of the delay randomised away (0..1); default 0.2 => delay * [0.8, 1.0] */
  jitter?: number;
}

export interface XdsClientOptions {
  /** "host:port" of the control plane (istiod: 15010 plaintext, 15012 TLS) */
  server: string;
  /** 'sotw' (default) or 'delta'; WDS is always delta */
  mode?: 'sotw' | 'delta';
  /** 'envoy' (default): CDS/EDS/LDS; 'wds': Istio's Address and Authorization, as ztunnel */
  api?: XdsApi;
  /** sent as the `clusterid` header (istiod picks the cluster that validates the token); ztunnel sends CLUSTER_ID */
  clusterIdHeader?: string;
  /** node identity; or a ready envoy.config.core.v3.Node in proto3 JSON */
  node: NodeOptions | { ztunnel: ZtunnelNodeOptions } | { raw: JsonObject };
  /** TLS: root CA file (PEM); optional client cert/key; SNI/authority override */
  tls?: { rootCertFile?: string; certChainFile?: string; privateKeyFile?: string; serverName?: string };
  /** file holding a JWT, sent as `authorization: Bearer <token>`, re-read for every stream */
  tokenFile?: string;
  backoff?: BackoffOptions;
  /** consumer veto: a returned reason NACKs the update */
  validate?: SnapshotValidator;
  channelOptions?: grpc.ChannelOptions;
  logger?: Logger;
}

/** Jittered exponential backoff delay for attempt n (0-based). */
export function backoffDelay(attempt: number, o: BackoffOptions = {}, rand: () => number = Math.random): number {
  const initial = o.initialMs ?? 500;
  const max = o.maxMs ?? 30_000;
  const mult = o.multiplier ?? 2;
  const jitter = Math.min(1, Math.max(0, o.jitter ?? 0.2));
  const base = Math.min(max, initial * Math.pow(mult, attempt));
  return Math.round(base * (1 - jitter * rand()));
}

interface StreamState {
  id: number;
  call: grpc.ClientDuplexStream<Buffer, Buffer>;
  sentNode: boolean;
  gotResponse: boolean;
  nonce: Partial<Record<XdsKind, string>>;
  requested: Set<XdsKind>;
  /** EDS names currently subscribed on this stream */
  eds: Set<string>;
}

type Msg = Record<string, unknown>;

export class XdsClient extends EventEmitter<XdsSourceEvents> implements XdsSource {
  private readonly opts: XdsClientOptions;
  private readonly mode: 'sotw' | 'delta';
  private readonly api: XdsApi;
  private readonly log: Logger;
  private readonly nodeJson: JsonObject;
  private grpcClient: grpc.Client | undefined;
  private stream: StreamState | undefined;
  private streamSeq = 0;
  private lastFailed = 0;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private started = false;
  private current: XdsSnapshot;
  /** last accepted version per type (SotW version_info / Delta system_version_info) */
  private accepted: Partial<Record<XdsKind, string>> = {};
  /** Delta: per-resource versions, for initial_resource_versions on reconnect */
  private resourceVersions: Record<XdsKind, Map<string, string>> = { cds: new Map(), eds: new Map(), lds: new Map(), address: new Map(), authorization: new Map() };
  private ldsWanted = false;
  private st: XdsStatus;
  private reqType: protobuf.Type;
  private resType: protobuf.Type;

  constructor(opts: XdsClientOptions) {
    super();
    this.opts = opts;
    this.api = opts.api ?? 'envoy';
    // istiod serves WDS on DeltaAggregatedResources only; ztunnel speaks nothing else
    this.mode = this.api === 'wds' ? 'delta' : (opts.mode ?? 'sotw');
    this.current = emptySnapshot(this.api);
    this.log = opts.logger ?? child('xds');
    const n = opts.node;
    this.nodeJson = 'raw' in n ? n.raw : 'ztunnel' in n ? buildZtunnelNode(n.ztunnel) : buildNode(n);
    const pkg = 'envoy.service.discovery.v3.';
    this.reqType = mustType(pkg + (this.mode === 'delta' ? 'DeltaDiscoveryRequest' : 'DiscoveryRequest'));
    this.resType = mustType(pkg + (this.mode === 'delta' ? 'DeltaDiscoveryResponse' : 'DiscoveryResponse'));
    this.st = {
      state: 'idle',
      mode: this.mode,
      server: opts.server,
      reconnects: 0,
      types: { cds: emptyTypeStatus(), eds: emptyTypeStatus(), lds: emptyTypeStatus() },
    };
    if (this.api === 'wds') {
      this.st.api = 'wds';
      this.st.types.address = emptyTypeStatus();
      this.st.types.authorization = emptyTypeStatus();
    }
  }

  private typeStatus(kind: XdsKind): TypeStatus {
    return (this.st.types[kind] ??= emptyTypeStatus());
  }

  /** The node sent on the first request of every stream. */
  node(): JsonObject {
    return this.nodeJson;
  }

  snapshot(): XdsSnapshot {
    return this.current;
  }

  status(): XdsStatus {
    return copyStatus(this.st);
  }

  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.grpcClient = new grpc.Client(this.opts.server, this.credentials(), this.channelOptions());
    this.openStream();
  }

  /** Idempotent: ends the stream, cancels the retry timer, closes the channel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const s = this.stream;
    this.stream = undefined;
    if (s) {
      s.call.removeAllListeners('data');
      s.call.on('error', () => undefined); // a cancelled call reports CANCELLED; nobody cares now
      s.call.cancel();
    }
    this.grpcClient?.close();
    this.grpcClient = undefined;
    this.setState('closed');
    this.emitState({ kind: 'closed' });
  }

  // -------------------------------------------------------------------------

  private credentials(): grpc.ChannelCredentials {
    const t = this.opts.tls;
    if (!t) return grpc.credentials.createInsecure();
    const read = (f: string | undefined): Buffer | null => (f ? fs.readFileSync(f) : null);
    return grpc.credentials.createSsl(read(t.rootCertFile), read(t.privateKeyFile), read(t.certChainFile));
  }

  private channelOptions(): grpc.ChannelOptions {
    // No keepalive pings by default: grpc-go servers (istiod) GOAWAY clients that ping
    // more often than their enforcement policy allows. Pass channelOptions to enable.
    const o: grpc.ChannelOptions = {
      ...(this.api === 'wds' ? { 'grpc.max_receive_message_length': WDS_MAX_RECEIVE_BYTES } : {}),
      ...this.opts.channelOptions,
    };
    if (this.opts.tls?.serverName) {
      o['grpc.ssl_target_name_override'] = this.opts.tls.serverName;
      o['grpc.default_authority'] = this.opts.tls.serverName;
    }
    return o;
  }

  private setState(s: ConnectionState): void {
    this.st.state = s;
    if (s === 'connected') this.st.connectedSince = new Date();
    else delete this.st.connectedSince;
  }

  private emitState(e: XdsStateEvent): void {
    this.emit('state', e);
  }

  private openStream(): void {
    if (this.closed || !this.grpcClient) return;
    const id = ++this.streamSeq;
    if (id > 1) this.st.reconnects++;
    this.setState('connecting');
    this.emitState({ kind: 'connecting', attempt: this.attempt });
    const md = new grpc.Metadata();
    if (this.opts.tokenFile) {
      try {
        const token = fs.readFileSync(this.opts.tokenFile, 'utf8').trim();
        md.set('authorization', `Bearer ${token}`);
      } catch (e) {
        this.streamFailed(id, `cannot read token file ${this.opts.tokenFile}: ${(e as Error).message}`);
        return;
      }
    }
    if (this.opts.clusterIdHeader) md.set('clusterid', this.opts.clusterIdHeader);
    const method = this.mode === 'delta' ? DELTA_METHOD : SOTW_METHOD;
    const call = this.grpcClient.makeBidiStreamRequest<Buffer, Buffer>(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      md,
    );
    const s: StreamState = { id, call, sentNode: false, gotResponse: false, nonce: {}, requested: new Set(), eds: new Set() };
    this.stream = s;
    call.on('metadata', () => this.markConnected(s));
    call.on('data', (buf: Buffer) => {
      if (this.stream !== s) return;
      this.markConnected(s);
      try {
        this.onResponse(s, buf);
      } catch (e) {
        this.log.error({ err: e }, 'xds: failed to handle response');
      }
    });
    call.on('error', (e: grpc.ServiceError) => this.streamFailed(id, `${e.code} ${e.details || e.message}`));
    call.on('end', () => this.streamFailed(id, 'stream ended by server'));
    this.subscribeAll(s);
  }

  private markConnected(s: StreamState): void {
    if (this.stream !== s || this.st.state === 'connected') return;
    this.setState('connected');
    delete this.st.lastError;
    this.log.info({ server: this.opts.server, mode: this.mode, stream: s.id }, 'xds: connected');
    this.emitState({ kind: 'connected' });
  }

  private streamFailed(id: number, why: string): void {
    const s = this.stream;
    // 'error' and 'end' may both fire for one stream: handle each stream once.
    if (this.closed || (s && s.id !== id) || id <= this.lastFailed) return;
    this.lastFailed = id;
    if (s) {
      if (s.gotResponse) this.attempt = 0; // a stream that worked resets the backoff
      this.stream = undefined;
      s.call.removeAllListeners('data');
      s.call.on('error', () => undefined);
      s.call.cancel();
    }
    const delay = backoffDelay(this.attempt++, this.opts.backoff);
    this.setState('disconnected');
    this.st.lastError = why;
    this.log.warn({ server: this.opts.server, error: why, retryInMs: delay }, 'xds: stream down; keeping last good state');
    this.emitState({ kind: 'disconnected', error: why, retryInMs: delay });
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.openStream();
    }, delay);
  }

  private write(s: StreamState, req: JsonObject, withNode = false): void {
    if (!s.sentNode || withNode) {
      req.node = this.nodeJson;
      s.sentNode = true;
    }
    this.log.debug({ req: { ...req, node: undefined } }, 'xds: request');
    s.call.write(Buffer.from(encodeJson(this.reqType, req)));
  }

  /** First requests of a stream: CDS; EDS and LDS too when we already know what we want. */
  private subscribeAll(s: StreamState): void {
    if (this.api === 'wds') {
      for (const k of kindsOf('wds')) this.request(s, k);
      return;
    }
    this.request(s, 'cds');
    const names = edsNames(this.current.clusters.values());
    if (names.size) this.request(s, 'eds', names);
    if (this.ldsWanted) this.request(s, 'lds');
  }

  /** A subscription request (not an ACK/NACK) for one type. */
  private request(s: StreamState, kind: XdsKind, names?: Set<string>): void {
    s.requested.add(kind);
    if (kind === 'lds') this.ldsWanted = true;
    if (this.mode === 'sotw') {
      if (KINDS[kind].byName && names) s.eds = new Set(names);
      this.write(s, this.sotwRequest(s, kind));
      return;
    }
    const req: JsonObject = { type_url: KINDS[kind].typeUrl };
    const byName = KINDS[kind].byName;
    const first = !byName || s.eds.size === 0;
    if (byName && names) {
      const add = [...names].filter((n) => !s.eds.has(n));
      const del = [...s.eds].filter((n) => !names.has(n));
      if (add.length) req.resource_names_subscribe = add;
      if (del.length) req.resource_names_unsubscribe = del;
      s.eds = new Set(names);
    }
    const nonce = s.nonce[kind];
    if (nonce) req.response_nonce = nonce;
    if (first) {
      const iv: JsonObject = {};
      for (const [n, v] of this.resourceVersions[kind]) if (!byName || s.eds.has(n)) iv[n] = v;
      if (Object.keys(iv).length) req.initial_resource_versions = iv;
    }
    // ztunnel puts the node on every type's initial request
    this.write(s, req, this.api === 'wds' && first);
  }

  private sotwRequest(s: StreamState, kind: XdsKind): JsonObject {
    const req: JsonObject = { type_url: KINDS[kind].typeUrl };
    const v = this.accepted[kind];
    if (v) req.version_info = v;
    if (KINDS[kind].byName) req.resource_names = [...s.eds];
    const nonce = s.nonce[kind];
    if (nonce) req.response_nonce = nonce;
    return req;
  }

  private onResponse(s: StreamState, buf: Buffer): void {
    const res = this.resType.decode(buf) as unknown as Msg;
    s.gotResponse = true;
    const typeUrl = String(res.type_url ?? '');
    const nonce = String(res.nonce ?? '');
    const kind = kindOfType(typeUrl);
    if (!kind || KINDS[kind].api !== this.api) {
      this.log.warn({ typeUrl }, 'xds: response for a type we did not ask for; ignored');
      return;
    }
    s.nonce[kind] = nonce;
    if (this.mode === 'sotw') this.onSotw(s, kind, res, nonce);
    else this.onDelta(s, kind, res, nonce);
    if (kind === 'cds') this.afterCds(s);
  }

  private onSotw(s: StreamState, kind: XdsKind, res: Msg, nonce: string): void {
    const version = String(res.version_info ?? '');
    const anys = ((res.resources ?? []) as RawAny[]).map((any) => ({ any }));
    const { ok, errors } = decodeAndValidate(kind, anys);
    if (errors.length) return this.nack(s, kind, version, nonce, summarize(errors));
    const wanted = KINDS[kind].byName ? s.eds : undefined;
    const next = applySotw(this.current, kind, ok, version, wanted);
    if (!this.commit(s, kind, next, version, nonce)) return;
    this.write(s, this.sotwRequest(s, kind));
  }

  private onDelta(s: StreamState, kind: XdsKind, res: Msg, nonce: string): void {
    const version = res.system_version_info ? String(res.system_version_info) : undefined;
    const items: { any: RawAny; name?: string; version: string }[] = [];
    for (const r of (res.resources ?? []) as Msg[]) {
      if (!r.resource) continue; // name-only entries (heartbeats) carry no state
      const it: { any: RawAny; name?: string; version: string } = { any: r.resource as RawAny, version: String(r.version ?? '') };
      if (r.name) it.name = String(r.name);
      items.push(it);
    }
    const removed = ((res.removed_resources ?? []) as string[]).map(String);
    const { ok, errors } = decodeAndValidate(kind, items);
    if (errors.length) return this.nack(s, kind, version ?? '', nonce, summarize(errors));
    const next = applyDelta(this.current, kind, ok, removed, version);
    if (!this.commit(s, kind, next, version ?? '', nonce)) return;
    const rv = this.resourceVersions[kind];
    for (const n of removed) rv.delete(n);
    // every item was valid, so `ok` holds them in order; Resource.name (when set) equals the key
    const keys = [...ok.keys()];
    items.forEach((it, i) => {
      const key = it.name ?? keys[i];
      if (key !== undefined) rv.set(key, it.version);
    });
    this.syncResourceVersions();
    this.write(s, { type_url: KINDS[kind].typeUrl, response_nonce: nonce });
  }

  /** Forget per-resource versions of resources no longer held (e.g. EDS of a removed cluster). */
  private syncResourceVersions(): void {
    for (const k of kindsOf(this.api)) {
      const held = resourcesOf(this.current, k);
      for (const n of [...this.resourceVersions[k].keys()]) if (!held.has(n)) this.resourceVersions[k].delete(n);
    }
  }

  /** Run the consumer veto, then make `next` current. Returns false when vetoed (NACK sent). */
  private commit(s: StreamState, kind: XdsKind, next: XdsSnapshot, version: string, nonce: string): boolean {
    let veto: string | undefined;
    try {
      veto = this.opts.validate?.(next);
    } catch (e) {
      veto = `validator threw: ${(e as Error).message}`;
    }
    if (veto !== undefined) {
      this.nack(s, kind, version, nonce, veto);
      return false;
    }
    const changed = !sameResources(this.current, next) || JSON.stringify(this.current.versions) !== JSON.stringify(next.versions);
    this.current = next;
    this.accepted[kind] = version;
    const t = this.typeStatus(kind);
    t.lastAckVersion = version;
    t.lastAckNonce = nonce;
    t.lastAckAt = new Date();
    t.acks++;
    for (const k of kindsOf(this.api)) this.typeStatus(k).resources = resourcesOf(next, k).size;
    this.log.debug({ type: kind, version, nonce }, 'xds: ACK');
    this.emitState({ kind: 'ack', type: kind, version, nonce });
    if (changed) this.emit('snapshot', next);
    return true;
  }

  private nack(s: StreamState, kind: XdsKind, version: string, nonce: string, errorIn: string): void {
    const error = clip(errorIn); // error_detail, status and logs stay bounded whatever the input quoted
    const t = this.typeStatus(kind);
    t.lastNackVersion = version;
    t.lastNackNonce = nonce;
    t.lastNackError = error;
    t.lastNackAt = new Date();
    t.nacks++;
    this.log.warn({ type: kind, version, nonce, error }, 'xds: NACK; keeping last good state');
    const detail: Json = { code: INVALID_ARGUMENT, message: error };
    if (this.mode === 'sotw') {
      this.write(s, { ...this.sotwRequest(s, kind), error_detail: detail });
    } else {
      this.write(s, { type_url: KINDS[kind].typeUrl, response_nonce: nonce, error_detail: detail });
    }
    this.emitState({ kind: 'nack', type: kind, version, nonce, error });
  }

  /** After any CDS response: follow the EDS names, and ask for LDS once CDS has been seen. */
  private afterCds(s: StreamState): void {
    if (this.stream !== s) return;
    const names = edsNames(this.current.clusters.values());
    const same = names.size === s.eds.size && [...names].every((n) => s.eds.has(n));
    if (!same && (names.size > 0 || s.requested.has('eds'))) this.request(s, 'eds', names);
    if (!s.requested.has('lds')) this.request(s, 'lds');
  }
}
