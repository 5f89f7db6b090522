#!/usr/bin/env node
// The fuzz run (test/unit/fuzz.test.ts) with another seed or size. CI runs it
// with the fixed seed as part of the unit tests.
//   node scripts/fuzz.mjs [--seed N|random] [--cases N]     (after npm run build)
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const env = { ...process.env };
if (opt('--seed')) env.MESHBPF_FUZZ_SEED = opt('--seed');
if (opt('--cases')) env.MESHBPF_FUZZ_CASES = opt('--cases');
const ava = join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
const r = spawnSync(process.execPath, [ava, '--verbose', '--timeout=30m', 'dist/test/unit/fuzz.test.js'], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
