// A WDS resource list (Istio ambient) -> compiled verdicts -> kernel maps,
// enforced by the data path: a plain service is redirected socket to socket,
// one behind a waypoint is not, an operator exclusion turns bypass off, and
// `policy explain` says why. Bytes intact in every case.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, delta, kernelSuite, stats, tempDir, transfer } from '../helpers/kernel.js';
import { authorization, service, workload } from '../helpers/wds.js';

const dir = tempDir();
const env = { MESHBPF_STATE_DIR: join(dir, 'state') };
process.env.MESHBPF_STATE_DIR = env.MESHBPF_STATE_DIR;
const wdsFile = join(dir, 'wds.json');
const svc = (name: string) => `ns1/${name}.ns1.svc.cluster.local`;

writeFileSync(
  wdsFile,
  JSON.stringify({
    resources: [
      workload({ name: 'a', namespace: 'ns1', ips: ['198.18.0.2'], node: 'node-a', services: {} }),
      workload({ name: 'b', namespace: 'ns1', ips: ['198.18.0.3'], node: 'node-a', services: { [svc('db')]: [[5432, 5432]] } }),
      workload({ name: 'c', namespace: 'ns2', ips: ['198.18.0.4'], node: 'node-a', services: { ['ns2/web.ns2.svc.cluster.local']: [[80, 8080]] } }),
      service({ name: 'db', namespace: 'ns1', vips: ['198.19.0.10'], ports: [[5432, 5432]] }),
      service({ name: 'web', namespace: 'ns2', vips: ['198.19.0.11'], ports: [[80, 8080, 'HTTP11']], waypoint: '198.18.0.9' }),
      authorization({ name: 'only-selected', namespace: 'ns1', scope: 'WORKLOAD_SELECTOR' }),
    ],
  }),
);

const { ktest, topo } = kernelSuite('kernel WDS tests', {
  kind: 'bridge',
  pods: [
    { name: 'a', v4: '198.18.0.2/24' },
    { name: 'b', v4: '198.18.0.3/24' },
    { name: 'c', v4: '198.18.0.4/24' },
  ],
  teardown: () => rmSync(dir, { recursive: true, force: true }),
});

const sync = (...extra: string[]) => cli(['sync', '--xds-file', wdsFile, '--pin-dir', topo!.pinDir, '--node-name', 'node-a', '--node-ip', '198.18.0.1', ...extra, '-o', 'json'], { env });
const explainJson = (...args: string[]) => JSON.parse(cli(['policy', 'explain', ...args, '--pin-dir', topo!.pinDir, '-o', 'json'], { env }).stdout) as { verdict: string; reasons: string[] };

ktest('sync a WDS list: plain service redirected, waypoint service not, bytes intact; an exclusion turns bypass off', async (t) => {
  const r = sync();
  t.is(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { verdicts: { bypass: number; proxy: number }; wdsServices: number };
  t.deepEqual(s.verdicts, { bypass: 1, proxy: 1 });
  t.is(s.wdsServices, 2);

  const db = { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: 'TCP4:198.18.0.3:5432', port: 5432 };
  let before = stats(topo!.pinDir);
  let x = await transfer(topo!, db);
  let d = delta(before, stats(topo!.pinDir));
  t.is(x.received, x.sent);
  t.true(d.redirect_bytes >= x.bytes, `plain service: ${d.redirect_bytes} bytes redirected`);

  const web = { server: 'c', client: 'a', listen: 'TCP4-LISTEN:8080,reuseaddr', connect: 'TCP4:198.18.0.4:8080', port: 8080 };
  before = stats(topo!.pinDir);
  x = await transfer(topo!, web);
  d = delta(before, stats(topo!.pinDir));
  t.is(x.received, x.sent);
  t.is(d.redirect_bytes, 0, 'waypoint: nothing redirected');
  t.is(d.skip_proxy, 2, 'both ends saw the PROXY verdict');
  const ew = explainJson('198.18.0.4', '8080', '--from', '198.18.0.2');
  t.is(ew.verdict, 'proxy');
  t.true(
    ew.reasons.some((l) => l.includes('service ns2/web.ns2.svc.cluster.local has a waypoint')),
    ew.reasons.join('\n'),
  );

  // the operator excludes the client workload: it is no bypass source any more
  const r2 = sync('--exclude-workload', 'ns1/a');
  t.is(r2.code, 0, r2.stderr);
  before = stats(topo!.pinDir);
  x = await transfer(topo!, db);
  d = delta(before, stats(topo!.pinDir));
  t.is(x.received, x.sent);
  t.is(d.redirect_bytes, 0, 'excluded client: nothing redirected');
  const ex = explainJson('198.18.0.3', '5432', '--from', '198.18.0.2');
  t.is(ex.verdict, 'none');
  t.true(
    ex.reasons.some((l) => l.includes('operator exclusions') && l.includes('ns1/a')),
    ex.reasons.join('\n'),
  );

  // excluding the server's namespace: PROXY, and explain names the exclusion
  t.is(sync('--exclude-namespace', 'ns1').code, 0);
  const en = explainJson('198.18.0.3', '5432');
  t.is(en.verdict, 'proxy');
  t.true(
    en.reasons.some((l) => l.includes('namespace ns1 excluded by the operator')),
    en.reasons.join('\n'),
  );

  // no exclusions again: bypass is back, and the exclusion line is gone
  t.is(sync().code, 0);
  const back = explainJson('198.18.0.3', '5432', '--from', '198.18.0.2');
  t.is(back.verdict, 'bypass');
  t.false(back.reasons.some((l) => l.includes('operator exclusions')));
});
