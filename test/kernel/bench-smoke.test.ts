// Keeps `npm run bench` working: a --quick run (one size per metric, one round,
// IPv4, veth pair) into a temp directory, then the report's structure: fields
// present, numbers positive, ratios computed. Not a timing test: no threshold
// on any figure. The bench cleans up after itself; this checks it did.
import test from 'ava';
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { kernelUnavailable } from '../helpers/kernel.js';
import { leftovers } from '../../src/topo/topology.js';

function benchUnavailable(): string | undefined {
  const k = kernelUnavailable();
  if (k) return k;
  for (const [bin, pkg] of [
    ['iperf3', 'iperf3'],
    ['sockperf', 'sockperf'],
    ['iptables-restore', 'iptables'],
    ['cc', 'gcc'],
  ] as const) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin} || { [ ${bin} = cc ] && command -v clang; }`], { stdio: 'ignore' });
    } catch {
      return `${bin} is not installed (apt-get install ${pkg})`;
    }
  }
  return undefined;
}

const why = benchUnavailable();
const ktest = why ? test.skip : test.serial;
if (why) console.log(`SKIPPING bench smoke test: ${why}`);

const out = mkdtempSync(join(tmpdir(), 'meshbpf-bench-')); // not mbt-: other runs' cleanups sweep /tmp/mbt-*
let child: ChildProcess | undefined;
const before = why ? undefined : leftovers();

test.after.always(() => {
  if (child && child.exitCode === null) child.kill('SIGINT'); // the bench cleans up on SIGINT
  rmSync(out, { recursive: true, force: true });
});

function runBench(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    let stderr = '';
    child = execFile(process.execPath, [join(process.cwd(), 'dist', 'bench', 'run.js'), ...args], { timeout: 60_000, env: { ...process.env, MESHBPF_LOG_LEVEL: 'warn' } }, (err) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr });
    });
    child.stderr?.on('data', (d) => (stderr += d));
  });
}

const positive = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n > 0;

ktest('bench --quick writes a well-formed report and leaves nothing behind', async (t) => {
  const r = await runBench(['--quick', '--out', out]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /\[\s*1\/\d+\] veth v4 throughput/, 'progress lines on stderr');
  for (const f of ['report.json', 'REPORT.md', 'throughput-ratio.svg']) t.true(existsSync(join(out, f)), f);

  const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  t.is(rep.schema, 1);
  t.true(rep.options.quick);
  for (const k of ['kernel', 'cpuModel', 'cores']) t.truthy(rep.machine[k], `machine.${k}`);

  t.is(rep.throughput.length, 1, 'one size, one topology, one family');
  const tp = rep.throughput[0];
  t.is(tp.topology, 'veth');
  t.is(tp.family, 'v4');
  for (const mode of ['stack', 'bypass']) {
    t.true(positive(tp[mode].median), `throughput ${mode}`);
    t.is(tp[mode].runs.length, 1);
    t.true(tp[mode].min <= tp[mode].median && tp[mode].median <= tp[mode].max);
  }
  t.true(positive(tp.ratio.median), 'throughput ratio');
  t.true(Math.abs(tp.ratio.median - tp.bypass.median / tp.stack.median) < 0.01 * tp.ratio.median, 'ratio = bypass / stack');

  t.true(rep.latency.length >= 1);
  for (const l of rep.latency) {
    for (const p of ['p50', 'p99']) {
      t.true(positive(l[p].stack.median) && positive(l[p].bypass.median), `${l.tool} ${p}`);
      t.true(positive(l[p].ratio.median), `${l.tool} ${p} ratio`);
    }
  }
  t.is(rep.connectRate.length, 1);
  const c = rep.connectRate[0];
  for (const mode of ['none', 'attachedIneligible', 'attachedBypass']) t.true(positive(c[mode].median), `connect ${mode}`);
  t.true(positive(c.ratioBypass.median));

  // The counters prove the modes were what they claim.
  const bypassed = rep.verification.filter((v: { mode: string }) => v.mode === 'bypass');
  t.true(bypassed.length > 0 && bypassed.every((v: { redirectedMsgs: number }) => v.redirectedMsgs > 0));
  const stack = rep.verification.filter((v: { mode: string }) => v.mode === 'stack');
  t.true(stack.length > 0 && stack.every((v: { redirectedMsgs: number }) => v.redirectedMsgs === 0));

  const md = readFileSync(join(out, 'REPORT.md'), 'utf8');
  t.regex(md, /## Machine/);
  t.regex(md, /\| write size \|/);
  const svg = readFileSync(join(out, 'throughput-ratio.svg'), 'utf8');
  t.regex(svg, /^<svg[^>]+xmlns="http:\/\/www.w3.org\/2000\/svg"/);

  const after = leftovers();
  for (const k of ['netns', 'cgroups', 'pins'] as const) {
    t.deepEqual(
      after[k].filter((n) => !before![k].includes(n)),
      [],
      `no ${k} left behind`,
    );
  }
});
