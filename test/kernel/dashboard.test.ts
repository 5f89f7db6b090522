// deploy/grafana/meshbpf.json against the real agent: start `meshbpf agent`
// over ADS (the in-process server built on Envoy's protos), let it ACK a
// snapshot, NACK a bad one, move bytes through the bypass, then read /metrics.
// Every metric named in every dashboard query must be exported with at least
// one sample, and every label the query groups or filters by must be on it.
import test from 'ava';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { unload } from '../../src/loader/load.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { FakeAdsServer } from '../helpers/ads-server.js';
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type JsonObject } from '../../src/xds/types.js';
import { kernelSuite, tempDir, transfer } from '../helpers/kernel.js';
import { exampleResources, killAllAgents, startAgent, stopAgent, waitReady } from '../helpers/agent.js';

const NET = '198.18.6';
const B4 = `${NET}.3`;
const dir = tempDir();

const { ktest, topo } = kernelSuite('dashboard tests', {
  pods: [
    { name: 'a', v4: `${NET}.2/24` },
    { name: 'b', v4: `${B4}/24` },
  ],
  load: false,
  teardown: () => {
    killAllAgents();
    rmSync(dir, { recursive: true, force: true });
  },
});

interface Target {
  expr: string;
  panel: string;
}

function dashboardTargets(): Target[] {
  const d = JSON.parse(readFileSync(join(PROJECT_ROOT, 'deploy', 'grafana', 'meshbpf.json'), 'utf8')) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }>; panels?: unknown[] }>;
    templating: { list: Array<{ name: string; definition?: string }> };
  };
  const out: Target[] = [];
  for (const p of d.panels) for (const t of p.targets ?? []) out.push({ expr: t.expr, panel: p.title });
  for (const v of d.templating.list) if (v.definition) out.push({ expr: v.definition, panel: `variable ${v.name}` });
  return out;
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan', 'le']);

/** Metric names in a PromQL expression, each with the labels the expression filters or groups it by. */
function metricsIn(expr: string): Array<{ name: string; labels: string[] }> {
  const grouped = [...expr.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
  const out: Array<{ name: string; labels: string[] }> = [];
  // Strip strings, grouping clauses and ranges; what is left is names, functions and numbers.
  const src = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ');
  for (const m of src.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?/g)) {
    const [, name, matchers, call] = m;
    if (call || KEYWORDS.has(name!) || /^label_values$/.test(name!)) continue; // a function, or PromQL syntax
    const labels = [...(matchers ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!);
    out.push({ name: name!, labels: [...new Set([...labels, ...grouped])] });
  }
  return out;
}

/** Exported sample names and the labels each carries, from Prometheus text format. */
function exported(text: string): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s/.exec(line);
    if (!s) continue;
    const labels = m.get(s[1]!) ?? new Set<string>();
    for (const l of (s[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(l[1]!);
    m.set(s[1]!, labels);
  }
  return m;
}

test('the metric parser finds names and labels, and skips functions and syntax', (t) => {
  t.deepEqual(metricsIn('sum by (reason) (rate(meshbpf_sockets_skipped_total{instance=~"$instance"}[$__rate_interval]))'), [{ name: 'meshbpf_sockets_skipped_total', labels: ['instance', 'reason'] }]);
  t.deepEqual(
    metricsIn('time() - max by (type) (meshbpf_xds_last_ack_timestamp_seconds) * 1000').map((x) => x.name),
    ['meshbpf_xds_last_ack_timestamp_seconds'],
  );
  t.deepEqual(
    metricsIn('label_values(meshbpf_programs_attached, instance)').map((x) => x.name),
    ['meshbpf_programs_attached', 'instance'],
  );
});

ktest('every metric (and label) in every dashboard query is exported by the real agent', async (t) => {
  const ads = new FakeAdsServer();
  const address = await ads.start();
  t.teardown(() => ads.stop());
  mkdirSync(join(dir, 'state'), { recursive: true });
  const a = await startAgent({ cgroup: topo!.cgroup, pinDir: topo!.pinDir, stateDir: join(dir, 'state'), podCidr: `${NET}.0/24`, nodeIp: `${NET}.1`, extra: ['--xds', address] });
  t.teardown(async () => {
    await stopAgent(a);
    try {
      unload({ pinDir: topo!.pinDir });
    } catch {
      /* not loaded */
    }
  });
  const res = exampleResources(NET);
  const ofType = (url: string) => res.filter((r) => r['@type'] === url) as JsonObject[];
  const wants = (url: string) => (r: { req: JsonObject }) => r.req['type_url'] === url;
  await ads.waitFor(wants(TYPE_CLUSTER), { timeoutMs: 20_000 });
  ads.sendSotw(TYPE_CLUSTER, ofType(TYPE_CLUSTER), 'c1');
  await ads.waitFor(wants(TYPE_ENDPOINT), { timeoutMs: 20_000 });
  ads.sendSotw(TYPE_ENDPOINT, ofType(TYPE_ENDPOINT), 'e1');
  await ads.waitFor(wants(TYPE_LISTENER), { timeoutMs: 20_000 });
  ads.sendSotw(TYPE_LISTENER, ofType(TYPE_LISTENER), 'l1');
  await waitReady(a, 20_000);

  const x = await transfer(topo!, { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: `TCP4:${B4}:5432`, port: 5432, bytes: 1 << 20 });
  t.is(x.received, x.sent);
  // A listener with port 0 is NACKed: the NACK metrics get their samples.
  const bad = ofType(TYPE_LISTENER).map((l) => JSON.parse(JSON.stringify(l).replace('"port_value":8080', '"port_value":0')) as JsonObject);
  const from = ads.requests.length;
  const nonce = ads.sendSotw(TYPE_LISTENER, bad, 'l2');
  await ads.waitFor((r) => wants(TYPE_LISTENER)(r) && r.req['response_nonce'] === nonce, { from, timeoutMs: 20_000 });

  const text = (await a.get('/metrics')).text;
  const have = exported(text);
  const targets = dashboardTargets();
  t.true(targets.length >= 20, `${targets.length} queries`);
  const missing: string[] = [];
  let checked = 0;
  for (const { expr, panel } of targets) {
    for (const { name, labels } of metricsIn(expr)) {
      if (panel.startsWith('variable') && name === 'instance') continue; // label_values' label argument
      checked++;
      const got = have.get(name);
      if (!got) {
        missing.push(`${panel}: ${name} is not exported`);
        continue;
      }
      // "instance" (and "job") are added by Prometheus at scrape time, not by the agent.
      for (const l of labels) if (l !== 'instance' && l !== 'job' && l !== 'le' && !got.has(l)) missing.push(`${panel}: ${name} has no label ${l}`);
      if (name.endsWith('_bucket') && !got.has('le')) missing.push(`${panel}: ${name} has no le buckets`);
    }
  }
  t.deepEqual(missing, [], `exported:\n${[...have.keys()].join('\n')}`);
  t.true(checked >= 25, `${checked} metric references checked`);
  // The values behind the main panels are real, not just present.
  t.regex(text, /^meshbpf_redirected_bytes_total [1-9]\d*/m);
  t.regex(text, /^meshbpf_xds_events_total\{kind="nack"\} [1-9]/m);
  t.regex(text, /^meshbpf_sync_duration_seconds_count [1-9]/m);
});
