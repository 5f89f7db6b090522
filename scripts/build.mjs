#!/usr/bin/env node
// Build: the TypeScript, then the BPF objects with clang, using the one clang
// command line in src/loader/compile.ts (so tsc runs first). `--bpf-only`
// skips tsc when dist/ is already there. Fails with one clear line when clang
// is missing.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
const compileJs = join(root, 'dist', 'src', 'loader', 'compile.js');
if (!bpfOnly || !existsSync(compileJs)) execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
const { clangArgs } = await import(pathToFileURL(compileJs).href);
const out = join(root, 'build', 'bpf');
mkdirSync(out, { recursive: true });
for (const f of readdirSync(join(root, 'bpf')).filter((x) => x.endsWith('.c'))) {
  execFileSync('clang', clangArgs(join(root, 'bpf', f), join(out, `${f.slice(0, -2)}.o`)), { stdio: 'inherit' });
}
