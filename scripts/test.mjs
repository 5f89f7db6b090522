#!/usr/bin/env node
// npm test: unit tests (no root), then kernel tests (root; one file at a time,
// since they share the machine's CPUs and each builds its own topology).
// Ends with "N passed, N failed" summed over both runs.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ava = join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs');

function run(label, args) {
  return new Promise((resolve) => {
    console.log(`\n== ${label}`);
    const c = spawn(process.execPath, [ava, ...args], { cwd: root, env: { MESHBPF_LOG_LEVEL: 'warn', ...process.env, FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    for (const s of [c.stdout, c.stderr]) {
      s.on('data', (d) => {
        text += d;
        (s === c.stdout ? process.stdout : process.stderr).write(d);
      });
    }
    c.on('exit', (code) => {
      // Count ava's per-test marks (its summary omits the pass count when a test fails).
      const count = (re) => (text.match(re) ?? []).length;
      const n = (re) => Number(re.exec(text)?.[1] ?? 0);
      const passed = count(/^\s*✔/gm);
      const failed = count(/^\s*✘/gm) + n(/(\d+) uncaught exceptions?/) + n(/(\d+) unhandled rejections?/);
      const skipped = count(/^\s*- .*/gm) && n(/(\d+) tests? skipped/);
      const timedOut = /Timed out while running tests/.test(text) ? 1 : 0;
      resolve({ code: code ?? 1, passed, failed: failed + timedOut, skipped });
    });
  });
}

const which = process.argv[2] ?? 'all';
const results = [];
if (which === 'all' || which === 'unit') results.push(await run('unit tests', ['dist/test/unit/**/*.test.js']));
if (which === 'all' || which === 'kernel') results.push(await run('kernel tests (root)', ['--serial', '--concurrency=1', 'dist/test/kernel/**/*.test.js']));
const passed = results.reduce((a, r) => a + r.passed, 0);
let failed = results.reduce((a, r) => a + r.failed, 0);
const skipped = results.reduce((a, r) => a + r.skipped, 0);
// A runner that failed without a parsable count still fails the run.
if (results.some((r) => r.code !== 0) && failed === 0) failed = 1;
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
