// Validation of WDS resource bodies (istio.workload.Address,
// istio.security.Authorization) in proto3-JSON shape, as decoded from the wire
// or round-tripped from a file: bytes are base64, enums are names (or numbers
// when the value is newer than our protos), uint32 are numbers.
//
// Only what would make a verdict wrong is an error (NACK): an address that is
// not 4 or 16 bytes, a port out of range, a Service without a hostname. What is
// merely unknown (a new oneof member, enum value or field) is accepted here and
// the compiler keeps such a destination on ztunnel's path.
import { InvalidResource, isObject } from './validate.js';
import type { Json, JsonObject } from './types.js';

function fail(where: string, msg: string): never {
  throw new InvalidResource(where ? `${where}: ${msg}` : msg);
}

function str(v: Json | undefined): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function list(v: Json | undefined, where: string): Json[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(where, 'must be a list');
  return v;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The IP in a proto `bytes` field (base64 in JSON): 4 or 16 bytes, or a reason. */
export function ipBytes(v: Json | undefined): Buffer | string {
  if (typeof v !== 'string' || !BASE64.test(v)) return `not base64 bytes: ${JSON.stringify(v ?? null)}`;
  const b = Buffer.from(v, 'base64');
  if (b.length !== 4 && b.length !== 16) return `an IP address must be 4 or 16 bytes, got ${b.length}`;
  return b;
}

function checkIp(v: Json | undefined, where: string): void {
  const r = ipBytes(v);
  if (typeof r === 'string') fail(where, r);
}

function checkPort(v: Json | undefined, where: string, allowZero: boolean): void {
  const n = v === undefined ? 0 : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < (allowZero ? 0 : 1) || n > 65535) {
    fail(where, `port out of range (${allowZero ? 0 : 1}..65535): ${JSON.stringify(v ?? 0)}`);
  }
}

function checkPorts(ports: Json | undefined, where: string): void {
  list(ports, where).forEach((p, i) => {
    const w = `${where}[${i}]`;
    if (!isObject(p)) fail(w, 'must be an object');
    checkPort(p.service_port, `${w}.service_port`, false);
    // 0: istiod could not resolve a named target port for this workload
    checkPort(p.target_port, `${w}.target_port`, true);
  });
}

function checkNetworkAddress(a: Json | undefined, where: string): void {
  if (!isObject(a)) fail(where, 'must be an object');
  checkIp(a.address, `${where}.address`);
  const len = a.length;
  if (len !== undefined && (typeof len !== 'number' || !Number.isInteger(len) || len < 0 || len > 128)) fail(`${where}.length`, `bad prefix length ${JSON.stringify(len)}`);
}

function checkGateway(g: Json | undefined, where: string): void {
  if (g === undefined || g === null) return;
  if (!isObject(g)) fail(where, 'must be an object');
  if (g.address !== undefined) checkNetworkAddress(g.address, `${where}.address`);
}

function checkWorkload(w: JsonObject): void {
  list(w.addresses, 'workload.addresses').forEach((a, i) => checkIp(a, `workload.addresses[${i}]`));
  checkGateway(w.waypoint, 'workload.waypoint');
  checkGateway(w.network_gateway, 'workload.network_gateway');
  const svcs = w.services;
  if (svcs !== undefined) {
    if (!isObject(svcs)) fail('workload.services', 'must be a map');
    for (const [k, pl] of Object.entries(svcs)) {
      if (!isObject(pl)) fail(`workload.services[${JSON.stringify(k)}]`, 'must be a PortList');
      checkPorts(pl.ports, `workload.services[${JSON.stringify(k)}].ports`);
    }
  }
  list(w.authorization_policies, 'workload.authorization_policies').forEach((p, i) => {
    if (typeof p !== 'string' || p === '') fail(`workload.authorization_policies[${i}]`, 'must be a "namespace/name" string');
  });
}

function checkService(s: JsonObject): void {
  if (!str(s.hostname)) fail('service', 'missing required field hostname');
  list(s.addresses, 'service.addresses').forEach((a, i) => checkNetworkAddress(a, `service.addresses[${i}]`));
  checkPorts(s.ports, 'service.ports');
  checkGateway(s.waypoint, 'service.waypoint');
}

/** Throws InvalidResource when an Address body cannot be used safely. */
export function validateAddressBody(r: JsonObject): void {
  const w = r.workload;
  const s = r.service;
  if (w !== undefined && s !== undefined) fail('', 'both workload and service set (a oneof)');
  if (w !== undefined) {
    if (!isObject(w)) fail('workload', 'must be an object');
    checkWorkload(w);
  }
  if (s !== undefined) {
    if (!isObject(s)) fail('service', 'must be an object');
    checkService(s);
  }
  // neither: a type newer than our protos; kept, and the compiler gives it no entry
}

/** Throws InvalidResource when an Authorization body cannot be used. */
export function validateAuthorizationBody(r: JsonObject): void {
  if (!str(r.name)) fail('', 'missing required field name');
}

/** The name an Address implies: the workload uid (istiod's resource name), or "namespace/hostname". */
export function addressName(r: JsonObject): string | undefined {
  const w = r.workload;
  if (isObject(w)) return str(w.uid);
  const s = r.service;
  if (isObject(s)) {
    const h = str(s.hostname);
    return h === undefined ? undefined : `${typeof s.namespace === 'string' ? s.namespace : ''}/${h}`;
  }
  return undefined;
}

/** "namespace/name", as istiod names an Authorization. */
export function authorizationName(r: JsonObject): string | undefined {
  const n = str(r.name);
  return n === undefined ? undefined : `${typeof r.namespace === 'string' ? r.namespace : ''}/${n}`;
}
