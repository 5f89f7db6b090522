// The README's two commands work as root on a machine without sudo: no sudo
// in them or in what they run, and every part names something that exists.
import test from 'ava';
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../src/paths.js';
import { buildProgram } from '../../src/cli/main.js';

const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
const section = /## The two commands\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? '';
const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
const commands = block.split('\n').filter((l) => l.trim() && !l.trimStart().startsWith('#'));

test('two commands, none with sudo', (t) => {
  t.is(commands.length, 2, block);
  for (const c of commands) t.notRegex(c, /\bsudo\b/, c);
});

test('every part of them exists: setup script (executable, no sudo inside), the demo command, npm test', (t) => {
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const demo = buildProgram().commands.map((c) => c.name());
  for (const part of commands.flatMap((c) => c.split('&&').map((p) => p.trim()))) {
    const [cmd, ...args] = part.split(/\s+/);
    if (cmd!.startsWith('./')) {
      t.notThrows(() => accessSync(join(PROJECT_ROOT, cmd!), constants.X_OK), `${cmd} is executable`);
      t.notRegex(readFileSync(join(PROJECT_ROOT, cmd!), 'utf8'), /^\s*sudo\b|[;&|]\s*sudo\b/m, `${cmd} runs no sudo`);
    } else if (cmd === 'node') {
      t.notThrows(() => accessSync(join(PROJECT_ROOT, args[0]!)));
      t.true(demo.includes(args[1]!), `meshbpf ${args[1]} exists`);
    } else if (cmd === 'npm') {
      t.is(args[0], 'test');
      t.truthy(pkg.scripts.test);
      t.notRegex(pkg.scripts.test!, /\bsudo\b/);
    } else {
      t.fail(`unexpected command ${part}`);
    }
  }
});

test('"Deploy on Kubernetes": every flag it names is a real meshbpf flag, every file it names exists', (t) => {
  const deploy = /## Deploy on Kubernetes\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? '';
  t.truthy(deploy);
  const known = new Set<string>();
  const walk = (c: ReturnType<typeof buildProgram>): void => {
    for (const o of c.options) if (o.long) known.add(o.long);
    c.commands.forEach(walk);
  };
  walk(buildProgram());
  const kubectlOrTools = new Set(['--pack-destination', '--type', '--from']);
  const flags = [...new Set([...deploy.matchAll(/(?<![\w-])(--[a-z][a-z-]+)/g)].map((m) => m[1]!))].filter((f) => !kubectlOrTools.has(f) || known.has(f));
  t.true(flags.includes('--unload-on-exit'));
  for (const f of flags) t.true(known.has(f), `${f} is a meshbpf flag`);
  for (const f of [...new Set([...deploy.matchAll(/`((?:deploy|scripts)\/[\w./-]+)`/g)].map((m) => m[1]!))]) {
    t.notThrows(() => accessSync(join(PROJECT_ROOT, f)), `${f} exists`);
  }
});
