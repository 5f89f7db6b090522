// Human and JSON renderings of the kernel maps (read-only). Schema (README):
// { "<map name>": [ { "key": ..., "value": ... } ] }, mb_stats as
// { key: "<counter>", value: <sum over CPUs> }.
import { readStats, type MapName, type MeshMaps } from './pinned.js';
import { STAT_NAMES, STREAM_LEARN_NS, type SockKey } from './codecs.js';

export type DumpEntry = { key: unknown; value: unknown };

export function dumpMap(maps: MeshMaps, name: MapName): DumpEntry[] {
  switch (name) {
    case 'mb_sockets': {
      // A sockhash lookup from user space returns the socket cookie (value_size 8);
      // kernels that refuse it get null.
      const out: DumpEntry[] = [];
      for (const kb of maps.sockets.rawKeys()) {
        const k = maps.sockets.keyCodec.decode(kb, 0);
        let cookie: string | null = null;
        try {
          cookie = maps.sockets.lookupRaw(kb)?.readBigUInt64LE(0).toString() ?? null;
        } catch {
          cookie = null;
        }
        out.push({ key: { ...k, netnsCookie: k.netnsCookie.toString() }, value: { socketCookie: cookie } });
      }
      return out;
    }
    case 'mb_endpoints':
      return [...maps.endpoints.entries()].map(([k, v]) => ({ key: k, value: v })).sort((a, b) => String(a.key).localeCompare(String(b.key)));
    case 'mb_policy':
      return [...maps.policy.entries()].map(([k, v]) => ({ key: k, value: v })).sort((a, b) => a.key.ip.localeCompare(b.key.ip) || a.key.port - b.key.port);
    case 'mb_stats': {
      const s = readStats(maps.stats);
      return STAT_NAMES.map((n) => ({ key: n, value: Number(s[n]) }));
    }
    case 'mb_config': {
      const c = maps.config.get(0);
      return c ? [{ key: 0, value: c }] : [];
    }
    case 'mb_sidecar':
      return [...maps.sidecar.entries()].map(([k]) => ({ key: k, value: { captured: true } })).sort((a, b) => String(a.key).localeCompare(String(b.key)));
    case 'mb_legs':
      return [...maps.legs.entries()].map(([k, v]) => ({
        key: k,
        value: { leg: v.leg, poisoned: v.poisoned, steered: v.steered, client: strKey(v.client), claim: strKey(v.claim), socketCookie: v.cookie.toString() },
      }));
    case 'mb_services':
      return [...maps.services.entries()]
        .map(([k, v]) => ({ key: k, value: { ...v, verdict: v.bypass ? 'bypass' : 'proxy' } }))
        .sort((a, b) => a.key.ip.localeCompare(b.key.ip) || a.key.port - b.key.port);
    case 'mb_backends':
      return [...maps.backends.entries()].map(([k, v]) => ({ key: k, value: v })).sort((a, b) => a.key.serviceId - b.key.serviceId || a.key.slot - b.key.slot);
    case 'mb_netns':
      return [...maps.netns.entries()].map(([k, v]) => ({ key: k.toString(), value: v })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    case 'mb_inpod':
      return [...maps.inpod.entries()].map(([k, v]) => ({ key: k, value: { netnsCookie: v.toString() } })).sort((a, b) => String(a.key).localeCompare(String(b.key)));
    case 'mb_inpod_ns':
      return [...maps.inpodNs.entries()].map(([k]) => ({ key: k.toString(), value: { enrolled: true } }));
    case 'mb_streams': {
      // bpf_ktime_get_ns and Node's hrtime are both CLOCK_MONOTONIC
      const now = process.hrtime.bigint();
      return [...maps.streams.entries()]
        .map(([k, v]) => {
          const age = now > v.learnedNs ? now - v.learnedNs : 0n;
          return {
            key: { ...k, netnsCookie: k.netnsCookie.toString() },
            value: { learnedSecondsAgo: Number(age / 1_000_000n) / 1000, keepsStack: age < STREAM_LEARN_NS, switches: Number(v.switches), kept: Number(v.kept) },
          };
        })
        .sort((a, b) => a.key.serverIp.localeCompare(b.key.serverIp) || a.key.serverPort - b.key.serverPort || a.key.clientIp.localeCompare(b.key.clientIp));
    }
  }
}

function strKey(k: SockKey): Omit<SockKey, 'netnsCookie'> & { netnsCookie: string } {
  return { ...k, netnsCookie: k.netnsCookie.toString() };
}

export function renderTable(name: MapName, entries: DumpEntry[]): string {
  const rows: string[][] = [];
  switch (name) {
    case 'mb_sockets':
      rows.push(['LOCAL', 'REMOTE', 'NETNS COOKIE', 'SOCKET COOKIE']);
      for (const e of entries) {
        const k = e.key as { localIp: string; localPort: number; remoteIp: string; remotePort: number; netnsCookie: string };
        const v = e.value as { socketCookie: string | null };
        rows.push([hostPort(k.localIp, k.localPort), hostPort(k.remoteIp, k.remotePort), k.netnsCookie, v.socketCookie ?? '-']);
      }
      break;
    case 'mb_endpoints':
      rows.push(['PREFIX', 'FLAGS', 'NETWORK', 'WORKLOAD']);
      for (const e of entries) {
        const v = e.value as { local: boolean; mesh: boolean; networkId: number; workloadId: number };
        const flags = [v.local ? 'local' : '', v.mesh ? 'mesh' : ''].filter(Boolean).join(',') || '-';
        rows.push([String(e.key), flags, String(v.networkId), String(v.workloadId)]);
      }
      break;
    case 'mb_policy':
      rows.push(['DESTINATION', 'VERDICT', 'RULE']);
      for (const e of entries) {
        const k = e.key as { ip: string; port: number };
        const v = e.value as { verdict: string; ruleId: number };
        rows.push([hostPort(k.ip, k.port), v.verdict, String(v.ruleId)]);
      }
      break;
    case 'mb_stats':
      rows.push(['COUNTER', 'VALUE']);
      for (const e of entries) rows.push([String(e.key), String(e.value)]);
      break;
    case 'mb_config':
      rows.push(['SETTING', 'VALUE']);
      for (const e of entries) for (const [k, v] of Object.entries(e.value as object)) rows.push([k, Array.isArray(v) ? v.join(',') || '-' : String(v)]);
      break;
    case 'mb_sidecar':
      rows.push(['CAPTURED PREFIX']);
      for (const e of entries) rows.push([String(e.key)]);
      break;
    case 'mb_legs':
      rows.push(['CLIENT', 'LEG', 'EXPECTS SERVER', 'STATE']);
      for (const e of entries) {
        const v = e.value as {
          leg: string;
          poisoned: boolean;
          steered: boolean;
          client: { localIp: string; localPort: number; remoteIp: string; remotePort: number };
          claim: { localIp: string; localPort: number; netnsCookie: string };
        };
        rows.push([
          `${hostPort(v.client.localIp, v.client.localPort)} -> ${hostPort(v.client.remoteIp, v.client.remotePort)}`,
          v.leg,
          `${hostPort(v.claim.localIp, v.claim.localPort)}${v.claim.netnsCookie !== '0' ? ' (in pod)' : ''}`,
          v.poisoned ? 'ambiguous' : v.leg === 'inpod' ? (v.steered ? 'steered' : 'claimed') : 'ok',
        ]);
      }
      break;
    case 'mb_services':
      rows.push(['VIP', 'SERVICE ID', 'LOCAL BACKENDS', 'VERDICT', 'RULE']);
      for (const e of entries) {
        const k = e.key as { ip: string; port: number };
        const v = e.value as { id: number; count: number; verdict: string; ruleId: number };
        rows.push([hostPort(k.ip, k.port), String(v.id), String(v.count), v.verdict, String(v.ruleId)]);
      }
      break;
    case 'mb_backends':
      rows.push(['SERVICE ID', 'SLOT', 'BACKEND']);
      for (const e of entries) {
        const k = e.key as { serviceId: number; slot: number };
        const v = e.value as { ip: string; port: number };
        rows.push([String(k.serviceId), String(k.slot), hostPort(v.ip, v.port)]);
      }
      break;
    case 'mb_netns':
      rows.push(['NETNS COOKIE', 'IPV4', 'IPV6', 'SIDECAR PROXY SEEN']);
      for (const e of entries) {
        const v = e.value as { ip4: string | null; ip6: string | null; proxy: boolean };
        rows.push([String(e.key), v.ip4 ?? '-', v.ip6 ?? '-', v.proxy ? 'yes' : 'no']);
      }
      break;
    case 'mb_inpod':
      rows.push(['IN-POD ENROLLED PREFIX', 'NETNS COOKIE']);
      for (const e of entries) rows.push([String(e.key), (e.value as { netnsCookie: string }).netnsCookie]);
      break;
    case 'mb_inpod_ns':
      rows.push(['IN-POD ENROLLED NETNS COOKIE']);
      for (const e of entries) rows.push([String(e.key)]);
      break;
    case 'mb_streams':
      rows.push(['CLIENT', 'DESTINATION', 'LAST SWITCH', 'NEW CONNECTIONS', 'SWITCHED', 'KEPT ON STACK']);
      for (const e of entries) {
        const k = e.key as { clientIp: string; serverIp: string; serverPort: number; netnsCookie: string };
        const v = e.value as { learnedSecondsAgo: number; keepsStack: boolean; switches: number; kept: number };
        rows.push([
          k.netnsCookie !== '0' ? `${k.clientIp} (netns ${k.netnsCookie})` : k.clientIp,
          hostPort(k.serverIp, k.serverPort),
          `${v.learnedSecondsAgo.toFixed(1)} s ago`,
          v.keepsStack ? 'stack' : 'paired (probe)',
          String(v.switches),
          String(v.kept),
        ]);
      }
      break;
  }
  return formatRows(rows);
}

export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export function formatRows(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}
