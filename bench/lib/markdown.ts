// REPORT.md from report.json: the machine, how to reproduce, the targets, and
// one Markdown table per metric. Where the bypass is slower it says so.
import type { Report, ThroughputRow } from './report.js';
import type { Ratio, Summary } from './stats.js';

const sizeName = (n: number) => (n >= 1 << 20 ? `${n >> 20} MiB` : n >= 1024 ? `${n >> 10} KiB` : `${n} B`);
const gbit = (b: number) => (b >= 1e9 ? (b / 1e9).toFixed(2) : (b / 1e9).toPrecision(2));
const fam = (f: string) => (f === 'v4' ? 'IPv4' : 'IPv6');
const topoName = (t: string) => (t === 'veth' ? 'veth pair' : 'bridge + netfilter');
const x = (r: number) => `${r.toFixed(2)}×`;
const rr = (r: Ratio) => `**${x(r.median)}** (${r.min.toFixed(2)}–${r.max.toFixed(2)})`;
const sum = (s: Summary, f: (n: number) => string) => `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
const us = (n: number) => n.toFixed(1);
const table = (head: string[], rows: string[][]) =>
  [`| ${head.join(' | ')} |`, `|${head.map((h, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

export interface TargetCheck {
  name: string;
  target: string;
  measured: string;
  met: boolean;
}

export function targetChecks(r: Report): TargetCheck[] {
  const out: TargetCheck[] = [];
  const groups = [...new Set(r.throughput.map((t) => `${t.topology}|${t.family}`))];
  for (const g of groups) {
    const [topo, f] = g.split('|') as [string, string];
    const big = r.throughput.filter((t) => `${t.topology}|${t.family}` === g && t.size >= 16384);
    if (!big.length) continue;
    const worst = big.reduce((a, b) => (b.ratio.median < a.ratio.median ? b : a));
    out.push({
      name: `throughput ratio, writes ≥ 16 KiB, ${topoName(topo)} ${fam(f)}`,
      target: '≥ 3.5×',
      measured: `${x(worst.ratio.median)} lowest (at ${sizeName(worst.size)}); ${big.map((b) => `${sizeName(b.size)} ${x(b.ratio.median)}`).join(', ')}`,
      met: worst.ratio.median >= 3.5,
    });
  }
  for (const g of groups) {
    const [topo, f] = g.split('|') as [string, string];
    const rows = r.throughput.filter((t) => `${t.topology}|${t.family}` === g);
    const worst = rows.reduce((a, b) => (b.ratio.median < a.ratio.median ? b : a));
    out.push({
      name: `throughput ratio at every write size, ${topoName(topo)} ${fam(f)}`,
      target: '≥ 1.0× (never slower than the stack)',
      measured: `${x(worst.ratio.median)} lowest (at ${sizeName(worst.size)})`,
      met: worst.ratio.median >= 1,
    });
    const big = rows.filter((t) => t.size >= 16384 && t.ratioMinimal);
    if (big.length) {
      const w = big.reduce((a, b) => ((b.ratioMinimal?.median ?? 0) < (a.ratioMinimal?.median ?? 0) ? b : a));
      out.push({
        name: `bypass ÷ minimal redirect, writes ≥ 16 KiB, ${topoName(topo)} ${fam(f)}`,
        target: '≥ 1.0× (meshbpf costs no more than a bare redirect)',
        measured: `${x(w.ratioMinimal!.median)} lowest (at ${sizeName(w.size)}; per-round ${w.ratioMinimal!.min.toFixed(2)}–${w.ratioMinimal!.max.toFixed(2)}); ${big.map((b) => `${sizeName(b.size)} ${x(b.ratioMinimal!.median)}`).join(', ')}`,
        met: w.ratioMinimal!.median >= 1,
      });
    }
  }
  for (const l of r.latency.filter((l) => l.size === 64)) {
    out.push({
      name: `latency p50, 64 B, ${topoName(l.topology)} ${fam(l.family)} (${l.tool})`,
      target: 'ratio ≤ 0.60',
      measured: `${us(l.p50.bypass.median)} vs ${us(l.p50.stack.median)} µs = ${x(l.p50.ratio.median)}`,
      met: l.p50.ratio.median <= 0.6,
    });
  }
  for (const c of r.connectRate) {
    out.push({
      name: `connection rate with programs, ${topoName(c.topology)} ${fam(c.family)}`,
      target: '≥ 95% of no programs',
      measured: `${(c.ratioBypass.median * 100).toFixed(1)}% (eligible, inserted); ${(c.ratioIneligible.median * 100).toFixed(1)}% (not eligible)`,
      met: c.ratioBypass.median >= 0.95,
    });
  }
  return out;
}

function throughputTable(rows: ThroughputRow[], topo: string, f: string): string {
  const mine = rows.filter((r) => r.topology === topo && r.family === f).sort((a, b) => a.size - b.size);
  const variants = mine.some((r) => r.pass);
  const head = [
    'write size',
    'stack Gbit/s',
    'bypass Gbit/s',
    'minimal redirect Gbit/s',
    'AF_UNIX Gbit/s',
    ...(variants ? ['minimal, SK_PASS Gbit/s', 'minimal, SK_PASS + apply_bytes Gbit/s'] : []),
    'bypass ÷ stack',
    'bypass ÷ minimal',
    'bypass ÷ AF_UNIX',
    'switched to the stack',
    'bypass runs kept on the stack (learned)',
  ];
  const o = (v: Summary | undefined) => (v ? sum(v, gbit) : 'n/a');
  const body = mine.map((r) => [
    sizeName(r.size),
    o(r.stack),
    o(r.bypass),
    o(r.minimal),
    o(r.unix),
    ...(variants ? [o(r.pass), o(r.passApply)] : []),
    rr(r.ratio) + (r.ratio.median < 1 ? ' ⚠ slower' : ''),
    r.ratioMinimal ? rr(r.ratioMinimal) : 'n/a',
    r.ratioUnix ? rr(r.ratioUnix) : 'n/a',
    r.switchedToStack === undefined ? 'n/a' : String(r.switchedToStack),
    r.learnedRuns === undefined ? 'n/a' : `${r.learnedRuns} of ${r.bypass.runs.length}`,
  ]);
  return table(head, body);
}

/** What the small-write rows of this run show, in sentences built from them only. */
export function smallWritesText(r: Report): string[] {
  const L: string[] = [];
  const switched = r.throughput.filter((t) => (t.switchedToStack ?? 0) > 0);
  const kept = r.throughput.filter((t) => t.switchedToStack === 0);
  if (switched.length) {
    const sizes = [...new Set(switched.map((t) => t.size))].sort((a, b) => a - b);
    L.push(
      `In bypass mode, sk_msg moved the writer's socket to the stack (a one-way stream of small writes, see bpf/sk_msg.c) at ${sizes.map(sizeName).join(', ')}: ${switched.reduce((a, t) => a + (t.switchedToStack ?? 0), 0)} sockets in ${switched.length} rows. ` +
        `A switched socket keeps its psock (tcp_bpf_sendmsg passes every message to TCP), and the switch is recorded in mb_streams for the client and destination.`,
    );
    const learned = switched.filter((t) => (t.learnedRuns ?? 0) > 0);
    if (learned.length) {
      const runs = learned.reduce((a, t) => a + (t.learnedRuns ?? 0), 0);
      const total = learned.reduce((a, t) => a + t.bypass.runs.length, 0);
      L.push(
        `The bench forgets mb_streams before each write size. In ${learned.length} of these rows, ${runs} of ${total} bypass runs met the entry the first run of the size left: sockops kept their sockets out of mb_sockets, so they ran exactly the stack's path (no psock). ` +
          `The first bypass run of each such size is the probe and pays the psock; its throughput ÷ the stack median: ` +
          learned.map((t) => `${sizeName(t.size)} ${topoName(t.topology)} ${fam(t.family)} ${t.probeRatio === undefined ? 'n/a' : x(t.probeRatio)}`).join('; ') +
          '. On a node the probe is the first connection of a client to such a destination, and again one connection a minute while the pair keeps streaming.',
      );
    }
    const unlearned = switched.filter((t) => !t.learnedRuns);
    if (unlearned.length)
      L.push(
        `No bypass run met a learned entry at ${unlearned.map((t) => `${sizeName(t.size)} ${topoName(t.topology)} ${fam(t.family)}`).join('; ')}: there every bypass run is a switched socket with its psock.`,
      );
  }
  if (kept.length) {
    const sizes = [...new Set(kept.map((t) => t.size))].sort((a, b) => a - b);
    L.push(`No socket was switched at ${sizes.map(sizeName).join(', ')}: those rows are the redirect.`);
  }
  const v = r.throughput.filter((t) => t.pass && t.passApply);
  if (v.length) {
    L.push(
      'SK_PASS through a psock vs no psock at all (the minimal program returning SK_PASS, so every send goes through tcp_bpf_sendmsg and TCP), ratio to the stack column: ' +
        v
          .map((t) => `${sizeName(t.size)} ${topoName(t.topology)} ${fam(t.family)} ${x(t.pass!.median / t.stack.median)} (with bpf_msg_apply_bytes ${x(t.passApply!.median / t.stack.median)})`)
          .join('; ') +
        '.',
    );
  }
  const slower = r.throughput.filter((t) => t.ratio.median < 1);
  // A stack that is fast in some runs only (its min and max at least 2x apart) makes a bimodal row: say so with its runs.
  const g = (b: number) => (b / 1e9).toFixed(2);
  const bimodal = slower.filter((t) => t.stack.min > 0 && t.stack.max / t.stack.min >= 2);
  if (bimodal.length) {
    L.push(
      bimodal
        .map(
          (t) =>
            `At ${sizeName(t.size)} ${topoName(t.topology)} ${fam(t.family)} the stack's own runs spread from ${g(t.stack.min)} to ${g(t.stack.max)} Gbit/s (${(t.stack.max / t.stack.min).toFixed(1)}×) while the bypass runs stayed within ${g(t.bypass.min)}–${g(t.bypass.max)} Gbit/s: ` +
            `${t.stack.runs.filter((x) => x > t.bypass.max).length} of ${t.stack.runs.length} stack runs were faster than every bypass run and ${t.stack.runs.filter((x) => x < t.bypass.min).length} slower than every one.`,
        )
        .join(' '),
    );
  }
  L.push(
    slower.length
      ? `**The bypass was slower than the stack in this run at:** ${slower.map((t) => `${sizeName(t.size)} ${topoName(t.topology)} ${fam(t.family)} ${x(t.ratio.median)} (per-round ${t.ratio.min.toFixed(2)}–${t.ratio.max.toFixed(2)})`).join('; ')}.`
      : 'The bypass was not slower than the stack at any measured write size in this run.',
  );
  return L;
}

export function renderMarkdown(r: Report): string {
  const L: string[] = [];
  const m = r.machine;
  L.push('# meshbpf benchmark report', '');
  L.push(`Generated ${r.generatedAt} by \`npm run bench\`${r.options.quick ? ' **--quick (smoke run: not a measurement)**' : ''} in ${Math.round(r.durationSec)} s.`, '');
  L.push('## Machine', '');
  L.push(`- kernel ${m.kernel}; CPU ${m.cpuModel}, ${m.cores} cores; Node ${m.node}; libbpf ${m.libbpf}`);
  L.push(`- peers: ${m.iperf3}; sockperf ${m.sockperf}; mbrr (bench/tools/mbrr.c)`);
  L.push(`- ${r.options.rounds} alternating rounds per figure, ${r.options.seconds} s per iperf3 run, ${r.options.rrSeconds} s per latency or connection-rate run`);
  L.push(
    `- a shared 2-core VM: other work on the machine adds noise (1-min load average ${r.noise.loadAvg1mAtStart} at the start, ${r.noise.loadAvg1mAtEnd} at the end; ${r.noise.otherMbtNamespacesAtStart} network namespaces of other test runs present at the start). The alternation spreads the noise over both modes; the min–max ranges show it`,
    '',
  );
  L.push('## How to reproduce', '');
  L.push('```sh');
  L.push('sudo apt-get install iperf3 sockperf iptables librsvg2-bin   # plus scripts/setup.sh');
  L.push('sudo npm run bench                       # full run, ~10 min');
  L.push('sudo npm run bench -- --quick            # smoke run, < 30 s');
  L.push('sudo npm run bench -- --rounds 5 --seconds 3 --out /tmp/bench');
  L.push('```', '');
  L.push('## What is compared', '');
  L.push('- **stack**: the same throwaway node with meshbpf loaded, but the server has no policy verdict, so the connection is not eligible and takes the kernel TCP/IP path.');
  L.push('- **bypass**: verdict BYPASS for the server address and port; both sockets enter `mb_sockets` and sk_msg redirects every message into the peer socket.');
  L.push(
    '- **connection rate**: *none* = client and server in a sibling cgroup with no programs at all; *attached, not eligible* = programs attached, no verdict; *attached, bypass* = every connection inserted into the sockhash.',
  );
  L.push(
    '- Modes alternate within each round (order flipped every round); each figure is the median over rounds with (min–max). Ratio = bypass ÷ stack of the medians, (min–max) of the per-round ratios.',
  );
  L.push('- The counters (`mb_stats`) are read around every run: the bench fails if a bypass run redirected nothing or a stack run redirected anything (see *Verification*).');
  L.push(
    '- Topologies: **veth pair** = pod netns ↔ veth ↔ pod netns. **bridge + netfilter** = both pods on a Linux bridge in a node namespace with br_netfilter on (`net.bridge.bridge-nf-call-iptables=1` and `-ip6tables=1`, set inside the node namespace only: the sysctl is per network namespace on this kernel, so the pods stay bridged, not routed) and kube-proxy-like iptables rules.',
    '',
  );
  if (r.netfilter) {
    const n = r.netfilter;
    L.push(
      `Netfilter in the node namespace: ${n.backend}; ${n.services} ClusterIP services as kube-proxy (iptables mode) writes them: ${n.rulesV4} IPv4 and ${n.rulesV6} IPv6 rules (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-* with DNAT, KUBE-MARK-MASQ, KUBE-POSTROUTING MASQUERADE, KUBE-FORWARD with conntrack state matches, REJECT for services without endpoints); none matches the test traffic. Conntrack TIME_WAIT timeout ${n.conntrackTimeWaitSec} s in that namespace so the connection-rate runs do not fill the table.` +
        (n.forwardEstablishedPackets
          ? ` Evidence that the stack traffic traversed it: ${n.forwardEstablishedPackets.v4} IPv4 and ${n.forwardEstablishedPackets.v6} IPv6 packets counted by KUBE-FORWARD's ESTABLISHED rule; ${n.conntrackEntriesAtEnd ?? '?'} conntrack entries at the end.`
          : ''),
      '',
    );
  }

  L.push('## Targets', '');
  const checks = targetChecks(r);
  L.push(
    table(
      ['figure', 'target', 'measured', 'met'],
      checks.map((c) => [c.name, c.target, c.measured, c.met ? 'yes' : '**no**']),
    ),
    '',
  );

  L.push('## Throughput (iperf3, one stream)', '');
  L.push('![throughput ratio](throughput-ratio.svg)', '');
  L.push(
    "*minimal redirect* = bench/tools/minimal_redirect.c in a cgroup of its own (sockops inserts every socket, sk_msg builds the mirror key and redirects; no policy, socket storage or counters): the yardstick for meshbpf's own per-message cost. *AF_UNIX* = `mbrr unix`, the same write size over a stream socketpair: what the kernel can do between two sockets on one node. *switched to the stack* = sockets sk_msg moved to the stack during the bypass runs (stream_switched). *kept on the stack (learned)* = bypass runs in which sockops put no socket into mb_sockets because the pair had switched less than 60 s before (mb_streams, stream_kept): they take exactly the stack's path.",
    '',
  );
  for (const g of [...new Set(r.throughput.map((t) => `${t.topology}|${t.family}`))]) {
    const [topo, f] = g.split('|') as [string, string];
    L.push(`### ${topoName(topo)}, ${fam(f)}`, '');
    L.push(throughputTable(r.throughput, topo, f), '');
  }
  if (r.throughput.length) {
    L.push('### Small writes in this run', '');
    for (const p of smallWritesText(r)) L.push(p, '');
    L.push('Where the time goes between 1 and 16 KiB, and what limits the redirect there (profiles of focused runs, not of this one, so kept apart): [PROFILE.md](PROFILE.md).', '');
  }

  L.push('## CPU per GB moved', '');
  L.push(
    "CPU-seconds per GB received. *peers* = user+sys of both iperf3 processes (iperf3's own accounting; softirq work done outside them is not in it); *node* = busy time of all CPUs from /proc/stat during the run (includes softirq, and anything else running on the machine).",
    '',
  );
  L.push(
    table(
      ['topology', 'family', 'write size', 'peers stack', 'peers bypass', 'node stack', 'node bypass'],
      r.throughput.map((t) => {
        const c = t.cpuSecPerGB;
        const f = (s?: Summary) => (s ? s.median.toFixed(3) : 'n/a');
        return [topoName(t.topology), fam(t.family), sizeName(t.size), f(c.peersStack), f(c.peersBypass), f(c.nodeStack), f(c.nodeBypass)];
      }),
    ),
    '',
  );

  if (r.vip?.length) {
    L.push('## Service VIP beside the pod IP', '');
    L.push(
      'iperf3, one stream, the largest write size, on the bridge node. *VIP, stack*: the client connects to a ClusterIP that kube-proxy-style rules in its namespace DNAT to pod b. *VIP, bypass*: meshbpf resolves the ClusterIP at connect (cgroup connect4/6) to pod b, then the connection goes socket to socket. The four modes alternate in one run; the target is the VIP ratio equal to the pod-IP ratio within the noise (min–max).',
      '',
    );
    L.push('| family | size | pod IP stack | pod IP bypass | pod IP ratio | VIP stack | VIP bypass | VIP ratio |', '|---|---|---|---|---|---|---|---|');
    const g = (x: { median: number }) => `${(x.median / 1e9).toFixed(2)} Gbit/s`;
    for (const v of r.vip) L.push(`| ${fam(v.family)} | ${v.size} | ${g(v.podIp.stack)} | ${g(v.podIp.bypass)} | ${rr(v.podIp.ratio)} | ${g(v.vip.stack)} | ${g(v.vip.bypass)} | ${rr(v.vip.ratio)} |`);
    L.push('');
  }
  L.push('## Request/response latency', '');
  L.push(
    'Full round trip in µs, one connection, ping-pong at full rate (TCP_NODELAY). Both peers are pinned to one CPU: on this VM an idle vCPU halts and takes ~40–50 µs to wake by IPI, which swamped the figure (unpinned, the same test gave p50 8 µs or 50 µs depending on whether other work kept the CPUs busy). Ratio = bypass ÷ stack (below 1 = bypass faster). *minimal redirect* (mbrr only) = the same ping-pong in the cgroup of the minimal redirect, alternating with the other two: the yardstick for the per-message cost of meshbpf. sockperf 3.7 has no IPv6, so IPv6 uses mbrr only; for IPv4 both tools ran, which also cross-checks mbrr.',
    '',
  );
  L.push(
    table(
      ['topology', 'family', 'tool', 'size', 'p50 stack', 'p50 bypass', 'p50 ratio', 'p50 minimal redirect', 'p50 bypass ÷ minimal', 'p99 stack', 'p99 bypass', 'p99 ratio'],
      r.latency.map((l) => [
        topoName(l.topology),
        fam(l.family),
        l.tool,
        sizeName(l.size),
        sum(l.p50.stack, us),
        sum(l.p50.bypass, us),
        rr(l.p50.ratio),
        l.p50.minimal ? sum(l.p50.minimal, us) : 'n/a',
        l.p50.ratioMinimal ? rr(l.p50.ratioMinimal) : 'n/a',
        sum(l.p99.stack, us),
        sum(l.p99.bypass, us),
        rr(l.p99.ratio),
      ]),
    ),
    '',
  );

  L.push('## Connection setup rate', '');
  L.push('Short connections per second (mbrr crr: connect, 1-byte request, 1-byte reply, server closes first), one client. This is the cost sockops adds to every connection.', '');
  L.push(
    table(
      ['topology', 'family', 'no programs', 'attached, not eligible', 'attached, bypass', 'bypass ÷ none', 'not eligible ÷ none'],
      r.connectRate.map((c) => {
        const f = (n: number) => n.toFixed(0);
        return [topoName(c.topology), fam(c.family), sum(c.none, f), sum(c.attachedIneligible, f), sum(c.attachedBypass, f), rr(c.ratioBypass), rr(c.ratioIneligible)];
      }),
    ),
    '',
  );

  if (r.experiments.length) {
    L.push('## Small writes: experiments', '');
    for (const e of r.experiments) {
      L.push(`### ${e.name}`, '', e.description, '');
      L.push(
        table(
          ['metric', 'size', 'baseline', 'variant', 'variant ÷ baseline', 'note'],
          e.rows.map((row) => {
            const f = row.unit === 'bits/s' ? gbit : us;
            const unit = row.unit === 'bits/s' ? 'Gbit/s' : row.unit;
            return [row.metric, sizeName(row.size), `${sum(row.baseline, f)} ${unit}`, `${sum(row.variant, f)} ${unit}`, rr(row.ratio), row.note ?? ''];
          }),
        ),
        '',
      );
    }
  }

  L.push('## Verification', '');
  L.push('Counter deltas (`mb_stats`) summed over the runs of each mode.', '');
  L.push(
    table(
      ['topology', 'family', 'metric', 'mode', 'runs', 'redirected msgs', 'redirected bytes', 'sockets inserted'],
      r.verification.map((v) => [topoName(v.topology), fam(v.family), v.metric, v.mode, String(v.runs), String(v.redirectedMsgs), String(v.redirectedBytes), String(v.socketsInserted)]),
    ),
    '',
  );
  return L.join('\n');
}
