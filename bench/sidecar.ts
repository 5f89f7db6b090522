// `npm run bench:sidecar` (and the last part of `npm run bench`): an Istio
// sidecar node, measured two ways in ONE run, alternating round by round:
//   - iptables only: Istio's nat rules and two HAProxy sidecars, meshbpf's
//     programs attached but sidecar pairing off (no captured pods in the maps);
//   - with meshbpf: the same node with pairing on for both pods.
// Keep-alive request latency (p50/p99 of 64-byte POSTs over one connection) and
// large-POST throughput (1 MiB bodies over one keep-alive connection), app a ->
// sidecar a -> sidecar b -> app b. Every request must come back with both
// sidecars' headers and an intact body, or the round does not count. Writes
// bench/report/sidecar.json and SIDECAR.md. Everything is named mbt-* and
// removed on success, failure and Ctrl-C.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { setLogLevel } from '../src/log.js';
import { load, unload } from '../src/loader/load.js';
import { checkPrivileges } from '../src/loader/preflight.js';
import { openMaps, readStats } from '../src/maps/pinned.js';
import { applySidecar, sidecarSettings } from '../src/maps/sidecar.js';
import { PROJECT_ROOT } from '../src/paths.js';
import { makeSidecarPod } from '../src/topo/istio.js';
import { waitForListen } from '../src/topo/peers.js';
import { Topology } from '../src/topo/topology.js';
import { median } from './lib/stats.js';
import { CleanupStack } from '../src/cleanup.js';

type Mode = 'iptables' | 'meshbpf';
const A = '198.18.30.1';
const B = '198.18.30.2';
const MiB = 1 << 20;

const log = (s: string) => process.stderr.write(`${s}\n`);

interface Opts {
  rounds: number;
  rrCount: number;
  postCount: number;
  out: string;
}

function parse(argv: string[]): Opts {
  const o: Opts = { rounds: 5, rrCount: 2000, postCount: 64, out: join(PROJECT_ROOT, 'bench', 'report') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--requests') o.rrCount = Number(v());
    else if (a === '--posts') o.postCount = Number(v());
    else if (a === '--out') o.out = v();
    else if (a === '--quick') Object.assign(o, { rounds: 3, rrCount: 300, postCount: 16 });
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: bench:sidecar [--quick] [--rounds N] [--requests N] [--posts N] [--out DIR]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  for (const [k, x] of Object.entries(o)) if (typeof x === 'number' && (!Number.isInteger(x) || x < 1)) throw new Error(`--${k}: ${x} is not a positive integer`);
  return o;
}

interface Timing {
  us: number[];
  ms: number;
  bytes: number;
  ok: number;
}

export async function runSidecarBench(o: Opts): Promise<{ md: string; json: unknown }> {
  const cleanups = new CleanupStack((e) => log(`cleanup: ${(e as Error).message}`));
  const onSig = () => {
    cleanups.run();
    process.exit(130);
  };
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  const topo = new Topology();
  cleanups.add(() => topo.destroy());
  const dir = join('/tmp', `mbt-${topo.id}-sidecar`);
  mkdirSync(dir, { recursive: true });
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  try {
    topo.build('bridge', [
      { name: 'a', v4: `${A}/24` },
      { name: 'b', v4: `${B}/24` },
    ]);
    load({ pinDir: topo.pinDir, cgroup: topo.cgroup });
    cleanups.add(() => void unload({ pinDir: topo.pinDir }));
    // Sidecars are restarted at every mode switch: HAProxy keeps upstream
    // connections alive, and one paired in a meshbpf round would keep its
    // pairing into the next baseline round.
    let sidecars: Array<{ stop(): void }> = [];
    const restartSidecars = async () => {
      for (const s of sidecars) await s.stop();
      sidecars = [];
      for (const p of ['a', 'b']) sidecars.push(await makeSidecarPod(topo, p, 4, dir, PROJECT_ROOT));
    };
    cleanups.add(() => sidecars.forEach((s) => void s.stop()));
    const app = join(PROJECT_ROOT, 'dist', 'src', 'topo', 'httpapp.js');
    topo.spawn('b', [process.execPath, app, 'serve', '8080']);
    await waitForListen(topo, 'b', 8080);
    const maps = openMaps(topo.pinDir);
    cleanups.add(() => maps.close());
    maps.endpoints.set('198.18.30.0/24', { local: true, mesh: true, networkId: 0, workloadId: 0 });
    maps.policy.set({ ip: B, port: 8080 }, { verdict: 'proxy', ruleId: 1 }); // HTTP: L7, the sidecars' job
    const settings = sidecarSettings([A, B]);
    const setMode = async (m: Mode) => {
      applySidecar(maps, m === 'meshbpf' ? settings : undefined);
      await restartSidecars();
    };

    const time = async (size: number, count: number): Promise<Timing> => {
      const { stdout } = await topo.run('a', [process.execPath, app, 'time', `http://${B}:8080/`, String(size), String(count)], { timeoutMs: 600_000 });
      return JSON.parse(stdout) as Timing;
    };
    const modes: Mode[] = ['iptables', 'meshbpf'];
    const res: Record<Mode, { p50: number[]; p99: number[]; gbps: number[]; redirected: number[]; requested: number[] }> = {
      iptables: { p50: [], p99: [], gbps: [], redirected: [], requested: [] },
      meshbpf: { p50: [], p99: [], gbps: [], redirected: [], requested: [] },
    };
    // one discarded warm-up of each
    for (const m of modes) {
      await setMode(m);
      await time(64, 50);
    }
    for (let r = 0; r < o.rounds; r++) {
      for (const m of r % 2 ? [...modes].reverse() : modes) {
        await setMode(m);
        const before = readStats(maps.stats).redirect_bytes;
        const rr = await time(64, o.rrCount);
        const big = await time(MiB, o.postCount);
        const redirected = Number(readStats(maps.stats).redirect_bytes - before);
        const want = o.rrCount + o.postCount;
        if (rr.ok + big.ok !== want) throw new Error(`${m} round ${r + 1}: only ${rr.ok + big.ok} of ${want} requests came back through both sidecars intact`);
        const s = [...rr.us].sort((x, y) => x - y);
        res[m].p50.push(median(s));
        res[m].p99.push(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] as number);
        res[m].gbps.push((big.bytes * 8) / (big.ms / 1000) / 1e9);
        res[m].redirected.push(redirected);
        res[m].requested.push(64 * o.rrCount + big.bytes);
        log(
          `round ${r + 1} ${m}: p50 ${res[m].p50.at(-1)!.toFixed(0)} us, p99 ${res[m].p99.at(-1)!.toFixed(0)} us, 1 MiB POSTs ${res[m].gbps.at(-1)!.toFixed(2)} Gbit/s, redirected ${(redirected / MiB).toFixed(1)} MiB`,
        );
      }
    }
    const med = (m: Mode, k: 'p50' | 'p99' | 'gbps') => median(res[m][k]);
    const ratio = {
      p50: med('meshbpf', 'p50') / med('iptables', 'p50'),
      p99: med('meshbpf', 'p99') / med('iptables', 'p99'),
      gbps: med('meshbpf', 'gbps') / med('iptables', 'gbps'),
    };
    const legsCovered = Math.min(...res.meshbpf.redirected.map((x, i) => x / (res.meshbpf.requested[i] as number)));
    const baselineRedirected = Math.max(...res.iptables.redirected);
    const verdict = (ok: boolean) => (ok ? 'met' : '**not met**');
    const f = (x: number, d = 0) => x.toFixed(d);
    const md = [
      '# Sidecar node: iptables only vs with meshbpf',
      '',
      `Generated by \`npm run bench:sidecar\` on ${new Date().toISOString()}, kernel ${release()}, ${cpus().length} vCPUs, ${o.rounds} alternating rounds (medians).`,
      `Two pods with istio-iptables' nat rules (REDIRECT) and HAProxy ${'2.6'} sidecars (HTTP mode, uid 1337), app a -> sidecar a -> sidecar b -> app b over a bridge.`,
      "Baseline: meshbpf attached, sidecar pairing off. Every request in every round came back with both sidecars' headers and an intact body.",
      '',
      '| | iptables only | with meshbpf | ratio | target | |',
      '|---|---|---|---|---|---|',
      `| keep-alive 64 B request p50 | ${f(med('iptables', 'p50'))} us | ${f(med('meshbpf', 'p50'))} us | ${f(ratio.p50, 2)}x | <= 0.70x | ${verdict(ratio.p50 <= 0.7)} |`,
      `| keep-alive 64 B request p99 | ${f(med('iptables', 'p99'))} us | ${f(med('meshbpf', 'p99'))} us | ${f(ratio.p99, 2)}x | | |`,
      `| 1 MiB POST throughput | ${f(med('iptables', 'gbps'), 2)} Gbit/s | ${f(med('meshbpf', 'gbps'), 2)} Gbit/s | ${f(ratio.gbps, 2)}x | >= 2x | ${verdict(ratio.gbps >= 2)} |`,
      '',
      `Bytes redirected socket to socket per byte the app sent (request bodies only; responses and headers add more): at least ${f(legsCovered, 2)} with meshbpf in every round (3 legs = 3.0), ${baselineRedirected} bytes in the baseline rounds.`,
      `${o.rrCount} latency requests and ${o.postCount} POSTs of 1 MiB per round and mode.`,
      '',
    ].join('\n');
    return { md, json: { when: new Date().toISOString(), kernel: release(), opts: o, results: res, ratio } };
  } finally {
    cleanups.run();
    process.removeListener('SIGINT', onSig);
    process.removeListener('SIGTERM', onSig);
  }
}

if (process.argv[1]?.endsWith('sidecar.js')) {
  setLogLevel('warn');
  try {
    checkPrivileges();
    const o = parse(process.argv.slice(2));
    const r = await runSidecarBench(o);
    mkdirSync(o.out, { recursive: true });
    writeFileSync(join(o.out, 'SIDECAR.md'), r.md);
    writeFileSync(join(o.out, 'sidecar.json'), `${JSON.stringify(r.json, null, 2)}\n`);
    process.stdout.write(r.md);
  } catch (e) {
    log(`bench:sidecar: ${(e as Error).message}`);
    process.exit(1);
  }
}
