// Every error a user can cause is one line, `meshbpf: ...`, naming the file
// once, and exit 1; nothing is loaded before the arguments are known good (issue 10).
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
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

test("commander's own errors are one `meshbpf:` line and exit 1", (t) => {
  t.is(oneLine(t, cli(['--bogus'])), "meshbpf: unknown option '--bogus' (see --help)");
  t.is(oneLine(t, cli(['load', '--max-sockets', 'abc'])), "meshbpf: option '--max-sockets <n>' argument 'abc' is invalid. --max-sockets must be a whole number (see --help)");
  t.is(oneLine(t, cli(['policy', 'set', '198.18.0.1'])), "meshbpf: missing required argument 'port' (see --help)");
  t.is(cli(['--version']).code, 0);
});

test('--listen 127.0.0.1:99999 is refused before anything is loaded', (t) => {
  const dir = tmp(t);
  const pin = path.join(dir, 'pins');
  t.is(oneLine(t, cli(['agent', '--listen', '127.0.0.1:99999', '--pin-dir', pin])), 'meshbpf: --listen 127.0.0.1:99999: port 99999 is out of range (0-65535)');
  t.false(fs.existsSync(pin), 'nothing was loaded');
});

test('invalid JSON gets a JSON error with line and column; a bad resource names the file once', (t) => {
  const dir = tmp(t);
  const pin = path.join(dir, 'pins');
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, '{\n  "resources": [\n    {"@type": "x",\n  ]\n}\n');
  t.regex(oneLine(t, cli(['sync', '--xds-file', bad, '--pin-dir', pin])), new RegExp(`^meshbpf: ${bad}: invalid JSON: .* \\(line 4, column 3\\)$`));
  const res = path.join(dir, 'res.json');
  fs.writeFileSync(
    res,
    JSON.stringify({
      resources: [
        {
          '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
          name: 'c',
          type: 'STATIC',
          load_assignment: { cluster_name: 'c', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 'nope', port_value: 1 } } } }] }] },
        },
      ],
    }),
  );
  const line = oneLine(t, cli(['sync', '--xds-file', res, '--pin-dir', pin]));
  t.regex(line, /bad IP address "nope"/);
  t.is(line.split(res).length, 2, `file named once: ${line}`);
});

test('a closed stdout (`meshbpf ... | head -1`) ends quietly, no EPIPE stack trace', async (t) => {
  // as `load` does: output, more work, more output (the process is alive when EPIPE arrives)
  const mainJs = path.join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
  const script = `const { main } = await import(${JSON.stringify(mainJs)}); for (let i = 0; i < 3; i++) { await main(['node', 'meshbpf', '--help']); await new Promise((r) => setTimeout(r, 100)); }`;
  const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  c.stdout.destroy(); // the reader is gone before the first write
  let err = '';
  c.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => c.on('exit', (x) => r(x)));
  t.is(err, '');
  t.is(code, 0);
});
