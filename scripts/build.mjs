#!/usr/bin/env node
// Build: compile the BPF objects with clang (-Wall -Werror) and the TypeScript.
// `--bpf-only` skips tsc. Fails with one clear line when clang is missing.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bpfOnly = process.argv.includes('--bpf-only');

function have(bin) {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

if (!have('clang')) {
  console.error('build: clang not found; run scripts/setup.sh (installs clang, libbpf-dev, bpftool)');
  process.exit(1);
}
const out = join(root, 'build', 'bpf');
mkdirSync(out, { recursive: true });
const triple = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
for (const f of readdirSync(join(root, 'bpf')).filter((x) => x.endsWith('.c'))) {
  const name = f.slice(0, -2);
  execFileSync('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', `-I/usr/include/${triple}`, `-I${join(root, 'bpf')}`, '-c', join(root, 'bpf', f), '-o', join(out, `${name}.o`)], { stdio: 'inherit' });
}
if (!bpfOnly) execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
