// Bounded error details (issue 10): a file of a million junk elements gives a
// small lastError, a small log and a small status, with the count of problems.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { XdsFileSource, loadSnapshotFile } from '../../src/xds/file.js';
import { XdsParseError } from '../../src/errors.js';
import { summarize } from '../../src/xds/reasons.js';

test('1,000,000 junk elements: lastError, log and status stay small and give the count', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-bounded-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'junk.json');
  fs.writeFileSync(file, `[${new Array(1_000_000).fill('1').join(',')}]`); // 2 MB
  let logged = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logged += chunk.length;
      cb();
    },
  });
  const src = new XdsFileSource({ path: file, watch: false, logger: pino({ level: 'info' }, sink) });
  t.teardown(() => src.close());
  src.start();
  const err = src.status().lastError ?? '';
  t.regex(err, /resources\[0\]: not an object; .*; and 999995 more \(1000000 problems\)$/);
  t.true(err.length < 2000, `lastError is ${err.length} chars`);
  t.true(JSON.stringify(src.status()).length < 10_000, 'status stays small');
  t.true(logged < 10_000, `logged ${logged} bytes`);
  const e = t.throws(() => loadSnapshotFile(file), { instanceOf: XdsParseError }) as XdsParseError;
  t.is(e.total, 1_000_000);
  t.true(e.reasons.length <= 20);
});

test('summarize: the first five, then the count', (t) => {
  t.is(summarize(['a', 'b']), 'a; b');
  t.is(summarize(['1', '2', '3', '4', '5', '6', '7']), '1; 2; 3; 4; 5; and 2 more (7 problems)');
});
