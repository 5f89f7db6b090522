// The one place that loads the Envoy (and Istio WDS) protos. Loaded lazily, once, and cached.
//
// We use protobufjs reflection (the engine under @grpc/proto-loader) directly,
// because we need our own proto3-JSON conversion: snake_case names exactly as
// Envoy's config_dump prints them, every known Any expanded with "@type", and
// unknown Any kept opaque ({"@type", "value": base64}) instead of failing.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { PROJECT_ROOT } from '../paths.js';

const require = createRequire(import.meta.url);

/** Proto files we load. Anything not reachable from these stays an opaque Any. */
export const PROTO_FILES: readonly string[] = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/discovery/v3/discovery.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'google/rpc/status.proto',
  // network filters the policy compiler looks into
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/filters/network/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/network/set_filter_state/v3/set_filter_state.proto',
  // listener filters
  'envoy/extensions/filters/listener/original_dst/v3/original_dst.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto',
  'envoy/extensions/filters/listener/proxy_protocol/v3/proxy_protocol.proto',
  // transport sockets
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto',
  'envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto',
  // filter_chain_matcher inputs (Istio waypoints / ztunnel-style listeners)
  'envoy/extensions/matching/common_inputs/network/v3/network_inputs.proto',
  'xds/type/matcher/v3/ip.proto',
  // common http filters seen in Istio config, so ADS and config_dump agree
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/cors/v3/cors.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/extensions/filters/http/grpc_stats/v3/config.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto',
  'envoy/extensions/request_id/uuid/v3/uuid.proto',
  'envoy/extensions/access_loggers/file/v3/file.proto',
  // Istio wraps its own extension configs in TypedStruct; config_dump expands it
  'udpa/type/v1/typed_struct.proto',
  'xds/type/v3/typed_struct.proto',
  // Istio's workload discovery (WDS, ambient), vendored in third_party/istio
  'workloadapi/workload.proto',
  'workloadapi/security/authorization.proto',
];

function includeDirs(): string[] {
  const xdsPkg = path.dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  const deps = path.join(xdsPkg, 'deps');
  const dirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(deps, d));
  // Istio's protos import "workloadapi/workload.proto", relative to this directory.
  return [...dirs, path.join(PROJECT_ROOT, 'third_party', 'istio')];
}

let cached: protobuf.Root | undefined;

/** Load (once) and return the protobuf root with every PROTO_FILES type resolved. */
export function protoRoot(): protobuf.Root {
  if (cached) return cached;
  // Bundled google/protobuf/descriptor.proto (validate/annotations import it),
  // the same way @grpc/proto-loader registers it.
  const descriptorJson = require('protobufjs/google/protobuf/descriptor.json') as {
    nested: { google: { nested: { protobuf: { nested: protobuf.INamespace['nested'] } } } };
  };
  protobuf.common('descriptor', descriptorJson.nested.google.nested.protobuf.nested as never);
  const dirs = includeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    if (path.isAbsolute(target)) return target;
    for (const d of dirs) {
      const p = path.join(d, target);
      if (fs.existsSync(p)) return p;
    }
    return target;
  };
  root.loadSync(PROTO_FILES as string[], { keepCase: true });
  root.resolveAll();
  cached = root;
  return root;
}

const typeCache = new Map<string, protobuf.Type | null>();

/** Look a message type up by full name or type URL; undefined when unknown. */
export function lookupType(nameOrUrl: string): protobuf.Type | undefined {
  const name = nameOrUrl.slice(nameOrUrl.lastIndexOf('/') + 1);
  let t = typeCache.get(name);
  if (t === undefined) {
    try {
      const found = protoRoot().lookup(name);
      t = found instanceof protobuf.Type ? found : null;
    } catch {
      t = null;
    }
    typeCache.set(name, t);
  }
  return t ?? undefined;
}

export function mustType(name: string): protobuf.Type {
  const t = lookupType(name);
  if (!t) throw new Error(`proto type ${name} not loaded`);
  return t;
}
