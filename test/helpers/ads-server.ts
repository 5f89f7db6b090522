// An in-process ADS server on the real Envoy protos, for tests (ours and the
// agent's): records every request, lets the test push responses, and can drop
// streams. Test support: it lives in test/, not in the shipped src/.
import * as grpc from '@grpc/grpc-js';
import { DELTA_METHOD, SOTW_METHOD } from '../../src/xds/client.js';
import { jsonToAny, messageToJson } from '../../src/xds/json.js';
import { mustType } from '../../src/xds/protos.js';
import type { JsonObject } from '../../src/xds/types.js';

/** A resource to send: proto3 JSON with "@type", or a raw Any (bad bytes, unknown types). */
export type ServedResource = JsonObject | { raw: { type_url: string; value: Uint8Array } };

export interface RecordedRequest {
  stream: number;
  mode: 'sotw' | 'delta';
  req: JsonObject;
  /** request metadata of the stream (authorization etc.) */
  metadata: Record<string, string>;
}

interface ServerStream {
  id: number;
  mode: 'sotw' | 'delta';
  call: grpc.ServerDuplexStream<Buffer, Buffer>;
  open: boolean;
}

const id = (b: Buffer): Buffer => b;

export class FakeAdsServer {
  readonly requests: RecordedRequest[] = [];
  private server = new grpc.Server();
  private streams: ServerStream[] = [];
  private seq = 0;
  private nonceSeq = 0;
  private waiters: { pred: (r: RecordedRequest) => boolean; resolve: (r: RecordedRequest) => void; from: number }[] = [];
  port = 0;

  constructor() {
    // Both ADS methods carry raw bytes; the test decodes and encodes them.
    const method = (path: string) => ({ path, requestStream: true, responseStream: true, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id });
    const def: grpc.ServiceDefinition = { StreamAggregatedResources: method(SOTW_METHOD), DeltaAggregatedResources: method(DELTA_METHOD) };
    this.server.addService(def, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.onStream(call, 'sotw'),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.onStream(call, 'delta'),
    });
  }

  /** Listen on 127.0.0.1, an ephemeral port; TLS when given a PEM cert and key. */
  async start(tls?: { cert: Buffer; key: Buffer }): Promise<string> {
    const creds = tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : grpc.ServerCredentials.createInsecure();
    this.port = await new Promise<number>((resolve, reject) => this.server.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))));
    return this.address();
  }

  address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.streams) s.open = false;
    this.server.forceShutdown();
  }

  private onStream(call: grpc.ServerDuplexStream<Buffer, Buffer>, mode: 'sotw' | 'delta'): void {
    const s: ServerStream = { id: ++this.seq, mode, call, open: true };
    this.streams.push(s);
    const md: Record<string, string> = {};
    for (const [k, v] of Object.entries(call.metadata.getMap())) md[k] = String(v);
    const t = mustType(`envoy.service.discovery.v3.${mode === 'delta' ? 'DeltaDiscoveryRequest' : 'DiscoveryRequest'}`);
    call.on('data', (b: Buffer) => {
      const req = messageToJson(t, t.decode(b) as never) as JsonObject;
      const r: RecordedRequest = { stream: s.id, mode, req, metadata: md };
      this.requests.push(r);
      const idx = this.requests.length - 1;
      this.waiters = this.waiters.filter((w) => {
        if (idx >= w.from && w.pred(r)) {
          w.resolve(r);
          return false;
        }
        return true;
      });
    });
    call.on('error', () => {
      s.open = false;
    });
    call.on('end', () => {
      s.open = false;
      call.end();
    });
    call.on('cancelled', () => {
      s.open = false;
    });
  }

  /** Streams still open (latest last). */
  openStreams(): number[] {
    return this.streams.filter((s) => s.open).map((s) => s.id);
  }

  /**
   * Resolve with the first request (recorded at or after index `from`, default:
   * from now on... or already recorded when from = 0) matching pred.
   */
  waitFor(pred: (r: RecordedRequest) => boolean, opts: { from?: number; timeoutMs?: number } = {}): Promise<RecordedRequest> {
    const from = opts.from ?? 0;
    for (let i = from; i < this.requests.length; i++) {
      const r = this.requests[i];
      if (r && pred(r)) return Promise.resolve(r);
    }
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, from };
      this.waiters.push(w);
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`FakeAdsServer: no matching request within ${opts.timeoutMs ?? 5000} ms; got ${JSON.stringify(this.requests.slice(from).map((r) => r.req))}`));
      }, opts.timeoutMs ?? 5000);
      w.resolve = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
    });
  }

  private latest(): ServerStream {
    const s = [...this.streams].reverse().find((x) => x.open);
    if (!s) throw new Error('FakeAdsServer: no open stream');
    return s;
  }

  private toAny(r: ServedResource): { type_url: string; value: Uint8Array } {
    return 'raw' in r && typeof r.raw === 'object' && r.raw !== null && !Array.isArray(r.raw) ? (r.raw as { type_url: string; value: Uint8Array }) : jsonToAny(r as JsonObject);
  }

  /** Send a SotW DiscoveryResponse on the latest open stream; returns the nonce. */
  sendSotw(typeUrl: string, resources: ServedResource[], version: string, nonce = `n${++this.nonceSeq}`): string {
    const s = this.latest();
    const t = mustType('envoy.service.discovery.v3.DiscoveryResponse');
    const msg = { version_info: version, type_url: typeUrl, nonce, resources: resources.map((r) => this.toAny(r)) };
    s.call.write(Buffer.from(t.encode(msg as never).finish()));
    return nonce;
  }

  /** Send a DeltaDiscoveryResponse on the latest open stream; returns the nonce. */
  sendDelta(typeUrl: string, resources: { name: string; version: string; resource: ServedResource }[], removed: string[] = [], systemVersion = '', nonce = `d${++this.nonceSeq}`): string {
    const s = this.latest();
    const t = mustType('envoy.service.discovery.v3.DeltaDiscoveryResponse');
    const msg = {
      system_version_info: systemVersion,
      type_url: typeUrl,
      nonce,
      removed_resources: removed,
      resources: resources.map((r) => ({ name: r.name, version: r.version, resource: this.toAny(r.resource) })),
    };
    s.call.write(Buffer.from(t.encode(msg as never).finish()));
    return nonce;
  }

  /** Drop every open stream with UNAVAILABLE, as a restarting control plane would. */
  dropStreams(): void {
    for (const s of this.streams) {
      if (!s.open) continue;
      s.open = false;
      // grpc-js turns an 'error' on a server stream into the call's final status
      s.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'test drop' });
    }
  }
}
