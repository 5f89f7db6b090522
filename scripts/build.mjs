#!/usr/bin/env node
// Build: the TypeScript (tsc), then every BPF object of every variant with
// clang (-Wall -Werror), through the loader's own compile module so the build
// and the load agree on paths, flags and freshness. The objects are what the
// package ships: nodes load them without a compiler.
// `--bpf-only` skips tsc (dist/ must exist). Fails with one clear line when clang is missing.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
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
if (!bpfOnly) execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
const compile = join(root, 'dist', 'src', 'loader', 'compile.js');
if (!existsSync(compile)) {
  console.error('build: dist/ is missing; run `npm run build` (without --bpf-only) first');
  process.exit(1);
}
process.env.MESHBPF_LOG_LEVEL ??= 'warn';
try {
  const { buildAll } = await import(pathToFileURL(compile).href);
  const objs = buildAll();
  console.log(`build: ${objs.length} BPF objects: ${objs.map((o) => relative(root, o)).join(' ')}`);
} catch (e) {
  console.error(`build: ${e.message}`);
  process.exit(1);
}
