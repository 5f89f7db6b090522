// Filter chains: each chain classified (a Member: match criteria, filters, a
// reason to proxy), then grouped the way Envoy matches them, (destination_port,
// prefix_ranges), and given a verdict per group: BYPASS only if every chain
// that competes for the same traffic is tcp_proxy + harmless filters.
import type { Json, JsonObject } from '../xds/types.js';
import { formatIp, maskBytes, parseIp, tryParseIp } from '../net/ip.js';
import type { Verdict } from './types.js';
import { arr, num, obj, path, str, type Problems } from './json.js';
import { classifyFilter } from './filters.js';
import { BLACKHOLE, type CompileContext, type Member, type Ranges } from './model.js';
import type { Emitter } from './emit.js';
import type { ServiceCollector } from './services.js';
import type { Addr } from './model.js';

/** Istio inbound-vip|PORT|PROTO|host and outbound|PORT|SUBSET|host: PROTO names an HTTP family. */
const HTTP_PORT_NAMES = /^(http|http2|https?-.*|http2-.*|grpc|grpc-web|grpc-.*)$/;

const UNSPEC4 = parseIp('0.0.0.0').bytes;
const UNSPEC6 = parseIp('::').bytes;

function parseRanges(problems: Problems, where: string, m: JsonObject | undefined): Ranges {
  const raw = m?.['prefix_ranges'];
  if (raw !== undefined && !Array.isArray(raw)) problems.add(`${where}: prefix_ranges must be a list`);
  const list: Ranges['list'] = [];
  const texts: string[] = [];
  for (const r of arr(raw)) {
    const ap = str(path(r, 'address_prefix')) ?? '';
    const ip = tryParseIp(ap);
    const plRaw = path(r, 'prefix_len');
    const pl = plRaw === undefined ? (ip?.family === 4 ? 32 : 128) : num(plRaw);
    const max = ip?.family === 4 ? 32 : 128;
    if (!ip || pl === undefined || !Number.isInteger(pl) || pl < 0 || pl > max) {
      problems.add(`${where}: bad prefix_range ${JSON.stringify(r)}`);
      continue;
    }
    const prefixLen = ip.family === 4 ? pl + 96 : pl;
    const bytes = maskBytes(ip.bytes, prefixLen);
    list.push({ bytes, prefixLen });
    texts.push(`${formatIp(bytes)}/${pl}`);
  }
  texts.sort();
  return { list, text: texts.join(',') };
}

/** One filter chain of a listener, classified; undefined (and a problem) when it is not an object. */
function parseChain(problems: Problems, lname: string, raw: Json | undefined, i: number, isDefault: boolean): Member | undefined {
  const fc = obj(raw);
  const where = `listener ${lname} chain ${i}`;
  if (!fc) {
    problems.add(`${where}: filter chain must be an object`);
    return undefined;
  }
  const name = str(fc['name']) ?? (isDefault ? 'default_filter_chain' : `#${i}`);
  const m = obj(fc['filter_chain_match']);
  if (fc['filter_chain_match'] !== undefined && !m) problems.add(`${where}: filter_chain_match must be an object`);
  let dport: number | undefined;
  const dp = m?.['destination_port'];
  if (dp !== undefined) {
    const n = num(dp);
    if (n === undefined || !Number.isInteger(n) || n < 1 || n > 65535) problems.add(`${where}: bad destination_port ${JSON.stringify(dp)}`);
    else dport = n;
  }
  const ranges = parseRanges(problems, where, m);
  const tp = str(m?.['transport_protocol']);
  const aps = arr(m?.['application_protocols']).filter((x): x is string => typeof x === 'string');
  const sns = arr(m?.['server_names']).filter((x): x is string => typeof x === 'string');
  let sniff: string | undefined;
  if (aps.length) sniff = `chain ${name} matches application_protocols [${aps.join(',')}] (protocol sniffing)`;
  else if (tp) sniff = `chain ${name} matches transport_protocol ${tp} (protocol detection)`;
  else if (sns.length) sniff = `chain ${name} matches server_names (TLS SNI inspection)`;
  const partial = sniff !== undefined || ['source_prefix_ranges', 'direct_source_prefix_ranges', 'source_ports', 'source_type'].some((k) => m?.[k] !== undefined && m[k] !== 'ANY');
  const matchBits: string[] = [];
  if (dport !== undefined) matchBits.push(`destination_port=${dport}`);
  if (ranges.text) matchBits.push(`prefix_ranges=${ranges.text}`);
  if (tp) matchBits.push(`transport_protocol=${tp}`);
  if (aps.length) matchBits.push(`application_protocols=${aps.join(',')}`);
  if (sns.length) matchBits.push(`server_names=${sns.join(',')}`);

  const filtersRaw = fc['filters'];
  if (filtersRaw !== undefined && !Array.isArray(filtersRaw)) problems.add(`${where}: filters must be a list`);
  const filters = arr(filtersRaw).map(classifyFilter);
  const mem: Member = {
    name,
    match: matchBits.length ? `[${matchBits.join(' ')}]` : '[any]',
    dport,
    ranges,
    sniff,
    partial,
    filters,
    proxy: undefined,
    tcpClusters: [],
    httpClusters: [],
    rds: false,
    harmless: [],
  };
  for (const f of filters) {
    switch (f.kind) {
      case 'tcp_proxy':
        if (f.noCluster) problems.add(`${where}: tcp_proxy without cluster`);
        if (f.tunnel) mem.proxy ??= `filter ${f.label} tunnels (tunneling_config) => proxy`;
        mem.tcpClusters.push(...f.clusters);
        break;
      case 'http':
        mem.proxy ??= `filter ${f.label} is L7 (HTTP) => proxy`;
        mem.httpClusters.push(...f.clusters);
        mem.rds ||= f.rds;
        break;
      case 'authz':
        mem.proxy ??= `filter ${f.label} is a network authorization filter => proxy`;
        break;
      case 'l7':
        mem.proxy ??= `filter ${f.label} is a protocol-aware (L7) filter => proxy`;
        break;
      case 'harmless':
        mem.harmless.push(f.label);
        break;
      case 'unknown':
        // Unknown code may inspect, authorize or rewrite: keep Envoy in the path.
        mem.proxy ??= `filter ${f.label} is unknown (unknown never widens bypass) => proxy`;
        break;
    }
  }
  if (!filters.some((f) => f.kind === 'tcp_proxy' || f.kind === 'http')) mem.proxy ??= `chain ${name} has no terminal filter (tcp_proxy/HCM) => proxy`;
  const ts = obj(fc['transport_socket']);
  if (ts) {
    const t = str(path(ts, 'typed_config', '@type')) ?? str(ts['name']) ?? '';
    if (!t.endsWith('raw_buffer.v3.RawBuffer')) mem.proxy ??= `chain ${name} terminates ${/tls/i.test(t) ? 'TLS' : 'a transport socket'} (${str(ts['name']) ?? t}) => proxy`;
  }
  for (const c of mem.tcpClusters) {
    if (c === BLACKHOLE) mem.proxy ??= `tcp_proxy to ${BLACKHOLE}: Envoy drops it; bypass would let it through => proxy`;
    const pn = /^(?:inbound-vip|inbound|outbound)\|\d+\|([^|]*)\|/.exec(c)?.[1];
    if (pn && HTTP_PORT_NAMES.test(pn)) mem.proxy ??= `cluster ${c}: Istio port name '${pn}' says HTTP => proxy`;
  }
  return mem;
}

/** One listener: classify its chains, group them, decide each chain's verdict and hand it to the emitter. */
export function compileListener(ctx: CompileContext, emit: Emitter, lname: string, l: JsonObject, services?: ServiceCollector): void {
  const { problems } = ctx;
  const inbound = lname === 'virtualInbound' || str(l['traffic_direction']) === 'INBOUND';
  const origDst =
    lname === 'virtualInbound' ||
    lname === 'virtualOutbound' ||
    l['use_original_dst'] === true ||
    arr(l['listener_filters']).some((f) => str(path(f, 'name')) === 'envoy.filters.listener.original_dst');
  const sa = obj(path(l, 'address', 'socket_address'));
  const lport = num(sa?.['port_value']);
  const lip = tryParseIp(str(sa?.['address']) ?? '');
  const lipSpecific = lip && !lip.bytes.equals(UNSPEC4) && !lip.bytes.equals(UNSPEC6) ? lip : undefined;
  const lhead = `listener ${lname}${inbound ? ' (inbound)' : ''}`;
  // Service VIPs: an outbound listener on a specific address (and its other family in additional_addresses).
  const svc = services && !inbound && !origDst && lport !== undefined && lport > 0 ? services : undefined;
  const listenerVips: Addr[] = [];
  if (svc && lipSpecific) {
    const texts = [formatIp(lipSpecific.bytes), ...arr(l['additional_addresses']).map((a) => str(path(a, 'address', 'socket_address', 'address')) ?? '')];
    for (const t of texts) {
      const a = t ? svc.vip(t, `listener ${lname}`) : undefined;
      if (a && !listenerVips.includes(a)) listenerVips.push(a);
    }
  }
  /** The VIPs and port a chain serves: the listener's own, or (0.0.0.0_PORT) its host prefix_ranges. */
  const chainVips = (m: Member): { vips: Addr[]; port: number } | undefined => {
    if (!svc || lport === undefined) return undefined;
    if (lipSpecific) return listenerVips.length && (m.dport === undefined || m.dport === lport) ? { vips: listenerVips, port: lport } : undefined;
    const vips: Addr[] = [];
    for (const r of m.ranges.list) {
      if (r.prefixLen !== 128) continue;
      const a = svc.vip(formatIp(r.bytes), `listener ${lname} chain ${m.name}`);
      if (a) vips.push(a);
    }
    return vips.length ? { vips, port: m.dport ?? lport } : undefined;
  };

  const fcs = l['filter_chains'];
  if (fcs !== undefined && !Array.isArray(fcs)) problems.add(`listener ${lname}: filter_chains must be a list`);
  const members: Member[] = [];
  arr(fcs).forEach((fc, i) => {
    const m = parseChain(problems, lname, fc, i, false);
    if (m) members.push(m);
  });
  const def = l['default_filter_chain'] !== undefined ? parseChain(problems, lname, l['default_filter_chain'], members.length, true) : undefined;

  if (l['filter_chain_matcher'] !== undefined) {
    // xDS matcher trees select chains by inputs we do not evaluate (ALPN, SNI, IP, port):
    // every chain it can reach is PROXY-leaning, never BYPASS.
    const why = `listener ${lname} selects chains with filter_chain_matcher (not evaluated) => proxy, never bypass`;
    ctx.notes.push(`${why}: ${members.length + (def ? 1 : 0)} chain(s), only clusters they name get entries`);
    for (const m of def ? [...members, def] : members) {
      emit.member(lhead, m, 'proxy', why, {});
      const cv = chainVips(m);
      if (cv) svc!.member(lhead, m, cv.vips, cv.port, 'proxy', why);
    }
    return;
  }

  // Envoy picks chains by destination port first (exact beats none), then destination IP.
  // Chains with the same (port, prefixes) compete on later criteria: one match group.
  const groups = new Map<string, Member[]>();
  for (const m of members) {
    const k = `${m.dport ?? '*'}|${m.ranges.text}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(m);
  }
  if (def) {
    // The default chain catches what no chain matched: it competes in groups that can fall through.
    for (const g of groups.values()) if (g.some((m) => m.partial)) g.push(def);
    groups.set('default', [def]);
  }
  for (const g of groups.values()) {
    const first = g[0];
    if (!first) continue;
    const sniff = g.find((m) => m.sniff)?.sniff;
    const proxyMember = g.find((m) => m.proxy);
    const isDefaultGroup = g.length === 1 && first === def;
    // The port this group serves on the server side (inbound only).
    let port: number | undefined;
    if (inbound) {
      if (!isDefaultGroup && first.dport !== undefined) port = first.dport;
      else if (!origDst && lport !== undefined && lport > 0) port = lport;
    }
    for (const m of g) {
      let verdict: Verdict = 'bypass';
      let why: string;
      if (m.proxy) {
        verdict = 'proxy';
        why = m.proxy;
      } else if (sniff) {
        verdict = 'proxy';
        why = `${sniff} => proxy`;
      } else if (proxyMember) {
        verdict = 'proxy';
        why = `chain ${proxyMember.name} matches the same traffic: ${proxyMember.proxy}`;
      } else {
        const extra = m.harmless.length ? `; harmless: ${m.harmless.join(', ')}` : '';
        why = `plain tcp_proxy, no authorization filter${extra} => bypass`;
      }
      const cv = chainVips(m);
      if (cv) svc!.member(lhead, m, cv.vips, cv.port, verdict, why);
      const rdsPort = m.dport ?? (!origDst && lport !== undefined && lport > 0 ? lport : undefined);
      emit.member(lhead, m, verdict, why, {
        ...(inbound ? { inbound: { port, ranges: m.ranges, lip: lipSpecific?.bytes } } : {}),
        ...(rdsPort !== undefined ? { rdsPort } : {}),
      });
    }
  }
}
