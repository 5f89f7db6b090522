// `meshbpf demo`: a throwaway node (two pods on a bridge, a child cgroup),
// meshbpf loaded into it, iperf3 with and without the bypass, side by side.
// Everything it made is removed at the end, on error and on Ctrl-C.
import type { Command } from 'commander';
import { load, unload } from '../loader/load.js';
import { checkPrivileges } from '../loader/preflight.js';
import { openMaps, readStats } from '../maps/pinned.js';
import { STAT_NAMES } from '../maps/codecs.js';
import { Topology } from '../topo/topology.js';
import { CleanupStack } from '../cleanup.js';
import { formatBits, formatSize, median, requireTool, runIperf, startIperfServer } from '../topo/peers.js';
import { formatRows } from '../maps/dump.js';
import { intArg, print } from './common.js';
import { UserError } from '../errors.js';

const SIZES = [64, 1024, 16384, 65536];

function parseSizes(v: string): number[] {
  return v.split(',').map((x) => {
    const m = /^(\d+)([kKmM]?)$/.exec(x.trim());
    if (!m) throw new UserError(`bad write size ${JSON.stringify(x)} (e.g. 64,1k,16k,1m)`);
    const unit = (m[2] ?? '').toLowerCase();
    return Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1 << 20 : 1);
  });
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('build a throwaway node, load meshbpf, and measure iperf3 through the stack vs. the bypass (root; cleans up after itself)')
    .option('--sizes <list>', 'write sizes, comma separated', SIZES.map(formatSize).join(',').replace(/ KiB/g, 'k').replace(/ B/g, ''))
    .option('--seconds <n>', 'seconds per iperf3 run', intArg('--seconds', 1, 60), 2)
    .option('--rounds <n>', 'alternating stack/bypass rounds per size (median reported)', intArg('--rounds', 1, 9), 1)
    .option('--ipv6', 'use IPv6 addresses (fd00::/8) instead of IPv4')
    .addHelpText('after', '\nExample:\n  sudo meshbpf demo --sizes 1k,64k --seconds 3')
    .action(async (o) => {
      checkPrivileges();
      requireTool('iperf3');
      await runDemo({ sizes: parseSizes(o.sizes), seconds: o.seconds, rounds: o.rounds, v6: !!o.ipv6 });
    });
}

export async function runDemo(o: { sizes: number[]; seconds: number; rounds: number; v6: boolean }): Promise<void> {
  const topo = new Topology();
  const undo = new CleanupStack(); // best effort: a failed step is logged, the rest still runs
  undo.add(() => topo.destroy());
  const cleanup = () => undo.run();
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\n${sig}: cleaning up the demo node\n`);
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    print(`building demo node mbt-${topo.id}: pods a and b on a bridge, cgroup ${topo.cgroup}`);
    topo.build('bridge', [
      { name: 'a', v4: '198.18.0.2/24', v6: 'fd00:0:0:18::2/64' },
      { name: 'b', v4: '198.18.0.3/24', v6: 'fd00:0:0:18::3/64' },
    ]);
    load({ pinDir: topo.pinDir, cgroup: topo.cgroup });
    undo.add(() => unload({ pinDir: topo.pinDir }));
    const maps = openMaps(topo.pinDir);
    try {
      maps.endpoints.set('198.18.0.0/24', { local: true, mesh: true, networkId: 0, workloadId: 0 });
      maps.endpoints.set('fd00:0:0:18::/64', { local: true, mesh: true, networkId: 0, workloadId: 0 });
      const server = o.v6 ? (topo.pod('b').v6 as string) : (topo.pod('b').v4 as string);
      const port = 5201;
      print(`loaded meshbpf (pins ${topo.pinDir}); pod CIDRs marked local; iperf3 a -> ${server}:${port}, ${o.seconds}s per run\n`);
      await startIperfServer(topo, 'b', port);

      const rows: string[][] = [['WRITE SIZE', 'STACK', 'BYPASS', 'RATIO']];
      const before = readStats(maps.stats);
      for (const size of o.sizes) {
        const stack: number[] = [];
        const bypass: number[] = [];
        for (let r = 0; r < o.rounds; r++) {
          maps.policy.delete({ ip: server, port }); // no verdict: normal stack
          stack.push((await runIperf(topo, 'a', server, port, size, o.seconds)).bitsPerSecond);
          maps.policy.set({ ip: server, port }, { verdict: 'bypass', ruleId: 1 });
          bypass.push((await runIperf(topo, 'a', server, port, size, o.seconds)).bitsPerSecond);
        }
        const s = median(stack);
        const b = median(bypass);
        rows.push([formatSize(size), formatBits(s), formatBits(b), `${(b / s).toFixed(2)}x`]);
        process.stderr.write(`  ${formatSize(size)} done\n`);
      }
      const after = readStats(maps.stats);
      print(formatRows(rows));
      print('\nmeshbpf counters during the demo (mb_stats, summed over CPUs):');
      print(formatRows([['COUNTER', 'VALUE'], ...STAT_NAMES.map((n) => [n, String(after[n] - before[n])])]));
      print('\nRatios come from one run on this machine; small writes are known to be slower through sk_msg than through TCP (see README).');
    } finally {
      maps.close();
    }
  } finally {
    cleanup();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}
