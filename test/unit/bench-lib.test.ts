// The bench's pure parts: options, summaries and ratios, kube-proxy rules, chart, report.
import test from 'ava';
import { ArgError, FULL_SIZES, parseArgs } from '../../bench/lib/args.js';
import { ratio, summarize } from '../../bench/lib/stats.js';
import { kubeProxyRules } from '../../bench/lib/kubeproxy.js';
import { ratioChart } from '../../bench/lib/chart.js';

test('parseArgs: defaults, --quick, and bad values', (t) => {
  const d = parseArgs([], '/r');
  t.deepEqual(d.sizes, FULL_SIZES);
  t.deepEqual(d.families, ['v4', 'v6']);
  t.deepEqual(d.topologies, ['veth', 'bridge']);
  t.is(d.rounds, 3);
  const q = parseArgs(['--quick'], '/r');
  t.deepEqual([q.sizes.length, q.rounds, q.families, q.topologies, q.experiments], [1, 1, ['v4'], ['veth'], false]);
  const o = parseArgs(['--seconds=4', '--rounds', '5', '--out', '/tmp/x', '--family', 'v6'], '/r');
  t.deepEqual([o.seconds, o.rrSeconds, o.rounds, o.out, o.families], [4, 2, 5, '/tmp/x', ['v6']]);
  t.throws(() => parseArgs(['--rounds', '0'], '/r'), { instanceOf: ArgError });
  t.throws(() => parseArgs(['--bogus'], '/r'), { instanceOf: ArgError });
});

test('summaries: median with min/max; ratio of medians and per-round spread', (t) => {
  const s = summarize([3, 1, 2]);
  t.deepEqual([s.median, s.min, s.max], [2, 1, 3]);
  t.is(summarize([1, 2, 3, 4]).median, 2.5);
  const r = ratio(summarize([2, 4, 6]), summarize([1, 1, 2]));
  t.is(r.median, 4);
  t.deepEqual([r.min, r.max], [2, 4]);
});

test('kube-proxy rules: one ClusterIP match per service, nothing outside the benchmark ranges', (t) => {
  for (const fam of ['v4', 'v6'] as const) {
    const r = kubeProxyRules(fam, 300, fam === 'v4' ? '198.18.2.0/24' : 'fd00:0:0:2::/64');
    t.true(r.rules > 300);
    t.regex(r.text, /^\*filter\n/);
    t.is(r.text.match(/^COMMIT$/gm)?.length, 2);
    t.is(r.text.match(/-A KUBE-SERVICES -d .* cluster IP/g)?.length, 270);
    const addrs = r.text.match(fam === 'v4' ? /\b\d+\.\d+\.\d+\.\d+\b/g : /\bfd00:[0-9a-f:]+/g) ?? [];
    for (const a of addrs) t.true(fam === 'v4' ? /^(198\.1[89]\.|127\.0\.0\.0)/.test(a) : a.startsWith('fd00:'), a);
  }
});

test('chart: an SVG with one line per series and the reference lines', (t) => {
  const svg = ratioChart(
    [
      {
        label: 'a',
        color: '#000',
        points: [
          { size: 64, ratio: 0.5, min: 0.4, max: 0.6 },
          { size: 1 << 20, ratio: 5, min: 4, max: 6 },
        ],
      },
      {
        label: 'b',
        color: '#f00',
        points: [
          { size: 64, ratio: 0.6, min: 0.5, max: 0.7 },
          { size: 16384, ratio: 4, min: 3, max: 5 },
        ],
      },
    ],
    { title: 'x <&> y' },
  );
  t.regex(svg, /^<svg /);
  t.is(svg.match(/<polyline/g)?.length, 2);
  t.regex(svg, /parity/);
  t.regex(svg, /x &lt;&amp;&gt; y/);
  t.regex(svg, /1 MiB/);
});
