// meshbpf command line. Every failure a user can cause prints one line
// ("meshbpf: ...") and exits non-zero; --log-level debug shows the details.
import { Command, CommanderError, Option } from 'commander';
import { load, unload, DEFAULT_SIZES } from '../loader/load.js';
import { UserError, userMessage } from '../errors.js';
import { MAP_NAMES, openMaps, type MapName } from '../maps/pinned.js';
import { intArg, json, outputOption, pinDirOption, print } from './common.js';
import { dumpMap, renderTable, hostPort, formatRows } from '../maps/dump.js';
import { formatCidr, formatIp, parseCidr, parseIp, parsePort } from '../net/ip.js';
import { log, setLogLevel } from '../log.js';
import { VERSION } from '../paths.js';
import { explainFromKernel, renderExplain } from './explain.js';
import { registerDemo } from './demo.js';
import { registerSync } from './sync.js';
import { registerAgent } from './agent.js';
import { registerExclude } from './exclude.js';
import { registerInpod } from './inpod.js';
import { lockOwner } from '../agent/lock.js';

export function buildProgram(): Command {
  const program = new Command('meshbpf')
    .description('eBPF sockmap redirect manager for service meshes. Same-node L4 traffic moves\nsocket to socket; ' + 'L7 flows still reach Envoy; anything unknown keeps the normal path.')
    .version(VERSION)
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr)').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('warn').env('MESHBPF_LOG_LEVEL'))
    .hook('preAction', (cmd) => setLogLevel(cmd.opts().logLevel as string))
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('load')
    .description('compile (if sources changed), load, pin and attach the programs; again over existing pins = upgrade in place')
    .option('--cgroup <path>', 'cgroup v2 to attach sockops to (default: the pods cgroup, kubepods*, under the cgroup v2 mount; the root cgroup only when named)')
    .addOption(pinDirOption())
    .option('--max-sockets <n>', `sockhash capacity (default ${DEFAULT_SIZES.maxSockets})`, intArg('--max-sockets', 1, 1 << 26))
    .option('--max-endpoints <n>', `endpoint map capacity (default ${DEFAULT_SIZES.maxEndpoints})`, intArg('--max-endpoints', 1, 1 << 26))
    .option('--max-policies <n>', `policy map capacity (default ${DEFAULT_SIZES.maxPolicies})`, intArg('--max-policies', 1, 1 << 26))
    .option('--force-compile', 'recompile the BPF objects even if they look fresh')
    .addOption(outputOption())
    .addHelpText('after', '\nExamples:\n  meshbpf load --cgroup /sys/fs/cgroup/kubepods.slice\n  meshbpf load --pin-dir /sys/fs/bpf/meshbpf-test --cgroup /sys/fs/cgroup/unified/test')
    .action((o) => {
      const r = load({ pinDir: o.pinDir, cgroup: o.cgroup, maxSockets: o.maxSockets, maxEndpoints: o.maxEndpoints, maxPolicies: o.maxPolicies, forceCompile: !!o.forceCompile });
      if (o.output === 'json') return print(json(r));
      print(`${r.upgraded ? 'upgraded' : 'loaded'} meshbpf at ${r.pinDir}, sockops attached to ${r.cgroup.path} (link ${r.linkId})`);
      print(formatRows([['PROGRAM', 'ID', 'TAG'], ...r.programs.map((p) => [p.name, String(p.id), p.tag])]));
      print(formatRows([['MAP', 'ID', 'CAPACITY', 'STATE'], ...r.maps.map((m) => [m.name, String(m.id), String(m.maxEntries), m.reused ? 'reused (entries kept)' : 'new'])]));
    });

  program
    .command('unload')
    .description('detach and remove exactly what meshbpf pinned (accelerated connections fall back to the normal stack)')
    .addOption(pinDirOption())
    .action(async (o) => {
      // Unloading under a running agent would leave it syncing into maps nobody uses.
      const owner = await lockOwner(o.pinDir);
      if (owner !== undefined) throw new UserError(`a meshbpf agent${Number.isNaN(owner) ? '' : ` (pid ${owner})`} owns ${o.pinDir}; stop it first (or run it with --unload-on-exit)`);
      const r = unload({ pinDir: o.pinDir });
      print(`unloaded meshbpf from ${r.pinDir} (${r.removed.length} pins and directories removed)`);
      if (r.left.length) print(`left in place (not meshbpf's): ${r.left.join(', ')}`);
    });

  const maps = program.command('maps').description('inspect the kernel maps (read-only)');
  maps
    .command('list')
    .description('list the meshbpf maps with type, capacity and occupancy')
    .addOption(pinDirOption())
    .addOption(outputOption())
    .action((o) => {
      const m = openMaps(o.pinDir, { readOnly: true });
      try {
        const rows = [
          { name: 'mb_sockets', map: m.sockets },
          { name: 'mb_endpoints', map: m.endpoints },
          { name: 'mb_policy', map: m.policy },
        ].map(({ name, map }) => ({ name, id: map.info.id, type: map.typeName, entries: map.count(), capacity: map.info.maxEntries }));
        rows.push({ name: 'mb_stats', id: m.stats.info.id, type: 'percpu_array', entries: m.stats.info.maxEntries, capacity: m.stats.info.maxEntries });
        if (o.output === 'json') return print(json(rows));
        print(formatRows([['MAP', 'ID', 'TYPE', 'ENTRIES', 'CAPACITY'], ...rows.map((r) => [r.name, String(r.id), r.type, String(r.entries), String(r.capacity)])]));
      } finally {
        m.close();
      }
    });
  maps
    .command('dump [map]')
    .description(`decode and print map entries (all maps, or one of: ${MAP_NAMES.join(', ')})`)
    .addOption(pinDirOption())
    .addOption(outputOption())
    .addHelpText(
      'after',
      '\nJSON schema: { "<map>": [ { "key": ..., "value": ... } ] } (see README, "Reading a dump")\n\nExamples:\n  meshbpf maps dump mb_stats\n  meshbpf maps dump -o json | jq .mb_policy',
    )
    .action((name: string | undefined, o) => {
      if (name !== undefined && !MAP_NAMES.includes(name as MapName)) throw new UserError(`unknown map ${JSON.stringify(name)} (maps: ${MAP_NAMES.join(', ')})`);
      const which = name ? [name as MapName] : [...MAP_NAMES];
      const m = openMaps(o.pinDir, { readOnly: true });
      try {
        const out = Object.fromEntries(which.map((n) => [n, dumpMap(m, n)]));
        if (o.output === 'json') return print(json(out));
        print(which.map((n) => `== ${n} (${out[n]?.length ?? 0} entries)\n${renderTable(n, out[n] ?? [])}`).join('\n\n'));
      } finally {
        m.close();
      }
    });

  const endpoints = program.command('endpoints').description('write single endpoint entries (normally the xDS sync does this)');
  endpoints
    .command('add <prefix>')
    .description('add or replace an endpoint: an IP (host prefix) or a CIDR such as a local pod range')
    .option('--local', 'the address lives on this node (node IP or local pod CIDR)', false)
    .option('--no-mesh', 'mark as outside the mesh')
    .option('--network <id>', "network id (0 = this node's network; others never short-circuit)", intArg('--network', 0, 0xffffffff), 0)
    .option('--workload <id>', 'opaque workload id shown in dumps', intArg('--workload', 0, 0xffffffff), 0)
    .addOption(pinDirOption())
    .addHelpText('after', '\nExamples:\n  meshbpf endpoints add 10.244.1.0/24 --local\n  meshbpf endpoints add fd00:10:244:1::/64 --local\n  meshbpf endpoints add 10.0.9.7 --network 2')
    .action((prefix: string, o) => {
      const cidr = formatCidr(parseCidr(prefix));
      const m = openMaps(o.pinDir);
      try {
        m.endpoints.set(cidr, { local: !!o.local, mesh: o.mesh !== false, networkId: o.network, workloadId: o.workload });
      } finally {
        m.close();
      }
      print(`endpoint ${cidr}: ${o.local ? 'local' : 'remote'}, network ${o.network}`);
    });
  endpoints
    .command('del <prefix>')
    .description('remove an endpoint entry')
    .addOption(pinDirOption())
    .action((prefix: string, o) => {
      const cidr = formatCidr(parseCidr(prefix));
      const m = openMaps(o.pinDir);
      try {
        if (!m.endpoints.delete(cidr)) throw new UserError(`no endpoint entry ${cidr}`);
      } finally {
        m.close();
      }
      print(`endpoint ${cidr} removed`);
    });

  const policy = program.command('policy').description('per-destination verdicts: bypass (plain L4) or proxy (must reach Envoy)');
  policy
    .command('set <ip> <port> <verdict>')
    .description('set the verdict for a server ip:port (bypass | proxy)')
    .option('--rule <id>', 'rule id recorded with the verdict', intArg('--rule', 0, 0xffffffff), 0)
    .addOption(pinDirOption())
    .addHelpText('after', '\nExamples:\n  meshbpf policy set 10.244.1.5 5432 bypass\n  meshbpf policy set fd00::5 8080 proxy')
    .action((ipText: string, portText: string, verdict: string, o) => {
      if (verdict !== 'bypass' && verdict !== 'proxy') throw new UserError(`verdict must be bypass or proxy, not ${JSON.stringify(verdict)}`);
      const ipn = formatIp(parseIp(ipText).bytes);
      const port = parsePort(portText);
      const m = openMaps(o.pinDir);
      try {
        m.policy.set({ ip: ipn, port }, { verdict, ruleId: o.rule });
      } finally {
        m.close();
      }
      print(`policy ${hostPort(ipn, port)} = ${verdict}`);
    });
  policy
    .command('del <ip> <port>')
    .description('remove the verdict for ip:port (the normal path applies)')
    .addOption(pinDirOption())
    .action((ipText: string, portText: string, o) => {
      const ipn = formatIp(parseIp(ipText).bytes);
      const port = parsePort(portText);
      const m = openMaps(o.pinDir);
      try {
        if (!m.policy.delete({ ip: ipn, port })) throw new UserError(`no policy entry for ${hostPort(ipn, port)}`);
      } finally {
        m.close();
      }
      print(`policy ${hostPort(ipn, port)} removed`);
    });
  policy
    .command('explain <dst-ip> <port>')
    .description('the verdict the kernel would apply to a connection to dst-ip:port, and why (read from the live maps)')
    .option('--from <src-ip>', 'client address (default: judge the destination only)')
    .addOption(pinDirOption())
    .addOption(outputOption())
    .addHelpText('after', '\nExamples:\n  meshbpf policy explain 10.244.1.5 5432 --from 10.244.1.9\n  meshbpf policy explain fd00::5 8080 -o json')
    .action((dst: string, portText: string, o) => {
      const r = explainFromKernel(o.pinDir, dst, parsePort(portText), o.from);
      print(o.output === 'json' ? json(r) : renderExplain(r));
    });

  registerSync(program);
  registerAgent(program);
  registerExclude(program);
  registerInpod(program);
  registerDemo(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // `meshbpf load | head -1`: the reader is gone, which is no error of ours.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  const program = buildProgram();
  program.exitOverride();
  // Commander's own messages become one `meshbpf: ...` line (help text shown on error still goes out whole).
  let errText = '';
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const c of all(program)) c.exitOverride().configureOutput({ writeErr: (s) => (errText += s), outputError: () => undefined });
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') {
        process.exitCode = 0;
        return;
      }
      if (e.code === 'commander.help') {
        process.stderr.write(errText);
        process.exitCode = 1;
        return;
      }
      process.stderr.write(`meshbpf: ${e.message.replace(/^error: /, '')} (see --help)\n`);
      process.exitCode = 1;
      return;
    }
    log.debug({ err: e }, 'command failed');
    const msg = userMessage(e);
    const [first, ...rest] = msg.split('\n');
    process.stderr.write(`meshbpf: ${first}\n`);
    if (rest.length) process.stderr.write(`${rest.join('\n')}\n`);
    process.exitCode = 1;
  }
}
