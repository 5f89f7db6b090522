// The windowed JSON reader (src/xds/json-stream.ts) gives what JSON.parse of
// the whole text gives, or gives up so that the whole-text path decides (same
// errors, YAML fallback). Inputs are large enough that the top containers are
// built by the reader and only their members go to JSON.parse.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parseJsonFd } from '../../src/xds/json-stream.js';
import { loadSnapshotFile, parseText } from '../../src/xds/file.js';
import { XdsParseError } from '../../src/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-jsonstream-'));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;

function streamed(content: string | Buffer): ReturnType<typeof parseJsonFd> {
  const file = path.join(dir, `f${n++}.json`);
  fs.writeFileSync(file, content);
  const fd = fs.openSync(file, 'r');
  try {
    return parseJsonFd(fd, { maxBytes: fs.fstatSync(fd).size });
  } finally {
    fs.closeSync(fd);
  }
}

// ~200 KB: bigger than the reader's leaf span, so it builds the outer object and list
const items = Array.from({ length: 1000 }, (_, i) => ({ name: `r${i}`, n: i, x: [1.5, -0, 1e400, null, true, 'é \u2028 \\"'], o: { a: { b: 'c'.repeat(i % 50) } } }));
const BIG = JSON.stringify({ resources: items }, null, 1);

test('large documents: the same value as JSON.parse (keys, order, -0, escapes, __proto__, repeated keys, BOM)', (t) => {
  const cases = [
    BIG,
    `\ufeff${BIG}`,
    ` \n\t${BIG}\r\n `,
    BIG.replace('"resources"', '"__proto__"'),
    BIG.replace('{', '{"resources": 1, "2": "b", "1": "a", '),
    BIG.replace('"resources"', '"res\\u006fources"'),
    `[${JSON.stringify('x'.repeat(200_000))}, ${BIG}, ${BIG}]`,
  ];
  for (const c of cases) {
    const r = streamed(c);
    t.true('value' in r);
    if (!('value' in r)) continue;
    const text = c.charCodeAt(0) === 0xfeff ? c.slice(1) : c;
    const want: unknown = JSON.parse(text);
    t.true(isDeepStrictEqual(r.value, want));
    t.is(JSON.stringify(r.value), JSON.stringify(want));
    t.is(Object.getPrototypeOf(r.value), Array.isArray(want) ? Array.prototype : Object.prototype);
  }
});

test('invalid JSON, YAML and scalars: the reader gives up (never a value JSON.parse would refuse)', (t) => {
  const cases = [
    BIG.slice(0, -1),
    `${BIG}x`,
    BIG.replace('],', '],,'),
    BIG.replace(/\}\s*\]\s*\}\s*$/, '},]}'),
    BIG.replace('"resources"', 'resources'),
    BIG.replace('"n": 1,', '"n": 01,'),
    BIG.replace('"name"', '"na\u0001me"'),
    `resources:\n${'  - a: 1\n'.repeat(100_000)}`,
    '42',
    '',
  ];
  for (const c of cases) t.deepEqual(streamed(c), { giveUp: true });
  // a seeded sweep of one-byte edits: a value only where JSON.parse agrees
  let seed = 7;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let k = 0; k < 150; k++) {
    const i = Math.floor(rnd() * BIG.length);
    const ch = '{}[],:"\\ 0a-e.'[Math.floor(rnd() * 15)] ?? '';
    const m = rnd() < 0.5 ? BIG.slice(0, i) + ch + BIG.slice(i) : BIG.slice(0, i) + BIG.slice(i + 1);
    let want: unknown;
    let ok = true;
    try {
      want = JSON.parse(m);
    } catch {
      ok = false;
    }
    const r = streamed(m);
    if ('value' in r) t.true(ok && isDeepStrictEqual(r.value, want), `edit ${k} at ${i}`);
  }
});

test('a large broken file: the same error as the whole-text parser (message with line and column)', (t) => {
  const text = BIG.replace('"n": 999,', '"n": 999,,');
  const file = path.join(dir, 'broken.json');
  fs.writeFileSync(file, text);
  const e = t.throws(() => loadSnapshotFile(file), { instanceOf: XdsParseError }) as XdsParseError;
  const want = t.throws(() => parseText(text, file), { instanceOf: XdsParseError }) as XdsParseError;
  t.is(e.message, want.message);
  t.regex(e.message, /invalid JSON: .*\(line \d+, column \d+\)/);
});
