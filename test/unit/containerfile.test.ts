// deploy/Containerfile (no container runtime here, so it is not built in
// tests): it installs the tarball `npm pack` names for this version, no
// compiler, and the commands and image tag the DaemonSet uses exist.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { PROJECT_ROOT } from '../../src/paths.js';

const cf = readFileSync(join(PROJECT_ROOT, 'deploy', 'Containerfile'), 'utf8');
const code = cf
  .split('\n')
  .filter((l) => !l.trimStart().startsWith('#'))
  .join('\n');
const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { name: string; version: string; bin: Record<string, string>; engines: { node: string } };
const ds = parseAllDocuments(readFileSync(join(PROJECT_ROOT, 'deploy', '50-daemonset.yaml'), 'utf8'))[0]!.toJS() as {
  spec: { template: { spec: { containers: Array<{ image: string; command: string[] }> } } };
};
const agent = ds.spec.template.spec.containers[0]!;

test('the image installs the tarball npm pack makes for this version', (t) => {
  t.is(/^ARG MESHBPF_VERSION=(.+)$/m.exec(code)?.[1], pkg.version);
  t.regex(code, /^COPY meshbpf-\$\{MESHBPF_VERSION\}\.tgz /m); // npm pack names it <name>-<version>.tgz
  t.is(pkg.name, 'meshbpf');
  t.regex(code, /npm install --global --omit=dev .*\/tmp\/meshbpf-\$\{MESHBPF_VERSION\}\.tgz/);
});

test('no compiler or kernel headers in the image; libbpf.so.1 and a Node the package supports', (t) => {
  t.notRegex(code, /clang|llvm|linux-headers|libbpf-dev|build-essential/);
  t.regex(code, /apt-get install [^\n]*\blibbpf1\b/);
  const node = Number(/^ARG NODE_IMAGE=node:(\d+)/m.exec(code)?.[1]);
  t.true(node >= Number(/>=(\d+)/.exec(pkg.engines.node)?.[1]));
});

test('the DaemonSet runs a command the package installs, from an image of this version', (t) => {
  t.truthy(pkg.bin[agent.command[0]!], `${agent.command[0]} is a bin of the package`);
  t.truthy(pkg.bin[/^ENTRYPOINT \["([^"]+)"\]/m.exec(code)?.[1] ?? '']);
  t.true(agent.image.endsWith(`/meshbpf:${pkg.version}`));
});
