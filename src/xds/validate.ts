// Validation of decoded resource bodies (proto3-JSON shape), shared by the ADS
// client and the file source (through kinds.ts, which names the resource in
// every reason). Unknown
// Any types and unknown filters are not checked here: they stay opaque, and
// the policy compiler treats what it does not understand as "keep the normal path".
import { parseIp, parsePort } from '../net/ip.js';
import type { Json, JsonObject } from './types.js';

export function isObject(v: Json | undefined): v is JsonObject {
  return v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v);
}

function arr(v: Json | undefined): Json[] {
  return Array.isArray(v) ? v : [];
}

function str(v: Json | undefined): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** For an EDS cluster, the name its endpoints are requested by; undefined for other clusters. */
export function edsServiceName(c: JsonObject): string | undefined {
  if (c.type !== 'EDS') return undefined;
  const eds = c.eds_cluster_config;
  return (isObject(eds) ? str(eds.service_name) : undefined) ?? str(c.name);
}

/** The set of EDS names referenced by these clusters. */
export function edsNames(clusters: Iterable<JsonObject>): Set<string> {
  const out = new Set<string>();
  for (const c of clusters) {
    const n = edsServiceName(c);
    if (n !== undefined) out.add(n);
  }
  return out;
}

/** A resource body that cannot be used; the message says where in it. */
export class InvalidResource extends Error {}

function fail(where: string, msg: string): never {
  throw new InvalidResource(where ? `${where}: ${msg}` : msg);
}

function checkPortValue(v: Json | undefined, where: string): void {
  if (typeof v !== 'number' && typeof v !== 'string') fail(where, `port out of range (1..65535): ${JSON.stringify(v ?? 0)}`);
  try {
    parsePort(v);
  } catch {
    fail(where, `port out of range (1..65535): ${JSON.stringify(v)}`);
  }
}

function checkAddress(a: Json | undefined, where: string, requireIp: boolean): void {
  if (!isObject(a)) return;
  const sa = a.socket_address;
  if (!isObject(sa)) return; // pipe, envoy_internal_address: nothing to check
  const addr = sa.address;
  if (typeof addr !== 'string' || addr === '') fail(`${where}.socket_address`, 'missing address');
  // A custom resolver (or a DNS cluster) means the address is a name, not an IP.
  if (requireIp && !str(sa.resolver_name)) {
    try {
      parseIp(addr);
    } catch {
      fail(`${where}.socket_address`, `bad IP address ${JSON.stringify(addr)}`);
    }
  }
  if (sa.named_port !== undefined && sa.port_value === undefined) return;
  checkPortValue(sa.port_value, `${where}.socket_address.port_value`);
}

function checkCidrs(v: Json | undefined, where: string): void {
  arr(v).forEach((c, i) => {
    if (!isObject(c)) return;
    const w = `${where}[${i}]`;
    const p = c.address_prefix;
    let fam = 4;
    try {
      fam = parseIp(String(p ?? '')).family;
    } catch {
      fail(w, `bad IP prefix ${JSON.stringify(p ?? '')}`);
    }
    const len = c.prefix_len;
    if (len !== undefined && (typeof len !== 'number' || !Number.isInteger(len) || len < 0 || len > (fam === 4 ? 32 : 128))) {
      fail(w, `bad prefix length ${JSON.stringify(len)}`);
    }
  });
}

function checkLbEndpoints(cla: JsonObject, where: string, requireIp: boolean): void {
  arr(cla.endpoints).forEach((loc, i) => {
    if (!isObject(loc)) return;
    arr(loc.lb_endpoints).forEach((lbe, j) => {
      if (!isObject(lbe)) return;
      const ep = lbe.endpoint;
      if (!isObject(ep)) return; // endpoint_name (named endpoints) is allowed
      const w = `${where}endpoints[${i}].lb_endpoints[${j}].endpoint`;
      checkAddress(ep.address, `${w}.address`, requireIp);
      arr(ep.additional_addresses).forEach((aa, k) => {
        if (isObject(aa)) checkAddress(aa.address, `${w}.additional_addresses[${k}].address`, requireIp);
      });
    });
  });
}

export function validateClusterBody(c: JsonObject): void {
  if (!str(c.name)) fail('', 'missing required field name');
  const dns = c.type === 'STRICT_DNS' || c.type === 'LOGICAL_DNS';
  if (isObject(c.load_assignment)) checkLbEndpoints(c.load_assignment, 'load_assignment.', !dns);
}

export function validateClaBody(c: JsonObject): void {
  if (!str(c.cluster_name)) fail('', 'missing required field cluster_name');
  checkLbEndpoints(c, '', true);
}

export function validateListenerBody(l: JsonObject): void {
  if (!str(l.name)) fail('', 'missing required field name');
  checkAddress(l.address, 'address', true);
  arr(l.additional_addresses).forEach((a, i) => {
    if (isObject(a)) checkAddress(a.address, `additional_addresses[${i}].address`, true);
  });
  const chains = [...arr(l.filter_chains)];
  if (isObject(l.default_filter_chain)) chains.push(l.default_filter_chain);
  chains.forEach((fc, i) => {
    if (!isObject(fc)) return;
    const m = fc.filter_chain_match;
    if (!isObject(m)) return;
    const w = `filter_chains[${i}].filter_chain_match`;
    if (m.destination_port !== undefined) checkPortValue(m.destination_port, `${w}.destination_port`);
    checkCidrs(m.prefix_ranges, `${w}.prefix_ranges`);
    checkCidrs(m.source_prefix_ranges, `${w}.source_prefix_ranges`);
    arr(m.source_ports).forEach((p, k) => checkPortValue(p, `${w}.source_ports[${k}]`));
  });
}
