// /metrics passes `promtool check metrics` (issue 10): no gauge ends in _total.
// Runs where promtool is installed (scripts/setup.sh installs it, Debian package
// prometheus); skipped with the reason otherwise.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import type { Agent } from '../../src/agent/agent.js';
import { AgentMetrics } from '../../src/agent/metrics.js';

function hasPromtool(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v promtool'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const why = hasPromtool() ? undefined : 'promtool is not installed (run scripts/setup.sh)';
if (why) console.log(`SKIPPING promtool check: ${why}`);

const stats = new Proxy({}, { get: () => 5n });
const fakeAgent = {
  stats: () => stats,
  occupancy: () => ({ mb_policy: { entries: 1, capacity: 2 } }),
  inspect: () => ({ sockops: { attached: true }, skMsg: { attached: true } }),
} as unknown as Agent;

(why ? test.skip : test)('promtool check metrics passes on the agent metrics', async (t) => {
  const m = new AgentMetrics(fakeAgent);
  m.onSourceState({ kind: 'ack', type: 'cds', version: '1', nonce: 'n' });
  m.onSourceState({ kind: 'nack', type: 'lds', version: '2', nonce: 'n', error: 'x' });
  m.observeSync(0.01, true);
  const text = await m.registry.metrics();
  t.regex(text, /^meshbpf_process_nodejs_active_handles\b/m, 'the process gauges are there, without _total');
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  t.is(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
  t.is(`${r.stdout}${r.stderr}`.trim(), '');
});
