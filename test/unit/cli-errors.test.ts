// Every error a user can cause is one line, `meshbpf: ...`, naming the file
// once, and exit 1; nothing is loaded before the arguments are known good (issue 10).
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { cli } from '../helpers/kernel.js';

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-clierr-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The run failed with exactly one stderr line, exit 1. */
function oneLine(t: { is(a: unknown, b: unknown, m?: string): void }, r: { code: number; stderr: string }): string {
  t.is(r.code, 1, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split('\n');
  t.is(lines.length, 1, `one line, got:\n${r.stderr}`);
  return lines[0] ?? '';
}

test('a directory, a FIFO or /dev/zero as --xds-file: one line naming it (agent and sync)', (t) => {
  const dir = tmp(t);
  const pin = path.join(dir, 'no-pins');
  t.is(oneLine(t, cli(['agent', '--xds-file', dir, '--pin-dir', pin])), `meshbpf: ${dir}: a directory, not a regular file`);
  t.is(oneLine(t, cli(['sync', '--xds-file', '/dev/zero', '--pin-dir', pin])), 'meshbpf: /dev/zero: a character device, not a regular file');
  t.is(oneLine(t, cli(['sync', '--xds-file', dir, '--pin-dir', pin])), `meshbpf: ${dir}: a directory, not a regular file`);
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  t.is(oneLine(t, cli(['sync', '--xds-file', fifo, '--pin-dir', pin])), `meshbpf: ${fifo}: a FIFO, not a regular file`);
  t.is(oneLine(t, cli(['sync', '--xds-file', path.join(dir, 'nope.json'), '--pin-dir', pin])), `meshbpf: ${path.join(dir, 'nope.json')}: no such file`);
});
