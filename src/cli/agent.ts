// `meshbpf agent`, `meshbpf status`, `meshbpf stats`.
import { Option, type Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { get } from 'node:http';
// The agent and the ADS client (grpc, protos, prom-client) load only for `agent`:
// every other command starts faster and `sync` peaks lower without them.
import type { AgentStatus } from '../agent/agent.js';
import { parseListen } from '../agent/server.js';
import { checkSnapshotPath, DEFAULT_MAX_FILE_BYTES, XdsFileSource } from '../xds/file.js';
import type { SnapshotValidator, XdsSource } from '../xds/types.js';
import { DEFAULT_SIZES } from '../loader/load.js';
import { inspect } from '../loader/inspect.js';
import { checkPrivileges } from '../loader/preflight.js';
import { UserError } from '../errors.js';
import { MAP_NAMES, openMaps, readStats } from '../maps/pinned.js';
import { STAT_NAMES, type Stats } from '../maps/codecs.js';
import { stateDir } from '../maps/state.js';
import { formatRows } from '../maps/dump.js';
import { PROJECT_ROOT } from '../paths.js';
import { log, setLogLevel } from '../log.js';
import { addLocalityOptions, localityFrom, sidecarFrom } from './locality.js';
import { intArg, json, outputOption, pinDirOption, print } from './common.js';

export const EXAMPLE_SNAPSHOT = join(PROJECT_ROOT, 'examples', 'snapshot.yaml');
export const DEFAULT_LISTEN = '127.0.0.1:9750';

export function registerAgent(program: Command): void {
  addLocalityOptions(
    program
      .command('agent')
      .description('run the node agent: load or adopt the programs, follow the control plane, keep the maps in sync, serve metrics and health')
      .option('--xds <address>', 'xDS control plane host:port (Envoy ADS over gRPC; istiod: 15010 plaintext, 15012 TLS)')
      .option('--xds-file <file>', 'follow an Envoy config_dump or resource list (JSON/YAML) instead of a control plane; watched for changes')
      .option('--xds-file-max-mb <n>', `size limit of --xds-file (default ${DEFAULT_MAX_FILE_BYTES / 1024 / 1024})`, intArg('--xds-file-max-mb', 1, 4096))
      .option('--xds-file-settle-ms <ms>', 'apply a changed --xds-file only once it has not been written for this long', intArg('--xds-file-settle-ms', 0, 600_000), 1000)
      .addOption(
        new Option(
          '--xds-mode <mode>',
          'ADS flavour; wds: Istio ambient, every workload of the mesh as ztunnel gets it (Delta, istiod 15012 with --xds-root-cert and --xds-token-file; needs --node-name)',
        )
          .choices(['sotw', 'delta', 'wds'])
          .default('sotw'),
      )
      .option('--xds-root-cert <file>', 'TLS to the control plane, trusting this CA (PEM)')
      .option('--xds-token-file <file>', 'bearer token file sent with every stream (re-read on reconnect)')
      .option('--xds-server-name <name>', 'TLS server name (SNI / certificate check) if it differs from the address')
      .option('--pod-name <name>', 'name in the xDS node id (TYPE~IP~POD.NS~NS.svc.cluster.local)', process.env.POD_NAME ?? `meshbpf-${process.env.HOSTNAME ?? 'node'}`)
      .option('--namespace <ns>', 'namespace in the xDS node id', process.env.POD_NAMESPACE ?? 'istio-system')
      .option('--cgroup <path>', 'cgroup v2 to attach to (default: the pods cgroup; the root cgroup only when named)')
      .addOption(pinDirOption())
      .option('--max-sockets <n>', `sockhash capacity (default ${DEFAULT_SIZES.maxSockets})`, intArg('--max-sockets', 1, 1 << 26))
      .option('--max-endpoints <n>', `endpoint map capacity (default ${DEFAULT_SIZES.maxEndpoints})`, intArg('--max-endpoints', 1, 1 << 26))
      .option('--max-policies <n>', `policy map capacity (default ${DEFAULT_SIZES.maxPolicies})`, intArg('--max-policies', 1, 1 << 26))
      .option('--listen <host:port>', 'metrics/health/debug address ("" to disable)', DEFAULT_LISTEN)
      .option('--unload-on-exit', 'on SIGTERM/SIGINT remove programs and pins (default: leave them so connections keep flowing through a restart)')
      .option(
        '--inpod-netns-dir <dir>',
        'Istio ambient: enroll every pod network namespace that appears in this directory (/var/run/netns with containerd) for in-pod capture skipping, remove those that go (see meshbpf inpod)',
      )
      .option('--inpod-netns-prefix <prefix>', 'with --inpod-netns-dir: only files whose name starts with this (containerd: cni-)', ''),
  )
    .addHelpText(
      'after',
      `
Without --xds or --xds-file the agent follows the built-in example snapshot
(${EXAMPLE_SNAPSHOT}).

Endpoints: /metrics (Prometheus), /healthz (programs attached and xDS synced),
/readyz (synced), /debug/state (desired vs kernel, drift), /debug/status.

Examples:
  meshbpf agent --xds istiod.istio-system.svc:15010 --pod-cidr 10.244.1.0/24 --pod-cidr fd00:10:244:1::/64
  meshbpf agent --xds-file /var/run/meshbpf/dump.json --cgroup /sys/fs/cgroup/kubepods.slice --network net1
  meshbpf agent --xds istiod.istio-system.svc:15012 --xds-mode wds --node-name "$NODE_NAME" \\
    --xds-root-cert /var/run/secrets/istio/root-cert.pem --xds-token-file /var/run/secrets/tokens/istio-token \\
    --xds-server-name istiod.istio-system.svc --exclude-namespace kube-system`,
    )
    .action(async (o, cmd: Command) => {
      // The agent logs at info unless told otherwise.
      if (cmd.parent?.getOptionValueSource('logLevel') === 'default') setLogLevel('info');
      if (o.xds && o.xdsFile) throw new UserError('use either --xds or --xds-file, not both');
      if (o.listen) parseListen(o.listen);
      const maxBytes = (o.xdsFileMaxMb ?? DEFAULT_MAX_FILE_BYTES / 1024 / 1024) * 1024 * 1024;
      // A FIFO, a device or a directory is refused at once (later swaps are the source's errors).
      const badFile = o.xds ? undefined : checkSnapshotPath(o.xdsFile ?? EXAMPLE_SNAPSHOT, maxBytes);
      if (badFile) throw new UserError(badFile);
      checkPrivileges();
      const locality = localityFrom(o);
      // The gRPC client only for a control plane: a file source does without its modules (4 MiB of RSS).
      const [{ Agent }, client] = await Promise.all([import('../agent/agent.js'), o.xds ? import('../xds/client.js') : undefined]);
      if (o.xdsMode === 'wds' && o.xds && !locality.nodeName) throw new UserError('--xds-mode wds needs --node-name (or NODE_NAME): it decides which workloads are local');
      const xdsLog = log.child({ mod: 'xds' });
      const source = (validate: SnapshotValidator): XdsSource => {
        if (!o.xds || !client) return new XdsFileSource({ path: o.xdsFile ?? EXAMPLE_SNAPSHOT, validate, logger: xdsLog, maxBytes, settleMs: o.xdsFileSettleMs });
        if (o.xdsMode === 'wds') {
          // as ztunnel: its node identity, the clusterid header, TLS + token against istiod
          return new client.XdsClient({
            server: o.xds,
            api: 'wds',
            node: { ztunnel: { podName: o.podName, namespace: o.namespace, ips: locality.nodeIps, nodeName: locality.nodeName ?? '', clusterId: o.clusterId ?? 'Kubernetes' } },
            clusterIdHeader: o.clusterId ?? 'Kubernetes',
            ...(o.xdsRootCert ? { tls: { rootCertFile: o.xdsRootCert, ...(o.xdsServerName ? { serverName: o.xdsServerName } : {}) } } : {}),
            ...(o.xdsTokenFile ? { tokenFile: o.xdsTokenFile } : {}),
            validate,
            logger: xdsLog,
          });
        }
        return new client.XdsClient({
          server: o.xds,
          mode: o.xdsMode,
          node: { podName: o.podName, namespace: o.namespace, ips: locality.nodeIps, ...(o.network ? { network: o.network } : {}), ...(o.clusterId ? { clusterId: o.clusterId } : {}) },
          ...(o.xdsRootCert ? { tls: { rootCertFile: o.xdsRootCert, ...(o.xdsServerName ? { serverName: o.xdsServerName } : {}) } } : {}),
          ...(o.xdsTokenFile ? { tokenFile: o.xdsTokenFile } : {}),
          validate,
          logger: xdsLog,
        });
      };
      const agent = new Agent({
        pinDir: o.pinDir,
        cgroup: o.cgroup,
        maxSockets: o.maxSockets,
        maxEndpoints: o.maxEndpoints,
        maxPolicies: o.maxPolicies,
        locality,
        ...(sidecarFrom(o) ? { sidecar: sidecarFrom(o)! } : {}),
        source,
        listen: o.listen,
        unloadOnExit: !!o.unloadOnExit,
        ...(o.inpodNetnsDir ? { inpodNetnsDir: o.inpodNetnsDir, inpodNetnsPrefix: o.inpodNetnsPrefix } : {}),
      });
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal: sig }, 'stopping');
        agent.stop().then(
          () => process.exit(0),
          (e: Error) => {
            process.stderr.write(`meshbpf: stopping failed: ${e.message}\n`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      try {
        await agent.start();
      } catch (e) {
        await agent.stop().catch(() => undefined);
        if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UserError(`--listen ${o.listen}: address in use (another agent running?)`);
        throw e;
      }
      await new Promise(() => undefined); // run until a signal
    });

  program
    .command('status')
    .description('programs loaded (ids, tags), where they are attached, map occupancy, counters, and the agent and xDS state if an agent runs')
    .addOption(pinDirOption())
    .addOption(outputOption())
    .addHelpText(
      'after',
      `\nJSON schema: see README, "meshbpf status -o json".\n\nExit status (like systemctl status):\n  ${STATUS_EXIT.ok}  loaded, both programs attached, no problems\n  1  status could not be read (the error is printed)\n  ${STATUS_EXIT.problems}  loaded, but something is wrong (see "problems")\n  ${STATUS_EXIT.notLoaded}  not loaded at this pin directory\n\nExample:\n  meshbpf status -o json | jq .agent.xds.state`,
    )
    .action(async (o) => {
      const s = await collectStatus(o.pinDir);
      print(o.output === 'json' ? json(s) : renderStatus(s));
      process.exitCode = statusExitCode(s);
    });

  program
    .command('stats')
    .description('meshbpf counters; with --watch, as rates refreshed in place')
    .addOption(pinDirOption())
    .option('-w, --watch', 'refresh until Ctrl-C')
    .option('--interval <seconds>', 'refresh interval', intArg('--interval', 1, 3600), 2)
    .addOption(outputOption())
    .action(async (o) => {
      const read = (): Stats => {
        const m = openMaps(o.pinDir, { readOnly: true });
        try {
          return readStats(m.stats);
        } finally {
          m.close();
        }
      };
      let prev = read();
      if (!o.watch) {
        if (o.output === 'json') return print(json(Object.fromEntries(STAT_NAMES.map((n) => [n, Number(prev[n])]))));
        return print(formatRows([['COUNTER', 'VALUE'], ...STAT_NAMES.map((n) => [n, String(prev[n])])]));
      }
      const tty = process.stdout.isTTY;
      for (;;) {
        await new Promise((r) => setTimeout(r, o.interval * 1000));
        const cur = read();
        const rows = [['COUNTER', 'TOTAL', 'PER SECOND'], ...STAT_NAMES.map((n) => [n, String(cur[n]), (Number(cur[n] - prev[n]) / o.interval).toFixed(1)])];
        const text = `meshbpf stats  ${o.pinDir}  every ${o.interval}s  ${new Date().toISOString()}\n\n${formatRows(rows)}\n`;
        process.stdout.write(tty ? `\x1b[H\x1b[2J${text}` : `${text}\n`);
        prev = cur;
      }
    });
}

/** `meshbpf status` exit codes: scripts that check a node tell "not loaded" from "broken". */
export const STATUS_EXIT = { ok: 0, problems: 2, notLoaded: 3 } as const;

export function statusExitCode(s: Pick<StatusReport, 'loaded' | 'problems'>): number {
  if (!s.loaded) return STATUS_EXIT.notLoaded;
  return s.problems.length ? STATUS_EXIT.problems : STATUS_EXIT.ok;
}

export interface StatusReport {
  pinDir: string;
  loaded: boolean;
  programs: ReturnType<typeof inspect>['programs'];
  attachment: { sockops: ReturnType<typeof inspect>['sockops']; skMsg: ReturnType<typeof inspect>['skMsg']; spliceGuard: ReturnType<typeof inspect>['spliceGuard'] };
  maps: Array<{ name: string; id: number; type: string; entries: number; capacity: number }>;
  counters: Record<string, number>;
  problems: string[];
  agent: { running: boolean; pid?: number; listen?: string; status?: AgentStatus; error?: string };
}

function fetchJson(listen: string, path: string): Promise<unknown> {
  const { host, port } = parseListen(listen);
  return new Promise((resolve, reject) => {
    const req = get({ host, port, path, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

export async function collectStatus(pinDir: string): Promise<StatusReport> {
  const i = inspect(pinDir);
  const report: StatusReport = {
    pinDir,
    loaded: i.loaded,
    programs: i.programs,
    attachment: { sockops: i.sockops, skMsg: i.skMsg, spliceGuard: i.spliceGuard },
    maps: [],
    counters: {},
    problems: i.problems,
    agent: { running: false },
  };
  if (i.loaded && i.maps.length === MAP_NAMES.length) {
    const m = openMaps(pinDir, { readOnly: true });
    try {
      for (const [name, map] of [
        ['mb_sockets', m.sockets],
        ['mb_endpoints', m.endpoints],
        ['mb_policy', m.policy],
        ['mb_sidecar', m.sidecar],
        ['mb_legs', m.legs],
      ] as const) {
        report.maps.push({ name, id: map.info.id, type: map.typeName, entries: map.count(), capacity: map.info.maxEntries });
      }
      const s = readStats(m.stats);
      report.counters = Object.fromEntries(STAT_NAMES.map((n) => [n, Number(s[n])]));
    } finally {
      m.close();
    }
  }
  const agentFile = join(stateDir(pinDir), 'agent.json');
  if (existsSync(agentFile)) {
    try {
      const a = JSON.parse(readFileSync(agentFile, 'utf8')) as { pid: number; listen: string };
      let alive = false;
      try {
        process.kill(a.pid, 0);
        alive = true;
      } catch {
        alive = false;
      }
      report.agent = { running: alive, pid: a.pid, listen: a.listen };
      if (alive && a.listen) {
        try {
          report.agent.status = (await fetchJson(a.listen, '/debug/status')) as AgentStatus;
        } catch (e) {
          report.agent.error = `agent at ${a.listen} did not answer: ${(e as Error).message}`;
        }
      }
    } catch {
      /* unreadable file: no agent info */
    }
  }
  return report;
}

function renderStatus(s: StatusReport): string {
  const lines: string[] = [];
  if (!s.loaded) return `meshbpf is not loaded at ${s.pinDir}`;
  lines.push(`pin dir   ${s.pinDir}`);
  lines.push(`sockops   ${s.attachment.sockops.attached ? `attached to ${s.attachment.sockops.cgroup} (link ${s.attachment.sockops.linkId})` : 'NOT attached'}`);
  lines.push(`sk_msg    ${s.attachment.skMsg.attached ? 'attached to mb_sockets' : 'NOT attached'}`);
  const g = s.attachment.spliceGuard;
  lines.push(
    `splice    ${g.refuse ? 'guard on: splice(2) reads of bypassed sockets are refused (EINVAL)' : g.detect ? 'detected, not refused: a splicing server loses its first connection (meshbpf exclude add)' : 'NO guard: splicing servers lose bypassed bytes (meshbpf exclude add)'}`,
  );
  lines.push('');
  lines.push(formatRows([['PROGRAM', 'ID', 'TAG', 'LOADED'], ...s.programs.map((p) => [p.name, String(p.id), p.tag, p.loadedAt ?? '-'])]));
  lines.push('');
  lines.push(
    formatRows([
      ['MAP', 'ID', 'TYPE', 'ENTRIES', 'CAPACITY', 'USE'],
      ...s.maps.map((m) => [m.name, String(m.id), m.type, String(m.entries), String(m.capacity), `${((100 * m.entries) / m.capacity).toFixed(1)}%`]),
    ]),
  );
  lines.push('');
  lines.push(formatRows([['COUNTER', 'VALUE'], ...Object.entries(s.counters).map(([k, v]) => [k, String(v)])]));
  lines.push('');
  if (!s.agent.running) lines.push('agent     not running');
  else if (!s.agent.status) lines.push(`agent     pid ${s.agent.pid}, ${s.agent.error ?? 'no status'}`);
  else {
    const a = s.agent.status;
    lines.push(`agent     pid ${a.pid} since ${a.startedAt}, listening on ${a.listen}, ${a.synced ? 'synced' : 'NOT synced'}`);
    const kinds = a.xds.api === 'wds' ? (['address', 'authorization'] as const) : (['cds', 'eds', 'lds'] as const);
    lines.push(
      `xds       ${a.xds.api === 'wds' ? 'wds ' : ''}${a.xds.mode} ${a.xds.server ?? ''} ${a.xds.state}; ` +
        kinds
          .map((k) => {
            const t = a.xds.types[k];
            return `${k} ack ${t?.lastAckVersion ?? '-'} (${t?.resources ?? 0})${t?.lastNackError ? ` (last NACK: ${t.lastNackError})` : ''}`;
          })
          .join(', '),
    );
    if (a.nodeName) lines.push(`node      ${a.nodeName}`);
    if (a.exclude) lines.push(`exclude   never bypassed: namespaces ${a.exclude.namespaces.join(',') || '-'}; workloads ${a.exclude.workloads.join(',') || '-'}`);
    if (a.lastSync) lines.push(`last sync ${a.lastSync.at} in ${a.lastSync.ms.toFixed(1)} ms${a.lastSync.error ? `: FAILED ${a.lastSync.error}` : ''}`);
  }
  if (s.problems.length) lines.push('', 'problems:', ...s.problems.map((p) => `  - ${p}`));
  return lines.join('\n');
}
