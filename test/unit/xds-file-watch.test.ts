// The file source against files as a hostile day writes them (issue 10): FIFOs,
// devices and directories, oversize files, half-written files, ConfigMap
// symlink swaps, rename-on-save, a watched directory removed and recreated,
// files with nothing usable, and a fixed file clearing the error.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { stringify as toYaml } from 'yaml';
import { loadSnapshotFile, snapshotFromDocument, XdsFileSource, type XdsFileSourceOptions } from '../../src/xds/file.js';
import { XdsParseError } from '../../src/errors.js';
import type { Json, XdsSnapshot, XdsStateEvent } from '../../src/xds/types.js';
import { edsCluster } from '../helpers/resources.js';

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-xdswatch-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const doc = (...names: string[]): string => JSON.stringify({ resources: names.map((n) => edsCluster(n)) });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function source(t: { teardown(fn: () => void): void }, file: string, o: Partial<XdsFileSourceOptions> = {}): XdsFileSource {
  const src = new XdsFileSource({ path: file, debounceMs: 20, settleMs: 100, pollMs: 100, ...o });
  t.teardown(() => src.close());
  return src;
}

/** Resolves with the next state event of that kind (rejects after 10 s: the watcher missed it). */
function next(src: XdsFileSource, kind: XdsStateEvent['kind']): Promise<XdsStateEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${kind}' event`)), 10_000);
    const fn = (e: XdsStateEvent): void => {
      if (e.kind !== kind) return;
      clearTimeout(timer);
      src.off('state', fn);
      resolve(e);
    };
    src.on('state', fn);
  });
}

/** The next snapshot (rejects after 10 s: the watcher missed the change). */
function nextSnapshot(src: XdsFileSource): Promise<XdsSnapshot> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no new snapshot')), 10_000);
    src.once('snapshot', (s) => {
      clearTimeout(timer);
      resolve(s);
    });
  });
}

const names = (s: XdsSnapshot): string[] => [...s.clusters.keys()].sort();
const errorOf = (e: XdsStateEvent): string => (e.kind === 'error' ? e.error : '');

test('a FIFO swapped in is refused with one line and does not block the agent', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'dump.json');
  fs.writeFileSync(file, doc('one'));
  const src = source(t, file);
  src.start();
  t.deepEqual(names(src.snapshot()), ['one']);
  const err = next(src, 'error');
  fs.rmSync(file);
  execFileSync('mkfifo', [file]);
  // a blocking read of the FIFO would freeze this process, and the test with it
  const e = errorOf(await err);
  t.regex(e, /dump\.json: a FIFO, not a regular file$/);
  t.is(e.split(file).length, 2, 'file named once');
  t.deepEqual(names(src.snapshot()), ['one'], 'last good snapshot kept');
});

test('/dev/zero and a directory are refused naming the file; a directory source is never connected', (t) => {
  const e1 = t.throws(() => loadSnapshotFile('/dev/zero'), { instanceOf: XdsParseError });
  t.is(e1?.message, '/dev/zero: a character device, not a regular file');
  const dir = tmp(t);
  const e2 = t.throws(() => loadSnapshotFile(dir), { instanceOf: XdsParseError });
  t.is(e2?.message, `${dir}: a directory, not a regular file`);
  const src = source(t, dir);
  src.start();
  t.not(src.status().state, 'connected');
  t.is(src.status().lastError, `${dir}: a directory, not a regular file`);
});

test('a file over the size limit is refused, naming the size and the limit', (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'big.json');
  fs.writeFileSync(file, doc('one') + ' '.repeat(3 * 1024 * 1024));
  const e = t.throws(() => loadSnapshotFile(file, 2 * 1024 * 1024), { instanceOf: XdsParseError });
  t.is(e?.message, `${file}: 3.0 MiB is over the 2.0 MiB size limit for snapshot files (--xds-file-max-mb)`);
  t.notThrows(() => loadSnapshotFile(file, 4 * 1024 * 1024));
});

test('a half-written file is not applied: only the complete file is', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'dump.yaml');
  const full = toYaml({ resources: ['a', 'b', 'c', 'd'].map((n) => edsCluster(n)) });
  fs.writeFileSync(file, toYaml({ resources: [edsCluster('a'), edsCluster('d')] }));
  const src = source(t, file, { settleMs: 800 });
  src.start();
  const seen: string[][] = [];
  src.on('snapshot', (s) => seen.push(names(s)));
  const loaded = next(src, 'loaded');
  // in place, as `cat > file` or a slow writer does: the first part (a valid
  // YAML list of 'a' alone: 'd' would be gone), a pause shorter than the quiet period, the rest
  const lines = full.split('\n');
  const cut = lines.findIndex((l, i) => i > 0 && l.startsWith('  - '));
  const fd = fs.openSync(file, 'w');
  fs.writeSync(
    fd,
    lines
      .slice(
        0,
        lines.findIndex((l, i) => i > cut && l.startsWith('  - ')),
      )
      .join('\n') + '\n',
  );
  await sleep(300);
  fs.writeSync(fd, lines.slice(lines.findIndex((l, i) => i > cut && l.startsWith('  - '))).join('\n'));
  fs.closeSync(fd);
  await loaded;
  t.deepEqual(seen, [['a', 'b', 'c', 'd']], 'the half file never became a snapshot');
});

test('a Kubernetes ConfigMap update (..data symlink swap) is followed', async (t) => {
  const dir = tmp(t);
  // the kubelet's layout: dump.json -> ..data/dump.json, ..data -> ..<timestamp>
  fs.mkdirSync(path.join(dir, '..2026_01'));
  fs.writeFileSync(path.join(dir, '..2026_01', 'dump.json'), doc('one'));
  fs.symlinkSync('..2026_01', path.join(dir, '..data'));
  fs.symlinkSync('..data/dump.json', path.join(dir, 'dump.json'));
  const src = source(t, path.join(dir, 'dump.json'));
  src.start();
  t.deepEqual(names(src.snapshot()), ['one']);
  const snap = nextSnapshot(src);
  // the update: a new timestamped dir, a new symlink renamed over ..data, the old dir removed
  fs.mkdirSync(path.join(dir, '..2026_02'));
  fs.writeFileSync(path.join(dir, '..2026_02', 'dump.json'), doc('two'));
  fs.symlinkSync('..2026_02', path.join(dir, '..data_tmp'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  fs.rmSync(path.join(dir, '..2026_01'), { recursive: true });
  t.deepEqual(names(await snap), ['two']);
});

test("an editor's rename-on-save (old file moved to a backup, a new one written) is followed", async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'dump.json');
  fs.writeFileSync(file, doc('one'));
  const src = source(t, file);
  src.start();
  const snap = nextSnapshot(src);
  fs.renameSync(file, `${file}~`);
  fs.writeFileSync(file, doc('two'));
  fs.rmSync(`${file}~`);
  t.deepEqual(names(await snap), ['two']);
});

test('a watched directory removed and recreated is read again', async (t) => {
  const dir = tmp(t);
  const sub = path.join(dir, 'cfg');
  fs.mkdirSync(sub);
  const file = path.join(sub, 'dump.json');
  fs.writeFileSync(file, doc('one'));
  const src = source(t, file);
  src.start();
  const err = next(src, 'error');
  fs.rmSync(sub, { recursive: true });
  t.regex(errorOf(await err), /no such file/);
  await sleep(250); // let the poll see the directory gone (a recreated one is then a new inode)
  const snap = nextSnapshot(src);
  fs.mkdirSync(sub);
  fs.writeFileSync(file, doc('two'));
  t.deepEqual(names(await snap), ['two']);
  // and the new directory is watched: a later change is seen too
  const snap2 = nextSnapshot(src);
  fs.writeFileSync(`${file}.tmp`, doc('three'));
  fs.renameSync(`${file}.tmp`, file);
  t.deepEqual(names(await snap2), ['three']);
});

test('connected only after the first good load; a fixed file (same content as the last good one) clears lastError', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'dump.json');
  fs.writeFileSync(file, '{"resources": [');
  const src = source(t, file);
  src.start();
  t.is(src.status().state, 'connecting');
  t.truthy(src.status().lastError);
  let loaded = next(src, 'loaded');
  fs.writeFileSync(file, doc('one'));
  await loaded;
  t.is(src.status().state, 'connected');
  t.is(src.status().lastError, undefined);
  const err = next(src, 'error');
  fs.writeFileSync(file, '{"resources": [');
  await err;
  t.truthy(src.status().lastError);
  t.is(src.status().state, 'connected', 'still holding a good snapshot');
  loaded = next(src, 'loaded');
  fs.writeFileSync(file, doc('one')); // back to the content last applied
  await loaded;
  t.is(src.status().lastError, undefined);
  t.deepEqual(names(src.snapshot()), ['one']);
});

test('nothing usable is refused with the count of ignored resources; an empty snapshot must be explicit', (t) => {
  const v2 = [{ '@type': 'type.googleapis.com/envoy.api.v2.Cluster', name: 'c' }];
  t.regex(t.throws(() => snapshotFromDocument(v2 as Json, 'f'), { instanceOf: XdsParseError })?.message ?? '', /^f: resources\[0\]: type\.googleapis\.com\/envoy\.api\.v2\.Cluster is xDS v2/);
  const unknown = [
    { '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'r' },
    { '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'r2' },
    { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', name: 's' },
  ];
  t.regex(
    t.throws(() => snapshotFromDocument(unknown as Json, 'f'), { instanceOf: XdsParseError })?.message ?? '',
    /^f: no cluster, endpoint or listener to apply: 3 resources ignored \(.*RouteConfiguration, .*Secret\)/,
  );
  t.regex(
    t.throws(() => snapshotFromDocument([], 'f'), { instanceOf: XdsParseError })?.message ?? '',
    /the list is empty; to remove every entry on purpose, write \{"resources": \[\], "allow_empty": true\}/,
  );
  t.throws(() => snapshotFromDocument({ resources: [] }, 'f'), { instanceOf: XdsParseError });
  t.throws(() => snapshotFromDocument({ configs: [{ '@type': 'type.googleapis.com/envoy.admin.v2alpha.ClustersConfigDump' }] }, 'f'), { instanceOf: XdsParseError });
  const empty = snapshotFromDocument({ resources: [], allow_empty: true }, 'f').snapshot;
  t.is(empty.clusters.size + empty.endpoints.size + empty.listeners.size, 0);
});

test('a file with an mtime in the future is still applied after the quiet period', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'dump.json');
  fs.writeFileSync(file, doc('one'));
  const src = source(t, file);
  src.start();
  const snap = nextSnapshot(src);
  fs.writeFileSync(`${file}.tmp`, doc('two'));
  const future = new Date(Date.now() + 3600_000);
  fs.utimesSync(`${file}.tmp`, future, future);
  fs.renameSync(`${file}.tmp`, file);
  t.deepEqual(names(await snap), ['two']);
});
