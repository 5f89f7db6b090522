// The format check `npm test` runs (prettier, the repo's .prettierrc.json):
// every TypeScript and JavaScript source is formatted. `npm run format` fixes it.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import test from 'ava';
import * as prettier from 'prettier';
import { PROJECT_ROOT } from '../../src/paths.js';

function sources(dir: string, exts: string[]): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p, exts));
    else if (exts.some((x) => e.name.endsWith(x))) out.push(p);
  }
  return out;
}

test('every source file is formatted (prettier --check; fix with npm run format)', async (t) => {
  const files = [
    ...['src', 'test', 'bench'].flatMap((d) => sources(join(PROJECT_ROOT, d), ['.ts']).filter((f) => !f.includes(`${join('test', 'fixtures')}`))),
    ...sources(join(PROJECT_ROOT, 'scripts'), ['.mjs']),
    ...sources(join(PROJECT_ROOT, 'bin'), ['.js']),
  ];
  t.true(files.length > 100, `found ${files.length} sources`);
  const bad: string[] = [];
  for (const f of files) {
    const options = (await prettier.resolveConfig(f)) ?? {};
    if (!(await prettier.check(readFileSync(f, 'utf8'), { ...options, filepath: f }))) bad.push(relative(PROJECT_ROOT, f));
  }
  t.deepEqual(bad, [], `not formatted: ${bad.join(', ')}`);
});
