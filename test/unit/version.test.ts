// The version string has one source, package.json: the CLI and the xDS node agree with it.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../src/paths.js';
import { buildNode } from '../../src/xds/node.js';

const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };

test('meshbpf --version and the xDS user_agent_version are package.json version', (t) => {
  t.regex(pkg.version, /^\d+\.\d+\.\d+/);
  t.is(execFileSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'meshbpf.js'), '--version'], { encoding: 'utf8' }).trim(), pkg.version);
  t.is(buildNode({ namespace: 'ns', podName: 'p', ips: ['198.18.0.1'] }).user_agent_version, pkg.version);
});
