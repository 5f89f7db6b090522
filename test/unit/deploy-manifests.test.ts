// deploy/*.yaml against the Kubernetes API schema (kubernetes-models: the
// OpenAPI schema of the API, compiled with ajv), plus unknown fields (the
// OpenAPI schema allows them; kubectl's strict field validation does not) via
// the same package's TypeScript types, and against the agent itself: every
// flag parses with the agent's own commander definition, and ports, endpoint
// paths, mounts and files line up with what the agent and meshbpf-k8s use.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import type { Command } from 'commander';
import { PROJECT_ROOT } from '../../src/paths.js';
import { buildProgram } from '../../src/cli/main.js';
import { parseListen } from '../../src/agent/server.js';
import { stateDir } from '../../src/maps/state.js';

type Obj = Record<string, any>; // parsed YAML: shape checked by the tests themselves

const deployDir = join(PROJECT_ROOT, 'deploy');
const files = readdirSync(deployDir)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();
const docs: Array<{ file: string; obj: Obj }> = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(deployDir, file), 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return { file, obj: d.toJS() as Obj };
  }),
);

/** kubernetes-models module of an apiVersion/kind: "apps/v1" DaemonSet -> kubernetes-models/apps/v1/DaemonSet */
function modelPath(o: Obj): string {
  return `kubernetes-models/${o.apiVersion}/${o.kind}`;
}

test('deploy/ has the namespace, service account, RBAC and DaemonSet', (t) => {
  t.deepEqual(
    docs.map((d) => d.obj.kind),
    ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'DaemonSet'],
  );
});

test('every manifest validates against the Kubernetes API schema', async (t) => {
  for (const { file, obj } of docs) {
    const mod = (await import(modelPath(obj))) as Record<string, new (d: Obj) => { validate(): void }>;
    const Model = mod[obj.kind as string];
    t.truthy(Model, `${file}: ${obj.apiVersion} ${obj.kind} is a known API type`);
    t.notThrows(() => new Model!(obj).validate(), `${file}: ${obj.kind} ${obj.metadata?.name}`);
  }
});

test('the schema check can fail: a port as a string and a missing selector are rejected', async (t) => {
  const ds = structuredClone(docs.find((d) => d.obj.kind === 'DaemonSet')!.obj);
  ds.spec.template.spec.containers[0].ports[0].containerPort = '9750';
  delete ds.spec.selector;
  const { DaemonSet } = (await import('kubernetes-models/apps/v1/DaemonSet')) as unknown as Record<string, new (d: Obj) => { validate(): void }>;
  const e = t.throws(() => new DaemonSet!(ds).validate());
  t.regex(e!.message, /containerPort must be integer/);
  t.regex(e!.message, /spec must have required property selector/);
});

/** Type-check objects against kubernetes-models' types; returns tsc's messages. */
function typeErrors(items: Array<{ obj: Obj; label: string }>): string[] {
  const name = join(PROJECT_ROOT, '__deploy_manifests_check__.ts');
  const src = items.map(({ obj }, i) => `import type { I${obj.kind} as T${i} } from '${modelPath(obj)}';\nexport const m${i}: T${i} = ${JSON.stringify(obj)};\n`).join('');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (f, lang, ...rest) => (f === name ? ts.createSourceFile(f, src, lang) : getSourceFile(f, lang, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (f) => f === name || fileExists(f);
  const program = ts.createProgram([name], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}

test('no manifest has a field the API does not know (a typo would be dropped or rejected by the API server)', (t) => {
  t.deepEqual(typeErrors(docs.map((d) => ({ obj: d.obj, label: d.file }))), []);
  const typo = structuredClone(docs.find((d) => d.obj.kind === 'DaemonSet')!.obj);
  typo.spec.template.spec.containers[0].volumeMounts[0].mountPropogation = 'HostToContainer';
  const errs = typeErrors([{ obj: typo, label: 'typo' }]);
  t.is(errs.length, 1);
  t.regex(errs[0]!, /'"mountPropogation"' does not exist in type 'IVolumeMount'/);
});

// ---- the manifests against the agent ----------------------------------------

const ds = docs.find((d) => d.obj.kind === 'DaemonSet')!.obj;
const pod = ds.spec.template.spec as Obj;
const agentC = (pod.containers as Obj[]).find((c) => c.name === 'agent')!;
const env = Object.fromEntries((agentC.env as Obj[]).map((e) => [e.name, e]));

/** Kubernetes' $(VAR) expansion of container args, with sample downward-API values. */
function expand(args: string[], values: Record<string, string>): string[] {
  return args.map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_m, v: string) => values[v] ?? `$(${v})`));
}

function agentCommand(): Command {
  const c = buildProgram().commands.find((x) => x.name() === 'agent');
  if (!c) throw new Error('no agent command');
  return c;
}

/** Parse argv (after "agent") with the agent's own commander definition. */
function parseAgent(argv: string[]): { opts: Obj; unknown: string[]; operands: string[] } {
  const cmd = agentCommand();
  cmd.exitOverride();
  const r = cmd.parseOptions(argv);
  return { opts: cmd.opts(), unknown: r.unknown, operands: r.operands };
}

function mountFor(path: string): Obj {
  const m = (agentC.volumeMounts as Obj[]).filter((v) => path === v.mountPath || path.startsWith(`${v.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  if (!m) throw new Error(`${path} is under no volumeMount`);
  return m;
}

function volume(name: string): Obj {
  return (pod.volumes as Obj[]).find((v) => v.name === name)!;
}

for (const hostIp of ['198.18.0.1', 'fd00::1']) {
  test(`the container's command line is one meshbpf-k8s and the agent accept (host IP ${hostIp})`, (t) => {
    t.deepEqual(agentC.command, ['meshbpf-k8s']);
    t.is(agentC.args[0], 'agent');
    const args = expand(agentC.args as string[], { HOST_IP: hostIp });
    // What meshbpf-k8s really runs, with this container's env (pod CIDRs given, so no API call).
    const out = execFileSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'meshbpf-k8s.js'), ...args, '--dry-run'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', NODE_NAME: 'node-a', POD_IPS: `${hostIp},fd00::2`, MESHBPF_POD_CIDRS: '198.18.0.0/24,fd00:0:0:18::/64' },
    });
    const argv = JSON.parse(out) as string[];
    t.is(argv[0], 'agent');
    const p = parseAgent(argv.slice(1));
    t.deepEqual(p.unknown, [], 'every flag is an agent flag');
    t.deepEqual(p.operands, []);
    t.deepEqual(p.opts.podCidr, ['198.18.0.0/24', 'fd00:0:0:18::/64']);
    t.is(p.opts.nodeIp[0], hostIp);
    t.notThrows(() => parseListen(p.opts.listen as string));
    t.is(parseListen(p.opts.listen as string).host, hostIp);
  });
}

test('a flag the agent does not have is caught', (t) => {
  t.deepEqual(parseAgent(['--xds', 'x:1', '--xds-ca', '/a']).unknown, ['--xds-ca', '/a']);
});

test('ports: the agent listens where the container port, the probes and the Prometheus annotations point', (t) => {
  const args = expand(agentC.args as string[], { HOST_IP: '198.18.0.1' });
  const { port } = parseListen(parseAgent(args.slice(1)).opts.listen as string);
  t.deepEqual(
    (agentC.ports as Obj[]).map((p) => p.containerPort),
    [port],
  );
  for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) t.is(agentC[probe].httpGet.port, port, probe);
  const ann = ds.spec.template.metadata.annotations as Record<string, string>;
  t.is(ann['prometheus.io/scrape'], 'true');
  t.is(Number(ann['prometheus.io/port']), port);
});

test('paths: probes and the scrape path are endpoints the agent serves', (t) => {
  let help = '';
  const cmd = agentCommand();
  cmd.configureOutput({ writeOut: (s) => (help += s) });
  cmd.outputHelp();
  const served = [...help.matchAll(/(\/[a-z/]+) \(/g)].map((m) => m[1]);
  t.true(served.includes('/healthz') && served.includes('/readyz') && served.includes('/metrics'), help);
  t.is(agentC.livenessProbe.httpGet.path, '/healthz');
  t.is(agentC.startupProbe.httpGet.path, '/healthz');
  t.is(agentC.readinessProbe.httpGet.path, '/readyz');
  t.true(served.includes(ds.spec.template.metadata.annotations['prometheus.io/path']));
});

test('mounts: pins on the node bpffs, state in /run/meshbpf, cgroup v2 tree, token and CA files where the flags read them', (t) => {
  const o = parseAgent(expand(agentC.args as string[], { HOST_IP: '198.18.0.1' }).slice(1)).opts;
  // pin dir on the node's bpffs, HostToContainer (a node mount made later still shows)
  const pinMount = mountFor(o.pinDir as string);
  t.is(volume(pinMount.name).hostPath.path, '/sys/fs/bpf');
  t.is(pinMount.mountPath, '/sys/fs/bpf', 'meshbpf-k8s checks /sys/fs/bpf is a bpffs');
  t.is(pinMount.mountPropagation, 'HostToContainer');
  t.falsy(pinMount.readOnly);
  // state dir (agent.json, rules.json) on the node's /run/meshbpf
  const runMount = mountFor(stateDir(o.pinDir as string));
  t.is(volume(runMount.name).hostPath.path, '/run/meshbpf');
  t.falsy(runMount.readOnly);
  // cgroup v2: the node's tree where the agent looks for kubepods
  const cg = (agentC.volumeMounts as Obj[]).find((m) => volume(m.name).hostPath?.path === '/sys/fs/cgroup')!;
  t.is(cg.mountPath, '/sys/fs/cgroup');
  t.is(cg.mountPropagation, 'HostToContainer');
  // token: projected, audience istio-ca, at the file --xds-token-file reads
  const tokMount = mountFor(o.xdsTokenFile as string);
  const tok = volume(tokMount.name).projected.sources[0].serviceAccountToken;
  t.is(tok.audience, 'istio-ca');
  t.is(posix.join(tokMount.mountPath, tok.path), o.xdsTokenFile);
  // CA: istio-ca-root-cert's root-cert.pem at the file --xds-root-cert reads
  const caMount = mountFor(o.xdsRootCert as string);
  const ca = volume(caMount.name).configMap;
  t.is(ca.name, 'istio-ca-root-cert');
  t.true((ca.items as Obj[]).some((i) => i.key === 'root-cert.pem' && posix.join(caMount.mountPath, i.path) === o.xdsRootCert));
  // TLS to istiod's TLS port
  t.regex(o.xds as string, /:15012$/);
});

test('downward API: the env meshbpf-k8s and the agent read', (t) => {
  t.is(env.NODE_NAME?.valueFrom.fieldRef.fieldPath, 'spec.nodeName');
  t.is(env.POD_IPS?.valueFrom.fieldRef.fieldPath, 'status.podIPs');
  t.is(env.HOST_IP?.valueFrom.fieldRef.fieldPath, 'status.hostIP');
  // the agent's defaults for --pod-name / --namespace (the xDS node id)
  t.is(env.POD_NAME?.valueFrom.fieldRef.fieldPath, 'metadata.name');
  t.is(env.POD_NAMESPACE?.valueFrom.fieldRef.fieldPath, 'metadata.namespace');
  t.true(pod.hostNetwork, 'status.podIPs are the node IPs only with hostNetwork');
});

test('capabilities: the ones checkPrivileges asks for, no privileged; rolling update never runs two agents on a node', (t) => {
  const sc = agentC.securityContext as Obj;
  t.false(sc.privileged);
  t.deepEqual([...sc.capabilities.add].sort(), ['BPF', 'NET_ADMIN', 'SYS_ADMIN']);
  t.deepEqual(sc.capabilities.drop, ['ALL']);
  t.is(ds.spec.updateStrategy.rollingUpdate.maxSurge, 0);
  t.is(pod.serviceAccountName, docs.find((d) => d.obj.kind === 'ServiceAccount')!.obj.metadata.name);
  const role = docs.find((d) => d.obj.kind === 'ClusterRole')!.obj;
  t.deepEqual(role.rules, [{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }]);
});
