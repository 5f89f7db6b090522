// The apply half of the sync (maps/sync.ts) over the fake syscalls: what it
// writes, in which order, and that a second sync of the same state is a no-op.
import test from 'ava';
import { syncMaps, readRaw } from '../../src/maps/sync.js';
import { BpfMap } from '../../src/maps/map.js';
import { endpointKey, endpointValue, policyKey, policyValue } from '../../src/maps/codecs.js';
import type { DesiredState } from '../../src/policy/types.js';
import { FakeMap, FakeSyscalls } from '../helpers/fake-maps.js';

function targets(noBatchEndpoints = true) {
  const sys = new FakeSyscalls();
  // The endpoints map is an LPM trie in the kernel: no batch ops.
  const epFake = new FakeMap({ keySize: endpointKey.size, valueSize: endpointValue.size, ...(noBatchEndpoints ? { noBatch: 'EINVAL' as const } : {}) });
  const polFake = new FakeMap({ keySize: policyKey.size, valueSize: policyValue.size });
  const epFd = sys.add(epFake);
  const polFd = sys.add(polFake);
  return {
    sys,
    epFd,
    polFd,
    t: { endpoints: new BpfMap(epFd, endpointKey, endpointValue, 'mb_endpoints', sys), policy: new BpfMap(polFd, policyKey, policyValue, 'mb_policy', sys) },
  };
}

function state(eps: string[], pols: Array<[string, number, 'bypass' | 'proxy']>): DesiredState {
  return {
    endpoints: eps.map((cidr) => ({ cidr, local: true, mesh: true, networkId: 0, workloadId: 0 })),
    policies: pols.map(([ip, port, verdict], i) => ({ ip, port, verdict, ruleId: i })),
    rules: [],
    networks: [''],
    workloads: [''],
  };
}

test('a full sync writes every entry; reading back gives the desired state; again is a no-op', (t) => {
  const { t: tg, sys } = targets();
  const d = state(
    ['10.0.0.0/24', 'fd00::5'],
    [
      ['10.0.0.5', 80, 'bypass'],
      ['10.0.0.5', 81, 'proxy'],
    ],
  );
  const r = syncMaps(tg, d);
  t.deepEqual(r.counts.endpoints, { added: 2, changed: 0, removed: 0, unchanged: 0 });
  t.deepEqual([...tg.endpoints.keys()].sort(), ['10.0.0.0/24', 'fd00::5/128']);
  t.deepEqual(tg.policy.get({ ip: '10.0.0.5', port: 80 }), { verdict: 'bypass', ruleId: 0 });
  t.deepEqual(tg.policy.get({ ip: '10.0.0.5', port: 81 }), { verdict: 'proxy', ruleId: 1 });
  const n = sys.log.length;
  const again = syncMaps(tg, d);
  t.deepEqual(again.counts.policies, { added: 0, changed: 0, removed: 0, unchanged: 2 });
  t.false(
    sys.log.slice(n).some(([, c]) => c !== 'nextKey' && c !== 'lookup'),
    'the second sync only reads',
  );
});

test('apply order: policy removals, narrowing verdicts, endpoint adds, endpoint removes, widening verdicts', (t) => {
  const { t: tg, sys, epFd, polFd } = targets(false);
  syncMaps(
    tg,
    state(
      ['10.0.0.0/24'],
      [
        ['10.0.0.5', 80, 'bypass'],
        ['10.0.0.6', 80, 'bypass'],
      ],
    ),
  );
  const n = sys.log.length;
  // .5 bypass -> proxy (narrow), .6 bypass removed (narrow), .7 new bypass (widen); /24 -> /32
  syncMaps(
    tg,
    state(
      ['10.0.0.5'],
      [
        ['10.0.0.5', 80, 'proxy'],
        ['10.0.0.7', 80, 'bypass'],
      ],
    ),
    readRawState(tg),
  );
  const writes = sys.log
    .slice(n)
    .filter(([, c]) => c !== 'nextKey' && c !== 'lookup')
    .map(([fd, c]) => `${fd === epFd ? 'ep' : fd === polFd ? 'pol' : fd}:${c}`);
  t.deepEqual(writes, ['pol:deleteBatch', 'pol:updateBatch', 'ep:updateBatch', 'ep:deleteBatch', 'pol:updateBatch']);
  t.deepEqual([...tg.policy.entries()].map(([k, v]) => `${k.ip}:${k.port}=${v.verdict}`).sort(), ['10.0.0.5:80=proxy', '10.0.0.7:80=bypass']);
  t.deepEqual([...tg.endpoints.keys()], ['10.0.0.5/32']);
});

test('the endpoints map without batch ops is written one entry at a time, and the result is the same', (t) => {
  const { t: tg, sys, epFd } = targets(true);
  syncMaps(tg, state(['10.0.0.1', '10.0.0.2', '10.0.0.3'], []));
  const ep = sys.log.filter(([fd]) => fd === epFd).map(([, c]) => c);
  t.is(ep.filter((c) => c === 'update').length, 3);
  t.is(tg.endpoints.count(), 3);
});

function readRawState(tg: ReturnType<typeof targets>['t']) {
  return { endpoints: readRaw(tg.endpoints), policy: readRaw(tg.policy) };
}
