// The BPF objects: built once by `npm run build` (every variant), shipped
// prebuilt in the package, and picked at load by the kernel's features. clang
// runs at load only in a source checkout whose C changed since the build.
//
// Freshness is by content, not mtime: each object has a sidecar
// `<name>.o.json` holding the sha256 of what it was built from (its .c, the
// shared headers, the defines, the flags). mtimes lie after `npm pack` (it
// stamps every file with one date), git checkouts and copies.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BPF_OUT_DIR, BPF_SRC_DIR } from '../paths.js';
import { UserError } from '../errors.js';
import { child } from '../log.js';

const log = child('compile');

/** One object per hook: bpf/<name>.c -> build/bpf/<name>.o. The first three are
 * required; the splice guard objects load where the kernel allows (load.ts). */
export const BPF_OBJECTS = ['sockops', 'sk_msg', 'connect', 'inpod', 'splice', 'splice_refuse'] as const;

/**
 * Every build the loader may pick (features.ts's requireFeatures returns one
 * of these define sets). All are prebuilt so no node needs a compiler.
 */
export const BPF_VARIANTS: ReadonlyArray<readonly string[]> = [[], ['MB_NO_VIP'], ['MB_NO_NETNS_COOKIE', 'MB_NO_VIP']];

const FLAGS = ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf'];

function multiarchInclude(): string[] {
  const triple = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  const dir = `/usr/include/${triple}`;
  return existsSync(dir) ? [`-I${dir}`] : [];
}

export interface Dirs {
  srcDir?: string;
  outDir?: string;
}

/** The directory of one variant: the define set, sorted, joined, lower case. */
export function variantDir(defines: readonly string[], outDir = BPF_OUT_DIR): string {
  const d = [...defines].sort();
  return join(outDir, ...(d.length ? [d.join('+').toLowerCase()] : []));
}

export function objectPath(name: string, outDir = BPF_OUT_DIR): string {
  return join(outDir, `${name}.o`);
}

/** sha256 of everything an object is built from; undefined when the sources are not here (an installed package may omit them). */
export function inputsHash(name: string, defines: readonly string[], srcDir = BPF_SRC_DIR): string | undefined {
  const src = join(srcDir, `${name}.c`);
  if (!existsSync(src)) return undefined;
  const inc = join(srcDir, 'include');
  const headers = existsSync(inc)
    ? readdirSync(inc)
        .filter((f) => f.endsWith('.h'))
        .sort()
    : [];
  const h = createHash('sha256');
  h.update(`flags ${FLAGS.join(' ')}\ndefines ${[...defines].sort().join(' ')}\n`);
  h.update(`${name}.c\n`).update(readFileSync(src));
  for (const f of headers) h.update(`\ninclude/${f}\n`).update(readFileSync(join(inc, f)));
  return h.digest('hex');
}

interface Sidecar {
  inputs: string;
  defines: string[];
}

function readSidecar(obj: string): Sidecar | undefined {
  try {
    return JSON.parse(readFileSync(`${obj}.json`, 'utf8')) as Sidecar;
  } catch {
    return undefined;
  }
}

/** Why `obj` cannot be used as it is, or undefined when it can. */
function staleness(name: string, obj: string, defines: readonly string[], srcDir: string): string | undefined {
  if (!existsSync(obj)) return 'missing';
  const want = inputsHash(name, defines, srcDir);
  if (want === undefined) return undefined; // prebuilt, no sources to compare with
  const have = readSidecar(obj);
  return have?.inputs === want ? undefined : `built from other sources than ${join(srcDir, `${name}.c`)}`;
}

/**
 * The object paths for one variant (`defines`, e.g. ['MB_NO_NETNS_COOKIE']).
 * Prebuilt objects are used as they are; clang runs only for an object that is
 * missing or whose sources changed, or with `force`.
 */
export function compileAll(opts: Dirs & { force?: boolean; defines?: readonly string[] } = {}): string[] {
  const defines = [...(opts.defines ?? [])].sort();
  const srcDir = opts.srcDir ?? BPF_SRC_DIR;
  const outDir = variantDir(defines, opts.outDir);
  return BPF_OBJECTS.map((name) => {
    const out = objectPath(name, outDir);
    const why = opts.force ? 'recompile requested' : staleness(name, out, defines, srcDir);
    if (why !== undefined) compileOne(name, out, defines, srcDir, why);
    return out;
  });
}

/** The one clang command line for a BPF object (bench/ uses it too). */
export function clangArgs(src: string, out: string, defines: readonly string[] = [], srcDir = BPF_SRC_DIR): string[] {
  return [...FLAGS, ...multiarchInclude(), `-I${srcDir}`, ...defines.map((d) => `-D${d}`), '-c', src, '-o', out];
}

/** `npm run build`: every object of every variant, from scratch. */
export function buildAll(opts: Dirs = {}): string[] {
  return BPF_VARIANTS.flatMap((defines) => compileAll({ ...opts, defines, force: true }));
}

function compileOne(name: string, out: string, defines: readonly string[], srcDir: string, why: string): void {
  const src = join(srcDir, `${name}.c`);
  const inputs = inputsHash(name, defines, srcDir);
  if (inputs === undefined) throw new UserError(`BPF object ${out} is missing and so is its source ${src}: reinstall meshbpf`);
  mkdirSync(join(out, '..'), { recursive: true });
  // Build next to the target and rename: a concurrent load never sees half an object.
  const tmp = `${out}.${process.pid}.tmp`;
  log.debug({ src, out, why }, 'clang');
  try {
    execFileSync('clang', clangArgs(src, tmp, defines, srcDir), { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    rmSync(tmp, { force: true });
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') {
      throw new UserError(
        `BPF object ${out} is ${why} and clang is not installed: install clang to build from source (scripts/setup.sh), or install the meshbpf package, which ships prebuilt objects`,
      );
    }
    const first = (err.stderr?.toString() ?? err.message).split('\n').find((l) => l.includes('error')) ?? err.message;
    throw new UserError(`compiling ${src} failed: ${first.trim()}`);
  }
  renameSync(tmp, out);
  writeFileSync(`${out}.json`, `${JSON.stringify({ inputs, defines: [...defines] } satisfies Sidecar)}\n`);
}
