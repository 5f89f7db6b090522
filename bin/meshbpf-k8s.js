#!/usr/bin/env node
// The DaemonSet's entrypoint: `meshbpf-k8s agent ARGS...` runs `meshbpf agent
// ARGS...` with what only Kubernetes knows about this node added:
//   --pod-cidr  for each of the Node's spec.podCIDRs (GET /api/v1/nodes/$NODE_NAME
//               with the pod's service-account token; RBAC: get nodes), or the
//               ones in $MESHBPF_POD_CIDRS (then no API call is made);
//   --node-ip   for each of $POD_IPS (downward API status.podIPs: a hostNetwork
//               pod's IPs are the node's, primary first, which the xDS node id
//               uses), then every other address found on the interfaces.
// Flags given in ARGS win. `--dry-run` prints the argv as JSON and exits.
// Before that it checks that the node's bpffs is what /sys/fs/bpf shows
// ($MESHBPF_BPFFS): otherwise the agent would mount a bpffs of its own inside
// the pod, and its pins would die with the pod.
// The agent runs in this process (PID 1 in the pod), so SIGTERM reaches it.
import { readFileSync, statfsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const SA = '/var/run/secrets/kubernetes.io/serviceaccount';

function fail(msg) {
  process.stderr.write(`meshbpf-k8s: ${msg}\n`);
  process.exit(1);
}

function getJson(url, token, ca) {
  const u = new URL(url);
  const req = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = req(u, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, timeout: 10_000, ...(ca ? { ca } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        let parsed;
        try {
          parsed = JSON.parse(body);
        } catch (e) {
          if (res.statusCode === 200) return reject(e);
        }
        if (res.statusCode !== 200) return reject(new Error(`${res.statusCode} ${parsed?.message ?? body.slice(0, 200)}`));
        resolve(parsed);
      });
    });
    r.on('timeout', () => r.destroy(new Error('timed out')));
    r.on('error', reject);
    r.end();
  });
}

async function podCidrs(env) {
  if (env.MESHBPF_POD_CIDRS) return env.MESHBPF_POD_CIDRS.split(/[\s,]+/).filter(Boolean);
  const node = env.NODE_NAME;
  if (!node) fail('NODE_NAME is not set (downward API spec.nodeName), and neither is MESHBPF_POD_CIDRS');
  const api =
    env.MESHBPF_K8S_API ??
    (env.KUBERNETES_SERVICE_HOST
      ? `https://${env.KUBERNETES_SERVICE_HOST.includes(':') ? `[${env.KUBERNETES_SERVICE_HOST}]` : env.KUBERNETES_SERVICE_HOST}:${env.KUBERNETES_SERVICE_PORT ?? 443}`
      : undefined);
  if (!api) fail('not in a Kubernetes pod (no KUBERNETES_SERVICE_HOST); pass --pod-cidr or set MESHBPF_POD_CIDRS');
  const tokenFile = env.MESHBPF_K8S_TOKEN_FILE ?? `${SA}/token`;
  let token;
  let ca;
  try {
    token = readFileSync(tokenFile, 'utf8').trim();
    if (api.startsWith('https:')) ca = readFileSync(env.MESHBPF_K8S_CA_FILE ?? `${SA}/ca.crt`);
  } catch (e) {
    fail(`cannot read the service-account credentials: ${e.message}`);
  }
  let n;
  try {
    n = await getJson(`${api}/api/v1/nodes/${encodeURIComponent(node)}`, token, ca);
  } catch (e) {
    fail(`reading node ${node}'s pod CIDRs from the API failed: ${e.message} (RBAC: the ServiceAccount needs get on nodes; or set MESHBPF_POD_CIDRS)`);
  }
  const cidrs = n?.spec?.podCIDRs?.length ? n.spec.podCIDRs : n?.spec?.podCIDR ? [n.spec.podCIDR] : [];
  if (!cidrs.length) {
    // Safe to go on: without a pod range only xDS endpoints that are node IPs are local, so less is bypassed, never more.
    process.stderr.write(`meshbpf-k8s: node ${node} has no spec.podCIDRs (the CNI allocates pod addresses itself?); set MESHBPF_POD_CIDRS to this node's pod ranges, or pods are not accelerated\n`);
  }
  return cidrs;
}

async function nodeIps(env) {
  const given = (env.POD_IPS ?? '').split(/[\s,]+/).filter(Boolean);
  const { discoverNodeIps } = await import('../dist/src/xds/node.js');
  const { formatIp, parseIp } = await import('../dist/src/net/ip.js');
  const canon = (ip) => formatIp(parseIp(ip).bytes);
  const first = given.map(canon);
  return [...first, ...discoverNodeIps().filter((ip) => !first.includes(ip))];
}

const argv = process.argv.slice(2);
const dryRun = argv.includes('--dry-run');
const args = argv.filter((a) => a !== '--dry-run');
if (args[0] === 'agent') {
  const bpffs = process.env.MESHBPF_BPFFS ?? '/sys/fs/bpf';
  let type;
  try {
    type = Number(statfsSync(bpffs).type);
  } catch {
    type = undefined;
  }
  if (type !== 0xcafe4a11)
    fail(`${bpffs} is not a bpffs: mount the node's bpffs there (hostPath /sys/fs/bpf, and \`mount -t bpf bpf /sys/fs/bpf\` on the node if it has none) so the pins outlive the pod`);
  if (!args.includes('--pod-cidr')) for (const c of await podCidrs(process.env)) args.push('--pod-cidr', c);
  if (!args.includes('--node-ip')) for (const ip of await nodeIps(process.env)) args.push('--node-ip', ip);
}
if (dryRun) {
  process.stdout.write(`${JSON.stringify(args)}\n`);
} else {
  try {
    const m = await import('../dist/src/cli/main.js');
    await m.main([process.argv[0], 'meshbpf', ...args]);
  } catch (e) {
    fail(e && e.message ? e.message : String(e));
  }
}
