// The sync planner: minimal diffs and the safe order (pure, no kernel).
import test from 'ava';
import { asCurrent, DesiredEncoder, encodeDesired, PackedEntries, planSync, type CurrentState } from '../../src/maps/plan.js';
import { compile, compileCheckedInto } from '../../src/policy/index.js';
import { makeSnapshot } from '../../bench/sync/gen.js';
import { endpointKey, policyKey, policyValue } from '../../src/maps/codecs.js';
import type { DesiredState } from '../../src/policy/types.js';

const empty: CurrentState = { endpoints: new Map(), policy: new Map() };

function state(eps: Array<[string, boolean, number?]>, pols: Array<[string, number, 'bypass' | 'proxy']>): DesiredState {
  return {
    endpoints: eps.map(([cidr, local, net]) => ({ cidr, local, mesh: true, networkId: net ?? 0, workloadId: 0 })),
    policies: pols.map(([ip, port, verdict], i) => ({ ip, port, verdict, ruleId: i })),
    rules: [],
    networks: [''],
    workloads: [''],
  };
}

function pkey(ip: string, port: number): string {
  const b = Buffer.alloc(policyKey.size);
  policyKey.encode(b, 0, { ip, port });
  return b.toString('latin1');
}

function decodeVerdict(v: string | null): string | null {
  return v === null ? null : policyValue.decode(Buffer.from(v, 'latin1'), 0).verdict;
}

test('first sync adds everything; the same state again changes nothing', (t) => {
  const d = encodeDesired(
    state(
      [
        ['10.0.0.0/24', true],
        ['10.0.0.5', true],
      ],
      [
        ['10.0.0.5', 80, 'bypass'],
        ['10.0.0.5', 81, 'proxy'],
      ],
    ),
  );
  const first = planSync(d, empty);
  t.deepEqual(first.counts.endpoints, { added: 2, changed: 0, removed: 0, unchanged: 0 });
  t.deepEqual(first.counts.policies, { added: 2, changed: 0, removed: 0, unchanged: 0 });
  const again = planSync(d, asCurrent(d));
  t.deepEqual(again.plan, { policyNarrow: { upserts: [], deletes: [] }, endpointUpserts: [], endpointDeletes: [], policyWiden: { upserts: [], deletes: [] } });
  t.is(again.counts.endpoints.unchanged, 2);
});

test('narrowing verdicts go first, widening verdicts last, endpoint adds before removes', (t) => {
  const before = encodeDesired(
    state(
      [['10.0.0.0/24', true]],
      [
        ['10.0.0.5', 80, 'bypass'],
        ['10.0.0.6', 80, 'bypass'],
        ['10.0.0.7', 80, 'proxy'],
      ],
    ),
  );
  const after = encodeDesired(
    state(
      [['10.0.0.5', true]],
      [
        ['10.0.0.5', 80, 'proxy'],
        ['10.0.0.8', 80, 'bypass'],
      ],
    ),
  );
  const { plan, counts } = planSync(after, asCurrent(before));
  const verdictAt = (i: number) => decodeVerdict(after.policy.valueAt(i));
  // narrow: .5 bypass->proxy upserted, .6 bypass removed
  t.deepEqual(
    plan.policyNarrow.upserts.map((i) => [after.policy.keyAt(i), verdictAt(i)]),
    [[pkey('10.0.0.5', 80), 'proxy']],
  );
  t.deepEqual(plan.policyNarrow.deletes, [pkey('10.0.0.6', 80)]);
  // widen: .8 new bypass; the .7 proxy removal (harmless) also goes last
  t.deepEqual(
    plan.policyWiden.upserts.map((i) => [after.policy.keyAt(i), verdictAt(i)]),
    [[pkey('10.0.0.8', 80), 'bypass']],
  );
  t.deepEqual(plan.policyWiden.deletes, [pkey('10.0.0.7', 80)]);
  const ek = (c: string) => {
    const b = Buffer.alloc(endpointKey.size);
    endpointKey.encode(b, 0, c);
    return b.toString('latin1');
  };
  t.deepEqual(
    plan.endpointUpserts.map((i) => after.endpoints.keyAt(i)),
    [ek('10.0.0.5/32')],
  );
  t.deepEqual(plan.endpointDeletes, [ek('10.0.0.0/24')]);
  t.deepEqual(counts.policies, { added: 1, changed: 1, removed: 2, unchanged: 0 });
});

test('a changed endpoint (network moved) is one upsert, counted as changed', (t) => {
  const { plan, counts } = planSync(encodeDesired(state([['10.0.0.5', true, 2]], [])), asCurrent(encodeDesired(state([['10.0.0.5', true, 0]], []))));
  t.is(plan.endpointUpserts.length, 1);
  t.is(plan.endpointDeletes.length, 0);
  t.is(counts.endpoints.changed, 1);
});

test('two verdicts for one ip:port: PROXY wins whatever the order', (t) => {
  for (const order of [
    [
      ['10.0.0.5', 80, 'bypass'],
      ['10.0.0.5', 80, 'proxy'],
    ],
    [
      ['10.0.0.5', 80, 'proxy'],
      ['10.0.0.5', 80, 'bypass'],
    ],
  ] as Array<Array<[string, number, 'bypass' | 'proxy']>>) {
    const e = encodeDesired(state([], order));
    t.is(e.policy.size, 1);
    t.is(decodeVerdict(e.policy.valueAt(0)), 'proxy');
  }
});

test('policies encode non-bypass first, then bypass, each by first sight; PROXY wins an ip:port, the last BYPASS another', (t) => {
  const e = encodeDesired(
    state(
      [],
      [
        ['10.0.0.1', 80, 'bypass'],
        ['10.0.0.2', 80, 'proxy'],
        ['10.0.0.3', 80, 'bypass'],
        ['10.0.0.1', 80, 'proxy'],
        ['10.0.0.3', 80, 'bypass'],
        ['10.0.0.4', 80, 'proxy'],
        ['10.0.0.2', 80, 'proxy'],
      ],
    ),
  );
  const got = Array.from({ length: e.policy.size }, (_, i) => [e.policy.keyAt(i), policyValue.decode(Buffer.from(e.policy.valueAt(i), 'latin1'), 0)]);
  t.deepEqual(got, [
    [pkey('10.0.0.2', 80), { verdict: 'proxy', ruleId: 1 }],
    [pkey('10.0.0.1', 80), { verdict: 'proxy', ruleId: 3 }],
    [pkey('10.0.0.4', 80), { verdict: 'proxy', ruleId: 5 }],
    [pkey('10.0.0.3', 80), { verdict: 'bypass', ruleId: 4 }],
  ]);
});

test('entries encoded as the compiler builds them: the same bytes, counts and summary as from its lists', (t) => {
  const locality = { nodeIps: ['10.0.0.1'], podCidrs: ['10.0.0.0/8'], network: '' };
  const snap = makeSnapshot(3000, 0);
  const lists = compile(snap, locality);
  t.true(lists.policies.some((p) => p.verdict === 'proxy') && lists.policies.some((p) => p.verdict === 'bypass'));
  const want = encodeDesired(lists);
  const enc = new DesiredEncoder();
  const r = compileCheckedInto(snap, locality, enc);
  if ('error' in r) return t.fail(r.error);
  const got = enc.done();
  for (const k of ['endpoints', 'policy'] as const) {
    t.is(got[k].size, want[k].size);
    t.true(got[k].keys.equals(want[k].keys), k);
    t.true(got[k].values.equals(want[k].values), k);
  }
  const count = (v: string) => lists.policies.filter((p) => p.verdict === v).length;
  t.deepEqual(enc.entries, { endpoints: lists.endpoints.length, policies: lists.policies.length, bypass: count('bypass'), proxy: count('proxy') });
  const { endpoints: _e, policies: _p, ...rest } = lists;
  t.deepEqual(r.state, rest);
});

test('100k endpoints plan in one pass (counts right; speed is in bench/)', (t) => {
  const eps: Array<[string, boolean]> = [];
  for (let i = 0; i < 100_000; i++) eps.push([`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, true]);
  const d = encodeDesired(state(eps, []));
  const { counts } = planSync(d, empty);
  t.is(counts.endpoints.added, 100_000);
});

test('the packed key index: every key found at its position, absent keys not, duplicates merged, across growth', (t) => {
  // capacity 0 forces every growth step (buffers and hash table)
  const p = new PackedEntries(policyKey.size, policyValue.size, 0);
  const n = 5000;
  for (let i = 0; i < n; i++) {
    for (const dup of [false, true]) {
      p.put(
        (b, o) => policyKey.encode(b, o, { ip: `10.0.${i >> 8}.${i & 255}`, port: 80 }),
        (b, o) => policyValue.encode(b, o, { verdict: dup ? 'proxy' : 'bypass', ruleId: i }),
      );
    }
  }
  t.is(p.size, n);
  for (let i = 0; i < n; i++) {
    const k = pkey(`10.0.${i >> 8}.${i & 255}`, 80);
    t.is(p.find(k), i);
    t.is(p.keyAt(i), k);
    t.is(decodeVerdict(p.valueAt(i)), 'proxy'); // the later value replaced the first
    t.true(p.valueIs(i, p.valueAt(i)));
  }
  t.is(p.find(pkey('10.0.0.0', 81)), -1);
  t.is(p.find(pkey('10.1.0.0', 80)), -1);
  t.is(p.find('short'), -1);
  // the diff against what this state leaves in the kernel: nothing to do
  const { counts } = planSync(
    { endpoints: new PackedEntries(endpointKey.size, 16, 0), policy: p },
    { endpoints: new Map(), policy: asCurrent({ endpoints: new PackedEntries(endpointKey.size, 16, 0), policy: p }).policy },
  );
  t.deepEqual(counts.policies, { added: 0, changed: 0, removed: 0, unchanged: n });
});
