// xDS file -> compiled verdicts -> kernel maps, enforced by the data path: the
// TCP service is redirected, the HTTP service is not, both arrive intact.
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openMaps } from '../../src/maps/pinned.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { cli, delta, kernelSuite, stats, tempDir, transfer } from '../helpers/kernel.js';

const dir = tempDir();
const example = join(PROJECT_ROOT, 'examples', 'snapshot.yaml');
const locality = ['--pod-cidr', '198.18.0.0/24', '--node-ip', '198.18.0.1'];
process.env.MESHBPF_STATE_DIR = join(dir, 'state'); // explain's reasons live here, not in /run

const { ktest, topo } = kernelSuite('kernel sync tests', {
  pods: [
    { name: 'a', v4: '198.18.0.2/24' },
    { name: 'b', v4: '198.18.0.3/24' },
  ],
  teardown: () => rmSync(dir, { recursive: true, force: true }),
});

ktest('sync --xds-file: TCP port redirected, HTTP port kept on the stack, bytes intact', async (t) => {
  const r = cli(['sync', '--xds-file', example, '--pin-dir', topo!.pinDir, ...locality, '-o', 'json'], { env: { MESHBPF_STATE_DIR: join(dir, 'state') } });
  t.is(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { verdicts: { bypass: number; proxy: number }; endpoints: { added: number } };
  t.deepEqual(s.verdicts, { bypass: 1, proxy: 1 });

  const tcp = { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: 'TCP4:198.18.0.3:5432', port: 5432 };
  let before = stats(topo!.pinDir);
  let x = await transfer(topo!, tcp);
  let d = delta(before, stats(topo!.pinDir));
  t.is(x.received, x.sent);
  t.true(d.redirect_bytes >= x.bytes, `TCP service redirected ${d.redirect_bytes} bytes`);

  const http = { ...tcp, listen: 'TCP4-LISTEN:8080,reuseaddr', connect: 'TCP4:198.18.0.3:8080', port: 8080 };
  before = stats(topo!.pinDir);
  x = await transfer(topo!, http);
  d = delta(before, stats(topo!.pinDir));
  t.is(x.received, x.sent);
  t.is(d.redirect_bytes, 0, 'HTTP service: zero redirected bytes');
  t.is(d.skip_proxy, 2, 'both ends saw the PROXY verdict');
});

ktest('policy explain reads the live maps and the compiled reasons', (t) => {
  const env = { MESHBPF_STATE_DIR: join(dir, 'state') };
  const tcp = cli(['policy', 'explain', '198.18.0.3', '5432', '--from', '198.18.0.2', '--pin-dir', topo!.pinDir, '-o', 'json'], { env });
  t.is(tcp.code, 0, tcp.stderr);
  const e = JSON.parse(tcp.stdout) as { verdict: string; reasons: string[] };
  t.is(e.verdict, 'bypass');
  t.true(
    e.reasons.some((r) => r.includes('plain tcp_proxy')),
    e.reasons.join('\n'),
  );
  const web = JSON.parse(cli(['policy', 'explain', '198.18.0.3', '8080', '--pin-dir', topo!.pinDir, '-o', 'json'], { env }).stdout) as { verdict: string; reasons: string[] };
  t.is(web.verdict, 'proxy');
  t.true(web.reasons.some((r) => r.includes('http_connection_manager')));
  const none = JSON.parse(cli(['policy', 'explain', '198.18.0.3', '9999', '--pin-dir', topo!.pinDir, '-o', 'json'], { env }).stdout) as { verdict: string };
  t.is(none.verdict, 'none');
  const foreign = JSON.parse(cli(['policy', 'explain', '198.18.0.3', '5432', '--from', '203.0.113.9', '--pin-dir', topo!.pinDir, '-o', 'json'], { env }).stdout) as { verdict: string };
  t.is(foreign.verdict, 'none', 'a client outside the local pod CIDRs is not short-circuited');
});

ktest('resync: unchanged is a no-op; a removed service loses its verdict; a bad file changes nothing', (t) => {
  const again = JSON.parse(cli(['sync', '--xds-file', example, '--pin-dir', topo!.pinDir, ...locality, '-o', 'json']).stdout) as {
    endpoints: { added: number; changed: number; removed: number };
    policies: { added: number; changed: number; removed: number };
  };
  t.deepEqual([again.endpoints.added, again.endpoints.changed, again.endpoints.removed], [0, 0, 0]);
  t.deepEqual([again.policies.added, again.policies.changed, again.policies.removed], [0, 0, 0]);

  const smaller = join(dir, 'smaller.yaml');
  const text = readFileSync(example, 'utf8');
  // drop the db listener: its endpoint stays, its BYPASS verdict must go
  writeFileSync(smaller, text.replace(/  - "@type": type\.googleapis\.com\/envoy\.config\.listener\.v3\.Listener\n    name: 10\.96\.0\.10_5432[\s\S]*?(?=  - "@type")/, ''));
  const r = JSON.parse(cli(['sync', '--xds-file', smaller, '--pin-dir', topo!.pinDir, ...locality, '-o', 'json']).stdout) as { policies: { removed: number } };
  t.is(r.policies.removed, 1);
  const m = openMaps(topo!.pinDir, { readOnly: true });
  try {
    t.is(m.policy.get({ ip: '198.18.0.3', port: 5432 }), undefined);
    t.is(m.policy.get({ ip: '198.18.0.3', port: 8080 })?.verdict, 'proxy');
  } finally {
    m.close();
  }

  const bad = join(dir, 'bad.yaml');
  copyFileSync(example, bad);
  writeFileSync(bad, readFileSync(bad, 'utf8').replace('address: 198.18.0.3, port_value: 8080', 'address: 198.18.0.3, port_value: 99999'));
  const b = cli(['sync', '--xds-file', bad, '--pin-dir', topo!.pinDir, ...locality]);
  t.is(b.code, 1);
  t.regex(b.stderr, /^meshbpf: .*bad\.yaml: .*(99999|port)/);
  t.is(b.stderr.trim().split('\n').length, 1);
  const m2 = openMaps(topo!.pinDir, { readOnly: true });
  try {
    t.is(m2.policy.get({ ip: '198.18.0.3', port: 8080 })?.verdict, 'proxy', 'maps untouched by the rejected file');
  } finally {
    m2.close();
  }
});
