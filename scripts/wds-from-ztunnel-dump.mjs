#!/usr/bin/env node
// Convert a ztunnel config dump (ztunnel's :15000/config_dump, as istioctl's
// testdata keeps it) into the WDS resource list `meshbpf sync --xds-file`
// reads: proto3 JSON of istio.workload.Address / istio.security.Authorization,
// bytes in base64. Fails on any dump key it does not map, so nothing is lost
// silently. Usage: node scripts/wds-from-ztunnel-dump.mjs dump.json > wds.json
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';

const ADDRESS = 'type.googleapis.com/istio.workload.Address';
const AUTHZ = 'type.googleapis.com/istio.security.Authorization';

function ipBytes(ip) {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number)).toString('base64');
  // IPv6: expand "::"
  const [h, t] = ip.split('::');
  const head = h ? h.split(':') : [];
  const tail = t !== undefined && t ? t.split(':') : [];
  const groups = t === undefined ? head : [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b.toString('base64');
}

/** "network/ip" (ztunnel's NetworkAddress text) -> NetworkAddress */
function netAddr(s) {
  const i = s.lastIndexOf('/');
  return { network: s.slice(0, i), address: ipBytes(s.slice(i + 1)) };
}

function gateway(g) {
  const out = { hbone_mtls_port: g.port };
  if (g.destination.includes('/') && !g.destination.includes('.svc')) out.address = netAddr(g.destination);
  else throw new Error(`hostname waypoints not handled: ${g.destination}`);
  return out;
}

function take(o, known, where) {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new Error(`${where}: unmapped key ${k}`);
}

const dump = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const byUid = new Map();
const out = [];

const WL_KEYS = [
  'uid',
  'name',
  'namespace',
  'workloadIps',
  'network',
  'protocol',
  'trustDomain',
  'serviceAccount',
  'waypoint',
  'node',
  'canonicalName',
  'canonicalRevision',
  'workloadType',
  'workloadName',
  'nativeTunnel',
  'status',
  'clusterId',
  'authorizationPolicies',
];
for (const [key, w] of Object.entries(dump.workloads)) {
  take(w, WL_KEYS, `workloads[${key}]`);
  const m = {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    addresses: w.workloadIps.map(ipBytes),
    ...(w.network ? { network: w.network } : {}),
    // ztunnel prints HBONE, or TCP for "no tunnel" (TunnelProtocol NONE)
    tunnel_protocol:
      { HBONE: 'HBONE', TCP: 'NONE' }[w.protocol] ??
      (() => {
        throw new Error(`protocol ${w.protocol}`);
      })(),
    trust_domain: w.trustDomain,
    service_account: w.serviceAccount,
    ...(w.waypoint ? { waypoint: gateway(w.waypoint) } : {}),
    node: w.node,
    canonical_name: w.canonicalName,
    canonical_revision: w.canonicalRevision,
    workload_type: w.workloadType.toUpperCase(),
    workload_name: w.workloadName,
    ...(w.nativeTunnel ? { native_tunnel: true } : {}),
    ...(w.authorizationPolicies?.length ? { authorization_policies: w.authorizationPolicies } : {}),
    status: w.status.toUpperCase(),
    cluster_id: w.clusterId,
  };
  byUid.set(w.uid, m);
  out.push({ '@type': ADDRESS, workload: m });
}

const SVC_KEYS = ['name', 'namespace', 'hostname', 'vips', 'ports', 'endpoints', 'subjectAltNames', 'waypoint'];
for (const [key, s] of Object.entries(dump.services)) {
  take(s, SVC_KEYS, `services[${key}]`);
  const name = `${s.namespace}/${s.hostname}`;
  const m = {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    addresses: s.vips.map(netAddr),
    ports: Object.entries(s.ports).map(([sp, tp]) => ({ service_port: Number(sp), target_port: tp })),
    ...(s.subjectAltNames.length ? { subject_alt_names: s.subjectAltNames } : {}),
    ...(s.waypoint ? { waypoint: gateway(s.waypoint) } : {}),
  };
  out.push({ '@type': ADDRESS, service: m });
  // ztunnel builds its endpoints from Workload.services: put them back there
  for (const e of Object.values(s.endpoints)) {
    const w = byUid.get(e.workloadUid);
    if (!w) throw new Error(`${name}: endpoint of unknown workload ${e.workloadUid}`);
    (w.services ??= {})[e.service] = { ports: Object.entries(e.port).map(([sp, tp]) => ({ service_port: Number(sp), target_port: tp })) };
  }
}

const SCOPE = { Global: 'GLOBAL', Namespace: 'NAMESPACE', WorkloadSelector: 'WORKLOAD_SELECTOR' };
for (const p of dump.policies) {
  take(p, ['name', 'namespace', 'scope', 'action', 'rules', 'dryRun'], `policies[${p.name}]`);
  const match = (mt) => {
    take(mt, ['serviceAccounts', 'namespaces', 'principals'], `policies[${p.name}] match`);
    const r = {};
    if (mt.serviceAccounts) r.service_accounts = mt.serviceAccounts.map((x) => ({ namespace: x.namespace, serviceAccount: x.serviceAccount }));
    if (mt.namespaces) r.namespaces = mt.namespaces.map((x) => ({ exact: x }));
    if (mt.principals) r.principals = mt.principals.map((x) => ({ exact: x }));
    return r;
  };
  out.push({
    '@type': AUTHZ,
    name: p.name,
    namespace: p.namespace,
    scope:
      SCOPE[p.scope] ??
      (() => {
        throw new Error(`scope ${p.scope}`);
      })(),
    action: p.action.toUpperCase(),
    ...(p.rules.length ? { groups: p.rules.map((g) => ({ rules: g.map((rs) => ({ matches: rs.map(match) })) })) } : {}),
  });
}

process.stdout.write(JSON.stringify({ resources: out }, null, 1) + '\n');
