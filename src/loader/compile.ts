// Compile the C programs with clang: at build time, and again at load time when
// a source (or the shared headers) is newer than its object.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BPF_OUT_DIR, BPF_SRC_DIR } from '../paths.js';
import { UserError } from '../errors.js';
import { child } from '../log.js';

const log = child('compile');

/** One object per hook: bpf/<name>.c -> build/bpf/<name>.o. The first three are
 * required; the splice guard objects load where the kernel allows (load.ts). */
export const BPF_OBJECTS = ['sockops', 'sk_msg', 'connect', 'splice', 'splice_refuse'] as const;

function multiarchInclude(): string[] {
  const triple = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  const dir = `/usr/include/${triple}`;
  return existsSync(dir) ? [`-I${dir}`] : [];
}

function newestInput(name: string): number {
  const inc = join(BPF_SRC_DIR, 'include');
  const headers = existsSync(inc) ? readdirSync(inc).filter((f) => f.endsWith('.h')).map((f) => join(inc, f)) : [];
  return Math.max(...[join(BPF_SRC_DIR, `${name}.c`), ...headers].map((p) => statSync(p).mtimeMs));
}

export function objectPath(name: string, outDir = BPF_OUT_DIR): string {
  return join(outDir, `${name}.o`);
}

/**
 * Compile every object whose sources changed; returns the object paths.
 * `defines` select a degraded build (e.g. MB_NO_NETNS_COOKIE); each set of
 * defines gets its own output directory.
 */
export function compileAll(opts: { force?: boolean; outDir?: string; defines?: string[] } = {}): string[] {
  const defines = [...(opts.defines ?? [])].sort();
  const outDir = join(opts.outDir ?? BPF_OUT_DIR, ...(defines.length ? [defines.join('+').toLowerCase()] : []));
  mkdirSync(outDir, { recursive: true });
  return BPF_OBJECTS.map((name) => {
    const out = objectPath(name, outDir);
    const stale = opts.force || !existsSync(out) || statSync(out).mtimeMs < newestInput(name);
    if (stale) compileOne(name, out, defines);
    return out;
  });
}

/** The one clang command line for a BPF object (scripts/build.mjs and bench/ use it too). */
export function clangArgs(src: string, out: string, defines: readonly string[] = []): string[] {
  return ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', ...multiarchInclude(), `-I${BPF_SRC_DIR}`, ...defines.map((d) => `-D${d}`), '-c', src, '-o', out];
}

function compileOne(name: string, out: string, defines: string[]): void {
  const src = join(BPF_SRC_DIR, `${name}.c`);
  log.debug({ src, out }, 'clang');
  try {
    execFileSync('clang', clangArgs(src, out, defines), { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') throw new UserError('clang not found: install clang (scripts/setup.sh does) to compile the BPF programs');
    const first = (err.stderr?.toString() ?? err.message).split('\n').find((l) => l.includes('error')) ?? err.message;
    throw new UserError(`compiling ${src} failed: ${first.trim()}`);
  }
}
