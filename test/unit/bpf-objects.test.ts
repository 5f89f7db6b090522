// Prebuilt BPF objects: the build leaves every variant the loader can pick,
// a load uses them with no compiler on PATH, a changed source is rebuilt (or,
// without clang, refused with one line), and an installed package without
// sources uses what it ships.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BPF_OBJECTS, BPF_VARIANTS, compileAll, inputsHash, variantDir } from '../../src/loader/compile.js';
import { requireFeatures, type Features } from '../../src/loader/features.js';
import { UserError } from '../../src/errors.js';
import { BPF_OUT_DIR, BPF_SRC_DIR } from '../../src/paths.js';

const all: Features = { sockops: true, skMsg: true, sockhash: true, lpmTrie: true, netnsCookie: true, skStorage: true, vip: true };
const hasClang = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v clang'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const tmp = mkdtempSync(join(tmpdir(), 'mbt-objs-'));
const emptyBin = join(tmp, 'empty-bin');
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

/** Run fn with a PATH on which no clang can be found. */
function withoutClang<T>(fn: () => T): T {
  const saved = process.env.PATH;
  process.env.PATH = emptyBin;
  try {
    return fn();
  } finally {
    process.env.PATH = saved;
  }
}

function copyTree(name: string): { srcDir: string; outDir: string } {
  const srcDir = join(tmp, name, 'bpf');
  const outDir = join(tmp, name, 'build');
  cpSync(BPF_SRC_DIR, srcDir, { recursive: true });
  cpSync(BPF_OUT_DIR, outDir, { recursive: true });
  return { srcDir, outDir };
}

test('every define set the feature probe can ask for is a prebuilt variant', (t) => {
  // Every combination of missing features: those the load survives must map to a built variant.
  const keys = Object.keys(all) as Array<keyof Features>;
  const asked = new Set<string>();
  for (let mask = 0; mask < 1 << keys.length; mask++) {
    const f = { ...all };
    keys.forEach((k, i) => mask & (1 << i) && (f[k] = false));
    let d: string[];
    try {
      d = requireFeatures(f);
    } catch (e) {
      t.true(e instanceof UserError);
      continue;
    }
    asked.add([...d].sort().join('+'));
  }
  t.true(asked.has('') && asked.has('MB_NO_NETNS_COOKIE+MB_NO_VIP') && asked.has('MB_NO_VIP'));
  for (const d of asked)
    t.true(
      BPF_VARIANTS.some((v) => [...v].sort().join('+') === d),
      `variant ${d || 'default'} is not prebuilt (add it to BPF_VARIANTS)`,
    );
});

test('after the build every variant loads from its prebuilt objects with no clang on PATH', (t) => {
  for (const defines of BPF_VARIANTS) {
    const before = BPF_OBJECTS.map((n) => statSync(join(variantDir(defines), `${n}.o`)).mtimeMs);
    const objs = withoutClang(() => compileAll({ defines }));
    t.deepEqual(
      objs,
      BPF_OBJECTS.map((n) => join(variantDir(defines), `${n}.o`)),
    );
    t.deepEqual(
      objs.map((o) => statSync(o).mtimeMs),
      before,
      'no object was rebuilt',
    );
  }
  t.not(variantDir(['MB_NO_NETNS_COOKIE']), variantDir([]));
});

test('a changed header without clang: one clear line, not a load of stale objects', (t) => {
  const { srcDir, outDir } = copyTree('stale');
  appendFileSync(join(srcDir, 'include', 'meshbpf.h'), '\n/* changed */\n');
  const e = t.throws(() => withoutClang(() => compileAll({ srcDir, outDir, defines: ['MB_NO_NETNS_COOKIE', 'MB_NO_VIP'] })), { instanceOf: UserError });
  t.regex(e!.message, /^BPF object .*mb_no_netns_cookie\+mb_no_vip\/sockops\.o is built from other sources than .* and clang is not installed: /);
  t.false(e!.message.includes('\n'));
});

test('an installed package without sources uses its objects; with neither, it says to reinstall', (t) => {
  const { outDir } = copyTree('nosrc');
  const srcDir = join(tmp, 'nosrc', 'no-such-bpf');
  t.is(withoutClang(() => compileAll({ srcDir, outDir })).length, BPF_OBJECTS.length);
  rmSync(join(outDir, 'sk_msg.o'));
  const e = t.throws(() => withoutClang(() => compileAll({ srcDir, outDir })), { instanceOf: UserError });
  t.regex(e!.message, /sk_msg\.o is missing and so is its source .*: reinstall meshbpf$/);
});

(hasClang ? test : test.skip)('a changed source is rebuilt once with clang, then used as it is', (t) => {
  const { srcDir, outDir } = copyTree('rebuild');
  appendFileSync(join(srcDir, 'sk_msg.c'), '\n/* changed */\n');
  const [, skmsg] = compileAll({ srcDir, outDir });
  const first = statSync(skmsg!).mtimeMs;
  t.not(inputsHash('sk_msg', [], srcDir), inputsHash('sk_msg', [], BPF_SRC_DIR));
  const [, again] = withoutClang(() => compileAll({ srcDir, outDir }));
  t.is(statSync(again!).mtimeMs, first);
});
