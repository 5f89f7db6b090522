// The CLI's help and the pure core run where libbpf is absent: libbpf is
// bound on first use only. Each case runs a child node with libbpf hidden
// (test/helpers/hide-libbpf.ts); the last case proves the hiding works.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const hook = join(root, 'dist', 'test', 'helpers', 'hide-libbpf.js');

function run(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', hook, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, MESHBPF_LOG_LEVEL: 'warn' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('meshbpf --help (and a subcommand help) without libbpf', (t) => {
  for (const args of [['--help'], ['load', '--help'], ['agent', '--help']]) {
    const r = run([join(root, 'bin', 'meshbpf.js'), ...args]);
    t.is(r.code, 0, r.err);
    t.regex(r.out, /Usage: meshbpf/);
    t.notRegex(r.err, /HIDE-LIBBPF/, 'nothing tried to bind libbpf');
  }
});

test('compile a snapshot and sync it into fake maps without libbpf', (t) => {
  const script = `
    import { compile } from './dist/src/policy/index.js';
    import { syncMaps } from './dist/src/maps/sync.js';
    import { BpfMap } from './dist/src/maps/map.js';
    import { endpointKey, endpointValue, policyKey, policyValue } from './dist/src/maps/codecs.js';
    import { FakeMap, FakeSyscalls } from './dist/test/helpers/fake-maps.js';
    import { loadSnapshotFile } from './dist/src/xds/file.js';
    const snap = loadSnapshotFile('examples/snapshot.yaml').snapshot;
    const d = compile(snap, { nodeIps: ['198.18.0.1'], podCidrs: ['198.18.0.0/24'], network: '', clusterId: '' });
    const sys = new FakeSyscalls();
    const ep = new BpfMap(sys.add(new FakeMap({ keySize: endpointKey.size, valueSize: endpointValue.size })), endpointKey, endpointValue, 'e', sys);
    const pol = new BpfMap(sys.add(new FakeMap({ keySize: policyKey.size, valueSize: policyValue.size })), policyKey, policyValue, 'p', sys);
    const r = syncMaps({ endpoints: ep, policy: pol }, d);
    console.log(JSON.stringify({ endpoints: ep.count(), policies: pol.count(), added: r.counts.endpoints.added }));
  `;
  const r = run(['--input-type=module', '-e', script]);
  t.is(r.code, 0, r.err);
  const o = JSON.parse(r.out) as { endpoints: number; policies: number; added: number };
  t.true(o.endpoints > 0);
  t.true(o.policies > 0);
  t.is(o.endpoints, o.added);
  t.notRegex(r.err, /HIDE-LIBBPF/);
});

test('the hiding is real: a call that needs libbpf fails with the install hint', (t) => {
  const r = run(['--input-type=module', '-e', "import { numPossibleCpus } from './dist/src/sys/libbpf.js'; numPossibleCpus();"]);
  t.not(r.code, 0);
  t.regex(r.err, /HIDE-LIBBPF: refused libbpf\.so\.1/);
  t.regex(r.err, /cannot load libbpf\.so\.1 .*install libbpf1/);
});
