// bin/meshbpf-k8s.js, the DaemonSet's entrypoint: the node's pod CIDRs come
// from the Kubernetes API (with the pod's token), node IPs from the downward
// API first; flags given explicitly win; API errors are one line and exit 1.
import test from 'ava';
import { execFile } from 'node:child_process';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../src/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'mbt-k8s-'));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 'tok-123\n');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
const nodes: Record<string, unknown> = {
  'node-a': { kind: 'Node', metadata: { name: 'node-a' }, spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] } },
  'node-b': { kind: 'Node', metadata: { name: 'node-b' }, spec: {} },
};
const server = createServer((req, res) => {
  seen.push({ url: req.url ?? '', headers: req.headers });
  const name = /^\/api\/v1\/nodes\/([^/]+)$/.exec(req.url ?? '')?.[1];
  const n = name === undefined ? undefined : nodes[name];
  if (req.headers.authorization !== 'Bearer tok-123') {
    res.writeHead(401).end('{"message":"Unauthorized"}');
  } else if (!n) {
    res.writeHead(404).end(`{"kind":"Status","message":"nodes \\"${name}\\" not found"}`);
  } else {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(n));
  }
});
let api = '';
test.before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  api = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
});
test.after.always(() => server.close());

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(PROJECT_ROOT, 'bin', 'meshbpf-k8s.js'), ...args],
      { env: { PATH: process.env.PATH ?? '', MESHBPF_K8S_API: api, MESHBPF_K8S_TOKEN_FILE: tokenFile, ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

test.serial("agent gets the Node's podCIDRs and the downward-API IPs first", async (t) => {
  const r = await run(['agent', '--xds', 'istiod.istio-system.svc:15012', '--dry-run'], { NODE_NAME: 'node-a', POD_IPS: '198.18.7.1,fd00::7:1' });
  t.is(r.code, 0, r.stderr);
  const argv = JSON.parse(r.stdout) as string[];
  t.deepEqual(argv.slice(0, 7), ['agent', '--xds', 'istiod.istio-system.svc:15012', '--pod-cidr', '10.244.1.0/24', '--pod-cidr', 'fd00:10:244:1::/64']);
  t.deepEqual(argv.slice(7, 11), ['--node-ip', '198.18.7.1', '--node-ip', 'fd00::7:1']);
  t.is(seen.at(-1)?.url, '/api/v1/nodes/node-a');
  t.is(seen.at(-1)?.headers.authorization, 'Bearer tok-123');
});

test.serial('MESHBPF_POD_CIDRS and explicit flags need no API call', async (t) => {
  const before = seen.length;
  const r = await run(['agent', '--node-ip', '198.18.7.1', '--dry-run'], { MESHBPF_POD_CIDRS: '198.18.7.0/24, fd00::7:0/112', NODE_NAME: 'node-a' });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), ['agent', '--node-ip', '198.18.7.1', '--pod-cidr', '198.18.7.0/24', '--pod-cidr', 'fd00::7:0/112']);
  const r2 = await run(['agent', '--pod-cidr', '198.18.8.0/24', '--node-ip', '198.18.8.1', '--dry-run'], { NODE_NAME: 'node-a' });
  t.deepEqual(JSON.parse(r2.stdout), ['agent', '--pod-cidr', '198.18.8.0/24', '--node-ip', '198.18.8.1']);
  t.is(seen.length, before);
});

test.serial('a node without podCIDRs: a warning, and no --pod-cidr (nothing widened)', async (t) => {
  const r = await run(['agent', '--node-ip', '198.18.7.1', '--dry-run'], { NODE_NAME: 'node-b' });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), ['agent', '--node-ip', '198.18.7.1']);
  t.regex(r.stderr, /node node-b has no spec\.podCIDRs/);
});

test.serial('API errors and a missing NODE_NAME: one line, exit 1', async (t) => {
  const missing = await run(['agent', '--dry-run'], { NODE_NAME: 'node-x' });
  t.is(missing.code, 1);
  t.is(missing.stderr, 'meshbpf-k8s: reading node node-x\'s pod CIDRs from the API failed: 404 nodes "node-x" not found (RBAC: the ServiceAccount needs get on nodes; or set MESHBPF_POD_CIDRS)\n');
  const noNode = await run(['agent', '--dry-run'], {});
  t.is(noNode.code, 1);
  t.regex(noNode.stderr, /^meshbpf-k8s: NODE_NAME is not set/);
});

test.serial('other commands pass straight through', async (t) => {
  const r = await run(['status', '--help'], {});
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /Usage: meshbpf status/);
});

test.serial('agent refuses to start when the bpffs path is not a bpffs (its pins would die with the pod)', async (t) => {
  const r = await run(['agent', '--dry-run'], { NODE_NAME: 'node-a', MESHBPF_BPFFS: dir });
  t.is(r.code, 1);
  t.is(r.stderr.split('\n').length, 2);
  t.regex(r.stderr, /^meshbpf-k8s: .* is not a bpffs: mount the node's bpffs there/);
});
