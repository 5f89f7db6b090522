// The installable package (issue 15): `npm pack` the built project, install the
// tarball into a fresh prefix, take clang off PATH, and run the installed
// `meshbpf` on the kernel: load (prebuilt objects), sync the shipped example,
// real bytes through the bypass, maps dump, unload.
//
// How it installs: the prefix gets a package.json that depends on the tarball
// and a lockfile holding the tarball plus the project's own runtime entries of
// package-lock.json; `npm ci --prefer-offline` then installs it as npm always
// does (extract, bin links), with exactly the dependency versions the project
// is tested with, from npm's cache (filled by `npm ci` in scripts/setup.sh).
// A plain `npm install ./meshbpf-0.1.0.tgz` would first fetch registry metadata
// to resolve the ranges: slower, and impossible in the VM guest (no network).
import { execFileSync, spawn } from 'node:child_process';
import { get } from 'node:http';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { PROJECT_ROOT } from '../../src/paths.js';
import { PROG_NAMES } from '../../src/maps/pinned.js';
import { kernelSuite, stats, tempDir, transfer, waitFor } from '../helpers/kernel.js';
import { freePort } from '../helpers/agent.js';

const A4 = '198.18.0.2';
const B4 = '198.18.0.3'; // examples/snapshot.yaml: db 198.18.0.3:5432 is BYPASS

const dir = tempDir();
const prefix = join(dir, 'prefix');
const stateDir = join(dir, 'state');
const installed = join(prefix, 'node_modules', 'meshbpf');

const { ktest, topo } = kernelSuite('package tests', {
  pods: [
    { name: 'a', v4: `${A4}/24` },
    { name: 'b', v4: `${B4}/24` },
  ],
  load: false,
  teardown: () => rmSync(dir, { recursive: true, force: true }),
});

/**
 * PATH without clang: every directory of the current PATH that holds a clang
 * is replaced by a shadow directory of symlinks to everything else in it.
 */
function pathWithoutClang(): string {
  const out: string[] = [];
  for (const [i, d] of (process.env.PATH ?? '').split(delimiter).entries()) {
    if (!d || !existsSync(d)) continue;
    const names = readdirSync(d);
    if (!names.some((n) => /^clang/.test(n))) {
      out.push(d);
      continue;
    }
    const shadow = join(dir, `path${i}`);
    mkdirSync(shadow);
    for (const n of names) if (!/^(clang|llc|llvm-)/.test(n)) symlinkSync(join(d, n), join(shadow, n));
    out.push(shadow);
  }
  return out.join(delimiter);
}

/** package.json + lockfile of a prefix that installs the tarball with the project's runtime dependency versions. */
function writeInstallLock(into: string, tgz: string): void {
  type Entry = { dev?: boolean } & Record<string, unknown>;
  const lock = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Entry> };
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  const root = { name: 'mbt-install', version: '0.0.0', private: true, dependencies: { meshbpf: `file:${tgz}` } };
  const integrity = `sha512-${createHash('sha512')
    .update(readFileSync(join(into, tgz)))
    .digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': { name: root.name, version: root.version, dependencies: root.dependencies },
    'node_modules/meshbpf': { version: pkg['version'], resolved: `file:${tgz}`, integrity, license: pkg['license'], dependencies: pkg['dependencies'], bin: pkg['bin'], engines: pkg['engines'] },
  };
  for (const [k, v] of Object.entries(lock.packages)) if (k.startsWith('node_modules/') && !v.dev) packages[k] = v;
  writeFileSync(join(into, 'package.json'), JSON.stringify(root, null, 1));
  writeFileSync(join(into, 'package-lock.json'), JSON.stringify({ name: root.name, version: root.version, lockfileVersion: 3, requires: true, packages }, null, 1));
}

let noClangPath = '';
let ready = false;

/** Poll /readyz without blocking (waitFor's condition is synchronous): remember the last answer. */
function readyz(port: number): boolean {
  const req = get({ host: '127.0.0.1', port, path: '/readyz', agent: false }, (res) => {
    res.resume();
    if (res.statusCode === 200) ready = true;
  });
  req.on('error', () => undefined);
  return ready;
}

function meshbpf(args: string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(join(prefix, 'node_modules', '.bin', 'meshbpf'), args, {
      cwd: prefix,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: noClangPath, MESHBPF_LOG_LEVEL: 'warn', MESHBPF_STATE_DIR: stateDir },
    });
    return { code: 0, stdout, stderr: '' };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { code: err.status ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

ktest('npm pack ships the JS, every BPF object variant, the BPF sources and the example; installs into a fresh prefix', (t) => {
  // The build that just ran is what is packed (prepack would rebuild the same).
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
  ) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const files = packed[0]!.files.map((f) => f.path);
  for (const f of [
    'bin/meshbpf.js',
    'dist/src/cli/main.js',
    'build/bpf/sockops.o',
    'build/bpf/sk_msg.o',
    'build/bpf/mb_no_netns_cookie+mb_no_vip/sockops.o',
    'build/bpf/mb_no_netns_cookie+mb_no_vip/sk_msg.o',
    'bpf/sockops.c',
    'examples/snapshot.yaml',
  ]) {
    t.true(files.includes(f), `${f} is in the tarball`);
  }
  t.false(
    files.some((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.startsWith('src/')),
    'no tests, benchmarks or TypeScript sources',
  );

  mkdirSync(prefix);
  const tgz = packed[0]!.filename;
  copyFileSync(join(dir, tgz), join(prefix, tgz));
  writeInstallLock(prefix, tgz);
  execFileSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel', 'error'], { cwd: prefix, stdio: ['ignore', 'pipe', 'pipe'] });
  t.true(existsSync(join(prefix, 'node_modules', '.bin', 'meshbpf-k8s')));
  t.true(existsSync(join(installed, 'build', 'bpf', 'mb_no_netns_cookie+mb_no_vip', 'sockops.o')));
  // The grpc-js-xds dependency carries the Envoy protos the xDS code loads.
  t.true(existsSync(join(prefix, 'node_modules', '@grpc', 'grpc-js-xds', 'deps', 'envoy-api', 'envoy', 'service', 'discovery', 'v3', 'ads.proto')));

  noClangPath = pathWithoutClang();
  t.throws(() => execFileSync('sh', ['-c', 'command -v clang'], { env: { PATH: noClangPath }, stdio: 'ignore' }), undefined, 'clang is gone from PATH');
  t.notThrows(() => execFileSync('sh', ['-c', 'command -v node'], { env: { PATH: noClangPath }, stdio: 'ignore' }), 'node is still on PATH');
});

ktest('the installed meshbpf, with no clang: --help, load, sync, agent, bytes through the bypass, maps dump, unload', async (t) => {
  const help = meshbpf(['--help']);
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /Usage: meshbpf/);
  t.regex(meshbpf(['agent', '--help']).stdout, /--xds <address>/);

  const objs = join(installed, 'build', 'bpf');
  const mtimes = () =>
    readdirSync(objs)
      .filter((f) => f.endsWith('.o'))
      .map((f) => statSync(join(objs, f)).mtimeMs);
  const before = mtimes();

  const load = meshbpf(['load', '--pin-dir', topo!.pinDir, '--cgroup', topo!.cgroup, '-o', 'json']);
  t.is(load.code, 0, load.stderr);
  const lr = JSON.parse(load.stdout) as { programs: Array<{ name: string; id: number }>; upgraded: boolean };
  t.deepEqual(lr.programs.map((p) => p.name).sort(), [...PROG_NAMES].sort());
  t.false(lr.upgraded);
  t.deepEqual(mtimes(), before, 'the shipped objects were used as they are');

  const sync = meshbpf(['sync', '--xds-file', join(installed, 'examples', 'snapshot.yaml'), '--pod-cidr', '198.18.0.0/24', '--node-ip', '198.18.0.1', '--pin-dir', topo!.pinDir, '-o', 'json']);
  t.is(sync.code, 0, sync.stderr);
  t.is((JSON.parse(sync.stdout) as { verdicts: { bypass: number } }).verdicts.bypass, 1);

  // The installed agent adopts the pins, follows the shipped example (protos from the installed dependency) and gets ready.
  const port = await freePort();
  const agent = spawn(
    join(prefix, 'node_modules', '.bin', 'meshbpf'),
    ['agent', '--pin-dir', topo!.pinDir, '--cgroup', topo!.cgroup, '--pod-cidr', '198.18.0.0/24', '--node-ip', '198.18.0.1', '--listen', `127.0.0.1:${port}`],
    {
      cwd: prefix,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PATH: noClangPath, MESHBPF_LOG_LEVEL: 'warn', MESHBPF_STATE_DIR: stateDir },
    },
  );
  let agentErr = '';
  agent.stderr!.on('data', (d: Buffer) => (agentErr += d.toString()));
  const exited = new Promise<number | null>((res) => agent.on('exit', (code) => res(code)));
  try {
    await waitFor(() => agent.exitCode !== null || readyz(port), 30_000, 'the installed agent to be ready').catch(() => undefined);
    t.true(ready, `installed agent ready (${agentErr})`);
  } finally {
    agent.kill('SIGTERM');
  }
  t.is(await exited, 0, agentErr);

  const before2 = stats(topo!.pinDir);
  const r = await transfer(topo!, { server: 'b', client: 'a', listen: 'TCP4-LISTEN:5432,reuseaddr', connect: `TCP4:${B4}:5432`, port: 5432, bytes: 1 << 20 });
  t.is(r.received, r.sent);
  t.true(stats(topo!.pinDir).redirect_bytes - before2.redirect_bytes >= BigInt(r.bytes), 'the bytes went socket to socket');

  const dump = meshbpf(['maps', 'dump', '-o', 'json', '--pin-dir', topo!.pinDir]);
  t.is(dump.code, 0, dump.stderr);
  const d = JSON.parse(dump.stdout) as { mb_policy: Array<{ key: { ip: string; port: number }; value: { verdict: string } }>; mb_stats: Array<{ key: string; value: number }> };
  t.true(d.mb_policy.some((e) => e.key.ip === B4 && e.key.port === 5432 && e.value.verdict === 'bypass'));
  t.true((d.mb_stats.find((e) => e.key === 'redirect_bytes')?.value ?? 0) >= r.bytes);

  const un = meshbpf(['unload', '--pin-dir', topo!.pinDir]);
  t.is(un.code, 0, un.stderr);
  t.false(existsSync(topo!.pinDir));
  t.regex(readFileSync(join(installed, 'package.json'), 'utf8'), /"name": "meshbpf"/);
});
