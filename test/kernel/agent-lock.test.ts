// One agent per pin directory (issue 10): a second agent is refused naming the
// first's pid and changes nothing; `meshbpf unload` refuses while an agent owns
// the directory; pins removed behind the agent make it unhealthy, and it says so.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Topology } from '../../src/topo/topology.js';
import { unload } from '../../src/loader/load.js';
import { openMaps, pinPaths } from '../../src/maps/pinned.js';
import { cli, kernelUnavailable, tempDir, waitFor } from '../helpers/kernel.js';
import { exampleResources, killAllAgents, service, startAgent, stopAgent, waitReady, writeSnapshot } from '../helpers/agent.js';

const why = kernelUnavailable();
const ktest = why ? test.skip : test.serial;
if (why) console.log(`SKIPPING kernel agent lock tests: ${why}`);

const NET = '198.18.7';
const B4 = `${NET}.3`;
const dir = why ? '' : tempDir();
const stateDir = join(dir, 'state');
const topo = why ? undefined : new Topology({ id: `${randomBytes(2).toString('hex')}l` });

test.before(() => {
  if (!topo) return;
  mkdirSync(join(dir, 'xds'), { recursive: true });
  topo.build('veth', [
    { name: 'a', v4: `${NET}.2/24` },
    { name: 'b', v4: `${B4}/24` },
  ]);
});

test.after.always(() => {
  killAllAgents();
  if (topo) {
    try {
      unload({ pinDir: topo.pinDir });
    } catch {
      /* not loaded */
    }
    topo.destroy();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function opts(file: string) {
  return { cgroup: topo!.cgroup, pinDir: topo!.pinDir, xdsFile: file, stateDir, podCidr: `${NET}.0/24`, nodeIp: `${NET}.1` };
}

function verdict(port: number): string | undefined {
  const m = openMaps(topo!.pinDir, { readOnly: true });
  try {
    return m.policy.get({ ip: B4, port })?.verdict;
  } finally {
    m.close();
  }
}

ktest('a second agent on one pin dir is refused naming the first; unload refuses while it runs; pins removed behind it make it unhealthy', async (t) => {
  const pin = topo!.pinDir;
  const first = join(dir, 'xds', 'first.json');
  writeSnapshot(first, exampleResources(NET)); // db:5432 BYPASS
  const a = await startAgent(opts(first));
  await waitReady(a);
  t.is(verdict(5432), 'bypass');
  // the real /metrics passes promtool, where it is installed (test/unit/metrics.test.ts says when it is not)
  const pt = spawnSync('promtool', ['check', 'metrics'], { input: (await a.get('/metrics')).text, encoding: 'utf8' });
  if (!pt.error) t.is(pt.status, 0, `promtool: ${pt.stdout}${pt.stderr}`);

  // the second agent's snapshot would turn db into PROXY
  const second = join(dir, 'xds', 'second.json');
  writeSnapshot(second, [...exampleResources(NET).filter((r) => !JSON.stringify(r).includes('5432')), ...service('db', B4, 5432, '10.96.0.10', { http: true })]);
  const b = await startAgent(opts(second));
  t.is(await b.exited, 1, b.output());
  t.regex(b.output(), new RegExp(`^meshbpf: another meshbpf agent \\(pid ${a.pid}\\) owns ${pin}; stop it first\\n$`));
  t.is(verdict(5432), 'bypass', "the first agent's verdicts stand");
  t.is((await a.get('/healthz')).status, 200);
  const st = cli(['status', '--pin-dir', pin, '-o', 'json'], { env: { MESHBPF_STATE_DIR: stateDir } });
  t.is((JSON.parse(st.stdout) as { agent: { pid: number } }).agent.pid, a.pid, "the status file is still the first agent's");

  // unload refuses while the agent owns the directory
  const u = cli(['unload', '--pin-dir', pin], { env: { MESHBPF_STATE_DIR: stateDir } });
  t.is(u.code, 1);
  t.is(u.stderr, `meshbpf: a meshbpf agent (pid ${a.pid}) owns ${pin}; stop it first (or run it with --unload-on-exit)\n`);
  t.true(existsSync(pinPaths(pin).map('mb_policy')), 'nothing was unloaded');

  // removed behind its back anyway (an old CLI, rm -rf): the agent reports unhealthy and logs it
  unload({ pinDir: pin });
  const h = await a.get('/healthz');
  t.is(h.status, 503);
  t.regex(h.text, /pins removed: .*mb_policy/);
  t.is((await a.get('/readyz')).status, 503);
  await waitFor(() => /meshbpf pins were removed/.test(a.output()), 15_000, 'the agent to log the removed pins');
  t.is(await stopAgent(a), 0);
});
