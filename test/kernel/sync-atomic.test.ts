// All or nothing (issue 10): a snapshot that cannot fit a map is refused before
// any write, naming the map, the count and the capacity; a write that fails
// half-way is rolled back. Both read the kernel maps back and find the last
// good state.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from '../../src/loader/load.js';
import { dumpMap } from '../../src/maps/dump.js';
import { openMaps } from '../../src/maps/pinned.js';
import { SyncError, syncMaps } from '../../src/maps/sync.js';
import { asCurrent, encodeDesired } from '../../src/maps/plan.js';
import { compile } from '../../src/policy/index.js';
import { snapshotFromDocument } from '../../src/xds/file.js';
import type { Json } from '../../src/xds/types.js';
import { killAllAgents, service, startAgent, stopAgent, waitReady, writeSnapshot } from '../helpers/agent.js';
import type { AgentStatus } from '../../src/agent/agent.js';
import { cli, kernelSuite, tempDir } from '../helpers/kernel.js';

const dir = tempDir();
const NET = '198.18.9';
const locality = { nodeIps: [`${NET}.1`], podCidrs: [`${NET}.0/24`], network: '' };
const localityArgs = ['--pod-cidr', `${NET}.0/24`, '--node-ip', `${NET}.1`];
const POLICY_CAP = 8;

const { ktest, topo } = kernelSuite('kernel all-or-nothing sync tests', {
  pods: [
    { name: 'a', v4: `${NET}.2/24` },
    { name: 'b', v4: `${NET}.3/24` },
  ],
  load: false,
  teardown: () => {
    killAllAgents();
    rmSync(dir, { recursive: true, force: true });
  },
});
// small maps, so a snapshot can overflow one
ktest.before(() => {
  if (topo) load({ pinDir: topo.pinDir, cgroup: topo.cgroup, maxPolicies: POLICY_CAP, maxEndpoints: 64 });
});

/** n tcp services, each one endpoint in the pod range and one BYPASS verdict. */
function services(n: number, from = 0) {
  const out = [];
  for (let i = from; i < from + n; i++) out.push(...service(`s${i}`, `${NET}.${10 + i}`, 7000 + i, `10.96.9.${i + 1}`));
  return out;
}

function kernelState(pin: string): unknown {
  const m = openMaps(pin, { readOnly: true });
  try {
    const sort = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).sort();
    return { endpoints: sort(dumpMap(m, 'mb_endpoints')), policy: sort(dumpMap(m, 'mb_policy')) };
  } finally {
    m.close();
  }
}

ktest('a snapshot over a map capacity is refused before anything changes, naming map, count and capacity', (t) => {
  const pin = topo!.pinDir;
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ resources: services(3) }));
  const r = cli(['sync', '--xds-file', good, '--pin-dir', pin, ...localityArgs], { env: { MESHBPF_STATE_DIR: join(dir, 'state') } });
  t.is(r.code, 0, r.stderr);
  const before = kernelState(pin);

  // 12 verdicts into an 8-entry map: the first 8 would fit, the sync must not start
  const big = join(dir, 'big.json');
  writeFileSync(big, JSON.stringify({ resources: services(12, 3) }));
  const b = cli(['sync', '--xds-file', big, '--pin-dir', pin, ...localityArgs], { env: { MESHBPF_STATE_DIR: join(dir, 'state') } });
  t.is(b.code, 1);
  t.is(b.stderr.trim(), `meshbpf: mb_policy: the snapshot needs 12 entries, the map holds ${POLICY_CAP} (--max-policies); nothing was changed`);
  t.deepEqual(kernelState(pin), before, 'the maps hold the last good state');
});

ktest('a write that fails half-way (the map filled behind the plan) is rolled back to the last good state', (t) => {
  const pin = topo!.pinDir;
  const m = openMaps(pin);
  t.teardown(() => m.close());
  const good = compile(snapshotFromDocument({ resources: services(2) } as unknown as Json).snapshot, locality);
  syncMaps(m, good);
  const before = kernelState(pin);
  const lastApplied = asCurrent(encodeDesired(good));

  // Someone else fills the policy map; the agent's idea of it (lastApplied) is stale,
  // so the capacity check passes and the kernel says E2BIG in the middle of a batch.
  for (let i = 0; i < POLICY_CAP - 2; i++) m.policy.set({ ip: `${NET}.200`, port: 9000 + i }, { verdict: 'proxy', ruleId: 0 });
  const next = compile(snapshotFromDocument({ resources: services(6) } as unknown as Json).snapshot, locality);
  const e = t.throws(() => syncMaps(m, next, lastApplied), { instanceOf: SyncError }) as SyncError;
  t.is(e.state, 'rolled back');
  t.is(e.map, 'mb_policy');
  t.regex(e.message, /^sync failed and was rolled back \(the maps hold the previous state\): mb_policy: writing 4 entries \(capacity 8\) failed: .*(E2BIG|ENOSPC)/);
  t.deepEqual(kernelState(pin), before, 'the maps hold the last good state (the extra entries were not part of it)');
});

ktest('the agent NACKs a snapshot over a map capacity, naming map, count and capacity; the maps keep the last good state', async (t) => {
  const pin = topo!.pinDir;
  const file = join(dir, 'agent.json');
  writeSnapshot(file, services(3));
  const a = await startAgent({
    cgroup: topo!.cgroup,
    pinDir: pin,
    xdsFile: file,
    stateDir: join(dir, 'state'),
    podCidr: `${NET}.0/24`,
    nodeIp: `${NET}.1`,
    extra: ['--max-policies', String(POLICY_CAP), '--max-endpoints', '64', '--xds-file-settle-ms', '200'],
  });
  await waitReady(a);
  const before = kernelState(pin);
  writeSnapshot(file, services(12, 3));
  let st: AgentStatus | undefined;
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
    st = (await a.get('/debug/status')).json() as AgentStatus;
    if (st.xds.lastError !== undefined) break;
  }
  t.regex(st?.xds.lastError ?? '', new RegExp(`rejected by validator: mb_policy: the snapshot needs 12 entries, the map holds ${POLICY_CAP} \\(--max-policies\\)$`));
  t.is(st?.xds.types.lds.nacks, 1);
  t.deepEqual(kernelState(pin), before, 'the maps hold the last good state');
  t.is((await a.get('/healthz')).status, 200, 'the last good state is still applied');
  t.is(await stopAgent(a), 0);
});
